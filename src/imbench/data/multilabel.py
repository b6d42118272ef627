"""Multi-label task indexes.

A multi-label index has the usual ``image_id, path, group`` columns plus one 0/1 column
``y_<class>`` per label. Its ``label`` column is the image's *sampling class*: its rarest positive
label (by positive count over the whole index; ties → lower index), or K ("none") for an image with
no positive label, and ``label_name`` names it. The sampling class stratifies the split; the
samplers of ``ros``/``rus``/``batch_balanced`` compute the same rule from the training labels
(``imbench.methods.samplers.sampling_classes``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

NONE = "none"


def label_columns(classes) -> list[str]:
    return [f"y_{c}" for c in classes]


def label_matrix(index: pd.DataFrame, classes) -> np.ndarray:
    """The (N, K) 0/1 matrix of a multi-label index."""
    cols = label_columns(classes)
    missing = [c for c in cols if c not in index.columns]
    if missing:
        raise ValueError(f"multi-label index lacks column(s) {missing}")
    y = index[cols].to_numpy()
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"multi-label columns {cols} must hold only 0 and 1")
    return y.astype(np.int64)


def make_index(base: pd.DataFrame, y: np.ndarray, classes) -> pd.DataFrame:
    """``base`` (image_id, path, group) + ``y_<class>`` columns + sampling class ``label``/``label_name``."""
    y = np.asarray(y, dtype=np.int64)
    k = len(classes)
    counts = y.sum(0)
    # rarest positive label per row: the positive with the smallest count (ties → lower index)
    rank = np.where(y == 1, counts[None, :] * k + np.arange(k)[None, :], np.iinfo(np.int64).max)
    label = np.where(y.any(1), rank.argmin(1), k)
    names = list(classes) + [NONE]
    out = base[["image_id", "path", "group"]].copy()
    out.insert(2, "label", label)
    out.insert(3, "label_name", [names[i] for i in label])
    for j, col in enumerate(label_columns(classes)):
        out[col] = y[:, j]
    return out


def synthetic_ml_index(root: str | Path) -> pd.DataFrame:
    """Multi-label view of a synthetic tree made with ``second_lesion_fraction`` > 0: each image is
    positive for its lesion's ``dx`` and, where present, for the second lesion's ``dx2``."""
    from .ham10000 import CLASSES, METADATA_NAME, build_index

    root = Path(root)
    base = build_index(root)
    meta = pd.read_csv(root / METADATA_NAME, dtype=str, keep_default_na=False)
    if "dx2" not in meta.columns:
        raise ValueError(
            f"{root / METADATA_NAME}: no dx2 column; generate the tree with a second-lesion fraction"
        )
    dx2 = dict(zip(meta.image_id, meta.dx2))
    y = np.zeros((len(base), len(CLASSES)), dtype=np.int64)
    for i, (image_id, name) in enumerate(zip(base.image_id, base.label_name)):
        y[i, CLASSES.index(name)] = 1
        if dx2.get(image_id):
            y[i, CLASSES.index(dx2[image_id])] = 1
    return make_index(base, y, CLASSES)
