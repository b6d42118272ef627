"""Evaluate one cell from its saved predictions (never by re-running a model).

Also holds the post-hoc step: a post-hoc method (``thresholding``) reads another cell's
``predictions.csv``, fits its decision rule on the validation rows only, and writes a new
predictions table whose ``pred`` column is the rule's decision (probabilities unchanged).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .io import read_json, write_csv, write_json
from .methods import fit_posthoc, get_method
from .metrics import HEADLINE, compute_metrics, scalar_fn
from .stats import bootstrap_ci

PRIMARY_SPLIT = "test"


def prediction_columns(classes, multilabel: bool) -> tuple[list[str], list[str], list[str]]:
    """(label, probability, decision) column names of a predictions table."""
    prob = [f"prob_{c}" for c in classes]
    if multilabel:
        return [f"label_{c}" for c in classes], prob, [f"pred_{c}" for c in classes]
    return ["label"], prob, ["pred"]


def read_predictions(path: str | Path, classes, multilabel: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """Read a predictions table into per-split arrays ``label``, ``probs``, ``pred``, ``group``.

    ``label``/``pred`` are 1-D class ids (single-label) or (N, K) 0/1 matrices (multi-label).
    """
    path = Path(path)
    df = pd.read_csv(path, dtype={"image_id": str, "group": str})
    label_cols, prob_cols, pred_cols = prediction_columns(classes, multilabel)
    missing = [c for c in ["split", "image_id", "group", *label_cols, *prob_cols, *pred_cols] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
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


def evaluate_cell(cell_dir: str | Path, out: str | Path | None = None, n_boot: int = 1000,
                  boot_seed: int = 0, boot_metrics: tuple[str, ...] | None = None) -> dict:
    """Compute metrics of a cell folder (``predictions.csv`` + ``run.json``) into ``metrics.json``.

    Test-set metrics carry a group bootstrap 95 % interval (lesions/patients resampled, not
    images) for the headline metric, macro-F1 and accuracy (``boot_metrics`` to change).
    """
    t0 = time.time()
    cell_dir = Path(cell_dir)
    run = read_json(cell_dir / "run.json")
    kind, classes = run["kind"], run["classes"]
    preds = read_predictions(cell_dir / "predictions.csv", classes, multilabel=kind == "multilabel")
    result = {
        "task": run["task"], "model": run["model"], "method": run["method"], "seed": run["seed"],
        "kind": kind, "classes": classes, "headline": HEADLINE[kind],
        "train_class_counts": run["train_class_counts"],
    }
    for split in ("val", "test"):
        if split not in preds:
            raise ValueError(f"{cell_dir / 'predictions.csv'}: no rows for split {split!r}")
        p = preds[split]
        result[split] = compute_metrics(kind, p["label"], p["probs"], p["pred"], list(classes))
    if boot_metrics is None:
        extra = ["macro_f1", "macro_auc"] if kind == "multilabel" else ["macro_f1", "accuracy"]
        boot_metrics = tuple(dict.fromkeys([HEADLINE[kind], *extra]))
    p = preds[PRIMARY_SPLIT]
    result["bootstrap"] = {
        name: bootstrap_ci(scalar_fn(kind, name), (p["label"], p["probs"], p["pred"]), p["group"],
                           n_boot=n_boot, seed=boot_seed)
        for name in boot_metrics
    }
    result["seconds"] = round(time.time() - t0, 3)
    write_json(out or cell_dir / "metrics.json", result)
    return result


def run_posthoc(method_name: str, base_dir: str | Path, out_dir: str | Path, **params) -> dict:
    """Apply post-hoc method ``method_name`` to the predictions in ``base_dir``."""
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    base_run = read_json(base_dir / "run.json")
    kind, classes = base_run["kind"], base_run["classes"]
    multilabel = kind == "multilabel"
    table = pd.read_csv(base_dir / "predictions.csv", dtype={"image_id": str, "group": str})
    preds = read_predictions(base_dir / "predictions.csv", classes, multilabel)
    val = preds["val"]  # the rule sees validation rows only
    counts = base_run["train_class_counts"]
    rule = fit_posthoc(method_name, val["probs"], val["label"], counts, kind,
                       n_train=base_run.get("n_train"), **params)
    _, prob_cols, pred_cols = prediction_columns(classes, multilabel)
    decision = rule.predict(table[prob_cols].to_numpy(dtype=float))
    table[pred_cols] = decision if multilabel else decision[:, None]
    run = {k: v for k, v in base_run.items() if k not in ("timings", "identity_hash")}
    run.update({
        "method": method_name,
        "method_info": get_method(method_name).__dict__,
        "base_cell": str(base_dir),
        "decision_rule": rule.to_dict(),
    })
    write_csv(out_dir / "predictions.csv", table, float_format="%.6g")
    write_json(out_dir / "run.json", run)
    return run
