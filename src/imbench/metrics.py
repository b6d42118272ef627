"""Evaluation metrics computed from saved predictions (SPEC §8).

One entry point, :func:`compute_metrics`, for the three task kinds:

``multiclass``
    ``y_true`` (N,) int in [0, K); ``probs`` (N, K) softmax rows; ``y_pred`` (N,) int.
``binary``
    a two-class softmax: ``probs`` (N, 2), the positive class is class 1;
    ``y_true`` and ``y_pred`` (N,) in {0, 1}.
``multilabel``
    ``y_true`` (N, K) 0/1; ``probs`` (N, K) independent sigmoid outputs; ``y_pred`` (N, K) 0/1.

``y_pred`` is the decision the method made (argmax, a tuned threshold, prior
correction, ...). Threshold-free metrics (AUC, AP, ECE, log-loss, top-k and the
ODIR score) use ``probs``; every other metric uses ``y_pred``.

Conventions (the choices a reader of the tables needs to know):

* **Nothing is NaN.** A value the test set cannot define is ``None``: the AUC of
  a class with no positives (or no negatives), average precision of a label with
  no positives, top-k accuracy when K <= k, binary sensitivity with no positives,
  binary specificity with no negatives, Cohen's kappa when it is 0/0.
* **Averages over "where defined".** ``macro_auc`` averages the one-vs-rest AUC
  over the classes that have both positives and negatives in ``y_true``;
  ``map`` averages AP over labels with at least one positive;
  ``balanced_accuracy`` averages recall over the classes present in ``y_true``
  (scikit-learn's ``balanced_accuracy_score``). How many classes each of these
  used is reported in ``result["n_classes_used"]``. An average with no defined
  class at all is ``None``.
* **Fixed label set for precision/recall/F1.** ``macro_f1``, ``weighted_f1``,
  ``macro_precision`` and ``macro_recall`` average over *all* K classes (sklearn
  ``labels=range(K)``) with ``zero_division=0``: a class absent from the test set
  and never predicted contributes 0 to the macro averages. Hence
  ``macro_recall`` can be lower than ``balanced_accuracy`` when a class is
  missing from ``y_true``; ``weighted_f1`` gives such a class weight 0. The same
  ``zero_division=0`` rule applies to the per-class table (``support`` tells an
  absent class apart from a class with recall 0) and to binary ``precision`` and
  ``f1`` and to multi-label ``macro_f1``/``micro_f1``. (So on a binary test set
  without positives ``sensitivity`` is None while ``per_class[1]["recall"]`` is
  0.0 with ``support`` 0.)
* **Inputs** are validated once by :func:`check_inputs`: single-label rows must
  sum to 1 within ``ROW_SUM_TOL`` (loose enough for float16 storage, tight
  enough to catch logits or sigmoid outputs); every probability must be finite
  and in [0, 1]; labels must be integers in range.
* **ECE** (Guo et al. 2017, top-label): confidence = max_c p_c, correct =
  ``argmax(probs) == y_true`` (the argmax of the probabilities, not ``y_pred``:
  ECE describes the probabilities; ties go to the lowest class index); 15
  equal-width bins (lo, hi] on [0, 1] (a confidence of exactly 0 falls into the
  first bin); ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b|. Binary
  tasks use the same top-label definition on their two-class softmax.
* **mean_f2** (Dong et al. 2020, Kaggle "Planet" style): per sample,
  F2 = 5·TP / (5·TP + 4·FN + FP) over its K labels, averaged over samples. A
  sample with no true and no predicted positive has nothing to get wrong and
  scores **1.0**; a sample with no true positive label but some predicted ones
  scores 0.
* **ODIR score** reproduces the official ``ODIR_evaluation.py``: flatten the
  (patients × K) ground truth and probability matrices; kappa =
  ``cohen_kappa_score(gt, probs > 0.5)``, f1 = ``f1_score(gt, probs > 0.5,
  average='micro')``, auc = ``roc_auc_score(gt, probs)``, score = mean of the
  three. It thresholds the probabilities itself at 0.5 (strictly greater) and
  **ignores y_pred**, so a tuned-threshold method is scored by the challenge rule
  on its probabilities. Note that sklearn's micro-F1 of a flattened *binary*
  vector averages over both values 0 and 1, so the official "F1" equals the
  flattened accuracy at 0.5; we keep that quirk for comparability with the
  challenge leaderboard (our own ``micro_f1`` is the usual positive-label one).

:func:`scalar_fn` returns a single-metric function without input validation,
for use inside :mod:`imbench.stats` bootstrap loops. For speed there, every
metric is computed with NumPy from counts, sorts and binary searches rather than
by calling scikit-learn (whose input checks cost milliseconds per call); the
tests check each one against the scikit-learn function it reproduces.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .kinds import KINDS

#: The metric each kind is ranked by in headline tables and heat-maps:
#: balanced accuracy (BBFL "mean accuracy"; insensitive to class frequencies),
#: F1 of the positive class for binary tasks, and the official challenge score
#: for multi-label ODIR.
HEADLINE = {"multiclass": "balanced_accuracy", "binary": "f1", "multilabel": "odir_score"}

#: Number of equal-width confidence bins of the expected calibration error.
ECE_BINS = 15
#: |row sum - 1| allowed for single-label probabilities. Loose enough for
#: float16-stored softmax outputs, tight enough to catch logits or sigmoids.
ROW_SUM_TOL = 1e-2
#: Probability threshold of the official ODIR score.
ODIR_THRESHOLD = 0.5

_SCALARS = {
    "multiclass": (
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "weighted_f1",
        "macro_precision",
        "macro_recall",
        "macro_auc",
        "top2_accuracy",
        "top3_accuracy",
        "ece",
        "log_loss",
    ),
    "binary": (
        "accuracy",
        "f1",
        "auc",
        "auprc",
        "sensitivity",
        "specificity",
        "balanced_accuracy",
        "precision",
        "ece",
    ),
    "multilabel": (
        "macro_auc",
        "map",
        "macro_f1",
        "micro_f1",
        "mean_f2",
        "odir_score",
        "odir_kappa",
        "odir_f1",
        "odir_auc",
    ),
}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def metric_names(kind: str) -> list[str]:
    """Names of the scalar metrics :func:`compute_metrics` returns for ``kind``, in table order."""
    _check_kind(kind)
    return list(_SCALARS[kind])


# --------------------------------------------------------------------------- helpers


def _ratio(num: float, den: float, undefined: float | None = 0.0) -> float | None:
    """num / den, or ``undefined`` when den == 0 (sklearn's zero_division)."""
    return float(num) / float(den) if den > 0 else undefined


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Elementwise num / den with 0 where den == 0 (zero_division=0)."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _clean(x) -> float | None:
    """A plain float, or None for None/NaN/inf."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _mean_defined(values: Sequence[float | None]) -> tuple[float | None, int]:
    defined = [v for v in values if v is not None]
    return (float(np.mean(defined)) if defined else None), len(defined)


def _auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney probability P(s+ > s-) + P(s+ = s-) / 2.

    Identical to sklearn's trapezoidal ``roc_auc_score`` (tied scores count one
    half) but several times faster (one sort of the negatives and two binary
    searches), which matters inside bootstrap loops. ``None`` unless both
    positives and negatives are present.
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    neg = np.sort(score[~positive])
    pos = score[positive]
    below = np.searchsorted(neg, pos, side="left").sum()  # negatives strictly lower
    below_or_tied = np.searchsorted(neg, pos, side="right").sum()  # ... lower or equal
    return float((below + below_or_tied) / 2.0 / (n_pos * n_neg))


def _ap(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Average precision as sklearn's ``average_precision_score``; ``None`` without positives.

    AP = Σ_n (R_n − R_{n−1}) P_n over the distinct score thresholds in
    decreasing order (tied scores enter together; no interpolation).
    Re-implemented because sklearn's checks dominate bootstrap run time.
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    s = score[order]
    hit = positive[order]
    # last index of every run of equal scores = one threshold
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    tp = np.cumsum(hit)[last]
    n_above = last + 1
    precision = tp / n_above
    recall_gain = np.diff(tp, prepend=0) / n_pos
    return float(np.sum(recall_gain * precision))


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """K × K counts, rows = true class, columns = predicted class."""
    return np.bincount(k * y_true + y_pred, minlength=k * k).reshape(k, k)


def _prf(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 (zero_division=0), support and predicted counts."""
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    return {
        "precision": _safe_div(tp, predicted),
        "recall": _safe_div(tp, support),
        # F1 = 2TP / (2TP + FP + FN) = 2TP / (support + predicted)
        "f1": _safe_div(2 * tp, support + predicted),
        "support": support,
        "predicted": predicted,
    }


def _ece(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds confidences in (edges[b], edges[b+1]]; 0 goes to bin 0
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    sum_conf = np.bincount(b, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(b, weights=correct, minlength=n_bins)
    # Σ_b n_b/N · |acc_b − conf_b| = Σ_b |Σacc_b − Σconf_b| / N
    return float(np.abs(sum_acc - sum_conf).sum() / conf.size)


# --------------------------------------------------------------------------- single-label


def _mc_top_k(k: int):
    """Top-k accuracy exactly as sklearn's ``top_k_accuracy_score(labels=range(K))``.

    Re-implemented (sklearn's input checks dominate its run time in bootstrap
    loops). Ties follow sklearn: classes are ranked by a stable ascending sort
    reversed, so among equal scores the higher class index ranks first.
    ``None`` when K <= k (the metric would be 1 by construction).
    """

    def fn(y_true, probs, y_pred):
        if probs.shape[1] <= k:
            return None
        return float(np.mean(_ranked_ahead(y_true, probs) < k))

    return fn


def _ranked_ahead(y_true, probs) -> np.ndarray:
    """Per row, how many classes sklearn's top-k ranking puts ahead of the true class."""
    n_classes = probs.shape[1]
    s_true = probs[np.arange(probs.shape[0]), y_true][:, None]
    ahead = (probs > s_true).sum(axis=1)
    ahead += ((probs == s_true) & (np.arange(n_classes) > y_true[:, None])).sum(axis=1)
    return ahead


def _mc_macro_auc(y_true, probs, y_pred):
    return _mean_defined(_ovr_aucs(y_true, probs))[0]


def _ovr_aucs(y_true, probs) -> list[float | None]:
    return [_auc(y_true == c, probs[:, c]) for c in range(probs.shape[1])]


def _mc_balanced_accuracy(y_true, probs, y_pred):
    k = probs.shape[1]
    m = _prf(_confusion(y_true, y_pred, k))
    present = m["support"] > 0
    return float(m["recall"][present].mean()) if present.any() else None


def _mc_log_loss(y_true, probs, y_pred):
    """sklearn's ``log_loss(labels=range(K))``: mean −log p_true, p clipped to [eps, 1 − eps].

    Rows are renormalised first (validation tolerates ``ROW_SUM_TOL``).
    """
    p = probs[np.arange(probs.shape[0]), y_true] / probs.sum(axis=1)
    eps = np.finfo(np.float64).eps
    return float(-np.mean(np.log(np.clip(p, eps, 1 - eps))))


def _from_prf(key: str, how: str):
    def fn(y_true, probs, y_pred):
        m = _prf(_confusion(y_true, y_pred, probs.shape[1]))
        if how == "macro":
            return float(m[key].mean())
        return float((m[key] * m["support"]).sum() / m["support"].sum())

    return fn


def _accuracy(y_true, probs, y_pred):
    return float(np.mean(y_true == y_pred))


def _bin_counts(y_true, y_pred):
    tn, fp, fn, tp = _confusion(y_true, y_pred, 2).ravel()
    return tp, fp, fn, tn


def _bin_f1(y_true, probs, y_pred):
    tp, fp, fn, _ = _bin_counts(y_true, y_pred)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _bin_precision(y_true, probs, y_pred):
    tp, fp, _, _ = _bin_counts(y_true, y_pred)
    return _ratio(tp, tp + fp)


def _bin_sensitivity(y_true, probs, y_pred):
    tp, _, fn, _ = _bin_counts(y_true, y_pred)
    return _ratio(tp, tp + fn, None)


def _bin_specificity(y_true, probs, y_pred):
    _, fp, _, tn = _bin_counts(y_true, y_pred)
    return _ratio(tn, tn + fp, None)


def _bin_balanced_accuracy(y_true, probs, y_pred):
    return _mean_defined(
        [_bin_sensitivity(y_true, probs, y_pred), _bin_specificity(y_true, probs, y_pred)]
    )[0]


def _bin_auc(y_true, probs, y_pred):
    return _auc(y_true == 1, probs[:, 1])


def _bin_auprc(y_true, probs, y_pred):
    return _ap(y_true == 1, probs[:, 1])


def _ece_fn(y_true, probs, y_pred):
    return _ece(y_true, probs)


# --------------------------------------------------------------------------- multi-label


def _ml_counts(y_true, y_pred):
    t = y_true.astype(bool)
    p = y_pred.astype(bool)
    tp = (t & p).sum(axis=0)
    fp = (~t & p).sum(axis=0)
    fn = (t & ~p).sum(axis=0)
    tn = (~t & ~p).sum(axis=0)
    return tp, fp, fn, tn


def _ml_label_aucs(y_true, probs) -> list[float | None]:
    return [_auc(y_true[:, c] == 1, probs[:, c]) for c in range(probs.shape[1])]


def _ml_label_aps(y_true, probs) -> list[float | None]:
    return [_ap(y_true[:, c], probs[:, c]) for c in range(probs.shape[1])]


def _ml_macro_auc(y_true, probs, y_pred):
    return _mean_defined(_ml_label_aucs(y_true, probs))[0]


def _ml_map(y_true, probs, y_pred):
    return _mean_defined(_ml_label_aps(y_true, probs))[0]


def _ml_macro_f1(y_true, probs, y_pred):
    tp, fp, fn, _ = _ml_counts(y_true, y_pred)
    return float(_safe_div(2 * tp, 2 * tp + fp + fn).mean())


def _ml_micro_f1(y_true, probs, y_pred):
    tp, fp, fn, _ = (c.sum() for c in _ml_counts(y_true, y_pred))
    return _ratio(2 * tp, 2 * tp + fp + fn)


def _ml_mean_f2(y_true, probs, y_pred):
    t = y_true.astype(bool)
    p = y_pred.astype(bool)
    tp = (t & p).sum(axis=1)
    fn = (t & ~p).sum(axis=1)
    fp = (~t & p).sum(axis=1)
    den = 5.0 * tp + 4.0 * fn + fp
    f2 = np.ones(den.shape)  # no true and no predicted positive: 1.0
    np.divide(5.0 * tp, den, out=f2, where=den > 0)
    return float(f2.mean())


def _odir_parts(y_true, probs, want: str = "odir_score") -> dict[str, float | None]:
    """The official ODIR-5K score on the flattened matrices (see module docstring).

    Computed from the 2 × 2 counts of the flattened vectors, with the same
    values as the official sklearn calls (checked against them in the tests):
    kappa = (p_o − p_e) / (1 − p_e), None when p_e = 1 (sklearn's 0/0 = NaN);
    micro-F1 of a binary vector = accuracy; AUC by :func:`_auc`. Only the parts
    that ``want`` needs are computed (the AUC sort is the expensive one).
    """
    gt = np.asarray(y_true).ravel().astype(bool)
    pr = np.asarray(probs, dtype=float).ravel()
    parts: dict[str, float | None] = {}
    if want in ("odir_score", "odir_kappa", "odir_f1"):
        hard = pr > ODIR_THRESHOLD
        n = gt.size
        tp = int(np.count_nonzero(gt & hard))
        tn = n - int(np.count_nonzero(gt ^ hard)) - tp
        n_gt, n_hard = int(gt.sum()), int(hard.sum())
        agree = tp + tn
        chance = n_gt * n_hard + (n - n_gt) * (n - n_hard)  # n² · p_e, exact in integers
        parts["odir_kappa"] = (n * agree - chance) / (n * n - chance) if n * n != chance else None
        parts["odir_f1"] = agree / n
    if want in ("odir_score", "odir_auc"):
        parts["odir_auc"] = _auc(gt, pr)
    if want == "odir_score":
        vals = [parts["odir_kappa"], parts["odir_f1"], parts["odir_auc"]]
        parts["odir_score"] = None if None in vals else sum(vals) / 3.0
    return parts


def _odir(name: str):
    def fn(y_true, probs, y_pred):
        return _odir_parts(y_true, probs, name)[name]

    return fn


_FUNCS: dict[str, dict[str, Callable]] = {
    "multiclass": {
        "accuracy": _accuracy,
        "balanced_accuracy": _mc_balanced_accuracy,
        "macro_f1": _from_prf("f1", "macro"),
        "weighted_f1": _from_prf("f1", "weighted"),
        "macro_precision": _from_prf("precision", "macro"),
        "macro_recall": _from_prf("recall", "macro"),
        "macro_auc": _mc_macro_auc,
        "top2_accuracy": _mc_top_k(2),
        "top3_accuracy": _mc_top_k(3),
        "ece": _ece_fn,
        "log_loss": _mc_log_loss,
    },
    "binary": {
        "accuracy": _accuracy,
        "f1": _bin_f1,
        "auc": _bin_auc,
        "auprc": _bin_auprc,
        "sensitivity": _bin_sensitivity,
        "specificity": _bin_specificity,
        "balanced_accuracy": _bin_balanced_accuracy,
        "precision": _bin_precision,
        "ece": _ece_fn,
    },
    "multilabel": {
        "macro_auc": _ml_macro_auc,
        "map": _ml_map,
        "macro_f1": _ml_macro_f1,
        "micro_f1": _ml_micro_f1,
        "mean_f2": _ml_mean_f2,
        "odir_score": _odir("odir_score"),
        "odir_kappa": _odir("odir_kappa"),
        "odir_f1": _odir("odir_f1"),
        "odir_auc": _odir("odir_auc"),
    },
}
assert all(tuple(_FUNCS[k]) == _SCALARS[k] for k in KINDS)


def scalar_fn(kind: str, name: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float | None]:
    """The function ``f(y_true, probs, y_pred) -> float | None`` computing one scalar metric.

    It does not validate its inputs (validate once with :func:`check_inputs`,
    then bootstrap); K is taken from ``probs.shape[1]``, so a resample that
    lacks some class is still scored over all K classes.
    """
    _check_kind(kind)
    if name not in _FUNCS[kind]:
        raise ValueError(
            f"metric: {name!r} is not a {kind} metric; expected one of {', '.join(_SCALARS[kind])}"
        )
    f = _FUNCS[kind][name]
    return lambda y_true, probs, y_pred: _clean(f(y_true, probs, y_pred))


# --------------------------------------------------------------------------- replicate weights
#
# The same metrics on many bootstrap replicates at once. A replicate is a vector of row
# multiplicities w (how often each test row was drawn); a metric of the resampled rows equals the
# metric of weighted counts, e.g. the confusion matrix Σ_i w_i [y_i = t][ŷ_i = p]. With the (B, N)
# matrix W of all replicates, every count is one matrix product. Each function returns a (B,)
# array, NaN where the scalar version returns None; the tests check them against the scalar
# functions on explicitly resampled rows.


def _w_confusion(y_true, y_pred, k, w):
    onehot = np.zeros((y_true.size, k * k))
    onehot[np.arange(y_true.size), k * y_true + y_pred] = 1.0
    return (w @ onehot).reshape(-1, k, k)


def _w_div(num, den, undefined=0.0):
    out = np.full(np.broadcast(num, den).shape, undefined, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _w_prf(cm):
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    return tp, support, predicted


def _w_accuracy(y_true, probs, y_pred, w):
    hit = (y_true == y_pred).astype(float)
    return (w @ hit) / w.sum(axis=1)


def _w_mc_balanced_accuracy(y_true, probs, y_pred, w):
    tp, support, _ = _w_prf(_w_confusion(y_true, y_pred, probs.shape[1], w))
    present = support > 0
    recall = _w_div(tp, support)
    n = present.sum(axis=1)
    return _w_div((recall * present).sum(axis=1), n, np.nan)


def _w_from_prf(key: str, how: str):
    def fn(y_true, probs, y_pred, w):
        tp, support, predicted = _w_prf(_w_confusion(y_true, y_pred, probs.shape[1], w))
        value = {
            "f1": _w_div(2 * tp, support + predicted),
            "precision": _w_div(tp, predicted),
            "recall": _w_div(tp, support),
        }[key]
        if how == "macro":
            return value.mean(axis=1)
        return _w_div((value * support).sum(axis=1), support.sum(axis=1), np.nan)

    return fn


def _w_top_k(k: int):
    def fn(y_true, probs, y_pred, w):
        if probs.shape[1] <= k:
            return np.full(w.shape[0], np.nan)
        return (w @ (_ranked_ahead(y_true, probs) < k).astype(float)) / w.sum(axis=1)

    return fn


def _w_bin_counts(y_true, y_pred, w):
    cm = _w_confusion(y_true, y_pred, 2, w)
    return cm[:, 1, 1], cm[:, 0, 1], cm[:, 1, 0], cm[:, 0, 0]  # tp, fp, fn, tn


def _w_bin(name: str):
    def fn(y_true, probs, y_pred, w):
        tp, fp, fn_, tn = _w_bin_counts(y_true, y_pred, w)
        if name == "f1":
            return _w_div(2 * tp, 2 * tp + fp + fn_)
        if name == "precision":
            return _w_div(tp, tp + fp)
        sens = _w_div(tp, tp + fn_, np.nan)
        spec = _w_div(tn, tn + fp, np.nan)
        if name == "sensitivity":
            return sens
        if name == "specificity":
            return spec
        both = np.stack([sens, spec])
        n = np.isfinite(both).sum(axis=0)
        return _w_div(
            np.nansum(both, axis=0), n, np.nan
        )  # balanced accuracy over the defined parts

    return fn


def _w_ml(name: str):
    def fn(y_true, probs, y_pred, w):
        t = y_true.astype(bool)
        p = y_pred.astype(bool)
        if name == "mean_f2":
            tp, fn_, fp = (t & p).sum(axis=1), (t & ~p).sum(axis=1), (~t & p).sum(axis=1)
            den = 5.0 * tp + 4.0 * fn_ + fp
            f2 = np.ones(den.shape)
            np.divide(5.0 * tp, den, out=f2, where=den > 0)
            return (w @ f2) / w.sum(axis=1)
        tp, fp, fn_ = (
            (w @ (t & p).astype(float)),
            (w @ (~t & p).astype(float)),
            (w @ (t & ~p).astype(float)),
        )
        if name == "macro_f1":
            return _w_div(2 * tp, 2 * tp + fp + fn_).mean(axis=1)
        tp, fp, fn_ = tp.sum(axis=1), fp.sum(axis=1), fn_.sum(axis=1)
        return _w_div(2 * tp, 2 * tp + fp + fn_)  # micro_f1

    return fn


_WEIGHTED: dict[str, dict[str, Callable]] = {
    "multiclass": {
        "accuracy": _w_accuracy,
        "balanced_accuracy": _w_mc_balanced_accuracy,
        "macro_f1": _w_from_prf("f1", "macro"),
        "weighted_f1": _w_from_prf("f1", "weighted"),
        "macro_precision": _w_from_prf("precision", "macro"),
        "macro_recall": _w_from_prf("recall", "macro"),
        "top2_accuracy": _w_top_k(2),
        "top3_accuracy": _w_top_k(3),
    },
    "binary": {
        "accuracy": _w_accuracy,
        **{
            name: _w_bin(name)
            for name in ("f1", "precision", "sensitivity", "specificity", "balanced_accuracy")
        },
    },
    "multilabel": {name: _w_ml(name) for name in ("mean_f2", "macro_f1", "micro_f1")},
}


def weighted_fn(kind: str, name: str) -> Callable | None:
    """``f(y_true, probs, y_pred, w) -> (B,)`` computing ``name`` on every row-weight vector of the
    (B, N) matrix ``w`` at once (NaN where undefined), or None for metrics only computed one replicate
    at a time (the AUC family, AP, ECE, log-loss, the ODIR score)."""
    _check_kind(kind)
    return _WEIGHTED[kind].get(name)


# --------------------------------------------------------------------------- validation


def _as_labels(name: str, a, shape_text: str, n_classes: int, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {shape_text}, got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name}: expected integer labels, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: expected integer labels, got non-integer values")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(
            f"{name}: expected values in [0, {n_classes - 1}], got min {arr.min()} and max {arr.max()}"
        )
    return arr


def check_inputs(kind: str, y_true, probs, y_pred, class_names: Sequence[str]):
    """Validate and convert the inputs of :func:`compute_metrics`.

    Returns ``(y_true, probs, y_pred)`` as int64 / float64 arrays; raises one
    ``ValueError`` naming the offending array and what was expected.
    """
    _check_kind(kind)
    if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
        raise ValueError("class_names: expected a list of class-name strings")
    k = len(class_names)
    min_k = {"multiclass": 2, "binary": 2, "multilabel": 1}[kind]
    if k < min_k or (kind == "binary" and k != 2):
        want = "exactly 2 (negative, positive)" if kind == "binary" else f"at least {min_k}"
        raise ValueError(f"class_names: expected {want} names for a {kind} task, got {k}")

    p = np.asarray(probs)
    if (
        p.ndim != 2
        or not np.issubdtype(p.dtype, np.number)
        or np.issubdtype(p.dtype, np.complexfloating)
    ):
        raise ValueError(
            f"probs: expected a real (N, {k}) array, got shape {p.shape} and dtype {p.dtype}"
        )
    n = p.shape[0]
    if n == 0:
        raise ValueError("probs: expected at least one row, got 0")
    if p.shape[1] != k:
        raise ValueError(f"probs: expected {k} columns (one per class name), got shape {p.shape}")
    p = p.astype(np.float64)
    if not np.all(np.isfinite(p)):
        raise ValueError("probs: expected finite probabilities, found NaN or inf")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(
            f"probs: expected probabilities in [0, 1], got min {p.min():g} and max {p.max():g}"
        )

    if kind == "multilabel":
        shape_text = f"an (N, K) = ({n}, {k}) 0/1 matrix"
        yt = _as_labels("y_true", y_true, shape_text, 2, 2)
        yp = _as_labels("y_pred", y_pred, shape_text, 2, 2)
        for name, arr in (("y_true", yt), ("y_pred", yp)):
            if arr.shape != (n, k):
                raise ValueError(f"{name}: expected {shape_text}, got shape {arr.shape}")
    else:
        sums = p.sum(axis=1)
        worst = int(np.argmax(np.abs(sums - 1)))
        if abs(sums[worst] - 1) > ROW_SUM_TOL:
            raise ValueError(
                f"probs: expected rows summing to 1 (softmax), row {worst} sums to {sums[worst]:g}"
            )
        shape_text = f"a 1-D array of {n} class indices"
        yt = _as_labels("y_true", y_true, shape_text, k, 1)
        yp = _as_labels("y_pred", y_pred, shape_text, k, 1)
        for name, arr in (("y_true", yt), ("y_pred", yp)):
            if arr.shape != (n,):
                raise ValueError(f"{name}: expected {shape_text}, got shape {arr.shape}")
    return yt, p, yp


# --------------------------------------------------------------------------- entry point


def compute_metrics(
    kind: str, y_true: np.ndarray, probs: np.ndarray, y_pred: np.ndarray, class_names: list[str]
) -> dict:
    """All metrics of one prediction set, as a JSON-serialisable dict.

    Returns ``{"scalars": {name: float | None}, "per_class": [...],
    "confusion_matrix": [[int]] | None, "n_classes_used": {...}, "n": N}``.

    * ``per_class``: one entry per class in ``class_names`` order with
      ``class``, ``precision``, ``recall``, ``f1`` (zero_division=0),
      ``support`` (true count; positives for multi-label), ``n_predicted`` and
      ``auc`` (one-vs-rest; None where undefined); multi-label entries add
      ``ap`` (None without positives).
    * ``confusion_matrix``: K × K, rows = true, columns = predicted, every class
      included; ``None`` for multi-label tasks.
    * ``n_classes_used``: how many classes each "where defined" average used
      (``balanced_accuracy`` and ``macro_auc`` for multi-class, ``macro_auc``
      and ``map`` for multi-label, ``balanced_accuracy`` for binary = number of
      classes present).
    """
    y_true, probs, y_pred = check_inputs(kind, y_true, probs, y_pred, class_names)
    k = len(class_names)
    scalars = {name: _clean(f(y_true, probs, y_pred)) for name, f in _FUNCS[kind].items()}

    if kind == "multilabel":
        tp, fp, fn, _ = _ml_counts(y_true, y_pred)
        support = tp + fn
        predicted = tp + fp
        prf = {
            "precision": _safe_div(tp, predicted),
            "recall": _safe_div(tp, support),
            "f1": _safe_div(2 * tp, support + predicted),
            "support": support,
            "predicted": predicted,
        }
        aucs = _ml_label_aucs(y_true, probs)
        aps = _ml_label_aps(y_true, probs)
        cm = None
        used = {"macro_auc": _mean_defined(aucs)[1], "map": _mean_defined(aps)[1]}
    else:
        cm_arr = _confusion(y_true, y_pred, k)
        prf = _prf(cm_arr)
        aucs = _ovr_aucs(y_true, probs)
        aps = None
        cm = cm_arr.astype(int).tolist()
        n_present = int((prf["support"] > 0).sum())
        used = {"balanced_accuracy": n_present}
        if kind == "multiclass":
            used["macro_auc"] = _mean_defined(aucs)[1]

    per_class = []
    for c, name in enumerate(class_names):
        entry = {
            "class": name,
            "precision": float(prf["precision"][c]),
            "recall": float(prf["recall"][c]),
            "f1": float(prf["f1"][c]),
            "support": int(prf["support"][c]),
            "n_predicted": int(prf["predicted"][c]),
            "auc": _clean(aucs[c]),
        }
        if aps is not None:
            entry["ap"] = _clean(aps[c])
        per_class.append(entry)

    return {
        "scalars": scalars,
        "per_class": per_class,
        "confusion_matrix": cm,
        "n_classes_used": used,
        "n": int(probs.shape[0]),
    }


# ----------------------------------------------------------------------------- many/medium/few shots

#: Training-count thresholds of the shot groups (Liu et al., CVPR 2019, "Large-Scale Long-Tailed
#: Recognition in an Open World", ImageNet-LT): many-shot classes have more than 100 training
#: images, medium-shot 20–100, few-shot fewer than 20 (config ``evaluation.shot_thresholds``).
SHOT_THRESHOLDS = (20, 100)
SHOT_GROUPS = ("many", "medium", "few")


def check_shot_thresholds(value, key: str = "evaluation.shot_thresholds") -> tuple[float, float]:
    """``[low, high]`` with 0 < low ≤ high: absolute training counts, or, when both are below 1,
    fractions of the largest class's training count. One ``ValueError`` line naming ``key``."""
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and all(math.isfinite(v) and v > 0 for v in value)
        and value[0] <= value[1]
    )
    if not ok:
        raise ValueError(
            f"config key '{key}': expected [low, high] with 0 < low <= high (training images; "
            f"both below 1: fractions of the largest class), got {value!r}"
        )
    if (value[0] < 1) != (value[1] < 1):
        raise ValueError(
            f"config key '{key}': {list(value)} mixes a fraction (< 1) with a count (>= 1)"
        )
    return float(value[0]), float(value[1])


def shot_group(counts, thresholds=SHOT_THRESHOLDS) -> list[str]:
    """``many``/``medium``/``few`` of each class from its training count: many when count > high,
    few when count < low, medium otherwise (so 20–100 inclusive is medium at the default). With
    thresholds below 1 the bounds are those fractions of the largest count."""
    low, high = check_shot_thresholds(list(thresholds))
    counts = np.asarray(counts, dtype=float)
    if high < 1:
        top = counts.max() if len(counts) else 0.0
        low, high = low * top, high * top
    return ["many" if n > high else "few" if n < low else "medium" for n in counts]


def shot_recalls(counts, recalls, thresholds=SHOT_THRESHOLDS) -> dict:
    """Mean recall over the classes of each shot group (NaN for an empty group; classes without a
    recall are left out) and the number of classes in each: ``{"many": .., "n_many": .., ...}``."""
    groups = np.array(shot_group(counts, thresholds))
    rec = np.array([np.nan if r is None else float(r) for r in recalls], dtype=float)
    out = {}
    for g in SHOT_GROUPS:
        sel = rec[(groups == g) & ~np.isnan(rec)]
        out[g] = float(sel.mean()) if len(sel) else float("nan")
        out[f"n_{g}"] = int((groups == g).sum())
    return out
