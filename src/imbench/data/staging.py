"""Staging and content checks shared by the dataset recipes.

A recipe (``prepare(out, opts, ...)`` in each dataset's module) downloads with :meth:`Options.fetch`,
assembles the raw folder inside :func:`staging` (a hidden folder beside ``out``, renamed onto it only
when every check passed, so ``out`` either does not exist or is complete) and checks what no
checksum covers: the image set against the metadata (:func:`check_id_set`), the images' decoding
and sizes (:func:`check_images_decode`) and the counts the owners published (:func:`check_counts`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError, DownloadError
from .fetch import fetch_file, log


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
def blame(stage: Path, origin: Path):
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
