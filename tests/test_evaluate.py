"""Evaluation from saved predictions, the post-hoc step and aggregation into tables and figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imbench.aggregate import aggregate, figure_names
from imbench.evaluate import evaluate_cell, run_posthoc
from imbench.metrics import compute_metrics
from imbench.train import Settings, train_cell


@pytest.fixture(scope="module")
def cells(tiny_synthetic, tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    s = Settings.from_dict(dict(epochs=2, batch_size=32, image_size=16, lr=3e-3))
    out = {}
    for method in ("ce", "ros"):
        for seed in (0, 1):
            d = root / "synthetic" / "test_resnet" / method / f"seed{seed}"
            train_cell(
                "synthetic",
                tiny_synthetic["cache"],
                tiny_synthetic["split"],
                "test_resnet",
                method,
                seed,
                s,
                d,
            )
            out[(method, seed)] = d
    for seed in (0, 1):
        d = root / "synthetic" / "test_resnet" / "thresholding" / f"seed{seed}"
        run_posthoc("thresholding", out[("ce", seed)], d)
        out[("thresholding", seed)] = d
    for d in out.values():
        evaluate_cell(d, n_boot=50)
    return root, out


def test_metrics_come_from_saved_predictions(cells):
    _, out = cells
    d = out[("ros", 0)]
    m = json.loads((d / "metrics.json").read_text())
    preds = pd.read_csv(d / "predictions.csv")
    test = preds[preds.split == "test"]
    probs = test.filter(like="prob_").to_numpy()
    ref = compute_metrics(
        "multiclass", test.label.to_numpy(), probs, test.pred.to_numpy(), m["classes"]
    )
    assert m["test"]["scalars"] == pytest.approx(ref["scalars"], nan_ok=True)
    b = m["bootstrap"]["balanced_accuracy"]
    assert b["low"] <= b["estimate"] <= b["high"] and b["n_boot"] == 50


def test_thresholding_reuses_ce_predictions_and_never_reads_test_labels(cells):
    _, out = cells
    ce = pd.read_csv(out[("ce", 0)] / "predictions.csv")
    th = pd.read_csv(out[("thresholding", 0)] / "predictions.csv")
    prob_cols = [c for c in ce.columns if c.startswith("prob_")]
    pd.testing.assert_frame_equal(ce[prob_cols], th[prob_cols])  # no retraining
    run = json.loads((out[("thresholding", 0)] / "run.json").read_text())
    assert run["decision_rule"]["decision"] == "prior_correction"
    priors = np.array(run["decision_rule"]["priors"])
    expected = (ce[prob_cols].to_numpy() / priors).argmax(1)
    assert (th.pred.to_numpy() == expected).all()


def test_posthoc_ignores_test_labels(cells, tmp_path):
    """Scrambling the test labels of the base cell leaves the fitted rule unchanged."""
    _, out = cells
    base = tmp_path / "base"
    base.mkdir()
    preds = pd.read_csv(out[("ce", 1)] / "predictions.csv")
    test = preds.split == "test"
    preds.loc[test, "label"] = np.random.default_rng(0).permutation(
        preds.loc[test, "label"].to_numpy()
    )
    preds.to_csv(base / "predictions.csv", index=False)
    (base / "run.json").write_text((out[("ce", 1)] / "run.json").read_text())
    run_posthoc("thresholding", base, tmp_path / "th")
    a = json.loads((tmp_path / "th" / "run.json").read_text())["decision_rule"]
    b = json.loads((out[("thresholding", 1)] / "run.json").read_text())["decision_rule"]
    assert a == b


def test_aggregate_tables_and_figures(cells, tmp_path):
    root, out = cells
    res = tmp_path / "res"
    aggregate(
        "t",
        res,
        [d / "metrics.json" for d in out.values()],
        n_boot=50,
        methods=["ce", "ros", "thresholding"],
        models=["test_resnet"],
    )
    summary = pd.read_csv(res / "tables" / "summary.csv")
    head = summary[(summary.metric == "balanced_accuracy") & (summary.split == "test")]
    assert set(head.method) == {"ce", "ros", "thresholding"} and (head.n == 2).all()
    long = pd.read_csv(res / "tables" / "metrics_long.csv")
    ce_vals = long[
        (long.method == "ce") & (long.metric == "balanced_accuracy") & (long.split == "test")
    ].value
    assert head[head.method == "ce"]["mean"].iloc[0] == pytest.approx(ce_vals.mean())
    assert head[head.method == "ce"]["sd"].iloc[0] == pytest.approx(ce_vals.std(ddof=1))
    paired = pd.read_csv(res / "tables" / "paired_vs_ce.csv")
    # one test per method over both seeds, the family = the two methods of (synthetic, test_resnet, metric)
    assert len(paired) == 2 and set(paired.method) == {"ros", "thresholding"}
    assert (paired.n_seeds == 2).all() and (paired.family_size == 2).all()
    assert (paired.p_holm >= paired.p_value - 1e-12).all()
    assert (paired.low <= paired["diff"]).all() and (paired["diff"] <= paired.high).all()
    th_vals = long[
        (long.method == "thresholding")
        & (long.metric == "balanced_accuracy")
        & (long.split == "test")
    ]
    th = paired[paired.method == "thresholding"].iloc[0]
    assert th["diff"] == pytest.approx(th_vals.value.mean() - ce_vals.mean())
    # every summary row of two seeds has the interval over seeds; tested metrics also the total one
    assert head[["low", "high", "low_total", "high_total"]].notna().all().all()
    assert ((head.low <= head["mean"]) & (head["mean"] <= head.high)).all()
    md = (res / "tables" / "synthetic.md").read_text()
    assert "| thresholding |" in md and " [" in md and "Holm" in md
    assert (res / "tables" / "ranking.csv").exists() and (
        res / "figures" / "critical_difference.png"
    ).exists()
    for name in figure_names("synthetic"):
        assert (res / "figures" / name).stat().st_size > 5000, name


def test_corrupt_history_is_named(cells, tmp_path):
    """A history.csv that is not a table stops aggregation with one error naming the file."""
    _, out = cells
    d = out[("ros", 0)]
    saved = (d / "history.csv").read_bytes()
    try:
        (d / "history.csv").write_bytes(b"")
        with pytest.raises(ValueError, match=str(d / "history.csv")):
            aggregate(
                "t",
                tmp_path / "res",
                [x / "metrics.json" for x in out.values()],
                n_boot=20,
                methods=["ce", "ros", "thresholding"],
                models=["test_resnet"],
            )
    finally:
        (d / "history.csv").write_bytes(saved)


def test_la_posthoc_reuses_ce_predictions_and_fits_tau_on_validation_only(cells, tmp_path):
    """la_posthoc: the ce cell's probabilities unchanged, decisions argmax(log p - tau log pi), tau
    fitted on the validation rows (scrambled test labels change nothing)."""
    _, out = cells
    ce_dir = out[("ce", 0)]
    run = run_posthoc("la_posthoc", ce_dir, tmp_path / "la", tau="fit")
    ce = pd.read_csv(ce_dir / "predictions.csv")
    la = pd.read_csv(tmp_path / "la" / "predictions.csv")
    prob_cols = [c for c in ce.columns if c.startswith("prob_")]
    pd.testing.assert_frame_equal(ce[prob_cols], la[prob_cols])
    rule = run["decision_rule"]
    assert rule["rule_id"] == "la_posthoc" and rule["details"]["tau_fitted"] is True
    counts = np.array(
        json.loads((ce_dir / "run.json").read_text())["train_class_counts"], dtype=float
    )
    with np.errstate(divide="ignore"):
        expected = (
            np.log(ce[prob_cols].to_numpy()) - rule["params"]["tau"] * np.log(counts / counts.sum())
        ).argmax(1)
    assert (la.pred.to_numpy() == expected).all()
    base = tmp_path / "base"
    base.mkdir()
    test = ce.split == "test"
    scrambled = ce.copy()
    scrambled.loc[test, "label"] = np.random.default_rng(1).permutation(
        ce.loc[test, "label"].to_numpy()
    )
    scrambled.to_csv(base / "predictions.csv", index=False)
    (base / "run.json").write_text((ce_dir / "run.json").read_text())
    assert run_posthoc("la_posthoc", base, tmp_path / "la2", tau="fit")["decision_rule"] == rule


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel"])
def test_default_bootstrap_metrics_exist_for_every_kind(kind):
    # a binary cell once asked for macro-F1, which binary tasks do not have, and failed
    from imbench.evaluate import default_boot_metrics
    from imbench.metrics import HEADLINE, scalar_fn

    names = default_boot_metrics(kind)
    assert names[0] == HEADLINE[kind] and len(names) >= 2
    for name in names:
        scalar_fn(kind, name)  # raises for a metric the kind does not have
