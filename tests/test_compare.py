"""The comparison statistics: arithmetic, power and type-I error by simulation, families, ranking."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as st
from simulate import paired, simulate

from imbench.compare import check_evaluation, ranking, resolve_evaluation
from imbench.config import load_config
from imbench.data.tasks import get_task
from imbench.methods import method_kinds
from imbench.metrics import KINDS, metric_names
from imbench.stats import _Resampler, seeds_tests_mean, smallest_adjusted_p

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- arithmetic


def test_seeds_tests_mean_by_hand():
    # three seeds, four replicates: every number below is worked out independently of the code
    full = np.array([0.10, 0.20, 0.30])
    reps = np.array([[0.10, 0.12, 0.08, 0.10], [0.20, 0.26, 0.18, 0.16], [0.30, 0.30, 0.34, 0.26]])
    r = seeds_tests_mean(full, reps, n_test_groups=51)
    v_seed = 0.01 / 3  # var(0.1, 0.2, 0.3) = 0.01, over S = 3
    b1 = np.var(
        [0.2, 0.68 / 3, 0.2, 0.52 / 3], ddof=1
    )  # variance of the replicate means over seeds
    b2 = np.mean([np.var(row, ddof=1) for row in reps])
    v_test = max(b1 - (b2 - b1) / 2, 0.0)
    v = v_seed + v_test
    df = v**2 / (v_seed**2 / 2 + v_test**2 / 50)
    assert r["estimate"] == pytest.approx(0.2)
    assert r["v_seed"] == pytest.approx(v_seed) and r["v_test"] == pytest.approx(v_test)
    assert r["df"] == pytest.approx(df)
    assert r["p_value"] == pytest.approx(2 * st.t.sf(0.2 / math.sqrt(v), df))
    half = st.t.ppf(0.975, df) * math.sqrt(v)
    assert (r["low"], r["high"]) == pytest.approx((0.2 - half, 0.2 + half))


def test_seed_only_limit_is_the_one_sample_t_test():
    # with identical replicates (no test-set variance) the test is the t-test over seeds
    full = np.array([0.05, 0.11, 0.08, 0.02])
    reps = np.repeat(full[:, None], 20, axis=1)
    r = seeds_tests_mean(full, reps, n_test_groups=100)
    ref = st.ttest_1samp(full, 0.0)
    assert r["v_test"] == pytest.approx(0.0, abs=1e-20) and r["df"] == pytest.approx(3)
    assert r["p_value"] == pytest.approx(ref.pvalue)


def test_one_seed_counts_the_test_set_only_and_says_so():
    r = seeds_tests_mean(np.array([0.1]), np.array([[0.05, 0.15, 0.1, 0.12]]), n_test_groups=30)
    assert not r["seed_variance"] and r["v_seed"] == 0.0
    assert r["v_test"] == pytest.approx(np.var([0.05, 0.15, 0.1, 0.12], ddof=1)) and r["df"] == 29


def test_undefined_replicates_are_dropped_and_identical_methods_give_p_one():
    reps = np.array([[0.1, np.nan, 0.2], [0.1, 0.3, 0.2]])
    assert seeds_tests_mean(np.array([0.1, 0.2]), reps, 10)["n_boot"] == 2
    r = seeds_tests_mean(np.zeros(3), np.zeros((3, 10)), 10)
    assert r["p_value"] == 1.0 and r["low"] == r["high"] == 0.0


def test_one_test_per_method_and_holm_within_the_task_model_metric_family():
    rng = np.random.default_rng(3)
    t = paired(rng, {"a": 1.0, "b": 0.0, "c": -1.0}, n_seeds=3, n_groups=60)
    assert (
        list(t.method) == ["a", "b", "c"] and (t.n_seeds == 3).all() and (t.family_size == 3).all()
    )
    p = t.p_value.to_numpy()
    order = np.argsort(p)
    expected = np.maximum.accumulate(np.minimum(1, (3 - np.arange(3)) * p[order]))
    assert t.p_holm.to_numpy()[order] == pytest.approx(expected)


# ----------------------------------------------------------------------------- simulations

# Type-I error: N simulated experiments with no difference; the share flagged at 0.05 must stay
# within 0.05 + 2.6 binomial standard deviations (one-sided; 0.05 + 0.04 at N = 200). The regimes
# include a seed-dominated one, where a test that ignored training variance flags about a third.
TYPE1_SIMS = 200


@pytest.mark.parametrize("seed_sd", [0.05, 0.6])
def test_type_one_error_at_most_nominal(seed_sd):
    rng = np.random.default_rng(int(seed_sd * 100))
    p = np.array(
        [
            paired(rng, {"x": 0.0}, seed_sd=seed_sd, n_groups=80)["p_value"].iloc[0]
            for _ in range(TYPE1_SIMS)
        ]
    )
    tolerance = 2.6 * math.sqrt(0.05 * 0.95 / TYPE1_SIMS)
    assert (p < 0.05).mean() <= 0.05 + tolerance


def test_a_test_ignoring_seed_variance_would_fail_the_type_one_check():
    # the harness can tell: with seed-dominated noise, the test-set-only p (one seed's view of the
    # design, v_seed left out) rejects far more often than 5 %
    rng = np.random.default_rng(7)
    flagged = 0
    for _ in range(60):
        cells, preds = simulate(rng, {"x": 0.0}, seed_sd=0.6, n_groups=80)
        from imbench.compare import cell_replicates

        spec = resolve_evaluation({"headline": "accuracy"}, "multiclass")
        reps = cell_replicates(cells, preds, {"sim": spec}, n_boot=100, seed=0)
        d_full = np.array(
            [
                reps[("sim", "m", "x", s, "accuracy")]["full"]
                - reps[("sim", "m", "ce", s, "accuracy")]["full"]
                for s in range(3)
            ]
        )
        d_reps = np.array(
            [
                reps[("sim", "m", "x", s, "accuracy")]["reps"]
                - reps[("sim", "m", "ce", s, "accuracy")]["reps"]
                for s in range(3)
            ]
        )
        v_test_only = d_reps.mean(axis=0).var(ddof=1)
        z = d_full.mean() / math.sqrt(v_test_only)
        flagged += 2 * st.norm.sf(abs(z)) < 0.05
    assert flagged / 60 > 0.15


def test_power_a_real_difference_is_flagged():
    rng = np.random.default_rng(11)
    hits = [
        paired(rng, {"x": 1.2}, seed_sd=0.1, n_groups=150)["p_holm"].iloc[0] < 0.05
        for _ in range(30)
    ]
    assert np.mean(hits) >= 0.8


def test_power_at_the_default_grid_size():
    """The default grid's own shape: 19 methods against ce (Holm over 19), 3 seeds, a test split of
    1,700 images (here 850 lesions of 1–3 images); one method better by a logit shift of 2.5 (about
    +0.25 balanced accuracy), the other 18 no different. It is flagged in at least 80 % of simulated
    experiments (power curve: docs/statistics.md)."""
    rng = np.random.default_rng(5)
    hits = []
    for _ in range(15):
        deltas = {f"null{i}": 0.0 for i in range(18)}
        deltas["x"] = 2.5
        t = paired(rng, deltas, n_groups=850, seed_sd=0.1, n_boot=100, metric="balanced_accuracy")
        assert (t.family_size == 19).all()
        hits.append(t.loc[t.method == "x", "p_holm"].iloc[0] < 0.05)
    assert np.mean(hits) >= 0.8


# ----------------------------------------------------------------------------- grid sizes


def _family_sizes(config: dict) -> list[int]:
    sizes = []
    for task in config["tasks"]:
        kind = get_task(task).kind
        compared = [m for m in config["methods"] if m != "ce" and kind in method_kinds(m)]
        sizes.append(len(compared))
    return sizes


@pytest.mark.parametrize(
    "path",
    [
        "config.yaml",
        "experiments/lmf.yaml",
        "experiments/bbfl.yaml",
        "experiments/le2020.yaml",
        "experiments/dong.yaml",
        "experiments/all.yaml",
    ],
)
def test_smallest_attainable_adjusted_p_is_far_below_the_level(path):
    config = load_config([ROOT / path], base=ROOT / "config.yaml")  # `methods: all` expanded
    family = max(_family_sizes(config))
    n_boot = (config.get("evaluation") or {}).get("n_boot", 1000)
    p = smallest_adjusted_p(family, len(config["seeds"]), n_boot)
    assert p < 0.01, (path, family, p)
    # the old design (a bootstrap p per seed, Holm over every comparison of the experiment) could not
    old = (
        2
        / (n_boot + 1)
        * family
        * len(config["seeds"])
        * len(config["models"])
        * len(config["tasks"])
    )
    if path in ("experiments/lmf.yaml", "experiments/bbfl.yaml"):
        assert old > 0.05


# ----------------------------------------------------------------------------- metric choice


def test_paper_experiments_use_the_papers_metrics():
    expect = {
        "experiments/lmf.yaml": {"multiclass": "macro_f1"},
        "experiments/le2020.yaml": {"multiclass": "accuracy"},
        "experiments/dong.yaml": {"multilabel": "mean_f2"},
        "experiments/bbfl.yaml": {"binary": "accuracy", "multiclass": "accuracy"},
    }
    for path, heads in expect.items():
        config = yaml.safe_load((ROOT / path).read_text())
        check_evaluation(config.get("evaluation"), [get_task(t).kind for t in config["tasks"]])
        for kind, metric in heads.items():
            assert resolve_evaluation(config["evaluation"], kind)["headline"] == metric, path
    le = resolve_evaluation(
        yaml.safe_load((ROOT / "experiments/le2020.yaml").read_text())["evaluation"], "multiclass"
    )
    assert {"top2_accuracy", "top3_accuracy"} <= set(le["metrics"])
    bb = yaml.safe_load((ROOT / "experiments/bbfl.yaml").read_text())["evaluation"]
    assert set(resolve_evaluation(bb, "binary")["tested"]) == {"accuracy", "f1", "auc"}
    lmf = resolve_evaluation(
        yaml.safe_load((ROOT / "experiments/lmf.yaml").read_text())["evaluation"], "multiclass"
    )
    assert "accuracy" in lmf["tested"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"headline": "nope"}, "evaluation.headline"),
        ({"headline": "ece"}, "smaller-is-better"),
        ({"headline": {"multiclass": "f1"}}, "evaluation.headline.multiclass"),
        ({"headline": {"tabular": "f1"}}, "unknown task kind"),
        ({"tested": ["accuracy", 3]}, "evaluation.tested"),
        ({"metrics": ["no_such_metric"]}, "evaluation.metrics"),
        ({"headline": "macro_f1"}, "not a binary metric"),
    ],
)
def test_bad_evaluation_sections_name_the_key(spec, message):
    with pytest.raises(ValueError, match=message):
        check_evaluation(spec, ["multiclass", "binary"])


def test_default_headline_per_kind_is_kept():
    assert resolve_evaluation({}, "multiclass")["headline"] == "balanced_accuracy"
    assert (
        resolve_evaluation({"headline": {"binary": "auc"}}, "multiclass")["headline"]
        == "balanced_accuracy"
    )
    assert resolve_evaluation({"metrics": ["f1", "macro_f1"]}, "binary")["metrics"] == ["f1"]


# ----------------------------------------------------------------------------- ranking


def _long(values: dict[tuple, float]) -> pd.DataFrame:
    rows = [
        {
            "task": t,
            "model": m,
            "method": meth,
            "seed": s,
            "split": "test",
            "metric": "macro_f1",
            "value": v,
        }
        for (t, m, meth, s), v in values.items()
    ]
    return pd.DataFrame(rows)


def test_ranking_over_task_model_blocks_matches_scipy_friedman():
    rng = np.random.default_rng(0)
    methods = ["ce", "a", "b", "c"]
    values = {}
    for t in ("t1", "t2"):
        for m in ("m1", "m2", "m3"):
            for i, meth in enumerate(methods):
                for s in range(2):
                    values[(t, m, meth, s)] = 0.5 + 0.05 * i + rng.normal(0, 0.01)
    long = _long(values)
    specs = {"t1": {"headline": "macro_f1"}, "t2": {"headline": "macro_f1"}}
    r = ranking(long, specs, methods)
    assert r["n_blocks"] == 6 and r["blocks"].startswith("task × model ")
    table = long.groupby(["task", "model", "method"])["value"].mean().unstack("method")[methods]
    ref = st.friedmanchisquare(*[table[m] for m in methods])
    assert r["friedman_p"] == pytest.approx(ref.pvalue)
    assert list(r["table"].method) == ["c", "b", "a", "ce"] and r["table"].mean_rank.iloc[0] == 1.0
    assert r["nemenyi"].shape == (4, 4)


def test_ranking_falls_back_to_seed_blocks_with_one_task_model_cell_and_drops_incomplete_methods():
    values = {
        ("t1", "m1", meth, s): v + 0.01 * s
        for s in range(3)
        for meth, v in (("ce", 0.5), ("a", 0.6), ("b", 0.4))
    }
    values[("t1", "m1", "skipped", 0)] = 0.9  # only one seed: not in every block
    r = ranking(_long(values), {"t1": {"headline": "macro_f1"}}, ["ce", "a", "b", "skipped"])
    assert r["n_blocks"] == 3 and "seed" in r["blocks"]
    assert list(r["table"].method) == ["a", "ce", "b"]


def test_critical_difference_figure_is_drawn(tmp_path):
    from imbench.compare import cd_figure

    values = {
        (t, "m", meth, 0): v + (0.02 if t == "t2" else 0)
        for t in ("t1", "t2", "t3")
        for meth, v in (("ce", 0.5), ("a", 0.6), ("b", 0.4))
    }
    r = ranking(
        _long(values), {t: {"headline": "macro_f1"} for t in ("t1", "t2", "t3")}, ["ce", "a", "b"]
    )
    cd_figure(r, tmp_path / "cd.png")
    assert (tmp_path / "cd.png").stat().st_size > 3000


def test_replicates_pair_methods_on_the_same_lesions_whatever_the_row_order():
    # two cells with their rows in different orders get the same replicate multisets of groups
    groups = np.array(["g1", "g1", "g2", "g3", "g3", "g3"])
    perm = np.array([5, 2, 0, 4, 1, 3])
    a = _Resampler(6, groups)
    b = _Resampler(6, groups[perm])
    for da, db in zip(a.draws(20, 0), b.draws(20, 0)):
        assert sorted(groups[a.rows(da)]) == sorted(groups[perm][b.rows(db)])


def _resampling_case(kind):
    """Predictions of 40 rows in 15 groups: group resamples miss classes (the undefined cases)."""
    rng = np.random.default_rng(1)
    n, k = 40, {"multiclass": 5, "binary": 2, "multilabel": 4}[kind]
    groups = rng.integers(0, 15, n)
    if kind == "multilabel":
        y = (rng.random((n, k)) < 0.3).astype(int)
        pred = (rng.random((n, k)) < 0.3).astype(int)
        probs = rng.random((n, k))
    else:
        y = rng.choice(k, n, p=np.linspace(3, 1, k) / np.linspace(3, 1, k).sum())
        y[:2] = 0  # class 0 present; small resamples still miss classes (the undefined cases)
        pred = np.where(rng.random(n) < 0.5, y, rng.integers(0, k, n))
        probs = rng.dirichlet(np.ones(k), n)
        probs[:, 0] = probs[:, 1]  # ties in the scores (top-k tie rule)
        probs /= probs.sum(axis=1, keepdims=True)
    return (y, probs, pred), groups


@pytest.mark.parametrize(
    "kind, name",
    [
        ("multiclass", m)
        for m in (
            "accuracy",
            "balanced_accuracy",
            "macro_f1",
            "weighted_f1",
            "macro_precision",
            "macro_recall",
            "top2_accuracy",
            "top3_accuracy",
        )
    ]
    + [
        ("binary", m)
        for m in ("accuracy", "f1", "precision", "sensitivity", "specificity", "balanced_accuracy")
    ]
    + [("multilabel", m) for m in ("mean_f2", "macro_f1", "micro_f1")],
)
def test_weighted_replicates_equal_the_metric_on_resampled_rows(kind, name):
    from imbench.metrics import point_fn, scalar_fn, weighted_fn
    from imbench.stats import replicate_values

    arrays, groups = _resampling_case(kind)
    # the scikit-learn point estimate of each explicitly resampled replicate
    slow = replicate_values(point_fn(kind, name), arrays, groups, n_boot=60, seed=4)
    fast = replicate_values(
        scalar_fn(kind, name),
        arrays,
        groups,
        n_boot=60,
        seed=4,
        weighted=weighted_fn(kind, name),
        chunk=7,
    )
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize(
    "kind, name", [(kind, name) for kind in KINDS for name in metric_names(kind)]
)
def test_bootstrap_fast_paths_equal_sklearn_on_resampled_rows(kind, name):
    """``scalar_fn`` (what bootstrap intervals recompute per replicate) gives exactly the
    reported point estimate of every resampled replicate, classes missing included."""
    from imbench.metrics import point_fn, scalar_fn
    from imbench.stats import replicate_values

    arrays, groups = _resampling_case(kind)
    slow = replicate_values(point_fn(kind, name), arrays, groups, n_boot=40, seed=5)
    fast = replicate_values(scalar_fn(kind, name), arrays, groups, n_boot=40, seed=5)
    np.testing.assert_array_equal(fast, slow)
