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
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..io import atomic_path, remove_orphans, write_csv

MODES = ("squash", "crop")
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
                raise ValueError(f"mode {img.mode} image values span {lo:g}–{hi:g}, expected 0–65535")
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
        except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for unreadable/truncated files
            raise ValueError(f"cache: cannot decode image {p} ({exc}); `imbench index` leaves such images out "
                             "and lists them: rebuild the index if the file changed since") from None
    out.flush()
    return len(paths)


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def build_cache(index: pd.DataFrame, root: str | Path, out_dir: str | Path, size: int,
                mode: str = "squash", workers: int | None = None, chunk: int = 256) -> Path:
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
    for stale in (final, out_dir / "index.csv"):  # left by a build that was killed
        remove_orphans(stale)
    with atomic_path(final) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        del arr
        jobs = [(str(tmp), paths[s:s + chunk], s, size, mode) for s in range(0, len(paths), chunk)]
        if workers <= 1 or len(jobs) == 1:
            for job in jobs:
                _fill(job)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                list(pool.map(_fill, jobs))
    write_csv(out_dir / "index.csv", index)
    return final


def load_cache(cache_dir: str | Path) -> tuple[np.ndarray, pd.DataFrame]:
    """Memory-map a cache written by :func:`build_cache` and check it matches its index."""
    cache_dir = Path(cache_dir)
    images = np.load(cache_dir / "images.npy", mmap_mode="r")
    index = pd.read_csv(cache_dir / "index.csv", dtype={"image_id": str, "group": str})
    if len(images) != len(index):
        raise ValueError(f"{cache_dir}: images.npy has {len(images)} rows but index.csv has {len(index)}")
    return images, index
