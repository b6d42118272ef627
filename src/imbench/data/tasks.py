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
