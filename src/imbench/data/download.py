"""Download, verify and unpack the real datasets into ``resources/raw/<dataset>/``.

One entry point per dataset (:func:`prepare_ham10000`, :func:`prepare_isic2019`,
:func:`prepare_odir`, :func:`prepare_dermamnist`) and a command line (:func:`main`,
``imbench download <dataset> --out DIR ...``). Each does the same four things:

1. **download** every remote file with pooch into a downloads folder (default
   ``resources/downloads/<dataset>/``, outside the rule's output so that a failed run keeps what it
   fetched). Mirrors are tried in order. Transient failures (connection drops, HTTP 5xx, a
   truncated body) are retried, and an interrupted transfer resumes from its ``.part`` file with an
   HTTP ``Range`` request. A file gets its final name only once it is complete and its checksum
   (where one is known) matches, and never when the server sent an HTML page in its place; pooch
   writes to a temporary name and renames. A metadata file is parsed as soon as it arrives (and
   when an earlier run's copy is reused); one that fails is deleted so that it is fetched again.
2. **verify** what no checksum covers by content: headers, row counts, one-hot labels, and the
   class counts the dataset owners published (these can be switched off for mirrors or miniatures).
   Checksums reported by third parties only (not by the owners) are compared too, but a mismatch is
   a warning followed by the content checks, not an error.
3. **extract** archives safely: every member is checked before anything is written (no absolute
   paths, no ``..``, no links pointing outside, the decompression-bomb limits of :class:`Limits`
   and the free disk space), links are never created, non-image members are skipped, and members
   are copied in bounded chunks. The extracted image ids must equal the metadata ids exactly.
   Images that do not decode stop the download under ``undecodable="fail"``; by default they are
   reported and left for the index step to exclude and list.
4. **publish**: everything is assembled in a hidden staging folder beside ``--out`` and renamed onto
   it only when all checks pass, so ``--out`` either does not exist or is complete.

Every failure is one :class:`DownloadError` line naming the URL, file, member or row and what was
expected.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .ham10000 import DatasetError

DATASETS = ("ham10000", "isic2019", "odir", "dermamnist")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# ISIC challenge hosts, in the order tried. The same file names are served by both.
ISIC_HOSTS = (
    "https://isic-archive.s3.amazonaws.com/challenges",
    "https://isic-challenge-data.s3.amazonaws.com",
)
HAM_BASE_URLS = tuple(f"{h}/2018" for h in ISIC_HOSTS)
ISIC2019_BASE_URLS = tuple(f"{h}/2019" for h in ISIC_HOSTS)
DATAVERSE_URL = "https://dataverse.harvard.edu"
HAM_DOI = "doi:10.7910/DVN/DBW86T"
ODIR_KAGGLE_DATASET = "andrewmvd/ocular-disease-recognition-odir5k"
ODIR_ZIP = "ocular-disease-recognition-odir5k.zip"
DERMAMNIST_BASE_URLS = ("https://zenodo.org/records/10519652/files",)
DERMAMNIST_SIZES = (28, 64, 128, 224)

# Checksums the owners publish (hard checks) and those only third parties report (soft checks).
DERMAMNIST_MD5 = {
    28: "0744692d530f8e62ec473284d019b0c7",
    64: "b70a2f5635c6199aeaa28c31d7202e1f",
    128: "2defd784463fa5243564e855ed717de1",
    224: "8974907d8e169bef5f5b96bc506ae45d",
}
REPORTED_HASHES = {
    "ISIC2018_Task3_Training_GroundTruth.zip": "md5:8302427e4ce0c107559531b9f444abe9",
    "ISIC2018_Task3_Training_LesionGroupings.csv": "md5:9517b6aa6902d6c27e234bac8279a64a",
    "ISIC_2019_Training_GroundTruth.csv": "sha256:aa88e9638fe4df9ef330dc4ba22fa4bd475c44af692fffb870c73091ab25cdcd",
    "ISIC_2019_Training_Metadata.csv": "sha256:d93994a8ed201d474de9a7af7e17ec30929cbc4a5220659ecbde17cbe83e9316",
}
REPORTED_SIZES = {"ISIC2018_Task3_Training_Input.zip": 2_771_732_744}


class DownloadError(DatasetError):
    """A download, checksum, archive or content check failed (one line, naming what and where)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------- download


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
    known_hash = _normalise_hash(known_hash, f"hash of {name}")
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
        reported_hash = _normalise_hash(reported_hash, f"reported hash of {name}")
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


def _normalise_hash(value: str | None, what: str) -> str | None:
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
    h = hashlib.new(alg)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


# --------------------------------------------------------------------------------------- archives


def _unsafe_reason(name: str) -> str | None:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in re.split(r"[\\/]+", name):
        return "a '..' component"
    return None


def _link_escapes(member: str, target: str) -> bool:
    if not target or _unsafe_reason(target) == "an absolute path":
        return True
    parts: list[str] = []
    for part in list(PurePosixPath(member).parent.parts) + re.split(r"[\\/]+", target):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return True
            parts.pop()
        else:
            parts.append(part)
    return False


def is_image_name(name: str) -> bool:
    """An image member worth extracting (not a macOS resource fork or a ``__MACOSX`` entry)."""
    p = PurePosixPath(name.replace("\\", "/"))
    return (
        p.suffix.lower() in IMAGE_SUFFIXES
        and not p.name.startswith("._")
        and "__MACOSX" not in p.parts
    )


def flatten_images(folder: str = "images") -> Callable[[str], str | None]:
    """A member selector keeping image members only, all in ``folder/`` under their base name."""

    def select(name: str) -> str | None:
        return (
            f"{folder}/{PurePosixPath(name.replace(chr(92), '/')).name}"
            if is_image_name(name)
            else None
        )

    return select


# Limits of the decompression-bomb guard (see safe_extract). Real members are images of a few MB,
# CSVs and workbooks; JPEG members barely compress, CSVs compress about tenfold.
MAX_MEMBER_BYTES = 512 << 20
MAX_RATIO = 100
RATIO_MIN_BYTES = 1 << 20
FREE_SPACE_MARGIN = 64 << 20
MAX_LINK_TARGET = 4096


@dataclass(frozen=True)
class Limits:
    """What :func:`safe_extract` accepts: the largest member (declared size, bytes), the largest
    uncompressed/compressed ratio of a member or of the whole archive (checked once the
    uncompressed size passes ``ratio_min_bytes``) and the free space to leave on the destination."""

    max_member_bytes: int = MAX_MEMBER_BYTES
    max_ratio: float = MAX_RATIO
    ratio_min_bytes: int = RATIO_MIN_BYTES
    free_space_margin: int = FREE_SPACE_MARGIN


@dataclass
class _Entry:
    name: str
    kind: str  # "file", "link", "dir" or "other" (device, fifo …)
    size: int = 0  # declared uncompressed size
    packed: int | None = None  # compressed size (zip)
    target: str | None = None  # link target (read later for zip symlinks)


def safe_extract(
    archive: str | Path,
    dest: str | Path,
    select: Callable[[str], str | None],
    discard: bool = True,
    duplicates: str = "error",
    limits: Limits | None = None,
) -> list[Path]:
    """Extract the members of a zip or tar archive chosen by ``select`` into ``dest``.

    ``select(member_name)`` returns the member's path relative to ``dest`` (e.g. flattened into
    ``images/``) or ``None`` to skip it. Everything is checked from the archive's directory before
    anything is written, and the first problem stops the whole extraction with one
    :class:`DownloadError` naming the archive and the member:

    - names: an absolute path or a ``..`` component; a link pointing outside the archive;
    - links, devices, fifos and folders are never created, and a link's body is never read whole
      (a zip symlink's target is read only when its declared size is at most 4 KiB);
    - decompression bombs: a selected member declaring more than ``limits.max_member_bytes``, a
      member (zip) or the whole archive whose uncompressed size exceeds ``limits.max_ratio`` times
      its compressed size (sizes over ``limits.ratio_min_bytes``);
    - space: the declared sizes of the selected members must fit in the destination's free space
      with ``limits.free_space_margin`` to spare;
    - while writing, every member is copied in bounded chunks and stopped as soon as it yields more
      bytes than it declared.

    Two members mapped to the same destination are an error (``duplicates="first"``: the first is
    kept and the rest are reported). Returns the extracted files. With ``discard`` (the archive was
    downloaded), an archive that is damaged or fails a check is deleted so that a rerun fetches it
    again; a lack of free space never deletes it.
    """
    if duplicates not in ("error", "first"):
        raise ValueError(f"duplicates={duplicates!r} is not 'error' or 'first'")
    archive, dest = Path(archive), Path(dest)
    limits = limits or Limits()
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, dest, select, discard, duplicates, limits)
    try:
        is_tar = tarfile.is_tarfile(archive)
    except OSError:
        is_tar = False
    if is_tar:
        return _extract_tar(archive, dest, select, discard, duplicates, limits)
    raise _corrupt(
        archive, "zip or tar", "no archive directory found: truncated or not an archive", discard
    )


def check_zip_container(path: str | Path, limits: Limits | None = None) -> None:
    """Apply the member-size and ratio limits of :func:`safe_extract` to a file that a library
    will unpack itself (an ``.xlsx`` workbook is a zip); raise one :class:`DownloadError` naming the
    file and the member. A file that is not a zip is left to the library to reject."""
    path, limits = Path(path), limits or Limits()
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError):
        return
    for info in infos:
        if info.file_size > limits.max_member_bytes:
            raise DownloadError(
                f"{path}: member {info.filename!r} declares {info.file_size:,} bytes, more than "
                f"the {limits.max_member_bytes:,} allowed; refusing to read it"
            )
        if info.file_size > limits.ratio_min_bytes and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise DownloadError(
                f"{path}: member {info.filename!r} inflates {info.compress_size:,} bytes to "
                f"{info.file_size:,} (ratio over {limits.max_ratio:g}): a decompression bomb; "
                "refusing to read it"
            )


class _Refused(Exception):
    """A member failed a check; ``keep`` says the archive itself is not at fault (disk space)."""

    def __init__(self, message: str, keep: bool = False):
        super().__init__(message)
        self.keep = keep


def _plan(
    archive: Path,
    entries: Sequence[_Entry],
    select: Callable[[str], str | None],
    dest: Path,
    limits: Limits,
    duplicates: str = "error",
    read_target: Callable[[_Entry], str] | None = None,
) -> dict[str, str]:
    """Check every entry (module notes of :func:`safe_extract`); return {member name: destination}."""
    plan: dict[str, str] = {}
    taken: dict[str, str] = {}
    skipped = []
    for e in entries:
        reason = _unsafe_reason(e.name)
        if reason:
            raise _Refused(f"member {e.name!r} has {reason}")
        if e.kind == "link":
            target = e.target if read_target is None else read_target(e)
            if _link_escapes(e.name, target or ""):
                raise _Refused(f"member {e.name!r} is a link to {target!r} outside the archive")
            continue  # links inside the archive are harmless, but never created
        if e.kind != "file":
            continue
        rel = select(e.name)
        if rel is None:
            continue
        if _unsafe_reason(rel):
            raise _Refused(f"member {e.name!r} maps to unsafe path {rel!r}")
        if e.size > limits.max_member_bytes:
            raise _Refused(
                f"member {e.name!r} declares {e.size:,} bytes, more than the {limits.max_member_bytes:,} "
                "allowed for one member"
            )
        if (
            e.packed is not None
            and e.size > limits.ratio_min_bytes
            and e.size > limits.max_ratio * max(e.packed, 1)
        ):
            raise _Refused(
                f"member {e.name!r} inflates {e.packed:,} bytes to {e.size:,} (ratio over "
                f"{limits.max_ratio:g}): a decompression bomb"
            )
        if rel in taken:
            if duplicates == "first":
                skipped.append(e.name)
                continue
            raise _Refused(f"members {taken[rel]!r} and {e.name!r} both extract to {rel!r}")
        taken[rel] = e.name
        plan[e.name] = rel
    total = sum(e.size for e in entries if e.kind == "file")
    packed = archive.stat().st_size
    if total > limits.ratio_min_bytes and total > limits.max_ratio * max(packed, 1):
        raise _Refused(
            f"its members declare {total:,} bytes in all from {packed:,} bytes of archive (ratio over "
            f"{limits.max_ratio:g}): a decompression bomb"
        )
    need = sum(e.size for e in entries if e.name in plan)
    probe = dest
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need + limits.free_space_margin > free:
        raise _Refused(
            f"extracting {len(plan)} member(s) needs {need:,} bytes (+{limits.free_space_margin:,} to "
            f"spare) but {probe} has {free:,} bytes free",
            keep=True,
        )
    if skipped:
        log(
            f"note: {archive}: skipped {len(skipped)} member(s) with the name of an earlier one, first {skipped[0]!r}"
        )
    return plan


def _copy_bounded(src, target: Path, declared: int, name: str) -> None:
    """Copy ``src`` to ``target`` in chunks; stop once it yields more than ``declared`` bytes.
    A copy that fails leaves no file at ``target``."""
    written = 0
    try:
        with open(target, "wb") as dst:
            while True:
                chunk = src.read(min(1 << 20, declared - written + 1))
                if not chunk:
                    break
                written += len(chunk)
                if written > declared:
                    raise _Refused(
                        f"member {name!r} holds more than the {declared:,} bytes it declares"
                    )
                dst.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def _extract_zip(
    archive: Path, dest: Path, select, discard: bool, duplicates: str, limits: Limits
) -> list[Path]:
    out = []
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            entries = []
            for info in infos:
                mode = info.external_attr >> 16
                kind = (
                    "link"
                    if stat.S_ISLNK(mode)
                    else "dir"
                    if info.is_dir()
                    else "other"
                    if stat.S_IFMT(mode) not in (0, stat.S_IFREG)
                    else "file"
                )
                entries.append(_Entry(info.filename, kind, info.file_size, info.compress_size))
            by_name = {i.filename: i for i in infos}

            def read_target(e: _Entry) -> str:
                if e.size > MAX_LINK_TARGET:
                    raise _Refused(
                        f"member {e.name!r} is a link whose target declares {e.size:,} bytes"
                    )
                with zf.open(by_name[e.name]) as src:
                    return src.read(MAX_LINK_TARGET + 1)[:MAX_LINK_TARGET].decode(
                        "utf-8", "replace"
                    )

            plan = _plan(archive, entries, select, dest, limits, duplicates, read_target)
            for name, rel in plan.items():
                info = by_name[name]
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src:
                    _copy_bounded(src, target, info.file_size, name)
                out.append(target)
    except _Refused as exc:
        raise _refused(archive, exc, discard) from None
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        zlib.error,
        NotImplementedError,
    ) as exc:
        raise _corrupt(archive, "zip", exc, discard) from None
    return out


def _extract_tar(
    archive: Path, dest: Path, select, discard: bool, duplicates: str, limits: Limits
) -> list[Path]:
    out = []
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()  # headers only: no member body is read here
            entries = []
            for m in members:
                kind = "link" if (m.issym() or m.islnk()) else "file" if m.isfile() else "other"
                entries.append(
                    _Entry(m.name, kind, m.size if m.isfile() else 0, None, m.linkname or None)
                )
            plan = _plan(archive, entries, select, dest, limits, duplicates)
            for m in members:
                rel = plan.get(m.name)
                if rel is None:
                    continue
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                with tf.extractfile(m) as src:
                    _copy_bounded(src, target, m.size, m.name)
                out.append(target)
    except _Refused as exc:
        raise _refused(archive, exc, discard) from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        if (
            isinstance(exc, OSError)
            and not isinstance(exc, (tarfile.TarError, EOFError))
            and exc.errno is not None
        ):
            raise  # a disk error while writing, not a damaged archive
        raise _corrupt(archive, "tar", exc, discard) from None
    return out


def _refused(archive: Path, exc: _Refused, discard: bool) -> DownloadError:
    """The error for an archive that failed a check; a downloaded one is deleted (unless not at fault)."""
    if discard and not exc.keep:
        archive.unlink(missing_ok=True)
        return DownloadError(
            f"{archive}: {exc}; refusing to extract the archive, deleted it "
            "(rerun to download it again)"
        )
    return DownloadError(f"{archive}: {exc}; refusing to extract the archive")


def _corrupt(archive: Path, kind: str, exc: BaseException, discard: bool) -> DownloadError:
    """The error for a damaged archive; a downloaded one is deleted so that a rerun fetches it again."""
    if discard:
        archive.unlink(missing_ok=True)
        return DownloadError(
            f"{archive}: corrupt {kind} archive ({exc}); deleted it, rerun to download it again"
        )
    return DownloadError(f"{archive}: corrupt {kind} archive ({exc})")


def check_id_set(
    found: Iterable[str], expected: Iterable[str], source: str, listed_in: str
) -> None:
    """Raise unless the image ids found in ``source`` equal the ids listed in ``listed_in``."""
    found, expected = set(found), set(expected)
    missing = sorted(expected - found)
    extra = sorted(found - expected)
    if missing:
        raise DownloadError(
            f"{source}: {len(missing)} image(s) listed in {listed_in} are missing, "
            f"first {missing[:3]}"
        )
    if extra:
        raise DownloadError(
            f"{source}: {len(extra)} image(s) are not listed in {listed_in}, first {extra[:3]}"
        )


def check_images_decode(
    paths: Sequence[Path],
    size: tuple[int, int] | None = None,
    sample: int = 20,
    source: str | None = None,
    undecodable: str = "fail",
) -> list[Path]:
    """Check that every image in ``paths`` can be read; optionally require (width, height).

    Every file's header is parsed with Pillow (cheap: no pixels decoded) and, with ``size``, its
    dimensions compared. A JPEG must end with its end-of-image marker; one that does not (a
    truncated file) is decoded in full, as is an evenly spread sample of ``sample`` files. The
    error names the first bad file (``source``: the archive it came from) and how many are bad.
    With ``undecodable="exclude"`` images that do not decode are only reported (one warning line)
    and returned: the index step leaves them out and lists them. A wrong size always fails.
    """
    from PIL import Image

    paths = list(paths)
    if not paths:
        return []
    step = max(1, len(paths) // sample)
    decode = set(range(0, len(paths), step)[:sample])
    bad = []
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                got = img.size
                if i in decode or (img.format == "JPEG" and not _ends_with_jpeg_eoi(p)):
                    img.load()
        except Exception as exc:  # Pillow raises many types for broken files
            bad.append((p, f"not a decodable image ({exc})"))
            continue
        if size is not None and got != tuple(size):
            bad.append((p, f"image is {got[0]}×{got[1]} px, expected {size[0]}×{size[1]}"))
    undecoded = [p for p, reason in bad if reason.startswith("not a decodable")]
    if undecodable == "exclude" and undecoded:
        bad = [(p, reason) for p, reason in bad if not reason.startswith("not a decodable")]
    if bad:
        p, reason = bad[0]
        where = f"{source}: image {p.name}" if source else str(p)
        more = f" ({len(bad)} bad images in all)" if len(bad) > 1 else ""
        raise DownloadError(f"{where}: {reason}{more}")
    if undecoded:
        log(
            f"warning: {source or undecoded[0].parent}: {len(undecoded)} image(s) do not decode, first "
            f"{undecoded[0].name}; kept: the index step leaves them out and lists them in exclusions.csv "
            "(undecodable: fail stops here instead)"
        )
    return undecoded


def _ends_with_jpeg_eoi(path: Path, tail: int = 1024) -> bool:
    """Whether the JPEG end-of-image marker FF D9 is in the file's last ``tail`` bytes."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - tail))
        return b"\xff\xd9" in fh.read()


def check_counts(what: str, observed: dict, published: dict, tolerance: float = 0.0) -> None:
    """Compare counts with the published ones: exact passes, within ``tolerance`` (relative) warns."""
    diffs = {k: (observed.get(k, 0), v) for k, v in published.items() if observed.get(k, 0) != v}
    diffs.update({k: (v, 0) for k, v in observed.items() if k not in published})
    if not diffs:
        return
    text = ", ".join(f"{k} {got} (published {want})" for k, (got, want) in diffs.items())
    worst = max(abs(got - want) / max(want, 1) for got, want in diffs.values())
    if worst <= tolerance:
        log(f"warning: {what}: counts differ slightly from the published ones: {text}")
        return
    raise DownloadError(
        f"{what}: counts differ from the published ones: {text} "
        "(pass --no-published-counts for a mirror or subset)"
    )


def check_out(out: str | Path, force: bool = False) -> None:
    """Refuse to replace a non-empty ``out`` unless ``force``."""
    out = Path(out)
    if not force and out.exists() and any(p.name != ".snakemake_timestamp" for p in out.iterdir()):
        raise DownloadError(f"{out}: already exists and is not empty; remove it or pass --force")


@contextlib.contextmanager
def staging(out: str | Path, force: bool = False):
    """Yield a hidden folder beside ``out``; rename it onto ``out`` when the block succeeds."""
    out = Path(out)
    check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        yield stage
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@contextlib.contextmanager
def discard_if_bad(path: Path, enabled: bool = True):
    """Delete the downloaded ``path`` when the block finds its content bad (a :class:`DatasetError`),
    so that a rerun downloads it again instead of failing the same way."""
    try:
        yield
    except DatasetError as exc:
        if not enabled or not path.exists():
            raise
        path.unlink()
        raise DownloadError(f"{exc}; deleted {path}, rerun to download it again") from None


@contextlib.contextmanager
def _blame(stage: Path, origin: Path):
    """In a content error about a staged file, name ``origin`` (the archive or folder it came from)
    instead of the hidden staging folder, which is deleted on the way out."""
    try:
        yield
    except DatasetError as exc:
        prefix = f"{stage}{os.sep}"
        if prefix not in str(exc):
            raise
        raise DownloadError(str(exc).replace(prefix, f"{origin}: ")) from None


@dataclass
class Options:
    """Settings shared by every dataset's download."""

    downloads: Path
    retries: int = 3
    timeout: float = 60.0
    progress: bool = True
    hashes: dict | None = None  # {file name: "alg:hex"} pins, checked strictly
    published_counts: bool = True
    delete_archives: bool = False
    force: bool = False
    undecodable: str = (
        "exclude"  # an image that does not decode: "exclude" (report, keep going) or "fail"
    )

    def pin(self, name: str) -> str | None:
        return (self.hashes or {}).get(name)

    def fetch(self, name: str, urls: Sequence[str], known_hash: str | None = None, **kw) -> Path:
        return fetch_file(
            name,
            urls,
            self.downloads,
            known_hash=self.pin(name) or known_hash,
            retries=self.retries,
            timeout=self.timeout,
            progress=self.progress,
            **kw,
        )

    def done_with(self, archive: Path) -> None:
        if self.delete_archives:
            archive.unlink(missing_ok=True)


def _urls(bases: Sequence[str], name: str, query: str = "") -> list[str]:
    return [f"{b.rstrip('/')}/{name}{query}" for b in bases]


# --------------------------------------------------------------------------------------- HAM10000

HAM_INPUT_ZIP = "ISIC2018_Task3_Training_Input.zip"
HAM_TRUTH_ZIP = "ISIC2018_Task3_Training_GroundTruth.zip"
HAM_TRUTH_CSV = "ISIC2018_Task3_Training_GroundTruth.csv"
HAM_GROUPS_CSV = "ISIC2018_Task3_Training_LesionGroupings.csv"
HAM_PUBLISHED = {
    "rows": 10015,
    "lesions": 7470,
    "dx": {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115},
}
HAM_ID_RANGE = (24306, 34320)
HAM_SIZE = (600, 450)
_HAM_TRUTH_CODES = {
    "MEL": "mel",
    "NV": "nv",
    "BCC": "bcc",
    "AKIEC": "akiec",
    "BKL": "bkl",
    "DF": "df",
    "VASC": "vasc",
}


def prepare_ham10000(
    out: str | Path,
    opts: Options,
    base_urls: Sequence[str] = HAM_BASE_URLS,
    dataverse_url: str = DATAVERSE_URL,
    metadata_from_isic: bool = False,
) -> Path:
    """HAM10000 as ISIC 2018 Task 3 (images, ground truth, lesion groupings) + Dataverse metadata.

    Result: ``out/HAM10000_metadata.csv``, ``out/images/ISIC_*.jpg`` (10,015 at 600×450) and the two
    ISIC 2018 CSVs. The metadata's ``dx`` and ``lesion_id`` must agree with the ISIC 2018 files.
    ``metadata_from_isic`` builds the metadata from the ISIC 2018 files instead of Dataverse (age,
    sex and site are then unknown).
    """
    from . import ham10000

    truth_zip = opts.fetch(
        HAM_TRUTH_ZIP, _urls(base_urls, HAM_TRUTH_ZIP), reported_hash=REPORTED_HASHES[HAM_TRUTH_ZIP]
    )
    groups_csv = opts.fetch(
        HAM_GROUPS_CSV,
        _urls(base_urls, HAM_GROUPS_CSV),
        reported_hash=REPORTED_HASHES[HAM_GROUPS_CSV],
        check=_read_lesion_groupings,
    )
    if not metadata_from_isic:
        meta_src = _fetch_dataverse_metadata(opts, dataverse_url)
    input_zip = opts.fetch(
        HAM_INPUT_ZIP, _urls(base_urls, HAM_INPUT_ZIP), reported_size=REPORTED_SIZES[HAM_INPUT_ZIP]
    )

    with staging(out, opts.force) as stage, _blame(stage, truth_zip):
        with discard_if_bad(truth_zip):
            csvs = safe_extract(
                truth_zip,
                stage,
                lambda n: HAM_TRUTH_CSV if PurePosixPath(n).name == HAM_TRUTH_CSV else None,
            )
            if not csvs:
                raise DownloadError(f"{truth_zip}: no member named {HAM_TRUTH_CSV}")
            truth = _read_ham_truth(stage / HAM_TRUTH_CSV)
        groups = _read_lesion_groupings(groups_csv)
        shutil.copy(groups_csv, stage / HAM_GROUPS_CSV)
        meta_path = stage / ham10000.METADATA_NAME
        if metadata_from_isic:
            _ham_metadata_from_isic(truth, groups, meta_path)
        else:
            shutil.copy(meta_src, meta_path)
        checked = meta_path if metadata_from_isic else meta_src  # errors name the downloaded file
        meta = ham10000.read_metadata(checked)
        _cross_check_ham(meta, truth, groups, checked)
        if opts.published_counts:
            _check_ham_published(meta, checked)

        images = safe_extract(input_zip, stage, flatten_images())
        check_id_set((p.stem for p in images), meta.image_id, str(input_zip), str(meta_path.name))
        check_images_decode(
            images, size=HAM_SIZE, source=str(input_zip), undecodable=opts.undecodable
        )
    opts.done_with(input_zip)
    log(f"ham10000: {len(meta)} images of {meta.lesion_id.nunique()} lesions in {out}")
    return Path(out)


def _fetch_dataverse_metadata(opts: Options, dataverse_url: str) -> Path:
    base = dataverse_url.rstrip("/")
    listing_url = f"{base}/api/datasets/:persistentId/?persistentId={HAM_DOI}"
    try:
        listing = fetch_json(
            listing_url, opts.downloads / "dataverse_DBW86T.json", opts.retries, opts.timeout
        )
    except DownloadError as exc:
        raise DownloadError(
            f"{exc} (pass --metadata-from-isic to build the metadata from the ISIC 2018 "
            "files instead)"
        ) from None
    try:
        files = listing["data"]["latestVersion"]["files"]
    except (KeyError, TypeError):
        raise DownloadError(f"{listing_url}: answer has no data.latestVersion.files list") from None
    for f in files:
        df = f.get("dataFile", {}) if isinstance(f, dict) else {}
        names = {
            str(df.get("filename", "")),
            str(df.get("originalFileName", "")),
            str(f.get("label", "")),
        }
        if any(re.sub(r"\.(tab|csv)$", "", n) == "HAM10000_metadata" for n in names):
            break
    else:
        raise DownloadError(
            f"{listing_url}: no file named HAM10000_metadata in the dataset's file list"
        )
    file_id = df.get("id")
    md5 = df.get("md5") or (df.get("checksum") or {}).get("value")
    alg = ((df.get("checksum") or {}).get("type") or "MD5").lower().replace("-", "")
    if file_id is None:
        raise DownloadError(f"{listing_url}: HAM10000_metadata entry has no dataFile.id")
    url = f"{base}/api/access/datafile/{file_id}?format=original"
    known = f"{alg}:{md5}" if md5 and alg in ("md5", "sha1", "sha256", "sha512") else None
    from . import ham10000

    return opts.fetch(
        "HAM10000_metadata.csv", [url], known_hash=known, check=ham10000.read_metadata
    )


def _read_csv_checked(path: Path, required: Sequence[str]):
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DownloadError(f"{path}: not a readable CSV file ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DownloadError(f"{path}: header {list(df.columns)} lacks column(s) {missing}")
    return df


def _read_ham_truth(path: Path):
    """ISIC 2018 Task 3 ground truth → DataFrame(image, dx); rows must be one-hot."""
    import pandas as pd

    df = _read_csv_checked(path, ["image", *_HAM_TRUTH_CODES])
    values = df[list(_HAM_TRUTH_CODES)].apply(pd.to_numeric, errors="coerce")
    ok = values.isin([0.0, 1.0]).all(axis=1) & (values.sum(axis=1) == 1)
    if not ok.all():
        i = int((~ok).to_numpy().argmax())
        raise DownloadError(
            f"{path}: line {i + 2}: expected one-hot 0.0/1.0 over {list(_HAM_TRUTH_CODES)}"
        )
    dx = values.idxmax(axis=1).map(_HAM_TRUTH_CODES)
    return pd.DataFrame({"image": df["image"].str.strip(), "dx": dx})


def _read_lesion_groupings(path: Path):
    df = _read_csv_checked(path, ["image", "lesion_id"])
    return df.assign(image=df["image"].str.strip(), lesion_id=df["lesion_id"].str.strip())


def _ham_metadata_from_isic(truth, groups, out: Path) -> None:
    import pandas as pd

    from ..io import write_csv

    merged = truth.merge(groups, on="image", how="outer", indicator=True)
    lost = merged[merged["_merge"] != "both"]
    if len(lost):
        raise DownloadError(
            f"{HAM_TRUTH_CSV} and {HAM_GROUPS_CSV} list different images, first {lost.image.iloc[0]}"
        )
    confirm = merged["diagnosis_confirm_type"] if "diagnosis_confirm_type" in merged else "unknown"
    write_csv(
        out,
        pd.DataFrame(
            {
                "lesion_id": merged["lesion_id"],
                "image_id": merged["image"],
                "dx": merged["dx"],
                "dx_type": confirm,
                "age": "",
                "sex": "unknown",
                "localization": "unknown",
            }
        ),
    )
    log(f"ham10000: built {out.name} from the ISIC 2018 files (age, sex and site unknown)")


def _cross_check_ham(meta, truth, groups, meta_path: Path) -> None:
    for other, name, col in ((truth, HAM_TRUTH_CSV, "dx"), (groups, HAM_GROUPS_CSV, "lesion_id")):
        check_id_set(other["image"], meta["image_id"], name, meta_path.name)
        joined = meta.merge(
            other.rename(columns={"image": "image_id", col: "_other"}), on="image_id"
        )
        bad = joined[joined[col] != joined["_other"]]
        if len(bad):
            row = bad.iloc[0]
            raise DownloadError(
                f"{meta_path}: line {row.line}: {col} of {row.image_id} is {row[col]!r} but "
                f"{name} says {row['_other']!r} ({len(bad)} such rows)"
            )


def _check_ham_published(meta, meta_path: Path) -> None:
    check_counts(
        f"{meta_path}",
        {"rows": len(meta), "lesions": meta.lesion_id.nunique()},
        {"rows": HAM_PUBLISHED["rows"], "lesions": HAM_PUBLISHED["lesions"]},
    )
    check_counts(f"{meta_path} dx", meta.dx.value_counts().to_dict(), HAM_PUBLISHED["dx"])
    numbers = meta.image_id.str[5:].astype(int)
    if numbers.min() != HAM_ID_RANGE[0] or numbers.max() != HAM_ID_RANGE[1]:
        raise DownloadError(
            f"{meta_path}: image ids run from ISIC_{numbers.min():07d} to ISIC_{numbers.max():07d}, "
            f"expected ISIC_{HAM_ID_RANGE[0]:07d} to ISIC_{HAM_ID_RANGE[1]:07d}"
        )


# --------------------------------------------------------------------------------------- ISIC 2019

ISIC2019_INPUT_ZIP = "ISIC_2019_Training_Input.zip"


def prepare_isic2019(
    out: str | Path, opts: Options, base_urls: Sequence[str] = ISIC2019_BASE_URLS
) -> Path:
    """ISIC 2019 training set: the two CSVs + ``images/<image>.jpg`` (25,331, names kept verbatim)."""
    from . import isic2019

    gt = opts.fetch(
        isic2019.GROUND_TRUTH,
        _urls(base_urls, isic2019.GROUND_TRUTH),
        reported_hash=REPORTED_HASHES[isic2019.GROUND_TRUTH],
        check=isic2019.read_ground_truth,
    )
    md = opts.fetch(
        isic2019.METADATA,
        _urls(base_urls, isic2019.METADATA),
        reported_hash=REPORTED_HASHES[isic2019.METADATA],
        check=isic2019.read_metadata,
    )
    truth = isic2019.read_ground_truth(gt)
    meta = isic2019.read_metadata(md, truth)
    if opts.published_counts:
        check_counts(
            str(gt), {"rows": len(truth)}, {"rows": isic2019.PUBLISHED_ROWS}, tolerance=0.01
        )
        check_counts(
            f"{gt} classes",
            truth.label_name.value_counts().to_dict(),
            isic2019.PUBLISHED_COUNTS,
            tolerance=0.01,
        )
    archive = opts.fetch(ISIC2019_INPUT_ZIP, _urls(base_urls, ISIC2019_INPUT_ZIP))
    with staging(out, opts.force) as stage:
        shutil.copy(gt, stage / isic2019.GROUND_TRUTH)
        shutil.copy(md, stage / isic2019.METADATA)
        images = safe_extract(archive, stage, flatten_images())
        check_id_set((p.stem for p in images), truth["image"], str(archive), isic2019.GROUND_TRUTH)
        check_images_decode(images, source=str(archive), undecodable=opts.undecodable)
    opts.done_with(archive)
    log(
        f"isic2019: {len(truth)} images, {meta.lesion_id.replace('', None).nunique()} lesion ids in {out}"
    )
    return Path(out)


# --------------------------------------------------------------------------------------- ODIR-5K


def kaggle_credentials() -> str | None:
    """Where Kaggle credentials were found (a description), or None."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        dirs = [Path(os.environ["KAGGLE_CONFIG_DIR"])]
    else:
        xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        dirs = [Path.home() / ".kaggle", xdg / "kaggle"]
    for d in dirs:
        if (d / "kaggle.json").is_file():
            return str(d / "kaggle.json")
    return None


def _odir_instructions(downloads: Path, out: Path) -> str:
    return (
        f"ODIR-5K needs a Kaggle API token (~/.kaggle/kaggle.json or KAGGLE_USERNAME + KAGGLE_KEY, "
        f"then `pip install kaggle`) or files placed by hand: put the Kaggle zip {ODIR_ZIP} (from "
        f"kaggle.com/datasets/{ODIR_KAGGLE_DATASET}) or the official OIA-ODIR folder 'Training Set/' "
        f"(with 'Images/' and 'Annotation/training annotation (English).xlsx') in {downloads}/ and run "
        f"again; an extracted tree put in {out}/ instead is indexed as it is"
    )


def _odir_manual_source(downloads: Path) -> Path | None:
    """A zip or an extracted tree placed by hand in ``downloads``, if any."""
    from . import odir

    if not downloads.is_dir():
        return None
    zips = sorted(p for p in downloads.glob("*.zip") if not p.name.startswith("."))
    for z in zips:
        with contextlib.suppress(zipfile.BadZipFile, OSError):
            with zipfile.ZipFile(z) as zf:
                if any(odir.annotation_kind(PurePosixPath(n).name) for n in zf.namelist()):
                    return z
    with contextlib.suppress(DatasetError):
        odir.locate(downloads)
        return downloads
    return None


def _odir_from_kaggle(opts: Options, dataset: str) -> Path:
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi  # lazy: optional dependency
    except ImportError:
        raise DownloadError(
            "Kaggle credentials found but the kaggle package is not installed; "
            "run `pip install kaggle` or place the files by hand"
        ) from None
    except (
        Exception,
        SystemExit,
    ) as exc:  # the package authenticates on import (some versions exit)
        raise DownloadError(f"kaggle: authentication failed ({exc})") from None
    opts.downloads.mkdir(parents=True, exist_ok=True)
    target = opts.downloads / f"{dataset.split('/')[-1]}.zip"
    if target.exists() and zipfile.is_zipfile(target):
        return target
    try:
        api = KaggleApi()
        api.authenticate()
        api.dataset_download_files(
            dataset, path=str(opts.downloads), unzip=False, quiet=not opts.progress
        )
    except (Exception, SystemExit) as exc:
        target.unlink(missing_ok=True)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(f"kaggle: downloading {dataset} failed ({reason})") from None
    if not zipfile.is_zipfile(target):
        target.unlink(missing_ok=True)
        raise DownloadError(
            f"kaggle: {target} is not a complete zip after the download; deleted, run again"
        )
    return target


def _odir_select(name: str) -> str | None:
    from . import odir

    p = PurePosixPath(name.replace("\\", "/"))
    if odir.annotation_kind(p.name) or p.name == odir.FULL_DF:
        return p.name
    if is_image_name(name) and odir.is_training_image(p):
        return f"images/{p.name}"
    return None


def prepare_odir(
    out: str | Path,
    opts: Options,
    base_urls: Sequence[str] = (),
    kaggle_dataset: str = ODIR_KAGGLE_DATASET,
) -> Path:
    """ODIR-5K training set, from (in order) files placed by hand in the downloads folder, a mirror
    serving the Kaggle zip under ``base_urls``, or the Kaggle API; else one line saying what to place.

    Result: ``out/<annotation xlsx>``, ``out/full_df.csv`` (Kaggle only) and ``out/images/`` holding
    the 7,000 training fundus images ``{ID}_{left,right}.jpg``.
    """
    from . import odir

    out = Path(out)
    source = _odir_manual_source(opts.downloads)
    manual = source is not None
    if source is None and base_urls:
        source = opts.fetch(ODIR_ZIP, _urls(base_urls, ODIR_ZIP))
    if source is None and kaggle_credentials():
        source = _odir_from_kaggle(opts, kaggle_dataset)
    if source is None:
        raise DownloadError(_odir_instructions(opts.downloads, out))
    log(f"odir: using {source}")
    with staging(out, opts.force) as stage, _blame(stage, source):
        if source.is_dir():
            layout = odir.locate(source)
            files = [layout.annotations] + ([layout.full_df] if layout.full_df else [])
            for f in files:
                shutil.copy(f, stage / f.name)
            (stage / "images").mkdir()
            images = []
            for p in sorted(layout.images_dir.iterdir()):
                if is_image_name(p.name) and odir.is_training_image(PurePosixPath(p.name)):
                    shutil.copy(p, stage / "images" / p.name)
                    images.append(stage / "images" / p.name)
        else:
            with discard_if_bad(source, not manual):
                extracted = safe_extract(
                    source, stage, _odir_select, discard=not manual, duplicates="first"
                )
                images = [p for p in extracted if p.parent.name == "images"]
                layout = odir.locate(stage)
                odir.read_annotations(layout.annotations)
                if layout.full_df:
                    odir.read_full_df(layout.full_df)
        layout = odir.locate(stage)
        ann = odir.read_annotations(layout.annotations)
        expected = [f"{i}_{side}" for i in ann.ID for side in ("left", "right")]
        check_id_set((p.stem for p in images), expected, str(source), layout.annotations.name)
        full_df = odir.read_full_df(layout.full_df, ann) if layout.full_df else None
        if opts.published_counts:
            check_counts(
                str(layout.annotations), odir.label_sums(ann), odir.PUBLISHED_PATIENT_COUNTS
            )
            if full_df is not None:
                check_counts(
                    str(layout.full_df),
                    full_df.label_name.value_counts().to_dict(),
                    odir.PUBLISHED_EYE_COUNTS,
                )
        check_images_decode(images, source=str(source), undecodable=opts.undecodable)
    if source.is_file() and not manual:
        opts.done_with(source)
    log(f"odir: {len(ann)} patients, {len(images)} images in {out}")
    return out


# --------------------------------------------------------------------------------------- DermaMNIST


def dermamnist_file(size: int) -> str:
    return "dermamnist.npz" if size == 28 else f"dermamnist_{size}.npz"


def prepare_dermamnist(
    out: str | Path, opts: Options, size: int = 224, base_urls: Sequence[str] = DERMAMNIST_BASE_URLS
) -> Path:
    """DermaMNIST at ``size`` px from Zenodo (MD5 checked), written as a PNG tree (see dermamnist.py)."""
    from . import dermamnist

    if size not in DERMAMNIST_SIZES:
        raise DownloadError(f"dermamnist: size {size} is not one of {DERMAMNIST_SIZES}")
    name = dermamnist_file(size)
    npz = opts.fetch(
        name, _urls(base_urls, name, "?download=1"), known_hash=f"md5:{DERMAMNIST_MD5[size]}"
    )
    with staging(out, opts.force) as stage:
        counts = dermamnist.write_tree(
            npz,
            stage,
            size=size,
            expected=dermamnist.PUBLISHED_SPLITS if opts.published_counts else None,
        )
    opts.done_with(npz)
    log(f"dermamnist: {counts} images at {size} px in {out}")
    return Path(out)


# --------------------------------------------------------------------------------------- CLI


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imbench download",
        description="download, verify and unpack a dataset into its raw folder",
    )
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument(
        "--out", required=True, type=Path, help="raw folder to create, e.g. resources/raw/ham10000"
    )
    p.add_argument(
        "--downloads",
        type=Path,
        default=None,
        help="where downloaded files are kept (default resources/downloads/<dataset>)",
    )
    p.add_argument(
        "--base-url",
        action="append",
        default=None,
        metavar="URL",
        help="mirror base URL (repeat for several, tried in order); default: the official hosts",
    )
    p.add_argument(
        "--dataverse-url", default=DATAVERSE_URL, help="ham10000: Dataverse installation"
    )
    p.add_argument(
        "--metadata-from-isic",
        action="store_true",
        help="ham10000: build the metadata from the ISIC 2018 files instead of Dataverse",
    )
    p.add_argument(
        "--kaggle-dataset", default=ODIR_KAGGLE_DATASET, help="odir: Kaggle dataset slug"
    )
    p.add_argument(
        "--size", type=int, default=224, choices=DERMAMNIST_SIZES, help="dermamnist: image size"
    )
    p.add_argument(
        "--hash",
        action="append",
        default=[],
        metavar="NAME=ALG:HEX",
        help="pin a file's checksum (strict), e.g. ISIC_2019_Training_Input.zip=sha256:...",
    )
    p.add_argument(
        "--retries", type=int, default=3, help="extra attempts per URL after a transient failure"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds without data before a retry"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--no-published-counts",
        action="store_true",
        help="skip the comparison with the published row and class counts (mirrors, subsets)",
    )
    p.add_argument("--delete-archives", action="store_true", help="delete archives once extracted")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--undecodable",
        choices=("exclude", "fail"),
        default="exclude",
        help="an image that does not decode: report it and keep going (default; the index step "
        "lists it) or stop",
    )
    return p


# config["download"][<dataset>] keys → options of `imbench download <dataset>` (unset keys keep the
# command's defaults, which are the official sources).
CONFIG_KEYS = {
    "common": (
        "downloads",
        "base_urls",
        "hashes",
        "retries",
        "timeout",
        "published_counts",
        "delete_archives",
    ),
    "ham10000": ("dataverse_url", "metadata_from_isic"),
    "isic2019": (),
    "odir": ("kaggle_dataset",),
    "dermamnist": ("size",),
}


def cli_args(dataset: str, cfg: dict | None) -> list[str]:
    """Command-line options for ``imbench download <dataset>`` from its config section."""
    if dataset not in DATASETS:
        raise DownloadError(f"download: dataset {dataset!r} is not one of {list(DATASETS)}")
    cfg = dict(cfg or {})
    allowed = CONFIG_KEYS["common"] + CONFIG_KEYS[dataset]
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise DownloadError(
            f"config key download.{dataset}: unknown key(s) {unknown}; allowed keys: {list(allowed)}"
        )
    args: list[str] = []
    if cfg.get("downloads"):
        args += ["--downloads", str(cfg["downloads"])]
    for url in cfg.get("base_urls") or []:
        args += ["--base-url", str(url)]
    for name, value in (cfg.get("hashes") or {}).items():
        args += ["--hash", f"{name}={value}"]
    for key in ("retries", "timeout", "dataverse_url", "kaggle_dataset", "size"):
        if cfg.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", str(cfg[key])]
    if cfg.get("published_counts") is False:
        args.append("--no-published-counts")
    if cfg.get("delete_archives"):
        args.append("--delete-archives")
    if cfg.get("metadata_from_isic"):
        args.append("--metadata-from-isic")
    return args


def _parse_hashes(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise DownloadError(f"--hash {item!r}: expected NAME=ALG:HEX")
        out[name] = _normalise_hash(value, f"--hash {name}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        opts = Options(
            downloads=args.downloads or Path("resources/downloads") / args.dataset,
            retries=args.retries,
            timeout=args.timeout,
            progress=not args.no_progress,
            hashes=_parse_hashes(args.hash),
            published_counts=not args.no_published_counts,
            delete_archives=args.delete_archives,
            force=args.force,
            undecodable=args.undecodable,
        )
        bases = args.base_url
        check_out(args.out, args.force)
        if args.dataset == "ham10000":
            prepare_ham10000(
                args.out, opts, bases or HAM_BASE_URLS, args.dataverse_url, args.metadata_from_isic
            )
        elif args.dataset == "isic2019":
            prepare_isic2019(args.out, opts, bases or ISIC2019_BASE_URLS)
        elif args.dataset == "odir":
            prepare_odir(args.out, opts, bases or (), args.kaggle_dataset)
        else:
            prepare_dermamnist(args.out, opts, args.size, bases or DERMAMNIST_BASE_URLS)
    except (DatasetError, OSError) as exc:
        print(f"imbench download {args.dataset}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
