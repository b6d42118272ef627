"""The ``predictions.csv`` format: one row per validation and test image of a cell.

Every module that writes or reads a predictions table (training, the post-hoc rules, the
cross-validation ensemble, evaluation, comparisons) goes through this one, so the columns are
spelled here only:

- ``split`` (``val`` or ``test``), ``image_id``, ``group``;
- single-label: ``label`` (class id), ``prob_<class>``… (probabilities summing to 1), ``pred`` (the
  decision; by default the argmax);
- multi-label: ``label_<class>``… (0/1), ``prob_<class>``… (independent probabilities),
  ``pred_<class>``… (0/1; by default prob ≥ 0.5).

Probabilities are written with 6 significant digits (:data:`FLOAT_FORMAT`), through a temporary
name (:func:`write_predictions`). :func:`read_predictions` checks a table before returning it
(:func:`check_predictions`): a damaged or truncated file is one error naming the file and row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_csv, write_csv

__all__ = [
    "FLOAT_FORMAT",
    "ID_COLUMNS",
    "PROB_SUM_TOLERANCE",
    "check_predictions",
    "default_decision",
    "prediction_columns",
    "predictions_frame",
    "read_predictions",
    "read_table",
    "write_predictions",
]

#: The columns that identify a row, in their order.
ID_COLUMNS = ("split", "image_id", "group")
#: How probabilities are written.
FLOAT_FORMAT = "%.6g"
#: |Σ p − 1| allowed per single-label row (probabilities are written with 6 significant digits).
PROB_SUM_TOLERANCE = 1e-3


def prediction_columns(classes, multilabel: bool) -> tuple[list[str], list[str], list[str]]:
    """(label, probability, decision) column names of a predictions table."""
    prob = [f"prob_{c}" for c in classes]
    if multilabel:
        return [f"label_{c}" for c in classes], prob, [f"pred_{c}" for c in classes]
    return ["label"], prob, ["pred"]


def default_decision(probs: np.ndarray, multilabel: bool) -> np.ndarray:
    """The default decision of a probability matrix: argmax (single-label), prob ≥ 0.5 as 0/1 per
    label (multi-label)."""
    probs = np.asarray(probs)
    return (probs >= 0.5).astype(int) if multilabel else probs.argmax(1)


def predictions_frame(
    split: str,
    image_id,
    group,
    labels: np.ndarray,
    probs: np.ndarray,
    classes,
    pred: np.ndarray | None = None,
    multilabel: bool = False,
) -> pd.DataFrame:
    """The predictions table of one split (``pred`` None: :func:`default_decision`)."""
    label_cols, prob_cols, pred_cols = prediction_columns(classes, multilabel)
    df = pd.DataFrame(dict(zip(ID_COLUMNS, (split, image_id, group))))
    decision = default_decision(probs, multilabel) if pred is None else pred
    if multilabel:
        for j, col in enumerate(label_cols):
            df[col] = labels[:, j].astype(int)
    else:
        df[label_cols[0]] = labels
    for j, col in enumerate(prob_cols):
        df[col] = probs[:, j]
    if multilabel:
        for j, col in enumerate(pred_cols):
            df[col] = decision[:, j]
    else:
        df[pred_cols[0]] = decision
    return df


def write_predictions(path: str | Path, table: pd.DataFrame) -> None:
    """Write a predictions table atomically, probabilities with :data:`FLOAT_FORMAT`."""
    write_csv(path, table, float_format=FLOAT_FORMAT)


def read_table(path: str | Path) -> pd.DataFrame:
    """A predictions table as written (ids and groups as text), unchecked."""
    return read_csv(path, dtype={"image_id": str, "group": str})


def read_predictions(
    path: str | Path, classes, multilabel: bool = False
) -> dict[str, dict[str, np.ndarray]]:
    """Read a predictions table into per-split arrays ``label``, ``probs``, ``pred``, ``group``.

    ``label``/``pred`` are 1-D class ids (single-label) or (N, K) 0/1 matrices (multi-label).
    """
    path = Path(path)
    df = read_table(path)
    check_predictions(df, path, classes, multilabel)
    label_cols, prob_cols, pred_cols = prediction_columns(classes, multilabel)
    out = {}
    for split, part in df.groupby("split", sort=False):
        label = part[label_cols].to_numpy().astype(int)
        pred = part[pred_cols].to_numpy().astype(int)
        out[split] = {
            "image_id": part["image_id"].to_numpy(),
            "group": part["group"].to_numpy(),
            "label": label if multilabel else label[:, 0],
            "probs": part[prob_cols].to_numpy(dtype=float),
            "pred": pred if multilabel else pred[:, 0],
        }
    return out


def check_predictions(df: pd.DataFrame, path: str | Path, classes, multilabel: bool) -> None:
    """Raise ``ValueError`` (one line naming ``path`` and the first bad row) unless ``df`` is a
    well-formed predictions table: every column, no empty value, split ``val``/``test``, each
    image once, labels and decisions valid class ids (0/1 per class for multi-label), probabilities
    finite in [0, 1] and, single-label, summing to 1 per row."""
    label_cols, prob_cols, pred_cols = prediction_columns(classes, multilabel)
    missing = [c for c in [*ID_COLUMNS, *label_cols, *prob_cols, *pred_cols] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")

    def fail(mask, what):
        rows = np.flatnonzero(np.asarray(mask))
        if len(rows):
            raise ValueError(
                f"{path}: {what} in {len(rows)} row(s), first data row {rows[0] + 1} "
                f"(image_id {df['image_id'].iloc[rows[0]]!r})"
            )

    needed = ["split", "image_id", *label_cols, *prob_cols, *pred_cols]
    fail(df[needed].isna().any(axis=1), "an empty value (a truncated or damaged file?)")
    fail(~df["split"].isin(["val", "test"]), "a split other than val/test")
    fail(df["image_id"].duplicated(), "an image_id listed twice")
    n = len(classes)
    allowed = (0, 1) if multilabel else range(n)
    for cols, what in ((label_cols, "label"), (pred_cols, "decision")):
        values = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isin(values, list(allowed)).all(axis=1)
        fail(bad, f"a {what} that is not " + ("0 or 1" if multilabel else f"a class id 0..{n - 1}"))
    probs = df[prob_cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    fail(
        ~(np.isfinite(probs) & (probs >= 0) & (probs <= 1)).all(axis=1),
        "a probability outside [0, 1]",
    )
    if not multilabel:
        fail(
            np.abs(probs.sum(axis=1) - 1) > PROB_SUM_TOLERANCE,
            "class probabilities not summing to 1",
        )
