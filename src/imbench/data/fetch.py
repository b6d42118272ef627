"""HTTP transport of the downloads: one file from a list of mirrors, verified, resumable.

:func:`fetch_file` drives pooch (``pooch.create(...).fetch``) with :class:`ResumableDownloader`, a
``requests`` downloader that streams into a ``.part`` file and resumes it with an HTTP ``Range``
request. Mirrors are tried in order; transient failures (connection drops, HTTP 5xx, a truncated
body) are retried by pooch, an HTTP 4xx moves on to the next mirror. A file gets its final name only
once it is complete, its checksum (where one is known) matches and it is not an HTML page served in
its place; pooch writes to a temporary name and renames. Hashes are pooch's
(:func:`pooch.file_hash`); a checksum is written ``ALG:HEX`` (md5, sha1, sha256, sha512).

Every failure is one :class:`DownloadError` line naming the URL or file and what was expected.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import DatasetError, DownloadError


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mirror_urls(bases: Sequence[str], name: str, query: str = "") -> list[str]:
    """``name`` under each mirror base URL, in order."""
    return [f"{b.rstrip('/')}/{name}{query}" for b in bases]


class _ClientError(Exception):
    """An HTTP 4xx answer: retrying the same URL is pointless, the next mirror is tried."""


class ResumableDownloader:
    """A pooch downloader that streams into ``part`` and resumes it with an HTTP Range request.

    pooch calls it with a temporary output name; the complete ``part`` file is renamed onto that
    name, then pooch checks the hash and renames it to the final name. A transfer that breaks off
    leaves ``part`` behind (a ``requests`` exception, which pooch retries), so the next attempt, or
    the next run, continues where it stopped.
    """

    def __init__(
        self,
        part: Path,
        expected_size: int | None = None,
        timeout: float = 60.0,
        progress: bool = True,
        chunk_size: int = 1 << 16,
        name: str | None = None,
    ):
        self.part = Path(part)
        self.name = name
        self.expected_size = expected_size
        self.timeout = timeout
        self.progress = progress
        self.chunk_size = chunk_size

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False):
        import requests

        if check_only:
            with requests.head(url, allow_redirects=True, timeout=self.timeout) as r:
                return r.status_code == 200
        have = self.part.stat().st_size if self.part.exists() else 0
        # identity: byte counts must match Content-Length (no transparent gzip decoding)
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            if r.status_code == 416 and have:
                # The part file is already as long as (or longer than) the remote one: start over.
                self.part.unlink()
                raise ValueError(
                    f"server refused to resume at byte {have}; restarting the download"
                )
            if 400 <= r.status_code < 500:
                raise _ClientError(f"HTTP {r.status_code} {r.reason}")
            r.raise_for_status()  # 5xx: a requests.HTTPError, retried by pooch
            if r.status_code == 206 and have:
                start = _content_range_start(r.headers.get("Content-Range", ""))
                if start != have:
                    self.part.unlink()
                    raise ValueError(
                        f"server resumed at byte {start} instead of {have}; restarting"
                    )
                mode = "ab"
            else:
                have, mode = 0, "wb"  # 200: the server sent the whole file
            length = r.headers.get("Content-Length")
            total = have + int(length) if length is not None and length.isdigit() else None
            self.part.parent.mkdir(parents=True, exist_ok=True)
            with (
                open(self.part, mode) as fh,
                _progress_bar(self.progress, total, have, self.part.name) as bar,
            ):
                for chunk in r.iter_content(chunk_size=self.chunk_size):
                    fh.write(chunk)
                    bar.update(len(chunk))
        got = self.part.stat().st_size
        if total is not None and got != total:
            raise ValueError(
                f"transfer incomplete: {got} of {total} bytes; the partial file is kept to resume"
            )
        if self.expected_size is not None and got != self.expected_size:
            self.part.unlink()
            raise ValueError(f"size is {got} bytes, expected {self.expected_size}")
        if looks_like_html(self.part) and not str(self.name or "").lower().endswith(
            (".html", ".htm")
        ):
            self.part.unlink()
            raise ValueError(
                f"the server answered with an HTML page ({got} bytes), not the file "
                f"{self.name or ''}".rstrip()
            )
        os.replace(self.part, output_file)


_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<title")


def looks_like_html(path: str | Path) -> bool:
    """Whether a file starts like an HTML page (an error or login page served in place of a file)."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    return head.startswith(_HTML_STARTS)


def _content_range_start(value: str) -> int | None:
    m = re.match(r"bytes (\d+)-", value.strip())
    return int(m.group(1)) if m else None


def _progress_bar(enabled: bool, total: int | None, initial: int, name: str):
    if not enabled:
        return contextlib.nullcontext(_NoBar())
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        file=sys.stderr,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        leave=False,
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass


def fetch_file(
    name: str,
    urls: Sequence[str],
    dest_dir: str | Path,
    known_hash: str | None = None,
    reported_hash: str | None = None,
    size: int | None = None,
    reported_size: int | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Download ``name`` into ``dest_dir`` from the first of ``urls`` that works; return its path.

    ``known_hash`` (``"sha256:…"``/``"md5:…"``, an owner-published or pinned value) and ``size``
    must match or the file is rejected. ``reported_hash``/``reported_size`` (third-party values)
    only print a warning when they differ. A file already in ``dest_dir`` is reused when it matches
    ``known_hash`` (or when there is none: it only got its name after a complete transfer).

    Content checks: an answer that is an HTML page (an error or login page sent with HTTP 200) is
    never given the final name, unless ``name`` itself ends in ``.html``; ``check(path)`` (e.g. a
    CSV parser) runs on the downloaded file and on a reused one, and a file for which it raises
    :class:`DatasetError` is deleted: a reused one is downloaded again at once, a fresh one counts as
    a failed URL (the next mirror is tried), so no rerun ever trusts a file that failed.
    """
    import pooch
    import requests

    if not urls:
        raise DownloadError(f"{name}: no URL to download it from")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    _remove_empty_pooch_temporaries(dest_dir)
    known_hash = normalise_hash(known_hash, f"hash of {name}")
    existing = dest_dir / name
    if existing.exists() and check is not None:
        reason = _content_error(check, existing)
        if reason:
            log(
                f"download: {existing} fails its content check ({reason}); deleted it, downloading it again"
            )
    fresh = not existing.exists()
    reasons = []
    for url in urls:
        part = dest_dir / f".{name}.part"
        downloader = ResumableDownloader(
            part, expected_size=size, timeout=timeout, progress=progress, name=name
        )
        registry = pooch.create(
            path=dest_dir,
            base_url=_url_dir(url),
            registry={name: known_hash},
            urls={name: url},
            retry_if_failed=retries,
        )
        try:
            path = Path(registry.fetch(name, downloader=downloader))
        except _ClientError as exc:
            reasons.append(f"{url}: {exc}")
        except (ValueError, requests.exceptions.RequestException) as exc:
            reasons.append(f"{url}: {_short_reason(exc)} (after {retries + 1} attempt(s))")
        else:
            reason = _content_error(check, path) if check is not None else None
            if reason is None:
                break
            reasons.append(f"{url}: the file fails its content check ({reason}); deleted it")
        log(f"download: {reasons[-1]}")
    else:
        raise DownloadError(
            f"could not download {name} from {len(urls)} URL(s): "
            + "; ".join(reasons)
            + "; rerun to download it again"
        )
    if size is not None and path.stat().st_size != size:  # a stale file reused from an earlier run
        got = path.stat().st_size
        path.unlink()
        raise DownloadError(
            f"{path}: size is {got} bytes, expected {size}; deleted, rerun to download it again"
        )
    if reported_size is not None and path.stat().st_size != reported_size:
        log(
            f"warning: {path} is {path.stat().st_size} bytes, a third party reported {reported_size}; "
            "checking its content instead"
        )
    if reported_hash and not known_hash:
        reported_hash = normalise_hash(reported_hash, f"reported hash of {name}")
        alg, want = reported_hash.split(":")
        got = file_hash(path, alg)
        if got != want:
            log(
                f"warning: {path} has {alg} {got}, a third party reported {want}; checking its content instead"
            )
    if fresh and not known_hash:
        digest = file_hash(path)
        log(
            f"{name}: sha256 {digest} (no published checksum; pin it with --hash {name}=sha256:{digest})"
        )
    return path


def _remove_empty_pooch_temporaries(folder: Path) -> None:
    """Delete the empty temporary files (``tmp`` plus eight random characters) that pooch creates before each transfer and
    that a killed run leaves behind (the data itself goes to the ``.part`` file, kept to resume).
    Only empty ones: a concurrent transfer's temporary file is still empty too, and is recreated by
    the rename that completes it."""
    for p in folder.glob("tmp*"):
        if re.fullmatch(r"tmp[a-z0-9_]{8}", p.name) and p.is_file() and p.stat().st_size == 0:
            p.unlink(missing_ok=True)


def _content_error(check: Callable[[Path], object], path: Path) -> str | None:
    """Run ``check`` on ``path``; on a content error delete the file and return the reason."""
    try:
        check(path)
    except DatasetError as exc:
        path.unlink(missing_ok=True)
        return str(exc) or type(exc).__name__
    return None


def _url_dir(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/"


def _short_reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    m = re.search(r"(\w+) hash of downloaded file .*? expected (\S+) but got (\w+)", text)
    if m:
        return f"{m.group(1).lower()} checksum mismatch: expected {m.group(2)}, got {m.group(3)}"
    m = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)", text)
    if m:
        return (
            f"connection closed early ({m.group(1)} bytes read, {m.group(2)} more expected); "
            "the partial file is kept to resume"
        )
    return text


def normalise_hash(value: str | None, what: str) -> str | None:
    if not value:
        return None
    value = value.strip().lower()
    if ":" not in value:
        value = f"sha256:{value}"
    alg, hexdigest = value.split(":", 1)
    if alg not in ("md5", "sha1", "sha256", "sha512") or not re.fullmatch(r"[0-9a-f]+", hexdigest):
        raise DownloadError(
            f"{what}: {value!r} is not ALG:HEX with ALG one of md5, sha1, sha256, sha512"
        )
    return f"{alg}:{hexdigest}"


def file_hash(path: str | Path, alg: str = "sha256") -> str:
    """The hex digest of a file (pooch's :func:`pooch.file_hash`, which reads it in chunks)."""
    import pooch

    return pooch.file_hash(str(path), alg=alg)


def fetch_json(url: str, dest: str | Path, retries: int = 3, timeout: float = 60.0) -> dict:
    """Download a small JSON document to ``dest`` (through :func:`fetch_file`) and parse it."""
    dest = Path(dest)
    path = fetch_file(
        dest.name, [url], dest.parent, retries=retries, timeout=timeout, progress=False
    )
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        path.unlink()
        raise DownloadError(f"{url}: answer is not JSON ({exc}); deleted {path}") from None
