"""The imbalance axis: a task's training split subsampled to a given imbalance ratio ρ.

A task variant ``<task>@rho<ρ>`` (``synthetic@rho50``) is the task ``<task>`` whose *training*
images are subsampled so that class sizes follow the exponential long-tail profile of Cui et al.
(CVPR 2019) and Cao et al. (NeurIPS 2019, LDAM-DRW's ``IMBALANCECIFAR``):

    n_c = ⌊n_max · ρ^(−r_c / (K − 1))⌋

where ``n_max`` is the training count of the largest class, ``r_c`` = 0, 1, …, K − 1 is the rank of
class ``c`` by its training count (largest first; ties by class index) and ``K`` the number of
classes, so the largest class keeps all its images and the target of the smallest is n_max / ρ.
The floor and the exponent are those of the LDAM-DRW code (``int(img_max * imb_factor **
(cls_idx / (cls_num - 1.0)))`` with ``imb_factor = 1 / ρ``); a target is at least 1.

Rules:

* **A class never grows.** A class with fewer training images than its target keeps them all, so
  on a dataset that is already long-tailed, a ρ below its natural ratio leaves the rarest classes
  as they are; the *achieved* per-class counts and ratio are recorded (``<split>.json``).
* **Groups stay whole.** Whole lesions/patients are kept or dropped: for each class the training
  groups are visited in an order drawn from ``seed`` and a group is kept when it still fits under the
  class's target (first fit); a class whose every group is larger than its target keeps its
  smallest group. Every training group must hold images of one class only.
* **Validation and test are untouched.** The dropped training images get the split value
  ``unused`` (a split file lists every image of the cache, in order); no row changes otherwise.
* **Deterministic** from ``seed`` (``imbalance.seed``, default 0) and the base split.
* Multi-label tasks are refused: a subsampled image removes several labels at once, so the
  exponential profile cannot be met per label (one clear error).
* Cross-validation (``split.cv_folds``) is refused with the imbalance axis: its folds pool the
  training and validation images, which the axis keeps apart.

The configuration ``imbalance: {ratio: [10, 50, 100], seed: 0}`` (top level, for every task of the
grid) replaces each task of ``tasks`` by its variants ``<task>@rho10``, ``<task>@rho50``, …; a
task may also be listed as a variant directly (``tasks: [synthetic@rho50]``). Result paths and
tables use the variant's name; the tables have a ``ratio`` column (empty for a task without
subsampling).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

#: The separator between a task and its imbalance ratio in a task variant's name.
VARIANT_SEP = "@rho"
UNUSED = "unused"
_VARIANT = re.compile(r"^(?P<base>[^@/]+)@rho(?P<ratio>[0-9]+(?:\.[0-9]+)?)$")


class ImbalanceError(ValueError):
    """A bad imbalance setting or a split that cannot be subsampled (one line naming the key)."""


def check_ratio(value, key: str = "imbalance.ratio") -> float:
    """``value`` as a float ≥ 1, else :class:`ImbalanceError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ImbalanceError(f"{key}: {value!r} is not a number (expected a ratio ≥ 1)")
    try:
        ratio = float(value)
    except ValueError:
        raise ImbalanceError(f"{key}: {value!r} is not a number (expected a ratio ≥ 1)") from None
    if not math.isfinite(ratio) or ratio < 1:
        raise ImbalanceError(f"{key}: {value!r} must be a finite number ≥ 1 (n_max / n_min)")
    return ratio


def ratio_text(ratio: float) -> str:
    """The ratio as it appears in a variant's name: ``50``, ``12.5`` (every digit of the number, so
    the name gives back exactly the ratio)."""
    text = repr(float(ratio))
    return text[:-2] if text.endswith(".0") else text


def variant_name(task: str, ratio, key: str = "imbalance.ratio") -> str:
    """``synthetic@rho50``: the task ``task`` subsampled to ratio ``ratio``."""
    name = f"{task}{VARIANT_SEP}{ratio_text(check_ratio(ratio, key))}"
    if not _VARIANT.match(name):  # 1e+16: no plain decimal form
        raise ImbalanceError(f"{key}: {ratio!r} is too large for a task name (at most 1e15)")
    return name


def parse_variant(name: str) -> tuple[str, float | None]:
    """``(base task, ratio)`` of a task name; ``ratio`` is None for a task without subsampling."""
    if "@" not in name:
        return name, None
    m = _VARIANT.match(name)
    if not m:
        raise ImbalanceError(
            f"task {name!r}: a task variant is written <task>@rho<ratio>, e.g. synthetic@rho50"
        )
    return m["base"], check_ratio(m["ratio"], f"task {name!r}")


def base_task(name: str) -> str:
    return parse_variant(name)[0]


def task_ratio(name: str) -> float | None:
    return parse_variant(name)[1]


def ratio_column(tasks) -> list:
    """The ``ratio`` column of a table from its task names: the ratio, or "" without subsampling."""
    out = []
    for t in tasks:
        r = task_ratio(str(t))
        out.append("" if r is None else ratio_text(r))
    return out


def with_ratio_column(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a ``ratio`` column right after ``task`` (``df`` unchanged when it has no task)."""
    if "task" not in df.columns or "ratio" in df.columns:
        return df
    out = df.copy()
    out.insert(out.columns.get_loc("task") + 1, "ratio", ratio_column(out["task"]))
    return out


def imbalance_settings(config: dict) -> dict:
    """The checked ``imbalance`` section: ``{"ratio": [floats], "seed": int}`` (ratio [] when the
    section is absent). One error line names the key of a bad value."""
    section = config.get("imbalance")
    if section is None:
        return {"ratio": [], "seed": 0}
    if not isinstance(section, dict):
        raise ImbalanceError(
            f"imbalance: expected a mapping like {{ratio: [10, 50]}}, got {section!r}"
        )
    unknown = sorted(set(section) - {"ratio", "seed"})
    if unknown:
        raise ImbalanceError(f"imbalance.{unknown[0]}: unknown key (keys: ratio, seed)")
    ratios = section.get("ratio", [])
    if not isinstance(ratios, list):
        ratios = [ratios]
    checked = [check_ratio(r, f"imbalance.ratio[{i}]") for i, r in enumerate(ratios)]
    for i, r in enumerate(checked):
        variant_name("t", r, f"imbalance.ratio[{i}]")
    if len(set(checked)) != len(checked):
        raise ImbalanceError(f"imbalance.ratio: {ratios} lists a ratio twice")
    seed = section.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ImbalanceError(f"imbalance.seed: {seed!r} is not a non-negative integer")
    return {"ratio": checked, "seed": seed}


def expand_tasks(tasks, config: dict) -> list[str]:
    """The grid's task names: each task of ``tasks`` replaced by its variants at every ratio of
    ``imbalance.ratio`` (unchanged without one); a task already written as a variant is kept."""
    ratios = imbalance_settings(config)["ratio"]
    out = []
    for t in tasks:
        base, ratio = parse_variant(t)
        if ratio is not None or not ratios:
            out.append(t)
        else:
            out += [variant_name(base, r) for r in ratios]
    return list(dict.fromkeys(out))


def profile_targets(counts, ratio: float) -> np.ndarray:
    """Target training count of each class: ⌊n_max · ρ^(−r_c/(K−1))⌋ (≥ 1), capped at its count.

    ``counts`` are the classes' training counts; ``r_c`` is the rank of class c by count (largest
    first, ties by class index)."""
    counts = np.asarray(counts, dtype=np.int64)
    ratio = check_ratio(ratio)
    K = len(counts)
    if K < 2:
        raise ImbalanceError(f"imbalance: {K} class(es); an imbalance ratio needs at least 2")
    order = np.argsort(-counts, kind="stable")
    rank = np.empty(K, dtype=np.int64)
    rank[order] = np.arange(K)
    n_max = int(counts.max())
    # the expression of LDAM-DRW's IMBALANCECIFAR.get_img_num_per_cls, imb_factor = 1 / ρ
    imb_factor = 1.0 / ratio
    targets = np.array([int(n_max * (imb_factor ** (r / (K - 1.0)))) for r in rank], dtype=np.int64)
    return np.minimum(np.maximum(targets, 1), counts)


def subsample_split(
    split: pd.DataFrame,
    ratio,
    seed: int = 0,
    num_classes: int | None = None,
    kind: str = "multiclass",
) -> tuple[pd.DataFrame, dict]:
    """The split with its training images subsampled to ``ratio`` (dropped ones marked ``unused``),
    and a record of target and achieved per-class training counts (see the module docstring).

    ``split`` needs ``label``, ``group`` and ``split`` columns; ``label`` a single integer class.
    """
    ratio = check_ratio(ratio)
    for col in ("label", "group", "split"):
        if col not in split.columns:
            raise ImbalanceError(f"imbalance: the split has no {col!r} column")
    if "cv_fold" in split.columns:
        raise ImbalanceError(
            "imbalance: the split has cross-validation folds (split.cv_folds); the imbalance axis "
            "subsamples a single split's training images only"
        )
    if kind == "multilabel":
        raise ImbalanceError(
            "imbalance: multi-label tasks cannot be subsampled to an imbalance ratio "
            "(one image carries several labels)"
        )
    try:
        labels = split["label"].astype(np.int64).to_numpy()
    except (TypeError, ValueError):
        raise ImbalanceError(
            "imbalance: the split's label column is not one integer class"
        ) from None
    train = np.flatnonzero(split["split"].to_numpy() == "train")
    if not len(train):
        raise ImbalanceError("imbalance: the split has no training images")
    K = int(num_classes or labels.max() + 1)
    groups = split["group"].astype(str).to_numpy()
    tr = pd.DataFrame({"row": train, "label": labels[train], "group": groups[train]})
    per_group = tr.groupby("group")["label"].nunique()
    if (per_group > 1).any():
        raise ImbalanceError(
            f"imbalance: training group {per_group[per_group > 1].index[0]!r} has images of "
            "several classes; subsampling whole groups needs one class per group"
        )
    counts = np.bincount(tr["label"], minlength=K)
    present = counts > 0
    targets = np.zeros(K, dtype=np.int64)
    targets[present] = profile_targets(counts[present], ratio)
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(K):
        if not present[c]:
            continue
        part = tr[tr["label"] == c]
        sizes = part.groupby("group")["row"].size().sort_index()
        if targets[c] >= counts[c]:
            keep.append(part["row"].to_numpy())
            continue
        names = sizes.index.to_numpy()[rng.permutation(len(sizes))]
        chosen, total = [], 0
        for g in names:
            n = int(sizes[g])
            if total + n <= targets[c]:
                chosen.append(g)
                total += n
        if not chosen:  # every group is larger than the target: the smallest one
            chosen = [sizes.idxmin()]
        keep.append(part["row"][part["group"].isin(chosen)].to_numpy())
    kept = np.concatenate(keep) if keep else np.array([], dtype=int)
    out = split.copy()
    values = out["split"].to_numpy(dtype=object).copy()
    values[np.setdiff1d(train, kept)] = UNUSED
    out["split"] = values
    achieved = np.bincount(labels[kept], minlength=K)
    nz = achieved[achieved > 0]
    record = {
        "ratio": ratio,
        "seed": int(seed),
        "profile": "exponential",
        "train_counts_before": counts.tolist(),
        "train_counts_target": targets.tolist(),
        "train_counts": achieved.tolist(),
        "achieved_ratio": float(nz.max() / nz.min()),
        "n_train_before": int(len(train)),
        "n_train": int(len(kept)),
    }
    return out, record


def write_imbalanced_split(split_csv, out_csv, ratio, seed: int, task: str) -> dict:
    """``imbench imbalance``: read the base split ``split_csv``, write the subsampled split to
    ``out_csv`` and its record (``<out>.json``: ratio, seed, the base split's SHA-256, the classes,
    target and achieved per-class training counts, achieved ratio). Both are written under a
    temporary name and renamed, the record last."""
    from pathlib import Path

    from ..io import read_csv, write_csv, write_json
    from .split import _sha256, split_record_path
    from .tasks import get_task

    t = get_task(base_task(task))
    split = read_csv(split_csv, dtype={"image_id": str, "group": str})
    out, record = subsample_split(split, ratio, seed, num_classes=t.num_classes, kind=t.kind)
    write_csv(out_csv, out)
    record = {
        "task": task,
        "base_split": str(split_csv),
        "base_split_sha256": _sha256(split_csv),
        "classes": list(t.classes),
        **record,
        "split_sha256": _sha256(out_csv),
    }
    write_json(split_record_path(Path(out_csv)), record)
    return record
