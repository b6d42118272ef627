"""Small file helpers: every output is written to a temporary name and renamed into place.

A later pipeline step trusts any file that exists, so a crash must never leave a
half-written one under the final name.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps the final suffix (so libraries that dispatch on it, such as
    ``np.save`` or ``matplotlib``, behave) and lives in the same directory (so the rename is atomic).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def remove_orphans(path: str | os.PathLike, suffix: str | None = None) -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` left beside ``path`` when its process was
    killed (``.<stem>.*.tmp<suffix>``); return them. Call it only where no other process can be
    writing ``path`` at the same time (a Snakemake job owns its outputs)."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    removed = []
    if path.parent.is_dir():
        for p in path.parent.glob(f".{glob.escape(path.stem)}.*.tmp{glob.escape(suffix)}"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike, df, **kwargs) -> None:
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def read_json(path: str | os.PathLike):
    with open(path) as fh:
        return json.load(fh)


def _json_default(obj):
    # numpy scalars and arrays appear in metrics and settings; store them as plain JSON.
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")
