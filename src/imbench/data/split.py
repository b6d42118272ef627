"""Grouped, stratified train/val/test splits.

No group (lesion, patient) may appear in two splits, and each split should keep the class
proportions. We use scikit-learn's ``StratifiedGroupKFold`` with ``n_folds`` small folds
(default 20, i.e. 5 % each) and hand whole folds to the splits in the requested proportions:
70/15/15 → 14/3/3 folds. The assignment is a pure function of ``split_seed``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

SPLITS = ("train", "val", "test")


def grouped_split(index: pd.DataFrame, fractions=(0.70, 0.15, 0.15), seed: int = 0,
                  n_folds: int = 20) -> pd.DataFrame:
    """Return ``index`` with a ``split`` column (train/val/test), grouped by ``group``.

    ``label`` must be a single integer label (for multi-label tasks pass the sampling class).
    """
    for col in ("label", "group"):
        if col not in index.columns:
            raise ValueError(f"split: index has no {col!r} column (columns: {list(index.columns)})")
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"split: fractions {fractions} must be three positive numbers summing to 1")
    counts = [int(round(f * n_folds)) for f in fractions]
    counts[0] = n_folds - counts[1] - counts[2]
    if min(counts) < 1 or any(abs(c / n_folds - f) > 0.5 / n_folds + 1e-9 for c, f in zip(counts, fractions)):
        raise ValueError(f"split: fractions {fractions} cannot be made from {n_folds} folds")
    n_groups = index["group"].nunique()
    if n_groups < n_folds:
        raise ValueError(f"split: {n_groups} groups are too few for {n_folds} folds")

    sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    fold = np.empty(len(index), dtype=int)
    for k, (_, test_idx) in enumerate(sgkf.split(np.zeros(len(index)), index["label"], index["group"])):
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
        raise ValueError(f"split: group {leaked.index[0]!r} appears in several splits ({len(leaked)} groups)")
