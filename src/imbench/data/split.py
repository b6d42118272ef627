"""Grouped, stratified train/val/test splits (and, as an option, the papers' image-level split).

No group (lesion, patient) may appear in two splits, and each split should keep the class
proportions. We use scikit-learn's ``StratifiedGroupKFold`` with ``n_folds`` small folds
(default 20, i.e. 5 % each) and hand whole folds to the splits in the requested proportions:
70/15/15 → 14/3/3 folds. The assignment is a pure function of ``split_seed``.

``grouped=False`` (config ``split.grouped: false``) makes the split the papers use instead:
stratified by class over *images* (``StratifiedKFold``, the same 20 folds handed out the same way),
ignoring groups. The images of one lesion or patient can then fall into training and test, which
makes test scores optimistic; :func:`make_split` warns with the number of groups that cross splits.
The default is grouped.

A split file carries a record of what produced it (:func:`write_split_record`, ``<split>.json``
beside ``<split>.csv``): seed, fractions, number of folds, cross-validation folds, whether the
dataset's official split was used, and the SHA-256 of the index it was made from and of the split
itself. The workflow names split files after these settings (``split_seed0_frac0.7_0.15_0.15``,
``…_ungrouped``, ``…_cv5``), so experiments that split differently never share, overwrite or delete one file.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

SPLITS = ("train", "val", "test")


class LeakageWarning(UserWarning):
    """An image-level split put the images of one group (lesion, patient) into several splits."""


def make_split(
    index: pd.DataFrame,
    fractions=(0.70, 0.15, 0.15),
    seed: int = 0,
    n_folds: int = 20,
    grouped: bool = True,
) -> pd.DataFrame:
    """The train/val/test split of ``index``: grouped (default) or image-level (``grouped=False``).

    The result has the ``split`` and ``fold`` columns and a constant ``grouped`` column recording
    which kind of split it is (training reads it into ``run.json``). An image-level split issues
    one :class:`LeakageWarning` naming how many groups have images in more than one split.
    """
    if grouped:
        out = grouped_split(index, fractions, seed, n_folds)
    else:
        out = stratified_split(index, fractions, seed, n_folds)
        crossing = groups_in_several_splits(out)
        if crossing:
            warnings.warn(
                f"split.grouped is false: {crossing} of {out['group'].nunique()} groups "
                "(lesions/patients) have images in more than one split, so test scores are "
                "optimistic (leakage)",
                LeakageWarning,
                stacklevel=2,
            )
    return out.assign(grouped=bool(grouped))


def groups_in_several_splits(df: pd.DataFrame) -> int:
    """How many groups have images in more than one split (0 for a grouped split)."""
    return int((df.groupby("group")["split"].nunique() > 1).sum())


def stratified_split(
    index: pd.DataFrame, fractions=(0.70, 0.15, 0.15), seed: int = 0, n_folds: int = 20
) -> pd.DataFrame:
    """Return ``index`` with a ``split`` column, stratified by ``label`` over images, NOT grouped.

    The papers' split (e.g. LMF's 70/15/15): scikit-learn's ``StratifiedKFold`` (shuffled by
    ``seed``) makes ``n_folds`` folds, which go to train/val/test as in :func:`grouped_split`.
    Groups are ignored, so one lesion's images can be in several splits.
    """
    counts = _check_split_input(index, fractions, n_folds)
    if len(index) < n_folds:
        raise ValueError(f"split: {len(index)} images are too few for {n_folds} folds")
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.empty(len(index), dtype=int)
    for k, (_, test_idx) in enumerate(skf.split(np.zeros(len(index)), index["label"])):
        fold[test_idx] = k
    out = index.copy()
    out["split"] = np.repeat(np.array(SPLITS), counts)[fold]
    out["fold"] = fold
    return out


def _check_split_input(index: pd.DataFrame, fractions, n_folds: int) -> list[int]:
    """Check the columns and fractions; return the number of folds of each split."""
    for col in ("label", "group"):
        if col not in index.columns:
            raise ValueError(f"split: index has no {col!r} column (columns: {list(index.columns)})")
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) <= 0:
        raise ValueError(
            f"split: fractions {fractions} must be three positive numbers summing to 1"
        )
    counts = [int(round(f * n_folds)) for f in fractions]
    counts[0] = n_folds - counts[1] - counts[2]
    if min(counts) < 1 or any(
        abs(c / n_folds - f) > 0.5 / n_folds + 1e-9 for c, f in zip(counts, fractions)
    ):
        raise ValueError(f"split: fractions {fractions} cannot be made from {n_folds} folds")
    return counts


def grouped_split(
    index: pd.DataFrame, fractions=(0.70, 0.15, 0.15), seed: int = 0, n_folds: int = 20
) -> pd.DataFrame:
    """Return ``index`` with a ``split`` column (train/val/test), grouped by ``group``.

    ``label`` must be a single integer label (for multi-label tasks pass the sampling class).
    """
    counts = _check_split_input(index, fractions, n_folds)
    n_groups = index["group"].nunique()
    if n_groups < n_folds:
        raise ValueError(f"split: {n_groups} groups are too few for {n_folds} folds")

    sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.empty(len(index), dtype=int)
    for k, (_, test_idx) in enumerate(
        sgkf.split(np.zeros(len(index)), index["label"], index["group"])
    ):
        fold[test_idx] = k
    # Folds are already shuffled by the seed; hand them out in order.
    names = np.repeat(np.array(SPLITS), counts)
    out = index.copy()
    out["split"] = names[fold]
    out["fold"] = fold
    check_no_leakage(out)
    return out


def check_no_leakage(df: pd.DataFrame) -> None:
    """Raise if any group appears in more than one split."""
    per_group = df.groupby("group")["split"].nunique()
    leaked = per_group[per_group > 1]
    if len(leaked):
        raise ValueError(
            f"split: group {leaked.index[0]!r} appears in several splits ({len(leaked)} groups)"
        )


def add_cv_folds(
    split: pd.DataFrame, n_folds: int, seed: int = 0, grouped: bool = True
) -> pd.DataFrame:
    """Return ``split`` with a ``cv_fold`` column for ``n_folds``-fold cross-validation.

    The test split stays as it is (``cv_fold`` −1); every other image (train and val of the single
    split) goes to exactly one of ``n_folds`` grouped, stratified folds (scikit-learn's
    ``StratifiedGroupKFold``, shuffled by ``seed``). Fold model k trains on the other folds and
    selects its checkpoint on fold k; no group crosses folds or reaches the test split.
    ``grouped=False`` (an image-level split): stratified folds of images (``StratifiedKFold``),
    which groups can cross.
    """
    if n_folds < 2:
        raise ValueError(f"split: cross-validation needs at least 2 folds, got {n_folds}")
    for col in ("label", "group", "split"):
        if col not in split.columns:
            raise ValueError(f"split: table has no {col!r} column (columns: {list(split.columns)})")
    pool = np.flatnonzero(split["split"].to_numpy() != "test")
    groups = split["group"].to_numpy()[pool]
    if len(set(groups)) < n_folds:
        raise ValueError(
            f"split: {len(set(groups))} groups outside the test split are too few for {n_folds} folds"
        )
    cv = np.full(len(split), -1, dtype=int)
    if not grouped:
        skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for k, (_, held) in enumerate(
            skf.split(np.zeros(len(pool)), split["label"].to_numpy()[pool])
        ):
            cv[pool[held]] = k
        return split.assign(cv_fold=cv)
    sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(
        sgkf.split(np.zeros(len(pool)), split["label"].to_numpy()[pool], groups)
    ):
        cv[pool[held]] = k
    out = split.copy()
    out["cv_fold"] = cv
    per_group = out[out.cv_fold >= 0].groupby("group")["cv_fold"].nunique()
    if (per_group > 1).any():  # StratifiedGroupKFold guarantees this; checked all the same
        raise ValueError(f"split: group {per_group[per_group > 1].index[0]!r} is in several folds")
    return out


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def split_record_path(split_csv) -> Path:
    return Path(split_csv).with_suffix(".json")


def write_split_record(
    split_csv,
    index_path,
    seed: int,
    fractions,
    cv_folds: int = 0,
    official: bool = False,
    n_folds: int = 20,
    grouped: bool = True,
) -> dict:
    """Write ``<split>.json``: the settings and inputs (by content) that produced ``split_csv``."""
    from ..io import write_text

    record = {
        "seed": int(seed),
        "fractions": [float(f) for f in fractions],
        "n_folds": int(n_folds),
        "cv_folds": int(cv_folds),
        "official_split": bool(official),
        "grouped": bool(grouped),
        "index_sha256": _sha256(index_path),
        "split_sha256": _sha256(split_csv),
    }
    write_text(split_record_path(split_csv), json.dumps(record, indent=2) + "\n")
    return record
