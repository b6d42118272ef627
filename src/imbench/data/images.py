"""Which images of an index can be decoded, and what to do with those that cannot.

``imbench index`` decodes every image of the task once (JPEGs at reduced scale through libjpeg's
draft mode, which still reads every byte of the compressed data, so a truncated file fails) and
converts it with :func:`imbench.data.cache.to_rgb8`, exactly as the cache will. What happens to an
image that fails is the ``undecodable`` setting (config key ``index.undecodable``, option
``imbench index --undecodable``):

- ``exclude`` (default): the image is left out of the index and listed in ``exclusions.csv`` with
  the reason (``undecodable image: <Pillow's message>``); the rest of the pipeline never sees it;
- ``fail``: the index step stops with one error naming the first bad image and how many there are.

The same setting decides whether ``imbench download`` stops on an image that does not decode
(``fail``) or reports it and keeps going (``exclude``), leaving it to the index step to list.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

POLICIES = ("exclude", "fail")
DEFAULT_POLICY = "exclude"
_DRAFT = (64, 64)


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"undecodable: {policy!r} is not one of {list(POLICIES)}")
    return policy


def decode_error(path: str | Path) -> str | None:
    """``None`` when ``path`` decodes to an image the cache can use, else the reason (one line)."""
    from PIL import Image

    from .cache import to_rgb8

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.draft("RGB", _DRAFT)
                img.load()
                to_rgb8(img)
    except Image.UnidentifiedImageError:
        return "not an image file Pillow can identify"
    except Exception as exc:  # Pillow raises many types for broken, truncated or hostile files
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
    return None


def _errors(paths: Sequence[str]) -> list[str | None]:
    return [decode_error(p) for p in paths]


def decode_errors(
    paths: Sequence[str | Path], workers: int | None = None, chunk: int = 256
) -> dict[str, str]:
    """``{path: reason}`` for every path in ``paths`` that does not decode (in a process pool)."""
    paths = [str(p) for p in paths]
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            workers = os.cpu_count() or 1
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        results = [_errors(c) for c in chunks]
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            results = list(pool.map(_errors, chunks))
    out = {}
    for c, errs in zip(chunks, results):
        out.update({p: e for p, e in zip(c, errs) if e is not None})
    return out
