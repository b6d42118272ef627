"""imbench.stats: cluster bootstrap, paired comparison, Holm, seed summaries."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from imbench.metrics import scalar_fn
from imbench.stats import bootstrap_ci, holm, mean_sd, paired_bootstrap, summarise_seeds


def _mean(x):
    return float(np.mean(x))


def test_bootstrap_reproducible_by_seed():
    x = np.random.default_rng(0).normal(size=200)
    a = bootstrap_ci(_mean, (x,), None, n_boot=300, seed=1)
    b = bootstrap_ci(_mean, (x,), None, n_boot=300, seed=1)
    c = bootstrap_ci(_mean, (x,), None, n_boot=300, seed=2)
    assert a == b
    assert (a["low"], a["high"]) != (c["low"], c["high"])
    assert a["estimate"] == c["estimate"] == pytest.approx(x.mean())
    assert a["seed"] == 1 and a["n_boot"] == 300


def test_interval_contains_estimate_and_matches_theory():
    x = np.random.default_rng(1).normal(loc=3.0, size=400)
    r = bootstrap_ci(_mean, (x,), None, n_boot=1000, seed=0)
    assert r["low"] < r["estimate"] < r["high"]
    # the width of a 95 % interval of a mean is about 2 * 1.96 * sd / sqrt(n)
    expected = 2 * 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert (r["high"] - r["low"]) == pytest.approx(expected, rel=0.15)
    wider = bootstrap_ci(_mean, (x,), None, n_boot=1000, seed=0, alpha=0.01)
    assert wider["low"] < r["low"] and wider["high"] > r["high"]


def test_every_replicate_holds_whole_groups():
    sizes = np.array([1, 2, 3, 4, 5, 6])
    groups = np.repeat(np.array([10, 20, 30, 40, 50, 60]), sizes)
    rng = np.random.default_rng(0)
    perm = rng.permutation(groups.size)  # rows of a group need not be adjacent
    groups = groups[perm]
    within = np.concatenate([np.arange(s) for s in sizes])[perm]  # row index inside its group

    def check(gid, pos):
        ok = True
        drawn = 0
        for g, size in zip([10, 20, 30, 40, 50, 60], sizes):
            sel = gid == g
            # every drawn copy of a group brings each of its rows exactly once
            counts = np.bincount(pos[sel], minlength=size)
            ok &= bool(np.all(counts == counts[0]))
            drawn += counts[0]
        ok &= drawn == sizes.size  # G groups drawn per replicate
        return float(ok)

    r = bootstrap_ci(check, (groups, within), groups, n_boot=200, seed=3)
    assert r["low"] == r["high"] == 1.0
    # the same check fails for a row bootstrap: the test can tell the difference
    r = bootstrap_ci(check, (groups, within), None, n_boot=200, seed=3)
    assert r["low"] == 0.0


def test_duplicated_groups_equal_row_bootstrap_of_the_originals():
    # each of 150 observations copied 4 times and grouped: the cluster bootstrap
    # of the copies must reproduce the row bootstrap of the originals exactly,
    # while a row bootstrap of the copies is ~sqrt(4) = 2x too narrow.
    base = np.random.default_rng(5).normal(size=150)
    dup = np.repeat(base, 4)
    groups = np.repeat(np.arange(150), 4)
    rows = bootstrap_ci(_mean, (base,), None, n_boot=500, seed=7)
    clustered = bootstrap_ci(_mean, (dup,), groups, n_boot=500, seed=7)
    assert clustered["low"] == pytest.approx(rows["low"])
    assert clustered["high"] == pytest.approx(rows["high"])
    naive = bootstrap_ci(_mean, (dup,), None, n_boot=500, seed=7)
    ratio = (clustered["high"] - clustered["low"]) / (naive["high"] - naive["low"])
    assert 1.6 < ratio < 2.5


def test_undefined_replicates_are_dropped():
    y = np.array([0] * 18 + [1] * 2)

    def positives_share(y):  # undefined when a resample has no positive
        return float(y.mean()) if y.any() else None

    r = bootstrap_ci(positives_share, (y,), None, n_boot=500, seed=0)
    assert 0 < r["n_boot"] < 500 and r["n_boot_requested"] == 500
    assert r["low"] > 0
    none = bootstrap_ci(lambda y: None, (y,), None, n_boot=50)
    assert none["n_boot"] == 0 and none["low"] is None and none["high"] is None
    assert none["estimate"] is None


def test_bootstrap_input_errors():
    x = np.arange(5.0)
    with pytest.raises(ValueError, match="groups"):
        bootstrap_ci(_mean, (x,), np.arange(4), n_boot=10)
    with pytest.raises(ValueError, match=r"arrays\[1\]"):
        bootstrap_ci(_mean, (x, np.arange(6)), None, n_boot=10)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(_mean, (x,), None, n_boot=0)
    with pytest.raises(ValueError, match="tuple of arrays"):
        bootstrap_ci(_mean, x, None, n_boot=10)


def _classification(seed, n=300, k=4, acc=0.6):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < acc, y, rng.integers(0, k, n))
    probs = np.full((n, k), 0.1 / (k - 1))
    probs[np.arange(n), pred] = 0.9
    return y, probs, pred


def test_paired_identical_methods():
    y, probs, pred = _classification(0)
    groups = np.arange(y.size) // 3
    f = scalar_fn("multiclass", "balanced_accuracy")
    r = paired_bootstrap(f, (y, probs, pred), (y, probs.copy(), pred.copy()), groups, n_boot=200)
    assert r["diff"] == 0.0 and r["low"] == 0.0 and r["high"] == 0.0
    assert r["p_value"] == 1.0 and r["n_boot"] == 200


def test_paired_clearly_better_method():
    y, probs_b, pred_b = _classification(1, acc=0.5)
    pred_a = y.copy()
    probs_a = np.full_like(probs_b, 0.1 / 3)
    probs_a[np.arange(y.size), y] = 0.9
    f = scalar_fn("multiclass", "accuracy")
    r = paired_bootstrap(f, (y, probs_a, pred_a), (y, probs_b, pred_b), None, n_boot=400, seed=0)
    assert r["diff"] == pytest.approx(1.0 - np.mean(pred_b == y))
    assert 0 < r["low"] < r["diff"] < r["high"]
    assert r["p_value"] == pytest.approx(2 / 401)  # the smallest attainable value
    flipped = paired_bootstrap(
        f, (y, probs_b, pred_b), (y, probs_a, pred_a), None, n_boot=400, seed=0
    )
    assert flipped["diff"] == pytest.approx(-r["diff"]) and flipped["p_value"] == r["p_value"]


def test_paired_p_value_formula_and_shared_resamples():
    # record every call: replicate i calls metric(a*), then metric(b*), on the same rows
    y = np.random.default_rng(2).integers(0, 2, 60)
    sa = np.random.default_rng(3).random(60)
    sb = sa + np.random.default_rng(4).normal(scale=0.3, size=60)
    ids = np.arange(60)
    calls = []

    def metric(y, score, row_id):
        calls.append(row_id)
        return float(np.corrcoef(y, score)[0, 1])

    r = paired_bootstrap(metric, (y, sa, ids), (y, sb, ids), None, n_boot=300, seed=9)
    assert len(calls) == 2 * 300 + 2
    d = []
    for i in range(300):
        rows_a, rows_b = calls[2 * i], calls[2 * i + 1]
        assert np.array_equal(rows_a, rows_b)
        d.append(
            float(
                np.corrcoef(y[rows_a], sa[rows_a])[0, 1] - np.corrcoef(y[rows_a], sb[rows_a])[0, 1]
            )
        )
    d = np.array(d)
    p = min(1.0, 2 * min((1 + (d <= 0).sum()) / 301, (1 + (d >= 0).sum()) / 301))
    assert r["p_value"] == pytest.approx(p)
    assert 0.0 < p < 1.0  # a non-trivial case
    assert r["low"] == pytest.approx(np.quantile(d, 0.025))
    assert r["high"] == pytest.approx(np.quantile(d, 0.975))


def test_paired_rejects_different_test_sets():
    y, probs, pred = _classification(0)
    f = scalar_fn("multiclass", "accuracy")
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 4
    with pytest.raises(ValueError, match="same y_true"):
        paired_bootstrap(f, (y, probs, pred), (y2, probs, pred), None, n_boot=10)
    with pytest.raises(ValueError, match="rows"):
        paired_bootstrap(f, (y, probs, pred), (y[:-1], probs[:-1], pred[:-1]), None, n_boot=10)


def _holm_by_hand(p):
    p = list(p)
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adj = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def test_holm_hand_computed():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    p = np.random.default_rng(0).random(25) ** 3
    assert holm(p) == pytest.approx(_holm_by_hand(p))
    assert np.all(holm(p) >= p)


def test_holm_missing_and_invalid():
    out = holm([0.01, None, 0.02, float("nan")])
    assert out[[0, 2]] == pytest.approx([0.02, 0.02])  # m = 2 defined p-values
    assert np.isnan(out[1]) and np.isnan(out[3])
    assert holm([]).size == 0
    with pytest.raises(ValueError, match="p_values"):
        holm([0.2, 1.5])


def test_mean_sd():
    mean, sd, n = mean_sd([1.0, 2.0, 3.0, 4.0])
    assert (mean, n) == (2.5, 4) and sd == pytest.approx(math.sqrt(5 / 3))
    assert mean_sd([0.7]) == (0.7, None, 1)
    assert mean_sd([]) == (None, None, 0)
    assert mean_sd([1.0, None, float("nan"), 3.0]) == (2.0, pytest.approx(math.sqrt(2)), 2)


def test_summarise_seeds():
    df = pd.DataFrame(
        {
            "method": ["focal", "focal", "focal", "ce", "ce", "ldam"],
            "model": ["r50"] * 6,
            "seed": [0, 1, 2, 0, 1, 0],
            "value": [0.5, 0.7, 0.6, 0.4, np.nan, 0.9],
        }
    )
    out = summarise_seeds(df, ["method", "model"])
    assert list(out.columns) == ["method", "model", "mean", "sd", "n", "min", "max"]
    assert list(out["method"]) == ["focal", "ce", "ldam"]  # order of first appearance
    focal = out.iloc[0]
    assert focal["mean"] == pytest.approx(0.6) and focal["sd"] == pytest.approx(0.1)
    assert (focal["n"], focal["min"], focal["max"]) == (3, 0.5, 0.7)
    ce = out.iloc[1]
    assert ce["n"] == 1 and ce["mean"] == 0.4 and np.isnan(ce["sd"])
    with pytest.raises(ValueError, match="score"):
        summarise_seeds(df, ["method"], value="score")
    with pytest.raises(ValueError, match="numeric"):
        summarise_seeds(df, ["model"], value="method")


def test_bootstrap_speed():
    rng = np.random.default_rng(0)
    n, k = 2000, 7
    y = rng.integers(0, k, n)
    probs = rng.dirichlet(np.ones(k), n)
    pred = probs.argmax(1)
    groups = rng.integers(0, 1400, n)
    t0 = time.perf_counter()
    r = bootstrap_ci(
        scalar_fn("multiclass", "balanced_accuracy"), (y, probs, pred), groups, n_boot=1000
    )
    elapsed = time.perf_counter() - t0
    assert r["n_boot"] == 1000
    assert elapsed < 6.0  # ~0.2 s on an idle 2-core machine; generous for loaded CI
