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
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import ham10000

KINDS = ("multiclass", "binary", "multilabel")


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    kind: str
    classes: tuple[str, ...]
    group_key: str
    build: Callable[[Path], pd.DataFrame]
    note: str = ""
    # The builder decodes its own source images (takes ``undecodable=`` and ``workers=``).
    checks_images: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    if task.kind not in KINDS:
        raise ValueError(f"task {task.name!r}: kind {task.kind!r} is not one of {KINDS}")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task ``name``; a variant ``<task>@rho<ratio>`` (:mod:`imbench.data.imbalance`) is its
    base task (same dataset, kind and classes; only its training split differs)."""
    if "@" in name:
        from .imbalance import base_task

        name = base_task(name)
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None


register_task(
    Task(
        name="synthetic",
        dataset="synthetic",
        kind="multiclass",
        classes=ham10000.CLASSES,
        group_key="lesion_id",
        build=ham10000.build_index,
        note="generated HAM10000-format tree with HAM10000's class proportions",
    )
)
register_task(
    Task(
        name="ham10000",
        dataset="ham10000",
        kind="multiclass",
        classes=ham10000.CLASSES,
        group_key="lesion_id",
        build=ham10000.build_index,
    )
)
register_task(
    Task(
        name="ham10000_mel",
        dataset="ham10000",
        kind="binary",
        classes=("rest", "mel"),
        group_key="lesion_id",
        build=lambda root: ham10000.build_index(root, binary_positive="mel"),
        note="melanoma vs rest: binary analog of BBFL's private RNFLD task",
    )
)


def _synthetic_ml(root: Path) -> pd.DataFrame:
    from .multilabel import synthetic_ml_index

    return synthetic_ml_index(root)


register_task(
    Task(
        name="synthetic_ml",
        dataset="synthetic_ml",
        kind="multilabel",
        classes=ham10000.CLASSES,
        group_key="lesion_id",
        build=_synthetic_ml,
        note="multi-label variant of the synthetic data: some images show a second lesion of another class",
    )
)

# Real datasets beyond HAM10000 (raw folders made by `imbench download <dataset>`). Their builders
# return ``(index, exclusions)``: the exclusions table lists every image dropped (or, for ``odir``,
# blanked) with the reason.
from . import dermamnist, isic2019, odir  # noqa: E402

register_task(
    Task(
        name="isic2019",
        dataset="isic2019",
        kind="multiclass",
        classes=isic2019.CLASSES,
        group_key="lesion_id",
        build=isic2019.build_index,
        note="ISIC 2019 training set, 8 classes (the all-zero UNK column dropped); images without a lesion_id "
        "are their own group; image_id drops the _downsampled suffix of 2,074 file names; "
        "contains all of HAM10000",
    )
)
register_task(
    Task(
        name="odir_eye",
        dataset="odir",
        kind="multiclass",
        classes=odir.CLASSES,
        group_key="patient ID",
        build=odir.build_eye_index,
        note="ODIR-5K per eye in Kaggle's full_df.csv framing (6,392 images): the category of each eye's first "
        "diagnostic keyword; both eyes of a patient share a split",
    )
)
register_task(
    Task(
        name="odir_glaucoma",
        dataset="odir",
        kind="binary",
        classes=("N", "G"),
        group_key="patient ID",
        build=lambda root: odir.build_eye_index(root, binary=True),
        note="ODIR-5K per eye, glaucoma (G) vs normal (N) eyes of the odir_eye framing: fundus analog of BBFL",
    )
)
register_task(
    Task(
        name="odir",
        dataset="odir",
        kind="multilabel",
        classes=odir.CLASSES,
        group_key="patient ID",
        build=odir.build_patient_index,
        checks_images=True,
        note="ODIR-5K official framing: 8 patient-level labels (multi-hot columns y_N..y_O); input = both fundus "
        "images side by side in one 1024x512 image (combined/<ID>.jpg, written at index time); eyes with only "
        "image-quality keywords are blanked, patients with two such eyes dropped; label = rarest positive "
        "label, for stratification",
    )
)
register_task(
    Task(
        name="dermamnist",
        dataset="dermamnist",
        kind="multiclass",
        classes=dermamnist.CLASSES,
        group_key="image (no lesion ids)",
        build=dermamnist.build_index,
        note="MedMNIST DermaMNIST with its own train/val/test split (column official_split). That split LEAKS "
        "lesions: images of one lesion are in train and test. Smoke-test/speed dataset only; never mix with "
        "HAM10000 or ISIC 2019 (it is derived from HAM10000)",
    )
)


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
