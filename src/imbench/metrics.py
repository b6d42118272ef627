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

**Implementation.** Point estimates come from scikit-learn (``accuracy_score``,
``balanced_accuracy_score``, ``f1_score``/``precision_score``/``recall_score``,
``top_k_accuracy_score``, ``fbeta_score``, ``precision_recall_fscore_support``,
``confusion_matrix``) with the None conventions above added around them. Five
stay hand-written, each tested against scikit-learn to 1e-12: ECE (no
scikit-learn equivalent), the ROC AUC, average precision and ODIR kappa, whose
scikit-learn values differ from the exact ones in the last bits (trapezoidal
AUC, another order of summation), which would change published tables, and the
log-loss, which renormalises each row first (the stored rows sum to 1 only
within ``ROW_SUM_TOL``; scikit-learn no longer renormalises, it warns).

:func:`scalar_fn` returns a single-metric function without input validation,
for the bootstrap loops of :mod:`imbench.stats`; :func:`weighted_fn` computes a
metric on many bootstrap replicates at once. scikit-learn's input checks cost
about a millisecond a call, more than the metric, so the metrics that can be
bootstrapped have NumPy fast paths (the replicate-weight forms, the AUC and ODIR
functions, a bincount balanced accuracy, the per-sample F2) giving exactly :func:`compute_metrics`'
values; :func:`point_fn` is the scikit-learn version the tests compare them with.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from .kinds import KINDS


class _SklearnMetrics:
    """``sklearn.metrics``, imported on first use: the workflow imports this module (through
    :mod:`imbench.aggregate`) while it plans, and planning imports nothing heavy."""

    def __getattr__(self, name: str):
        from sklearn import metrics

        return getattr(metrics, name)


skm = _SklearnMetrics()


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
ODIR_PARTS = ("odir_score", "odir_kappa", "odir_f1", "odir_auc")

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


def _clean(x) -> float | None:
    """A plain float, or None for None/NaN/inf."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _mean_defined(values: Sequence[float | None]) -> tuple[float | None, int]:
    defined = [v for v in values if v is not None]
    return (float(np.mean(defined)) if defined else None), len(defined)


def _labels(probs: np.ndarray) -> np.ndarray:
    return np.arange(probs.shape[1])


# --------------------------------------------------------------------------- hand-written
#
# Kept in NumPy where scikit-learn has no equivalent (ECE) or where its value differs from the
# exact one in the last bits, which would change the published tables: the AUC (scikit-learn
# integrates the ROC curve with the trapezoidal rule; here the Mann-Whitney count gives the
# same value exactly rounded), average precision (same sum, another order) and the ODIR kappa
# (exact integer arithmetic); and the log-loss, which renormalises rows first. The tests check
# each against scikit-learn to 1e-12.


def _auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney probability P(s+ > s-) + P(s+ = s-) / 2.

    sklearn's ``roc_auc_score`` (tied scores count one half) from one sort of
    the negatives and two binary searches. ``None`` unless both positives and
    negatives are present (sklearn raises).
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
    """sklearn's ``average_precision_score``; ``None`` without positives (sklearn warns, 0).

    AP = Σ_n (R_n − R_{n−1}) P_n over the distinct score thresholds in
    decreasing order (tied scores enter together; no interpolation).
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
    precision = tp / (last + 1)
    recall_gain = np.diff(tp, prepend=0) / n_pos
    return float(np.sum(recall_gain * precision))


def _log_loss(y_true, probs, y_pred):
    """sklearn's ``log_loss(labels=range(K))`` of the renormalised rows: mean −log p_true,
    p clipped to [eps, 1 − eps]. Rows are renormalised first (validation tolerates
    ``ROW_SUM_TOL``, e.g. float16-stored softmax rows); scikit-learn >= 1.5 uses them as
    they are and warns."""
    p = probs[np.arange(probs.shape[0]), y_true] / probs.sum(axis=1)
    eps = np.finfo(np.float64).eps
    return float(-np.mean(np.log(np.clip(p, eps, 1 - eps))))


def _ece(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE (see the module docstring); scikit-learn has no calibration-error metric."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds confidences in (edges[b], edges[b+1]]; 0 goes to bin 0
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    sum_conf = np.bincount(b, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(b, weights=correct, minlength=n_bins)
    # Σ_b n_b/N · |acc_b − conf_b| = Σ_b |Σacc_b − Σconf_b| / N
    return float(np.abs(sum_acc - sum_conf).sum() / conf.size)


def _odir_parts(y_true, probs, want: str = "odir_score") -> dict[str, float | None]:
    """The official ODIR-5K score (see the module docstring) from the 2 × 2 counts of the
    flattened vectors, equal to the official scikit-learn calls (tested):

    kappa = (p_o − p_e) / (1 − p_e) in exact integers, None when p_e = 1 (sklearn's
    0/0 = NaN); micro-F1 of a binary vector = accuracy; AUC by :func:`_auc`. Only
    the parts that ``want`` needs are computed (the AUC sort is the expensive one);
    the score is bootstrapped, so this stays fast.
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


def _ranked_ahead(y_true, probs) -> np.ndarray:
    """Per row, how many classes sklearn's top-k ranking puts ahead of the true class
    (the replicate-weight top-k). Ties follow ``top_k_accuracy_score``: among equal
    scores the higher class index ranks first."""
    n_classes = probs.shape[1]
    s_true = probs[np.arange(probs.shape[0]), y_true][:, None]
    ahead = (probs > s_true).sum(axis=1)
    ahead += ((probs == s_true) & (np.arange(n_classes) > y_true[:, None])).sum(axis=1)
    return ahead


# --------------------------------------------------------------------------- scikit-learn


def _column_aucs(y_true, probs) -> list[float | None]:
    """One-vs-rest (single-label) or per-label (multi-label) AUC of every class."""
    cols = y_true.astype(bool) if y_true.ndim == 2 else (y_true[:, None] == _labels(probs))
    return [_auc(cols[:, c], probs[:, c]) for c in range(probs.shape[1])]


def _label_aps(y_true, probs) -> list[float | None]:
    return [_ap(y_true[:, c], probs[:, c]) for c in range(probs.shape[1])]


def _accuracy(y_true, probs, y_pred):
    return skm.accuracy_score(y_true, y_pred)


def _balanced_accuracy(y_true, probs, y_pred):
    """Mean recall over the classes present in ``y_true`` (binary: of sensitivity and
    specificity where defined)."""
    return skm.balanced_accuracy_score(y_true, y_pred)


def _averaged(score: str, average: str, **kw):
    """``sklearn.metrics.<score>(y_true, y_pred)`` over the fixed label set range(K),
    zero_division=0 (looked up when called, so importing this module does not import sklearn)."""

    def fn(y_true, probs, y_pred):
        labels = None if y_true.ndim == 2 else _labels(probs)
        return getattr(skm, score)(
            y_true, y_pred, labels=labels, average=average, zero_division=0, **kw
        )

    return fn


def _top_k(k: int):
    """``top_k_accuracy_score(labels=range(K))``; None when K <= k (1 by construction)."""

    def fn(y_true, probs, y_pred):
        if probs.shape[1] <= k:
            return None
        return skm.top_k_accuracy_score(y_true, probs, k=k, labels=_labels(probs))

    return fn


def _macro_auc(y_true, probs, y_pred):
    return _mean_defined(_column_aucs(y_true, probs))[0]


def _ece_fn(y_true, probs, y_pred):
    return _ece(y_true, probs)


def _recall_of(label: int):
    """Binary sensitivity (label 1) or specificity (label 0); None when ``label`` is absent."""

    def fn(y_true, probs, y_pred):
        if not np.any(y_true == label):
            return None
        return skm.recall_score(y_true, y_pred, labels=[0, 1], pos_label=label, zero_division=0)

    return fn


def _bin_auc(y_true, probs, y_pred):
    return _auc(y_true == 1, probs[:, 1])


def _bin_auprc(y_true, probs, y_pred):
    return _ap(y_true == 1, probs[:, 1])


def _ml_map(y_true, probs, y_pred):
    return _mean_defined(_label_aps(y_true, probs))[0]


def _ml_mean_f2(y_true, probs, y_pred):
    """Sample-averaged F2; a sample with no true and no predicted label scores 1.0."""
    return skm.fbeta_score(y_true, y_pred, beta=2, average="samples", zero_division=1.0)


_POINT: dict[str, dict[str, Callable]] = {
    "multiclass": {
        "accuracy": _accuracy,
        "balanced_accuracy": _balanced_accuracy,
        "macro_f1": _averaged("f1_score", "macro"),
        "weighted_f1": _averaged("f1_score", "weighted"),
        "macro_precision": _averaged("precision_score", "macro"),
        "macro_recall": _averaged("recall_score", "macro"),
        "macro_auc": _macro_auc,
        "top2_accuracy": _top_k(2),
        "top3_accuracy": _top_k(3),
        "ece": _ece_fn,
        "log_loss": _log_loss,
    },
    "binary": {
        "accuracy": _accuracy,
        "f1": _averaged("f1_score", "binary", pos_label=1),
        "auc": _bin_auc,
        "auprc": _bin_auprc,
        "sensitivity": _recall_of(1),
        "specificity": _recall_of(0),
        "balanced_accuracy": _balanced_accuracy,
        "precision": _averaged("precision_score", "binary", pos_label=1),
        "ece": _ece_fn,
    },
    "multilabel": {
        "macro_auc": _macro_auc,
        "map": _ml_map,
        "macro_f1": _averaged("f1_score", "macro"),
        "micro_f1": _averaged("f1_score", "micro"),
        "mean_f2": _ml_mean_f2,
        **{name: _odir(name) for name in ODIR_PARTS},
    },
}
assert all(tuple(_POINT[k]) == _SCALARS[k] for k in KINDS)


def point_fn(kind: str, name: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float | None]:
    """The function computing one scalar metric as :func:`compute_metrics` reports it
    (scikit-learn where it has the metric); like :func:`scalar_fn` it does not validate."""
    _check_name(kind, name)
    f = _POINT[kind][name]
    return lambda y_true, probs, y_pred: _point(f, y_true, probs, y_pred)


def _check_name(kind: str, name: str) -> None:
    _check_kind(kind)
    if name not in _POINT[kind]:
        raise ValueError(
            f"metric: {name!r} is not a {kind} metric; expected one of {', '.join(_SCALARS[kind])}"
        )


def _point(f: Callable, y_true, probs, y_pred) -> float | None:
    """``f`` with scikit-learn's warnings about undefined values silenced (they are None here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _clean(f(y_true, probs, y_pred))


def _fast_balanced_accuracy(y_true, probs, y_pred):
    """Multi-class balanced accuracy from two bincounts (the multi-class headline metric is
    bootstrapped per cell): the mean over present classes of hits / support."""
    k = probs.shape[1]
    support = np.bincount(y_true, minlength=k)
    hits = np.bincount(y_true[y_true == y_pred], minlength=k)
    present = support > 0
    return float(np.mean(hits[present] / support[present]))


def _fast_mean_f2(y_true, probs, y_pred):
    return float(np.mean(_sample_f2(y_true, y_pred)))


#: :func:`scalar_fn`'s function where it is not the replicate-weight form with one replicate
#: (whose weighted mean rounds differently from scikit-learn's plain mean).
_FAST: dict[str, dict[str, Callable]] = {
    "multiclass": {"balanced_accuracy": _fast_balanced_accuracy},
    "binary": {},
    "multilabel": {"mean_f2": _fast_mean_f2},
}


def scalar_fn(kind: str, name: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float | None]:
    """The function ``f(y_true, probs, y_pred) -> float | None`` computing one scalar metric.

    It does not validate its inputs (validate once with :func:`check_inputs`,
    then bootstrap); K is taken from ``probs.shape[1]``, so a resample that
    lacks some class is still scored over all K classes. Metrics with a fast
    path use it (same value as :func:`compute_metrics`); the others call
    scikit-learn.
    """
    _check_name(kind, name)
    if name in _FAST[kind]:
        f = _FAST[kind][name]
    elif name in _WEIGHTED[kind]:
        weighted = _WEIGHTED[kind][name]

        def f(y_true, probs, y_pred):
            return weighted(y_true, probs, y_pred, np.ones((1, len(y_true))))[0]

    else:
        return point_fn(kind, name)
    return lambda y_true, probs, y_pred: _clean(f(y_true, probs, y_pred))


# --------------------------------------------------------------------------- replicate weights
#
# The same metrics on many bootstrap replicates at once. A replicate is a vector of row
# multiplicities w (how often each test row was drawn); a metric of the resampled rows equals the
# metric of weighted counts, e.g. the confusion matrix Σ_i w_i [y_i = t][ŷ_i = p]. With the (B, N)
# matrix W of all replicates, every count is one matrix product. Each function returns a (B,)
# array, NaN where the scalar version returns None; the tests check them against scikit-learn
# with ``sample_weight`` and on explicitly resampled rows.


def _w_confusion(y_true, y_pred, k, w):
    if w.shape[0] == 1:  # one replicate (scalar_fn): a weighted bincount is cheaper
        return np.bincount(k * y_true + y_pred, weights=w[0], minlength=k * k).reshape(1, k, k)
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


def _sample_f2(y_true, y_pred) -> np.ndarray:
    """Per sample F2 = 5TP / (5TP + 4FN + FP); 1.0 with no true and no predicted label."""
    t = y_true.astype(bool)
    p = y_pred.astype(bool)
    tp, fn, fp = (t & p).sum(axis=1), (t & ~p).sum(axis=1), (~t & p).sum(axis=1)
    den = 5.0 * tp + 4.0 * fn + fp
    f2 = np.ones(den.shape)
    np.divide(5.0 * tp, den, out=f2, where=den > 0)
    return f2


def _w_ml(name: str):
    def fn(y_true, probs, y_pred, w):
        t = y_true.astype(bool)
        p = y_pred.astype(bool)
        if name == "mean_f2":
            return (w @ _sample_f2(y_true, y_pred)) / w.sum(axis=1)
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
    labels = np.arange(k)
    scalars = {name: _point(f, y_true, probs, y_pred) for name, f in _POINT[kind].items()}
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=None if kind == "multilabel" else labels, zero_division=0
    )
    aucs = _column_aucs(y_true, probs)
    if kind == "multilabel":
        predicted = y_pred.sum(axis=0)
        aps = _label_aps(y_true, probs)
        cm = None
        used = {"macro_auc": _mean_defined(aucs)[1], "map": _mean_defined(aps)[1]}
    else:
        cm_arr = skm.confusion_matrix(y_true, y_pred, labels=labels)
        predicted = cm_arr.sum(axis=0)
        aps = None
        cm = cm_arr.astype(int).tolist()
        used = {"balanced_accuracy": int((support > 0).sum())}
        if kind == "multiclass":
            used["macro_auc"] = _mean_defined(aucs)[1]
    prf = {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support,
        "predicted": predicted,
    }

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
