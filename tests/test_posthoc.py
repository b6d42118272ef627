"""Tests for imbench.methods.posthoc (the `thresholding` method of SPEC §4 and `la_posthoc`)."""

import inspect
import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, fbeta_score

from imbench.methods import fit_posthoc, method_kinds
from imbench.methods.posthoc import (
    LA_TAU_GRID,
    POSTHOC_DEFAULTS,
    DecisionRule,
    best_threshold,
    default_rule,
    fit_rule,
)

HAM_COUNTS = np.array([6705, 1113, 1099, 514, 327, 142, 115])


def binary_probs(p_pos):
    p_pos = np.asarray(p_pos, dtype=float)
    return np.stack([1 - p_pos, p_pos], axis=1)


def brute_force_threshold(scores, labels, beta=1.0):
    """Best F-beta of ``scores >= t`` over every score and a 0.001 grid (a plain broadcast, no
    sorting tricks); returns (best F, all thresholds achieving it). The F-beta formula is checked
    against sklearn's ``fbeta_score`` on a sample of the candidates (sklearn on all of them is slow)."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    candidates = np.unique(np.concatenate([scores, np.linspace(0, 1, 1001)]))
    pred = scores[None, :] >= candidates[:, None]
    tp = (pred & labels).sum(1)
    fp = (pred & ~labels).sum(1)
    fn = labels.sum() - tp
    b2 = beta**2
    denom = (1 + b2) * tp + b2 * fn + fp
    fs = np.divide((1 + b2) * tp, denom, out=np.zeros(len(candidates)), where=denom > 0)
    for i in np.linspace(0, len(candidates) - 1, 12).astype(int):
        ref = fbeta_score(labels, pred[i].astype(int), beta=beta, zero_division=0)
        assert fs[i] == pytest.approx(ref, abs=1e-12)
    best = fs.max()
    return best, candidates[np.isclose(fs, best, rtol=0, atol=1e-12)]


def test_defaults_registry():
    assert POSTHOC_DEFAULTS == {
        "thresholding": {"tau": 1.0, "beta": 1.0},
        "la_posthoc": {"tau": 1.0},
    }


# --- binary -------------------------------------------------------------------------------------


def test_binary_separable_threshold_is_centre_of_gap():
    neg = [0.05, 0.1, 0.2, 0.3]
    pos = [0.6, 0.7, 0.9]
    scores = np.array(neg + pos)
    labels = np.array([0] * 4 + [1] * 3)
    rule = fit_rule("thresholding", binary_probs(scores), labels, [100, 10], "binary")
    assert rule.thresholds == (pytest.approx(0.45),)
    assert rule.details["val_fscore"] == 1.0
    np.testing.assert_array_equal(rule.predict(binary_probs(scores)), labels)
    # Centre of the gap: 0.44 is negative, 0.46 positive (argmax would call both negative).
    np.testing.assert_array_equal(rule.predict(binary_probs([0.44, 0.46])), [0, 1])


def test_binary_matches_brute_force_on_noisy_scores():
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.1).astype(int)
    scores = np.clip(rng.normal(0.3 + 0.25 * labels, 0.15), 0, 1)
    rule = fit_rule("thresholding", binary_probs(scores), labels, [270, 30], "binary")
    t = rule.thresholds[0]
    best, achieving = brute_force_threshold(scores, labels)
    assert f1_score(labels, (scores >= t).astype(int)) == pytest.approx(best, abs=1e-12)
    assert rule.details["val_fscore"] == pytest.approx(best, abs=1e-12)
    # Tie rule: no lower threshold reaches the same F1 with different predictions.
    lowest_cut = scores[scores >= achieving.min()].min()
    assert ((scores >= t) == (scores >= lowest_cut)).all()
    # And it beats the default argmax rule.
    assert best > f1_score(labels, default_rule("binary").predict(binary_probs(scores)))


def test_binary_ties_choose_lowest_cut():
    # Cut at 0.5 -> TP=1, FP=0, FN=1 -> F1 = 2/3; cut at 0.2 -> TP=2, FP=2, FN=0 -> F1 = 4/6 = 2/3.
    scores = np.array([0.2, 0.3, 0.4, 0.5])
    labels = np.array([1, 0, 0, 1])
    t, f = best_threshold(scores, labels)
    assert f == pytest.approx(2 / 3)
    assert t == 0.2  # lowest tied cut; it is the lowest score, so no midpoint below it
    rule = fit_rule("thresholding", binary_probs(scores), labels, [2, 2], "binary")
    # predict is P(pos) >= t: the sample scored exactly t is positive.
    np.testing.assert_array_equal(rule.predict(binary_probs(scores)), [1, 1, 1, 1])
    scores2 = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    labels2 = np.array([0, 1, 0, 0, 1])
    t2, _ = best_threshold(scores2, labels2)
    assert t2 == pytest.approx(0.15)  # midpoint between 0.1 and the chosen cut 0.2


def test_binary_midpoint_never_rounds_onto_lower_score():
    a = 0.3
    b = np.nextafter(a, 1.0)
    t, f = best_threshold([a, b], [0, 1])
    assert f == 1.0 and a < t <= b


def test_binary_fbeta_param():
    rng = np.random.default_rng(1)
    labels = (rng.random(200) < 0.2).astype(int)
    scores = np.clip(rng.normal(0.35 + 0.2 * labels, 0.15), 0, 1)
    rule = fit_rule("thresholding", binary_probs(scores), labels, [160, 40], "binary", beta=2)
    best, _ = brute_force_threshold(scores, labels, beta=2)
    got = fbeta_score(labels, rule.predict(binary_probs(scores)), beta=2)
    assert got == pytest.approx(best, abs=1e-12)
    assert rule.to_dict()["params"] == {"beta": 2.0}


def test_binary_no_positive_keeps_half():
    rule = fit_rule("thresholding", binary_probs([0.1, 0.7]), [0, 0], [5, 5], "binary")
    assert rule.thresholds == (0.5,)
    assert "fallback" in rule.details


# --- multiclass ---------------------------------------------------------------------------------


def test_multiclass_prior_correction_hand_computed():
    counts = np.array([80, 15, 5])  # priors 0.8, 0.15, 0.05
    probs = np.array(
        [
            [0.70, 0.20, 0.10],  # ratios 0.875, 1.333, 2.0   -> 2 (argmax says 0)
            [0.90, 0.08, 0.02],  # ratios 1.125, 0.533, 0.4   -> 0
            [0.50, 0.40, 0.10],  # ratios 0.625, 2.667, 2.0   -> 1 (argmax says 0)
        ]
    )
    rule = fit_rule("thresholding", probs, np.array([2, 0, 1]), counts, "multiclass", n_train=100)
    np.testing.assert_array_equal(rule.predict(probs), [2, 0, 1])
    np.testing.assert_array_equal(default_rule("multiclass").predict(probs), [0, 0, 0])
    assert rule.priors == pytest.approx((0.8, 0.15, 0.05))
    assert rule.params == {"tau": 1.0}


def test_multiclass_tau_and_logit_adjustment_equivalence():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(50, 7))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for tau in (0.0, 0.5, 1.0, 2.0):
        rule = fit_rule("thresholding", probs, None, HAM_COUNTS, "multiclass", tau=tau)
        log_prior = np.log(HAM_COUNTS / HAM_COUNTS.sum())
        np.testing.assert_array_equal(
            rule.predict(probs), np.argmax(logits - tau * log_prior, axis=1)
        )
    rule0 = fit_rule("thresholding", probs, None, HAM_COUNTS, "multiclass", tau=0)
    np.testing.assert_array_equal(rule0.predict(probs), probs.argmax(1))


def test_multiclass_ignores_validation_labels():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(7), size=40)
    a = fit_rule("thresholding", probs, rng.integers(7, size=40), HAM_COUNTS, "multiclass")
    b = fit_rule("thresholding", probs, rng.integers(7, size=40), HAM_COUNTS, "multiclass")
    assert a == b


def test_multiclass_zero_count_raises():
    probs = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="zero count for class"):
        fit_rule("thresholding", probs, [0, 1], [10, 0, 5], "multiclass")


# --- multilabel ---------------------------------------------------------------------------------


def test_multilabel_per_label_thresholds_vs_brute_force():
    rng = np.random.default_rng(4)
    n, k = 120, 4
    labels = (rng.random((n, k)) < [0.3, 0.1, 0.05, 0.5]).astype(int)
    probs = np.clip(rng.normal(0.3 + 0.3 * labels, 0.2), 0, 1)
    for beta in (1.0, 2.0):
        rule = fit_rule(
            "thresholding", probs, labels, labels.sum(0) * 5, "multilabel", n_train=600, beta=beta
        )
        pred = rule.predict(probs)
        assert pred.shape == (n, k) and set(np.unique(pred)) <= {0, 1}
        for j in range(k):
            best, _ = brute_force_threshold(probs[:, j], labels[:, j], beta=beta)
            assert fbeta_score(labels[:, j], pred[:, j], beta=beta) == pytest.approx(
                best, abs=1e-12
            )
            assert rule.details["val_fscore"][j] == pytest.approx(best, abs=1e-12)
    # F2 favours recall: thresholds are never above the F1 ones here.
    f1_rule = fit_rule("thresholding", probs, labels, labels.sum(0) * 5, "multilabel", beta=1)
    f2_rule = fit_rule("thresholding", probs, labels, labels.sum(0) * 5, "multilabel", beta=2)
    assert all(t2 <= t1 for t1, t2 in zip(f1_rule.thresholds, f2_rule.thresholds))


def test_multilabel_label_without_positives_keeps_half():
    probs = np.array([[0.9, 0.8], [0.2, 0.6], [0.7, 0.3]])
    labels = np.array([[1, 0], [0, 0], [1, 0]])
    rule = fit_rule("thresholding", probs, labels, [5, 3], "multilabel")
    assert rule.thresholds[1] == 0.5
    assert rule.thresholds[0] == pytest.approx(0.45)
    assert rule.details["fallback_labels"] == [1]
    np.testing.assert_array_equal(rule.predict(probs), [[1, 1], [0, 1], [1, 0]])


def test_default_rules():
    probs = np.array([[0.5, 0.5], [0.4, 0.6]])
    np.testing.assert_array_equal(default_rule("binary").predict(probs), [0, 1])
    np.testing.assert_array_equal(
        default_rule("multilabel").predict(np.array([[0.5, 0.49]])), [[1, 0]]
    )


# --- isolation from test data, serialisation --------------------------------------------------


def test_rule_never_sees_test_data():
    assert "test" not in " ".join(inspect.signature(fit_rule).parameters)
    assert list(inspect.signature(DecisionRule.predict).parameters) == ["self", "probs"]
    rng = np.random.default_rng(5)
    val_labels = (rng.random((80, 3)) < 0.3).astype(int)
    val_probs = np.clip(rng.normal(0.3 + 0.3 * val_labels, 0.2), 0, 1)
    val_probs_before = val_probs.copy()
    rule = fit_rule("thresholding", val_probs, val_labels, [30, 20, 10], "multilabel")
    np.testing.assert_array_equal(val_probs, val_probs_before)  # inputs not modified
    test_probs = rng.random((50, 3))
    pred = rule.predict(test_probs)
    # Changing the validation arrays after fitting changes nothing: the rule holds its own state.
    val_probs[:] = 0.0
    val_labels[:] = 1
    np.testing.assert_array_equal(rule.predict(test_probs), pred)
    # Each row is decided on its own: permuting or subsetting the test set permutes the output.
    perm = rng.permutation(50)
    np.testing.assert_array_equal(rule.predict(test_probs[perm]), pred[perm])
    np.testing.assert_array_equal(rule.predict(test_probs[:5]), pred[:5])


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_to_dict_roundtrip(kind):
    rng = np.random.default_rng(6)
    if kind == "multilabel":
        labels = (rng.random((30, 3)) < 0.4).astype(int)
        probs, counts = rng.random((30, 3)), [10, 8, 3]
    elif kind == "binary":
        labels = rng.integers(2, size=30)
        probs, counts = binary_probs(rng.random(30)), [20, 10]
    else:
        labels = rng.integers(3, size=30)
        probs, counts = rng.dirichlet(np.ones(3), size=30), [20, 7, 3]
    rule = fit_rule("thresholding", probs, labels, counts, kind)
    data = json.loads(json.dumps(rule.to_dict()))
    assert data["kind"] == kind and data["rule_id"] == "thresholding"
    again = DecisionRule.from_dict(data)
    np.testing.assert_array_equal(again.predict(probs), rule.predict(probs))
    json.dumps(default_rule(kind).to_dict())


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: fit_rule("calibrate", np.eye(2), [0, 1], [1, 1], "binary"),
            "unknown post-hoc rule 'calibrate'; allowed: thresholding",
        ),
        (
            lambda: fit_rule("thresholding", np.eye(2), [0, 1], [1, 1], "ordinal"),
            "unknown task kind",
        ),
        (
            lambda: fit_rule("thresholding", np.eye(2), [0, 1], [1, 1], "binary", gamma=2),
            "unknown parameter.*gamma.*allowed: tau, beta",
        ),
        (
            lambda: fit_rule("thresholding", np.eye(2), [0, 1], [1, 1], "binary", beta=0),
            r"parameter .beta. of rule .thresholding.: expected a number > 0",
        ),
        (lambda: fit_rule("thresholding", np.eye(3), [0, 1, 2], [1, 1, 1], "binary"), r"\(N, 2\)"),
        (lambda: fit_rule("thresholding", np.eye(2) * 5, [0, 1], [1, 1], "binary"), "logits"),
        (lambda: fit_rule("thresholding", np.eye(2), [0, 1], [1, 1, 1], "binary"), "train_counts"),
        (
            lambda: fit_rule("thresholding", np.eye(2), [0, 1], [1, 1], "multiclass", n_train=5),
            "n_train",
        ),
        (lambda: fit_rule("thresholding", np.eye(2), [0], [1, 1], "binary"), "val_labels"),
        (
            lambda: fit_rule("thresholding", np.eye(2), [[0, 2], [1, 1]], [1, 1], "multilabel"),
            "only 0 and 1",
        ),
        (lambda: default_rule("regression"), "unknown task kind"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_predict_checks_width():
    rule = fit_rule("thresholding", np.full((2, 3), 1 / 3), [0, 1], [1, 2, 3], "multiclass")
    with pytest.raises(ValueError, match="fitted on 3"):
        rule.predict(np.full((2, 4), 0.25))


# --- la_posthoc: post-hoc logit adjustment (Menon et al. 2021) ----------------------------------


def softmax_rows(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def official_posthoc(logits, counts, tau):
    """google-research logit_adjustment/main.py, --mode=posthoc: argmax of logits - log(π^τ + 1e-12)."""
    base_probs = np.asarray(counts, dtype=float) / np.sum(counts)
    return np.argmax(logits - np.log(base_probs**tau + 1e-12), axis=1)


@pytest.mark.parametrize(
    "kind,counts", [("multiclass", HAM_COUNTS), ("binary", np.array([900, 100]))]
)
@pytest.mark.parametrize("tau", [1.0, 0.0, 0.5, 2.0])
def test_la_posthoc_matches_official_code_on_logits(kind, counts, tau):
    rng = np.random.default_rng(11)
    logits = rng.normal(scale=2.0, size=(300, len(counts)))
    probs = softmax_rows(logits)
    rule = fit_rule("la_posthoc", probs, None, counts, kind, **({} if tau == 1.0 else {"tau": tau}))
    assert rule.params == {"tau": tau} and rule.decision == "logit_adjustment"
    np.testing.assert_array_equal(rule.predict(probs), official_posthoc(logits, counts, tau))
    if tau == 0.0:  # no adjustment: the ce cell's own decisions
        np.testing.assert_array_equal(rule.predict(probs), probs.argmax(1))


def test_la_posthoc_binary_hand_computed():
    # π = [0.9, 0.1]: positive iff p1/p0 > 0.1/0.9 = 1/9, i.e. p1 > 0.1.
    rule = fit_rule(
        "la_posthoc", binary_probs([0.05, 0.09, 0.11, 0.5]), [0, 0, 1, 1], [90, 10], "binary"
    )
    np.testing.assert_array_equal(rule.predict(binary_probs([0.05, 0.09, 0.11, 0.5])), [0, 0, 1, 1])
    # thresholding fits an F1 threshold instead: a different rule for binary tasks
    assert (
        fit_rule(
            "thresholding", binary_probs([0.05, 0.09, 0.11, 0.5]), [0, 0, 1, 1], [90, 10], "binary"
        ).decision
        == "threshold"
    )


def test_la_posthoc_multiclass_tau_1_decides_as_thresholding():
    rng = np.random.default_rng(12)
    probs = rng.dirichlet(np.full(7, 0.5), size=200)
    la = fit_rule("la_posthoc", probs, None, HAM_COUNTS, "multiclass")
    th = fit_rule("thresholding", probs, None, HAM_COUNTS, "multiclass")
    np.testing.assert_array_equal(la.predict(probs), th.predict(probs))


def brute_force_tau(probs, labels, counts):
    """τ on the 0.1 grid with the best mean per-class recall on validation (loops, no sklearn);
    ties go to the τ closest to 1, then the smaller."""
    log_prior = np.log(np.asarray(counts, dtype=float) / np.sum(counts))
    scores = {}
    for tau in [i / 10 for i in range(21)]:
        pred = np.argmax(np.log(probs) - tau * log_prior, axis=1)
        recalls = [np.mean(pred[labels == c] == c) for c in np.unique(labels)]
        scores[tau] = sum(recalls) / len(recalls)
    best = max(scores.values())
    return min(
        (t for t, v in scores.items() if v >= best - 1e-12), key=lambda t: (abs(t - 1), t)
    ), scores


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_la_posthoc_fit_tau_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    counts = np.array([500, 120, 40, 10])
    labels = rng.integers(4, size=120)
    logits = rng.normal(size=(120, 4)) + 1.5 * np.eye(4)[labels] + np.log(counts / counts.sum())
    probs = softmax_rows(logits)
    rule = fit_rule("la_posthoc", probs, labels, counts, "multiclass", tau="fit")
    tau, scores = brute_force_tau(probs, labels, counts)
    assert rule.params["tau"] == tau
    assert rule.details["tau_fitted"] is True
    assert rule.details["val_balanced_accuracy"] == pytest.approx([scores[t] for t in LA_TAU_GRID])
    assert list(LA_TAU_GRID) == sorted(scores)


def test_la_posthoc_fit_ties_go_to_tau_closest_to_1():
    # Perfectly separated validation: every τ on the grid scores 1, so τ = 1 is kept.
    probs = np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01], [0.01, 0.01, 0.98]])
    rule = fit_rule("la_posthoc", probs, [0, 1, 2], [10, 5, 2], "multiclass", tau="fit")
    assert rule.params["tau"] == 1.0


def test_la_posthoc_fit_needs_validation_labels_and_never_sees_test_data():
    probs = np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match="val_labels are required"):
        fit_rule("la_posthoc", probs, None, [10, 5, 2], "multiclass", tau="fit")
    rng = np.random.default_rng(13)
    val = rng.dirichlet(np.ones(3), size=50)
    rule = fit_rule(
        "la_posthoc", val, rng.integers(3, size=50), [30, 10, 3], "multiclass", tau="fit"
    )
    data = json.loads(json.dumps(rule.to_dict()))
    assert data["rule_id"] == "la_posthoc"
    test = rng.dirichlet(np.ones(3), size=20)
    np.testing.assert_array_equal(DecisionRule.from_dict(data).predict(test), rule.predict(test))


def test_la_posthoc_has_no_multilabel_meaning():
    assert method_kinds("la_posthoc") == ("multiclass", "binary")
    assert "multilabel" in method_kinds("thresholding")
    with pytest.raises(
        ValueError, match="post-hoc rule 'la_posthoc' has no meaning for multilabel tasks"
    ):
        fit_rule("la_posthoc", np.full((2, 3), 0.5), np.ones((2, 3)), [1, 1, 1], "multilabel")


@pytest.mark.parametrize(
    "params,match",
    [
        (
            {"tau": -0.5},
            r"parameter 'tau' of rule 'la_posthoc': expected a number ≥ 0, 'fit' or null",
        ),
        ({"tau": "auto"}, r"parameter 'tau' of rule 'la_posthoc': expected"),
        ({"beta": 1.0}, r"unknown parameter\(s\) beta for rule 'la_posthoc'"),
    ],
)
def test_la_posthoc_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        fit_rule("la_posthoc", np.full((2, 3), 1 / 3), [0, 1], [10, 5, 2], "multiclass", **params)


def test_la_posthoc_zero_count_raises():
    with pytest.raises(ValueError, match=r"zero count for class\(es\) \[1\]"):
        fit_rule("la_posthoc", binary_probs([0.2, 0.7]), [0, 1], [10, 0], "binary")


def test_la_posthoc_through_the_registry():
    rng = np.random.default_rng(14)
    probs = rng.dirichlet(np.ones(3), size=30)
    rule = fit_posthoc(
        "la_posthoc", probs, rng.integers(3, size=30), [20, 7, 3], "multiclass", tau=0.5
    )
    assert rule.rule_id == "la_posthoc" and rule.params == {"tau": 0.5}
