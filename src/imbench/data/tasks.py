"""Tasks: labelled views of datasets (SPEC §3).

A task knows its dataset, its kind (``multiclass``, ``binary`` or ``multilabel``), its class names
and how to build the normalised index (``image_id, path, label, label_name, group``) from the raw
dataset folder. Every later stage (split, cache, training, evaluation) reads only that index.

Binary tasks are modelled as 2-class single-label problems: class 0 = rest, class 1 = positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None


register_task(Task(
    name="synthetic", dataset="synthetic", kind="multiclass", classes=ham10000.CLASSES,
    group_key="lesion_id", build=ham10000.build_index,
    note="generated HAM10000-format tree with HAM10000's class proportions",
))
register_task(Task(
    name="ham10000", dataset="ham10000", kind="multiclass", classes=ham10000.CLASSES,
    group_key="lesion_id", build=ham10000.build_index,
))
register_task(Task(
    name="ham10000_mel", dataset="ham10000", kind="binary", classes=("rest", "mel"),
    group_key="lesion_id", build=lambda root: ham10000.build_index(root, binary_positive="mel"),
    note="melanoma vs rest: binary analog of BBFL's private RNFLD task",
))


def _synthetic_ml(root: Path) -> pd.DataFrame:
    from .multilabel import synthetic_ml_index

    return synthetic_ml_index(root)


register_task(Task(
    name="synthetic_ml", dataset="synthetic_ml", kind="multilabel", classes=ham10000.CLASSES,
    group_key="lesion_id", build=_synthetic_ml,
    note="multi-label variant of the synthetic data: some images show a second lesion of another class",
))

# Real datasets beyond HAM10000 (raw folders made by `imbench download <dataset>`). Their builders
# return ``(index, exclusions)``: the exclusions table lists every image dropped (or, for ``odir``,
# blanked) with the reason.
from . import dermamnist, isic2019, odir  # noqa: E402

register_task(Task(
    name="isic2019", dataset="isic2019", kind="multiclass", classes=isic2019.CLASSES,
    group_key="lesion_id", build=isic2019.build_index,
    note="ISIC 2019 training set, 8 classes (the all-zero UNK column dropped); images without a lesion_id "
         "are their own group; image_id drops the _downsampled suffix of 2,074 file names; "
         "contains all of HAM10000",
))
register_task(Task(
    name="odir_eye", dataset="odir", kind="multiclass", classes=odir.CLASSES,
    group_key="patient ID", build=odir.build_eye_index,
    note="ODIR-5K per eye in Kaggle's full_df.csv framing (6,392 images): the category of each eye's first "
         "diagnostic keyword; both eyes of a patient share a split",
))
register_task(Task(
    name="odir_glaucoma", dataset="odir", kind="binary", classes=("N", "G"),
    group_key="patient ID", build=lambda root: odir.build_eye_index(root, binary=True),
    note="ODIR-5K per eye, glaucoma (G) vs normal (N) eyes of the odir_eye framing: fundus analog of BBFL",
))
register_task(Task(
    name="odir", dataset="odir", kind="multilabel", classes=odir.CLASSES,
    group_key="patient ID", build=odir.build_patient_index,
    note="ODIR-5K official framing: 8 patient-level labels (multi-hot columns y_N..y_O); input = both fundus "
         "images side by side in one 1024x512 image (combined/<ID>.jpg, written at index time); eyes with only "
         "image-quality keywords are blanked, patients with two such eyes dropped; label = rarest positive "
         "label, for stratification",
))
register_task(Task(
    name="dermamnist", dataset="dermamnist", kind="multiclass", classes=dermamnist.CLASSES,
    group_key="image (no lesion ids)", build=dermamnist.build_index,
    note="MedMNIST DermaMNIST with its own train/val/test split (column official_split). That split LEAKS "
         "lesions: images of one lesion are in train and test. Smoke-test/speed dataset only; never mix with "
         "HAM10000 or ISIC 2019 (it is derived from HAM10000)",
))
