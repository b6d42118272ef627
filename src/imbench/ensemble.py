"""One cell from its K cross-validation fold models (Le et al. 2020's protocol).

Each fold model k was trained on the other folds, selected its checkpoint on fold k, and wrote
predictions for fold k (``val`` rows) and for the common test split (``test`` rows), with
test-time augmentation when the protocol asks for it. The cell's predictions are then:

- ``test``: the arithmetic mean of the K fold models' probabilities (soft voting), and the default
  decision of that mean (argmax; 0.5 per label for multi-label tasks);
- ``val``: the out-of-fold predictions: every non-test image predicted by the one fold model that
  did not train on it. These are what post-hoc methods (thresholding, logit adjustment) fit on, so
  the test split still decides nothing. Note that a rule fitted on single models' out-of-fold
  probabilities is applied to the ensemble's averaged test probabilities.

``train_class_counts`` of the cell are those of the whole cross-validation pool (every fold): each
image is in the training set of exactly K − 1 fold models, so they are the fold models' summed
training counts divided by K − 1.

Only pandas and NumPy are used: the step re-runs no model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_json, write_csv, write_json
from .predictions import (
    ID_COLUMNS,
    default_decision,
    prediction_columns,
    read_table,
    write_predictions,
)

SAME = ("task", "model", "method", "seed", "kind", "classes", "settings")


def ensemble_folds(fold_dirs, out_dir) -> dict:
    """Combine the fold folders ``fold_dirs`` (fold 0 … K−1, any order) into ``out_dir``."""
    fold_dirs = [Path(d) for d in fold_dirs]
    out_dir = Path(out_dir)
    runs = [read_json(d / "run.json") for d in fold_dirs]
    for d, r in zip(fold_dirs, runs):
        if "fold" not in r:
            raise ValueError(f"{d / 'run.json'}: not a cross-validation fold run (no 'fold' key)")
    order = np.argsort([r["fold"] for r in runs])
    fold_dirs, runs = [fold_dirs[i] for i in order], [runs[i] for i in order]
    k = len(runs)
    if k < 2 or [r["fold"] for r in runs] != list(range(k)):
        raise ValueError(
            f"ensemble: expected folds 0..{k - 1}, got {[r['fold'] for r in runs]} "
            f"from {[str(d) for d in fold_dirs]}"
        )
    for key in SAME:
        for d, r in zip(fold_dirs[1:], runs[1:]):
            if r.get(key) != runs[0].get(key):
                raise ValueError(
                    f"ensemble: {d / 'run.json'} has another {key!r} than {fold_dirs[0] / 'run.json'}"
                )

    kind, classes = runs[0]["kind"], list(runs[0]["classes"])
    multilabel = kind == "multilabel"
    _, prob_cols, pred_cols = prediction_columns(classes, multilabel)
    tables = [read_table(d / "predictions.csv") for d in fold_dirs]
    for d, t in zip(fold_dirs, tables):
        missing = [c for c in [*ID_COLUMNS, *prob_cols] if c not in t.columns]
        if missing:
            raise ValueError(f"{d / 'predictions.csv'}: missing columns {missing}")

    tests = [t[t["split"] == "test"].reset_index(drop=True) for t in tables]
    for d, t in zip(fold_dirs[1:], tests[1:]):
        if not t["image_id"].equals(tests[0]["image_id"]):
            raise ValueError(
                f"{d / 'predictions.csv'}: its test rows are not those of fold 0 (same split file?)"
            )
    test = tests[0].copy()
    test[prob_cols] = np.mean([t[prob_cols].to_numpy(dtype=float) for t in tests], axis=0)

    val = pd.concat([t[t["split"] == "val"] for t in tables], ignore_index=True)
    dup = val["image_id"].duplicated()
    if dup.any():
        raise ValueError(
            f"ensemble: image {val['image_id'][dup].iloc[0]!r} is in the validation fold of "
            "two fold models (folds must not overlap)"
        )
    if val["image_id"].isin(test["image_id"]).any():
        raise ValueError("ensemble: a validation image of a fold is also a test image")

    table = pd.concat([val, test], ignore_index=True)
    decision = default_decision(table[prob_cols].to_numpy(dtype=float), multilabel)
    table[pred_cols] = decision if multilabel else decision[:, None]

    counts = np.sum([r["train_class_counts"] for r in runs], axis=0)
    if np.any(counts % (k - 1)):
        raise ValueError(
            "ensemble: the folds' training counts do not add up to K − 1 times the pool "
            "(the fold runs come from different splits)"
        )
    pool_counts = (counts // (k - 1)).tolist()

    histories = []
    for d, r in zip(fold_dirs, runs):
        h = d / "history.csv"
        if h.exists():
            histories.append(pd.read_csv(h).assign(fold=r["fold"]))

    run = {
        key: v
        for key, v in runs[0].items()
        if key
        not in (
            "fold",
            "timings",
            "identity_hash",
            "best_epoch",
            "best_val_macro_f1",
            "n_train",
            "samples_per_epoch",
            "train_class_counts",
            "loss_params",
            "sampler_params",
        )
    }
    run.update(
        {
            "folds": k,
            "fold_dirs": [str(d) for d in fold_dirs],
            "ensemble": "mean of the fold models' probabilities on test; val = out-of-fold predictions",
            "tta": runs[0]["settings"].get("tta", "none"),
            "train_class_counts": pool_counts,
            "n_train": int(len(val)),  # the cross-validation pool
            "fold_best_epochs": [r["best_epoch"] for r in runs],
            "fold_best_val_macro_f1": [r["best_val_macro_f1"] for r in runs],
            "fold_train_class_counts": [r["train_class_counts"] for r in runs],
            "fold_loss_params": [r.get("loss_params", {}) for r in runs],
            # `optimizer_steps` and `resolved` are fold 0's (one fold model); every fold's steps:
            "fold_optimizer_steps": [r.get("optimizer_steps") for r in runs],
            "timings": {
                "wall_seconds": round(sum(r["timings"]["wall_seconds"] for r in runs), 3),
                "train_seconds": round(sum(r["timings"]["train_seconds"] for r in runs), 3),
            },
            "identity_hash": hashlib.sha256(
                "".join(r["identity_hash"] for r in runs).encode()
            ).hexdigest()[:16],
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    if histories:
        write_csv(out_dir / "history.csv", pd.concat(histories, ignore_index=True))
    write_predictions(out_dir / "predictions.csv", table)
    write_json(out_dir / "run.json", run)
    return run
