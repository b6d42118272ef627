"""Evaluate one cell from its saved predictions (never by re-running a model).

Inputs are checked before any metric (:func:`check_predictions`, :func:`check_against_split`): the
table has every column, one row per image, valid labels and decisions, finite probabilities in
[0, 1] (summing to 1 per row for a single-label task), and exactly the split's validation and test
images — a table cut short, even at a row boundary, is an error naming the file.
``metrics.json`` holds results only, so two identical runs write identical bytes; the time an
evaluation takes is in the rule's ``benchmark.tsv``.

Also holds the post-hoc step: a post-hoc method (``thresholding``) reads another cell's
``predictions.csv``, fits its decision rule on the validation rows only, and writes a new
predictions table whose ``pred`` column is the rule's decision (probabilities unchanged).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .data.cache import file_sha256
from .io import read_csv, read_json, write_json
from .methods import fit_posthoc, get_method
from .metrics import HEADLINE, compute_metrics, metric_names, scalar_fn
from .predictions import prediction_columns, read_predictions, read_table, write_predictions
from .stats import bootstrap_ci

PRIMARY_SPLIT = "test"


def check_against_split(
    df: pd.DataFrame, path: str | Path, split: pd.DataFrame, split_path: str | Path
) -> None:
    """Raise ``ValueError`` unless the table's ``val`` and ``test`` rows are exactly the split's
    validation and test images (with cross-validation, ``val`` = every non-test image: the
    out-of-fold predictions). Names both files, the split and the first missing or extra image."""
    kind = split["split"].astype(str).to_numpy()
    expected = {"test": set(split["image_id"][kind == "test"])}
    expected["val"] = set(
        split["image_id"][kind != "test"]
        if "cv_fold" in split.columns
        else split["image_id"][kind == "val"]
    )
    for name, want in expected.items():
        have = set(df["image_id"][df["split"] == name])
        if have == want:
            continue
        missing, extra = sorted(want - have), sorted(have - want)
        detail = (
            f"{len(missing)} of the {len(want)} {name} images of {split_path} are missing "
            f"(first {missing[0]!r}; a truncated file?)"
            if missing
            else f"{len(extra)} {name} image(s) are not {name} images of {split_path} (first {extra[0]!r})"
        )
        raise ValueError(f"{path}: {detail}")


def check_cell_inputs(cell_dir: Path, run: dict, split_path: str | Path | None) -> None:
    """Check a cell's ``predictions.csv`` against the split it was made from: ``split_path``, else
    the ``split_file`` recorded in ``run.json`` when it still exists. When ``run.json`` records the
    split's SHA-256, the file must still have it (predictions of another split are refused)."""
    split_path = split_path or run.get("split_file")
    if not split_path or not Path(split_path).is_file():
        return
    recorded = (run.get("data") or {}).get("split_sha256")
    if recorded and file_sha256(split_path) != recorded:
        raise ValueError(
            f"{cell_dir / 'run.json'}: the cell was trained on another version of {split_path} "
            "(retrain it)"
        )
    path = cell_dir / "predictions.csv"
    df = read_table(path)
    split = read_csv(split_path, dtype={"image_id": str, "group": str})
    for col in ("image_id", "split"):
        if col not in split.columns:
            raise ValueError(f"{split_path}: no {col!r} column")
    check_against_split(df, path, split, split_path)


def default_boot_metrics(kind: str) -> tuple[str, ...]:
    """The metrics with a group-bootstrap interval when none are asked for: the kind's headline,
    then macro-F1 and accuracy (multi-label: macro-F1 and macro AUC), those the kind has (a binary
    task has F1, not macro-F1)."""
    wanted = ["macro_f1", "macro_auc"] if kind == "multilabel" else ["macro_f1", "accuracy"]
    names = metric_names(kind)
    return tuple(dict.fromkeys([HEADLINE[kind], *(m for m in wanted if m in names)]))


def evaluate_cell(
    cell_dir: str | Path,
    out: str | Path | None = None,
    n_boot: int = 1000,
    boot_seed: int = 0,
    boot_metrics: tuple[str, ...] | None = None,
    split: str | Path | None = None,
) -> dict:
    """Compute metrics of a cell folder (``predictions.csv`` + ``run.json``) into ``metrics.json``.

    Test-set metrics carry a group bootstrap 95 % interval (lesions/patients resampled, not
    images) for the headline metric, macro-F1 and accuracy (``boot_metrics`` to change).
    ``split``: the split file the predictions must cover (see :func:`check_cell_inputs`).
    """
    cell_dir = Path(cell_dir)
    run = read_json(cell_dir / "run.json")
    kind, classes = run["kind"], run["classes"]
    preds = read_predictions(cell_dir / "predictions.csv", classes, multilabel=kind == "multilabel")
    check_cell_inputs(cell_dir, run, split)
    result = {
        "task": run["task"],
        "model": run["model"],
        "method": run["method"],
        "seed": run["seed"],
        "kind": kind,
        "classes": classes,
        "headline": HEADLINE[kind],
        "train_class_counts": run["train_class_counts"],
    }
    for split in ("val", "test"):
        if split not in preds:
            raise ValueError(f"{cell_dir / 'predictions.csv'}: no rows for split {split!r}")
        p = preds[split]
        result[split] = compute_metrics(kind, p["label"], p["probs"], p["pred"], list(classes))
    if boot_metrics is None:
        boot_metrics = default_boot_metrics(kind)
    p = preds[PRIMARY_SPLIT]
    result["bootstrap"] = {
        name: bootstrap_ci(
            scalar_fn(kind, name),
            (p["label"], p["probs"], p["pred"]),
            p["group"],
            n_boot=n_boot,
            seed=boot_seed,
        )
        for name in boot_metrics
    }
    write_json(out or cell_dir / "metrics.json", result)
    return result


def run_posthoc(method_name: str, base_dir: str | Path, out_dir: str | Path, **params) -> dict:
    """Apply post-hoc method ``method_name`` to the predictions in ``base_dir``."""
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    base_run = read_json(base_dir / "run.json")
    kind, classes = base_run["kind"], base_run["classes"]
    multilabel = kind == "multilabel"
    preds = read_predictions(base_dir / "predictions.csv", classes, multilabel)  # checked first
    table = read_table(base_dir / "predictions.csv")
    val = preds["val"]  # the rule sees validation rows only
    counts = base_run["train_class_counts"]
    rule = fit_posthoc(
        method_name,
        val["probs"],
        val["label"],
        counts,
        kind,
        n_train=base_run.get("n_train"),
        **params,
    )
    _, prob_cols, pred_cols = prediction_columns(classes, multilabel)
    decision = rule.predict(table[prob_cols].to_numpy(dtype=float))
    table[pred_cols] = decision if multilabel else decision[:, None]
    run = {k: v for k, v in base_run.items() if k not in ("timings", "identity_hash")}
    run.update(
        {
            "method": method_name,
            "method_info": get_method(method_name).__dict__,
            "base_cell": str(base_dir),
            "decision_rule": rule.to_dict(),
        }
    )
    write_predictions(out_dir / "predictions.csv", table)
    write_json(out_dir / "run.json", run)
    return run
