"""imbench.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from imbench.metrics import (
    HEADLINE,
    KINDS,
    compute_metrics,
    metric_names,
    point_fn,
    scalar_fn,
    weighted_fn,
)

NAMES7 = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
ODIR8 = list("NDGCAHMO")


def _softmax_probs(rng, n, k, round_to=None):
    p = rng.dirichlet(np.ones(k) * 0.7, size=n)
    if round_to is not None:  # coarse values -> many tied scores
        p = np.round(p, round_to)
        p[:, -1] = 1 - p[:, :-1].sum(axis=1)
        p = np.clip(p, 0, 1)
        p /= p.sum(axis=1, keepdims=True)
    return p


def _mc_case(name):
    rng = np.random.default_rng(7)
    n, k = 300, 7
    y = rng.choice(k, size=n, p=[0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    probs = _softmax_probs(rng, n, k)
    # make probabilities informative so the metrics are not all near chance
    probs[np.arange(n), y] += rng.random(n)
    probs /= probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    if name == "absent_class":
        keep = y != 3
        y, probs, pred = y[keep], probs[keep], pred[keep]
        pred[:5] = 3  # predicted but never true
    elif name == "one_class_predicted":
        pred = np.full_like(y, 5)
    elif name == "ties":
        probs = _softmax_probs(rng, n, k, round_to=1)
        pred = probs.argmax(axis=1)
    elif name == "perfect":
        probs = np.full((len(y), k), 0.0)
        probs[np.arange(len(y)), y] = 1.0
        pred = y.copy()
    return y, probs, pred


def _sk_defined_mean_auc(y_bin_cols, probs):
    vals = [
        skm.roc_auc_score(y_bin_cols[:, c], probs[:, c])
        for c in range(probs.shape[1])
        if 0 < y_bin_cols[:, c].sum() < len(y_bin_cols)
    ]
    return np.mean(vals), len(vals)


@pytest.mark.parametrize(
    "case", ["random", "absent_class", "one_class_predicted", "ties", "perfect"]
)
def test_multiclass_matches_sklearn(case):
    y, probs, pred = _mc_case(case)
    k = len(NAMES7)
    labels = np.arange(k)
    r = compute_metrics("multiclass", y, probs, pred, NAMES7)
    s = r["scalars"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
        assert s["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
        for avg in ("macro", "weighted"):
            assert s[f"{avg}_f1"] == pytest.approx(
                skm.f1_score(y, pred, labels=labels, average=avg, zero_division=0)
            )
        assert s["macro_precision"] == pytest.approx(
            skm.precision_score(y, pred, labels=labels, average="macro", zero_division=0)
        )
        assert s["macro_recall"] == pytest.approx(
            skm.recall_score(y, pred, labels=labels, average="macro", zero_division=0)
        )
        onehot = np.eye(k, dtype=int)[y]
        auc, n_used = _sk_defined_mean_auc(onehot, probs)
        assert s["macro_auc"] == pytest.approx(auc)
        assert r["n_classes_used"]["macro_auc"] == n_used
        assert r["n_classes_used"]["balanced_accuracy"] == len(np.unique(y))
        for kk in (2, 3):
            assert s[f"top{kk}_accuracy"] == pytest.approx(
                skm.top_k_accuracy_score(y, probs, k=kk, labels=labels)
            )
        assert s["log_loss"] == pytest.approx(skm.log_loss(y, probs, labels=labels))
        assert r["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=labels).tolist()
        prec, rec, f1, sup = skm.precision_recall_fscore_support(
            y, pred, labels=labels, zero_division=0
        )
    for c, entry in enumerate(r["per_class"]):
        assert entry["class"] == NAMES7[c]
        assert entry["precision"] == pytest.approx(prec[c])
        assert entry["recall"] == pytest.approx(rec[c])
        assert entry["f1"] == pytest.approx(f1[c])
        assert entry["support"] == sup[c]
        assert entry["n_predicted"] == int((pred == c).sum())
    assert r["n"] == len(y)


def test_multiclass_all_present_auc_equals_sklearn_ovr():
    y, probs, pred = _mc_case("random")
    assert len(np.unique(y)) == 7
    r = compute_metrics("multiclass", y, probs, pred, NAMES7)
    assert r["scalars"]["macro_auc"] == pytest.approx(
        skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    )


def test_absent_class_by_hand():
    # 4 classes, class 3 never true; predicted once.
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 3])
    probs = np.full((6, 4), 0.1)
    probs[np.arange(6), pred] = 0.7
    r = compute_metrics("multiclass", y, probs, pred, ["a", "b", "c", "d"])
    s = r["scalars"]
    recalls = [0.5, 1.0, 0.5]
    assert s["balanced_accuracy"] == pytest.approx(np.mean(recalls))  # present classes only
    assert s["macro_recall"] == pytest.approx(sum(recalls) / 4)  # absent class counts as 0
    assert r["n_classes_used"] == {"balanced_accuracy": 3, "macro_auc": 3}
    d = r["per_class"][3]
    assert (d["support"], d["recall"], d["precision"], d["f1"], d["auc"]) == (
        0,
        0.0,
        0.0,
        0.0,
        None,
    )
    assert r["confusion_matrix"][3] == [0, 0, 0, 0]
    assert [row[3] for row in r["confusion_matrix"]] == [0, 0, 1, 0]
    # weighted F1 ignores the absent class (weight = support = 0)
    f1 = [2 * 1 / (2 + 1), 2 * 2 / (2 + 3), 2 * 1 / (2 + 1)]  # 2TP / (support + n_predicted)
    assert s["weighted_f1"] == pytest.approx(np.mean(f1))


def test_all_one_class_predictions_by_hand():
    y = np.array([0, 0, 0, 1, 2])
    pred = np.zeros(5, dtype=int)
    probs = np.tile([0.6, 0.3, 0.1], (5, 1))  # every score tied within a column
    s = compute_metrics("multiclass", y, probs, pred, ["a", "b", "c"])["scalars"]
    assert s["accuracy"] == pytest.approx(0.6)
    assert s["balanced_accuracy"] == pytest.approx(1 / 3)
    assert s["macro_precision"] == pytest.approx(0.6 / 3)
    assert s["macro_f1"] == pytest.approx((2 * 3 / (3 + 5)) / 3)
    assert s["macro_auc"] == pytest.approx(0.5)  # all ties
    assert s["top2_accuracy"] == pytest.approx(0.8)  # class 2 (lowest score) misses
    assert s["top3_accuracy"] is None  # K <= k


def test_perfect_predictions():
    y, probs, pred = _mc_case("perfect")
    s = compute_metrics("multiclass", y, probs, pred, NAMES7)["scalars"]
    for name in (
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "weighted_f1",
        "macro_auc",
        "top2_accuracy",
    ):
        assert s[name] == pytest.approx(1.0), name
    assert s["ece"] == pytest.approx(0.0)
    assert s["log_loss"] == pytest.approx(0.0, abs=1e-12)


def test_top_k_ties_follow_sklearn():
    # scores tied with the true class: sklearn ranks the higher class index first
    y = np.array([0, 2, 1, 3])
    probs = np.array([[0.25] * 4, [0.25] * 4, [0.4, 0.2, 0.2, 0.2], [0.1, 0.3, 0.3, 0.3]])
    pred = probs.argmax(axis=1)
    s = compute_metrics("multiclass", y, probs, pred, list("abcd"))["scalars"]
    assert s["top2_accuracy"] == pytest.approx(
        skm.top_k_accuracy_score(y, probs, k=2, labels=np.arange(4))
    )
    assert s["top2_accuracy"] == pytest.approx(0.5)  # rows 0 and 2 miss, rows 1 and 3 hit


def test_ece_hand_computed():
    # confidences 0.9 / 0.75 / 0.62 / 0.71 fall in four different bins of width 1/15
    probs = np.array([[0.9, 0.1], [0.75, 0.25], [0.62, 0.38], [0.29, 0.71]])
    y = np.array([0, 1, 0, 1])  # correct, wrong, correct, correct
    s = compute_metrics("binary", y, probs, probs.argmax(1), ["neg", "pos"])["scalars"]
    assert s["ece"] == pytest.approx((0.1 + 0.75 + 0.38 + 0.29) / 4)
    # two confidences sharing a bin (13/15, 14/15]: one right, one wrong
    probs = np.array([[0.9, 0.05, 0.05], [0.92, 0.04, 0.04], [0.1, 0.2, 0.7]])
    y = np.array([0, 1, 2])
    s = compute_metrics("multiclass", y, probs, probs.argmax(1), list("abc"))["scalars"]
    assert s["ece"] == pytest.approx(2 / 3 * abs(0.5 - 0.91) + 1 / 3 * 0.3)


def test_ece_uses_probabilities_not_y_pred():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    y = np.array([0, 1])
    a = compute_metrics("binary", y, probs, np.array([0, 1]), ["n", "p"])["scalars"]["ece"]
    b = compute_metrics("binary", y, probs, np.array([1, 1]), ["n", "p"])["scalars"]["ece"]
    assert a == b == pytest.approx((0.1 + 0.2) / 2)


@pytest.mark.parametrize("ties", [False, True])
def test_binary_matches_sklearn(ties):
    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.15).astype(int)
    p1 = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
    if ties:
        p1 = np.round(p1, 1)
    probs = np.column_stack([1 - p1, p1])
    pred = (p1 > 0.4).astype(int)
    r = compute_metrics("binary", y, probs, pred, ["rest", "mel"])
    s = r["scalars"]
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert s["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert s["auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert s["auprc"] == pytest.approx(skm.average_precision_score(y, p1))
    assert s["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert s["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert s["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert s["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert r["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=[0, 1]).tolist()
    assert r["per_class"][1]["auc"] == pytest.approx(s["auc"])
    # one-vs-rest for class 0 with p0 = 1 - p1: the same ranking, the same AUC
    assert r["per_class"][0]["auc"] == pytest.approx(s["auc"])


def test_binary_single_class_and_no_positive_predictions():
    y = np.zeros(4, dtype=int)
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]])
    pred = probs.argmax(1)
    r = compute_metrics("binary", y, probs, pred, ["n", "p"])
    s = r["scalars"]
    assert s["auc"] is None and s["auprc"] is None and s["sensitivity"] is None
    assert s["specificity"] == pytest.approx(0.75)
    assert s["balanced_accuracy"] == pytest.approx(0.75)  # mean over the class present
    assert s["precision"] == 0.0 and s["f1"] == 0.0  # zero_division=0
    assert r["n_classes_used"] == {"balanced_accuracy": 1}
    # no predicted positives at all
    y = np.array([0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    s = compute_metrics("binary", y, probs, np.zeros(3, dtype=int), ["n", "p"])["scalars"]
    assert (s["precision"], s["f1"], s["sensitivity"], s["specificity"]) == (0.0, 0.0, 0.0, 1.0)
    assert s["auc"] == pytest.approx(1.0)


def _ml_case(rng, n=200, k=8):
    y = (rng.random((n, k)) < np.linspace(0.05, 0.5, k)).astype(int)
    probs = np.clip(0.35 * y + 0.65 * rng.random((n, k)), 0, 1)
    pred = (probs > 0.45).astype(int)
    return y, probs, pred


def test_multilabel_matches_sklearn():
    rng = np.random.default_rng(11)
    y, probs, pred = _ml_case(rng)
    r = compute_metrics("multilabel", y, probs, pred, ODIR8)
    s = r["scalars"]
    assert s["macro_auc"] == pytest.approx(skm.roc_auc_score(y, probs, average="macro"))
    assert s["map"] == pytest.approx(skm.average_precision_score(y, probs, average="macro"))
    assert s["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert s["micro_f1"] == pytest.approx(skm.f1_score(y, pred, average="micro", zero_division=0))
    assert s["mean_f2"] == pytest.approx(
        skm.fbeta_score(y, pred, beta=2, average="samples", zero_division=1.0)
    )
    assert r["confusion_matrix"] is None
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, zero_division=0)
    for c, e in enumerate(r["per_class"]):
        assert (e["precision"], e["recall"], e["f1"]) == pytest.approx((prec[c], rec[c], f1[c]))
        assert e["support"] == sup[c] and e["n_predicted"] == pred[:, c].sum()
        assert e["auc"] == pytest.approx(skm.roc_auc_score(y[:, c], probs[:, c]))
        assert e["ap"] == pytest.approx(skm.average_precision_score(y[:, c], probs[:, c]))


def test_multilabel_column_without_positives():
    rng = np.random.default_rng(12)
    y, probs, pred = _ml_case(rng)
    y[:, 2] = 0
    pred[:, 2] = 0
    r = compute_metrics("multilabel", y, probs, pred, ODIR8)
    s = r["scalars"]
    others = [c for c in range(8) if c != 2]
    assert s["macro_auc"] == pytest.approx(
        np.mean([skm.roc_auc_score(y[:, c], probs[:, c]) for c in others])
    )
    assert s["map"] == pytest.approx(
        np.mean([skm.average_precision_score(y[:, c], probs[:, c]) for c in others])
    )
    assert r["n_classes_used"] == {"macro_auc": 7, "map": 7}
    assert r["per_class"][2]["auc"] is None and r["per_class"][2]["ap"] is None
    # never true and never predicted: F1 = 0 under zero_division=0, still in the macro mean
    assert s["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert r["per_class"][2]["f1"] == 0.0


def test_mean_f2_hand_computed():
    y = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    pred = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    probs = np.where(pred == 1, 0.8, 0.2)
    # F2 = 5TP / (5TP + 4FN + FP): 5/10, empty/empty = 1, 0/1 = 0, 5/8
    s = compute_metrics("multilabel", y, probs, pred, list("abcd"))["scalars"]
    assert s["mean_f2"] == pytest.approx((0.5 + 1.0 + 0.0 + 0.625) / 4)


def _official_odir(gt, pr):
    """ODIR_evaluation.py, restated: flatten, threshold 0.5, sklearn calls, mean."""
    gt = gt.flatten()
    pr = pr.flatten()
    kappa = skm.cohen_kappa_score(gt, pr > 0.5)
    f1 = skm.f1_score(gt, pr > 0.5, average="micro")
    auc = skm.roc_auc_score(gt, pr)
    return kappa, f1, auc, (kappa + f1 + auc) / 3.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_odir_score_matches_official_script(seed):
    rng = np.random.default_rng(seed)
    y, probs, pred = _ml_case(rng, n=150)
    if seed == 2:
        probs = np.round(probs, 1)  # ties, and values exactly 0.5 (not > 0.5)
        assert (probs == 0.5).any()
    s = compute_metrics("multilabel", y, probs, pred, ODIR8)["scalars"]
    kappa, f1, auc, score = _official_odir(y, probs)
    assert s["odir_kappa"] == pytest.approx(kappa)
    assert s["odir_f1"] == pytest.approx(f1)
    assert s["odir_auc"] == pytest.approx(auc)
    assert s["odir_score"] == pytest.approx(score)
    # the official "micro F1" of a flattened binary vector is its accuracy
    assert s["odir_f1"] == pytest.approx(np.mean(y.ravel() == (probs.ravel() > 0.5)))


def test_odir_ignores_y_pred_and_undefined_kappa():
    rng = np.random.default_rng(5)
    y, probs, pred = _ml_case(rng, n=50)
    a = compute_metrics("multilabel", y, probs, pred, ODIR8)["scalars"]
    b = compute_metrics("multilabel", y, probs, 1 - pred, ODIR8)["scalars"]
    assert all(a[k] == b[k] for k in ("odir_score", "odir_kappa", "odir_f1", "odir_auc"))
    assert a["macro_f1"] != b["macro_f1"]
    # no positives anywhere and nothing above 0.5: kappa 0/0, AUC undefined
    y0 = np.zeros((4, 8), dtype=int)
    s = compute_metrics("multilabel", y0, np.full((4, 8), 0.1), y0, ODIR8)["scalars"]
    assert s["odir_kappa"] is None and s["odir_auc"] is None and s["odir_score"] is None
    assert s["odir_f1"] == 1.0 and s["macro_auc"] is None and s["map"] is None
    assert s["mean_f2"] == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_result_is_strict_json(kind):
    rng = np.random.default_rng(9)
    if kind == "multilabel":
        y, probs, pred = _ml_case(rng, n=30)
        y[:, 0] = 0
        names = ODIR8
    else:
        k = 2 if kind == "binary" else 7
        probs = _softmax_probs(rng, 30, k)
        y = np.zeros(30, dtype=int)  # a single class: many undefined values
        pred = probs.argmax(1)
        names = ["n", "p"] if kind == "binary" else NAMES7
    r = compute_metrics(kind, y, probs, pred, names)
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text) == r
    assert list(r["scalars"]) == metric_names(kind)
    assert any(v is None for v in r["scalars"].values()) or any(
        e["auc"] is None for e in r["per_class"]
    )


def test_metric_names_and_headline():
    for kind in KINDS:
        assert HEADLINE[kind] in metric_names(kind)
    assert metric_names("binary")[:2] == ["accuracy", "f1"]
    with pytest.raises(ValueError, match="kind"):
        metric_names("regression")


@pytest.mark.parametrize("kind", KINDS)
def test_scalar_fn_equals_compute_metrics(kind):
    rng = np.random.default_rng(4)
    if kind == "multilabel":
        y, probs, pred = _ml_case(rng, n=60)
        names = ODIR8
    else:
        k = 2 if kind == "binary" else 7
        y = rng.integers(0, k, 60)
        probs = _softmax_probs(rng, 60, k)
        pred = probs.argmax(1)
        names = ["n", "p"] if kind == "binary" else NAMES7
    scalars = compute_metrics(kind, y, probs, pred, names)["scalars"]
    for name in metric_names(kind):
        assert scalar_fn(kind, name)(y, probs, pred) == scalars[name], name
    with pytest.raises(ValueError, match="not a"):
        scalar_fn(kind, "nonsense")


def _ok_mc():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    return np.array([0, 1]), probs, np.array([0, 1]), ["a", "b", "c"]


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda y, p, yp, c: (y, p, yp, ["a", "b"]), "probs: expected 2 columns"),
        (lambda y, p, yp, c: (np.array([0, 3]), p, yp, c), r"y_true: expected values in \[0, 2\]"),
        (lambda y, p, yp, c: (y, p, np.array([0, -1]), c), "y_pred: expected values"),
        (lambda y, p, yp, c: (np.array([0.0, 0.5]), p, yp, c), "y_true: expected integer"),
        (lambda y, p, yp, c: (y, np.where(p == 0.8, np.nan, p), yp, c), "probs: expected finite"),
        (lambda y, p, yp, c: (y, p * 2, yp, c), "probs: expected probabilities in"),
        (lambda y, p, yp, c: (y, p * 0.5, yp, c), "row 0 sums to 0.5"),
        (lambda y, p, yp, c: (y, p, np.array([0, 1, 1]), c), r"y_pred: expected a 1-D array of 2"),
        (lambda y, p, yp, c: (y[:, None], p, yp, c), "y_true: expected a 1-D array"),
        (lambda y, p, yp, c: (y, p[0], yp, c), "probs: expected a real"),
        (lambda y, p, yp, c: (np.array(["a", "b"]), p, yp, c), "y_true: expected integer labels"),
    ],
)
def test_validation_errors(change, match):
    args = change(*_ok_mc())
    with pytest.raises(ValueError, match=match):
        compute_metrics("multiclass", *args)


def test_validation_errors_other_kinds():
    probs = np.array([[0.7, 0.2, 0.1]])
    with pytest.raises(ValueError, match="class_names: expected exactly 2"):
        compute_metrics("binary", np.array([0]), probs, np.array([0]), ["a", "b", "c"])
    p = np.array([[0.2, 0.9], [0.6, 0.1]])  # sigmoid outputs need not sum to 1
    ok = compute_metrics(
        "multilabel", np.array([[0, 1], [1, 0]]), p, np.array([[0, 1], [1, 0]]), ["x", "y"]
    )
    assert ok["scalars"]["macro_auc"] == 1.0
    with pytest.raises(ValueError, match=r"y_true: expected values in \[0, 1\]"):
        compute_metrics(
            "multilabel", np.array([[0, 2], [1, 0]]), p, np.array([[0, 1], [1, 0]]), ["x", "y"]
        )
    with pytest.raises(ValueError, match=r"y_pred: expected an \(N, K\)"):
        compute_metrics("multilabel", np.array([[0, 1], [1, 0]]), p, np.array([0, 1]), ["x", "y"])
    with pytest.raises(ValueError, match="kind"):
        compute_metrics("ordinal", np.array([0]), probs, np.array([0]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="probs: expected at least one row"):
        compute_metrics(
            "multiclass",
            np.array([], dtype=int),
            np.zeros((0, 3)),
            np.array([], dtype=int),
            list("abc"),
        )


# ---------------------------------------------------------------------- hand-written and fast paths


def _random_case(kind, seed, k=None, ties=False, float32=False, n=None):
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(20, 300))
    if kind == "multilabel":
        k = k or 6
        y = (rng.random((n, k)) < 0.3).astype(int)
        probs = rng.random((n, k))
        if ties:
            probs = np.round(probs, 1)
        pred = (probs > 0.4).astype(int)
        return y, probs, pred, [f"c{i}" for i in range(k)]
    k = 2 if kind == "binary" else (k or 7)
    y = rng.choice(k, n, p=rng.dirichlet(np.ones(k)))
    probs = _softmax_probs(rng, n, k, round_to=1 if ties else None)
    if float32:
        probs = probs.astype(np.float32).astype(np.float64)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    return y, probs, pred, [f"c{i}" for i in range(k)]


CASES = [
    (s, k, t, f) for s in range(4) for k in (3, 11) for t in (False, True) for f in (False, True)
]


@pytest.mark.parametrize("seed,k,ties,float32", CASES)
def test_hand_written_metrics_equal_sklearn(seed, k, ties, float32):
    """AUC, AP, log-loss and the ODIR kappa are NumPy (exact rounding); scikit-learn agrees to
    1e-12."""
    close = {"rel": 1e-12, "abs": 1e-12}
    y, probs, pred, names = _random_case("multiclass", seed, k, ties, float32)
    r = compute_metrics("multiclass", y, probs, pred, names)
    for c, entry in enumerate(r["per_class"]):
        col = (y == c).astype(int)
        if 0 < col.sum() < len(col):
            assert entry["auc"] == pytest.approx(skm.roc_auc_score(col, probs[:, c]), **close)
        else:
            assert entry["auc"] is None
    # rows off 1 by float32 storage: the log-loss of the renormalised rows
    stored = np.clip(probs, 1e-6, 1).astype(np.float32).astype(np.float64)
    ll = compute_metrics("multiclass", y, stored, pred, names)["scalars"]["log_loss"]
    renormalised = stored / stored.sum(axis=1, keepdims=True)
    assert ll == pytest.approx(skm.log_loss(y, renormalised, labels=np.arange(k)), **close)

    y, probs, pred, names = _random_case("multilabel", seed, k, ties)
    r = compute_metrics("multilabel", y, probs, pred, names)
    for c, entry in enumerate(r["per_class"]):
        if y[:, c].any():
            ap = skm.average_precision_score(y[:, c], probs[:, c])
            assert entry["ap"] == pytest.approx(ap, **close)
    kappa, f1, auc, score = _official_odir(y, probs)
    s = r["scalars"]
    assert s["odir_kappa"] == pytest.approx(kappa, **close)
    assert s["odir_f1"] == pytest.approx(f1, **close)
    assert s["odir_auc"] == pytest.approx(auc, **close)
    assert s["odir_score"] == pytest.approx(score, **close)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed,k,ties,float32", CASES)
def test_scalar_fn_is_bit_identical_to_compute_metrics(kind, seed, k, ties, float32):
    """The bootstrap fast paths reproduce the reported point estimates exactly (the tables and
    the paired comparisons read one or the other)."""
    y, probs, pred, names = _random_case(kind, seed, k, ties, float32)
    scalars = compute_metrics(kind, y, probs, pred, names)["scalars"]
    for name in metric_names(kind):
        assert scalar_fn(kind, name)(y, probs, pred) == scalars[name], name
        assert point_fn(kind, name)(y, probs, pred) == scalars[name], name


def _sk_weighted(kind, name, y, probs, pred, w):
    """scikit-learn's value of ``name`` with ``sample_weight=w`` (NaN where undefined)."""
    labels = np.arange(probs.shape[1])
    kw = {"sample_weight": w, "zero_division": 0}
    if kind == "multilabel":
        if name == "mean_f2":
            return skm.fbeta_score(
                y, pred, beta=2, average="samples", sample_weight=w, zero_division=1.0
            )
        return skm.f1_score(y, pred, average=name.split("_")[0], **kw)
    if name == "accuracy":
        return skm.accuracy_score(y, pred, sample_weight=w)
    if name == "balanced_accuracy":
        return skm.balanced_accuracy_score(y, pred, sample_weight=w)
    if name.startswith("top"):
        k = int(name[3])
        return skm.top_k_accuracy_score(y, probs, k=k, labels=labels, sample_weight=w)
    if kind == "binary":
        if name in ("sensitivity", "specificity"):
            label = 1 if name == "sensitivity" else 0
            if w[y == label].sum() == 0:
                return np.nan
            return skm.recall_score(y, pred, labels=[0, 1], pos_label=label, **kw)
        score = {"f1": skm.f1_score, "precision": skm.precision_score}[name]
        return score(y, pred, labels=[0, 1], pos_label=1, **kw)
    average, metric = name.split("_")
    score = {"f1": skm.f1_score, "precision": skm.precision_score, "recall": skm.recall_score}
    if average == "weighted" and w[np.isin(y, labels)].sum() == 0:
        return np.nan
    return score[metric](y, pred, labels=labels, average=average, **kw)


WEIGHTED_METRICS = [
    (kind, name) for kind in KINDS for name in metric_names(kind) if weighted_fn(kind, name)
]


@pytest.mark.parametrize("kind,name", WEIGHTED_METRICS)
def test_weighted_fast_paths_equal_sklearn_sample_weight(kind, name):
    """Every replicate-weight metric equals scikit-learn's with ``sample_weight`` = the
    replicate's row multiplicities, including replicates that miss classes."""
    y, probs, pred, _ = _random_case(kind, 3, k=5, n=40)
    if kind != "multilabel":
        probs[:, 0] = probs[:, 1]  # tied scores (top-k tie rule)
        probs /= probs.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(8)
    w = rng.multinomial(len(y), np.ones(len(y)) / len(y), size=30).astype(float)
    w[0] = 1.0  # the full set
    w[1, :] = 0.0
    w[1, :3] = 2.0  # a tiny replicate: most classes missing
    got = weighted_fn(kind, name)(y, probs, pred, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = [_sk_weighted(kind, name, y, probs, pred, row) for row in w]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)
