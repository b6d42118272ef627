"""Tasks: labelled views of datasets (SPEC §3).

A task knows its dataset, its kind (``multiclass``, ``binary`` or ``multilabel``), its class names
and how to build the normalised index (``image_id, path, label, label_name, group``) from the raw
dataset folder. Every later stage (split, cache, training, evaluation) reads only that index.

Binary tasks are modelled as 2-class single-label problems: class 0 = rest, class 1 = positive.

:func:`build_task_index` is what ``imbench index`` runs. Beside the index it returns the
exclusions table (``image_id, group, file, action, reason``), which lists **every image file of the
raw folder that the index does not use**, one row per file:

- the images the task's builder leaves out, with its reason (a label outside the task, an
  image-quality note, ``UNK`` …);
- images that do not decode (``undecodable image: …``), under the ``undecodable`` setting of
  :mod:`imbench.data.images` (default ``exclude``; ``fail`` stops instead);
- any other image file below the raw folder (``.jpg``, ``.jpeg``, ``.png``, ``.tif``, ``.tiff``,
  ``.bmp``) that no index row reads and no builder listed, e.g. a file the metadata does not name
  or a second copy of an image: ``image file in the raw folder that the task's metadata does not
  use``. Hidden files and folders the index step writes itself (ODIR's ``combined/``) are not
  images of the dataset and are not listed.

An index row uses the file in ``path`` and, for the ODIR patient framing, the eye images in
``left_path``/``right_path``.

The tasks of the real datasets are declared in their modules' ``DATASET`` specs
(:mod:`imbench.data.registry`); this module registers the generated ``synthetic`` tasks and then
those, so :data:`TASKS` is complete once it is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from . import ham10000, registry
from .registry import KINDS, TASKS, Task, get_task, register_task

__all__ = ["KINDS", "TASKS", "Task", "get_task", "register_task"]


def _synthetic_counts(config: dict | None = None):
    from .synthetic import class_counts

    n = int(((config or {}).get("synthetic") or {}).get("n_images", 2000))
    return class_counts(n), None, f"generated: synthetic.n_images = {n} in HAM10000's proportions"


def _synthetic_ml(root: Path) -> pd.DataFrame:
    from .multilabel import synthetic_ml_index

    return synthetic_ml_index(root)


# The generated datasets (made by the pipeline, never downloaded), then every dataset module's tasks.
register_task(
    Task(
        name="synthetic",
        dataset="synthetic",
        kind="multiclass",
        classes=ham10000.CLASSES,
        group_key="lesion_id",
        build=ham10000.build_index,
        note="generated HAM10000-format tree with HAM10000's class proportions",
        counts=_synthetic_counts,
        title="generated (HAM10000 format, HAM10000's class proportions)",
        grouped_by="lesion",
    )
)
register_task(
    Task(
        name="synthetic_ml",
        dataset="synthetic_ml",
        kind="multilabel",
        classes=ham10000.CLASSES,
        group_key="lesion_id",
        build=_synthetic_ml,
        note="multi-label variant of the synthetic data: some images show a second lesion of another class",
        counts=_synthetic_counts,
        title="generated, some images with a second lesion",
        grouped_by="lesion",
    )
)
registry.discover()


EXCLUSION_COLUMNS = ("image_id", "group", "file", "action", "reason")
IMAGE_FILE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
SOURCE_COLUMNS = ("path", "left_path", "right_path")
# Folders below a dataset's raw folder that the index step writes (not images of the dataset).
DERIVED_FOLDERS = {"odir": ("combined",)}
UNLISTED_REASON = "image file in the raw folder that the task's metadata does not use"


def _norm(rel: str) -> str:
    return os.path.normpath(str(rel)).replace(os.sep, "/")


def _as_exclusions(table: pd.DataFrame | None) -> pd.DataFrame:
    if table is None:
        return pd.DataFrame(columns=list(EXCLUSION_COLUMNS))
    table = table.copy()
    if "action" not in table.columns:
        table["action"] = "dropped"
    missing = [c for c in EXCLUSION_COLUMNS if c not in table.columns]
    for c in missing:
        table[c] = ""
    extra = [c for c in table.columns if c not in EXCLUSION_COLUMNS]
    return table[list(EXCLUSION_COLUMNS) + extra].reset_index(drop=True)


def image_files(root: Path, dataset: str) -> list[str]:
    """Every image file below ``root`` (relative POSIX paths, sorted), minus hidden and derived ones."""
    derived = set(DERIVED_FOLDERS.get(dataset, ()))
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and not (rel_dir == Path(".") and d in derived)
        )
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_FILE_SUFFIXES:
                out.append(_norm(rel_dir / name))
    return sorted(out)


def build_task_index(
    name: str, root: str | Path, undecodable: str = "exclude", workers: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The task's index and its complete exclusions table (module notes), from the raw folder ``root``."""
    from .ham10000 import DatasetError
    from .images import check_policy, decode_errors

    check_policy(undecodable)
    task = get_task(name)
    root = Path(root)
    built = (
        task.build(root, undecodable=undecodable, workers=workers)
        if task.checks_images
        else task.build(root)
    )
    index, exclusions = built if isinstance(built, tuple) else (built, None)
    exclusions = _as_exclusions(exclusions)
    index = index.reset_index(drop=True)
    extra = []
    if not task.checks_images and len(index):
        bad = decode_errors([root / p for p in index["path"]], workers=workers)
        if bad:
            rel = {str(root / p): i for i, p in enumerate(index["path"])}
            rows = sorted(rel[p] for p in bad)
            first = index["path"].iloc[rows[0]]
            if undecodable == "fail":
                raise DatasetError(
                    f"{root / first}: undecodable image ({bad[str(root / first)]}); "
                    f"{len(bad)} undecodable image(s) in all (index.undecodable: exclude leaves "
                    "them out and lists them in exclusions.csv)"
                )
            for i in rows:
                r = index.iloc[i]
                extra.append(
                    {
                        "image_id": str(r["image_id"]),
                        "group": str(r["group"]),
                        "file": str(r["path"]),
                        "action": "dropped",
                        "reason": f"undecodable image: {bad[str(root / r['path'])]}",
                    }
                )
            index = index.drop(index=rows).reset_index(drop=True)
    used = {
        _norm(p)
        for c in SOURCE_COLUMNS
        if c in index.columns
        for p in index[c].dropna().astype(str)
        if p
    }
    listed = {_norm(p) for p in exclusions["file"].dropna().astype(str) if p} | {
        _norm(e["file"]) for e in extra
    }
    for rel in image_files(root, task.dataset):
        if rel not in used and rel not in listed:
            extra.append(
                {
                    "image_id": Path(rel).stem,
                    "group": "",
                    "file": rel,
                    "action": "dropped",
                    "reason": UNLISTED_REASON,
                }
            )
    if extra:
        exclusions = pd.concat(
            [exclusions, pd.DataFrame(extra, columns=list(EXCLUSION_COLUMNS))], ignore_index=True
        )
    return index, exclusions
