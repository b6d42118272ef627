"""Decode every image once, resize it, and store the result as one uint8 array.

Training then reads ``images.npy`` through a memory map: no JPEG is decoded per epoch.

Resize modes:
- ``squash``: resize to ``size``×``size`` ignoring the aspect ratio (the LMF protocol's
  ``Resize((224, 224))``);
- ``crop``: resize the shorter side to ``size`` and take the centre ``size``×``size`` crop.

JPEG draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale directly when the target is much
smaller than the source (a 600×450 image cached at 64 px is decoded at 1/4 scale), which is most of
the speed-up for large photos. The final resize is Pillow's antialiased bilinear filter, the same
family torchvision uses for PIL images.

Every image becomes 8-bit RGB through :func:`to_rgb8`. High-bit-depth images are *scaled* to
0–255, never clipped: a 16-bit grayscale PNG (Pillow mode ``I;16``) and a 32-bit integer image
(mode ``I``, read as 16-bit data: values must lie in 0–65535) are mapped by ``round(v·255/65535)``;
a float image (mode ``F``) must hold values in 0–1 and is mapped by ``round(v·255)``. 16-bit RGB and
RGBA PNGs are already reduced to their high byte by Pillow (the same scaling). Alpha is dropped.
An image outside these ranges is an error (``ValueError``) like any undecodable image.

Undecodable images are meant to be found before the cache: ``imbench index`` decodes every image
and, by default, leaves the bad ones out of the index and lists them in ``exclusions.csv`` (see
:mod:`imbench.data.images`). An image that fails here anyway (changed after indexing) stops the
build with one error naming it.

A build killed before its end leaves its temporary array (``.images.*.tmp.npy``) behind; the next
build of the same folder deletes it first.

Content identity: beside the array, ``cache.json`` records the image size, the resize mode and the
SHA-256 of ``images.npy`` and of ``index.csv`` (what the cache holds, pixels and labels), and a
``fingerprint`` combining them. It is removed before a rebuild starts and written last, so a cache
whose build was interrupted has none. :func:`cache_fingerprint` recomputes the hashes and refuses a
cache that does not match its record; a training checkpoint carries the fingerprint, so weights
trained on other pixels are never resumed (see ``imbench.train``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..io import atomic_path, read_json, remove_orphans, write_csv, write_json

MODES = ("squash", "crop")
FINGERPRINT = "cache.json"
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb8(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB, high-bit-depth values scaled (not clipped) to 0–255 (module notes)."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        a = np.asarray(img)
        if a.ndim != 2:
            raise ValueError(f"mode {img.mode} image has shape {a.shape}, expected 2-D")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if img.mode == "F":
            if not (0.0 <= lo and hi <= 1.0):
                raise ValueError(f"float image values span {lo:g}–{hi:g}, expected 0–1")
            a8 = np.rint(a.astype(np.float64) * 255.0)
        else:
            if not (0 <= lo and hi <= 65535):
                raise ValueError(
                    f"mode {img.mode} image values span {lo:g}–{hi:g}, expected 0–65535"
                )
            a8 = (a.astype(np.uint32) * 255 + 32767) // 65535
        return Image.fromarray(a8.astype(np.uint8), mode="L").convert("RGB")
    return img.convert("RGB")


def load_resized(path: str | Path, size: int, mode: str = "squash") -> np.ndarray:
    """Decode one image file to RGB and resize it to ``size``×``size`` (uint8, HWC)."""
    if mode not in MODES:
        raise ValueError(f"cache: resize mode {mode!r} is not one of {MODES}")
    with Image.open(path) as img:
        w, h = img.size
        # Ask libjpeg for the smallest power-of-two reduction that stays ≥ the target size.
        target = (size, size) if mode == "squash" else _shorter_side_size(w, h, size)
        img.draft("RGB", target)
        img = to_rgb8(img)
        if mode == "squash":
            img = img.resize((size, size), Image.BILINEAR, reducing_gap=None)
        else:
            tw, th = _shorter_side_size(img.width, img.height, size)
            img = img.resize((tw, th), Image.BILINEAR)
            left, top = (tw - size) // 2, (th - size) // 2
            img = img.crop((left, top, left + size, top + size))
        return np.asarray(img, dtype=np.uint8)


def _shorter_side_size(w: int, h: int, size: int) -> tuple[int, int]:
    if w <= h:
        return size, max(size, round(h * size / w))
    return max(size, round(w * size / h)), size


def _fill(args) -> int:
    array_path, paths, start, size, mode = args
    out = np.load(array_path, mmap_mode="r+")
    for i, p in enumerate(paths):
        try:
            out[start + i] = load_resized(p, size, mode)
        except (
            OSError,
            SyntaxError,
            ValueError,
        ) as exc:  # PIL's errors for unreadable/truncated files
            raise ValueError(
                f"cache: cannot decode image {p} ({exc}); `imbench index` leaves such images out "
                "and lists them: rebuild the index if the file changed since"
            ) from None
    out.flush()
    return len(paths)


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def build_cache(
    index: pd.DataFrame,
    root: str | Path,
    out_dir: str | Path,
    size: int,
    mode: str = "squash",
    workers: int | None = None,
    chunk: int = 256,
) -> Path:
    """Write ``out_dir/images.npy`` (N, size, size, 3 uint8, rows in ``index`` order) and
    ``out_dir/index.csv`` (a copy of ``index``). Returns the array path.

    Paths in ``index['path']`` are relative to ``root``. The array is filled under a temporary
    name and renamed only when every image has been written.
    """
    root, out_dir = Path(root), Path(out_dir)
    if mode not in MODES:
        raise ValueError(f"cache: resize mode {mode!r} is not one of {MODES}")
    if size < 8:
        raise ValueError(f"cache: size {size} is too small (≥ 8 expected)")
    paths = [str(root / p) for p in index["path"]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"cache: {len(missing)} image file(s) missing, first {missing[0]}")
    workers = workers or default_workers()
    final = out_dir / "images.npy"
    (out_dir / FINGERPRINT).unlink(missing_ok=True)  # no record of the old content beside new files
    for stale in (final, out_dir / "index.csv"):  # left by a build that was killed
        remove_orphans(stale)
    with atomic_path(final) as tmp:
        arr = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3)
        )
        del arr
        reserve_space(tmp)
        jobs = [
            (str(tmp), paths[s : s + chunk], s, size, mode) for s in range(0, len(paths), chunk)
        ]
        if workers <= 1 or len(jobs) == 1:
            for job in jobs:
                _fill(job)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                list(pool.map(_fill, jobs))
    write_csv(out_dir / "index.csv", index)
    write_cache_fingerprint(out_dir, size, mode)
    return final


def reserve_space(path: str | os.PathLike) -> None:
    """Allocate the whole (sparse) file now, so a full disk is an ``OSError`` (ENOSPC, reported as
    one line naming the file) here rather than a SIGBUS when a worker writes through the memory map."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (
            errno.EOPNOTSUPP,
            errno.EINVAL,
        ):  # not: a file system without fallocate
            raise
    finally:
        os.close(fd)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    """SHA-256 of a file's bytes (read in 16 MiB pieces; about 1.4 GB/s on one core)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _content_record(cache_dir: Path) -> dict:
    images = np.load(cache_dir / "images.npy", mmap_mode="r")
    record = {
        "format": 1,
        "n_images": int(images.shape[0]),
        "size": int(images.shape[1]),
        "images_sha256": file_sha256(cache_dir / "images.npy"),
        "index_sha256": file_sha256(cache_dir / "index.csv"),
    }
    return record


def _fingerprint_of(record: dict) -> str:
    keys = ("format", "n_images", "size", "mode", "images_sha256", "index_sha256")
    payload = json.dumps({k: record.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def write_cache_fingerprint(cache_dir: str | Path, size: int, mode: str) -> dict:
    """Hash a finished cache and write ``cache.json``; returns the record."""
    cache_dir = Path(cache_dir)
    record = _content_record(cache_dir)
    record["mode"] = mode
    if record["size"] != size:
        raise ValueError(
            f"{cache_dir / 'images.npy'}: images are {record['size']} px, not {size} px"
        )
    record["fingerprint"] = _fingerprint_of(record)
    write_json(cache_dir / FINGERPRINT, record)
    return record


class CacheMismatch(ValueError):
    """A cache whose files do not match its ``cache.json``."""


def cache_fingerprint(cache_dir: str | Path, log=None) -> dict:
    """The verified content record of a cache (``fingerprint``: one string for all of it).

    The hashes of ``images.npy`` and ``index.csv`` are recomputed and compared with ``cache.json``.
    On a mismatch ``cache.json`` is removed (so the workflow, which lists it as an output of the
    cache rule, rebuilds the cache on its next run) and :class:`CacheMismatch` is raised, one line
    naming the cache. A cache without ``cache.json`` (built by hand or by an older version) is
    described by its recomputed hashes, with a note through ``log``; its mode is then unknown."""
    cache_dir = Path(cache_dir)
    path = cache_dir / FINGERPRINT
    actual = _content_record(cache_dir)
    if not path.exists():
        if log is not None:
            log(f"{cache_dir}: no {FINGERPRINT}; its content was hashed instead")
        actual["mode"] = None
        actual["fingerprint"] = _fingerprint_of(actual)
        return actual
    try:
        recorded = read_json(path)
    except ValueError:
        recorded = {}
    differs = [
        k
        for k in ("format", "n_images", "size", "images_sha256", "index_sha256")
        if recorded.get(k) != actual[k]
    ]
    if differs or recorded.get("fingerprint") != _fingerprint_of(recorded):
        path.unlink(missing_ok=True)
        what = ", ".join(differs) or "fingerprint"
        raise CacheMismatch(
            f"{cache_dir}: the cache does not match its fingerprint ({what} differ); "
            f"{FINGERPRINT} was removed, so the next workflow run rebuilds the cache"
        )
    return recorded


def load_cache(cache_dir: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Memory-map a cache written by :func:`build_cache` and check it matches its index."""
    cache_dir = Path(cache_dir)
    images = np.load(cache_dir / "images.npy", mmap_mode="r")
    index = pd.read_csv(cache_dir / "index.csv", dtype={"image_id": str, "group": str})
    if len(images) != len(index):
        raise ValueError(
            f"{cache_dir}: images.npy has {len(images)} rows but index.csv has {len(index)}"
        )
    return images, index
