"""Post-hoc decision rules: the ``thresholding`` method of SPEC §4 and ``la_posthoc``.

``thresholding`` retrains nothing. It is fitted on a trained ``ce`` cell's *validation* predictions
and the training class counts, then applied to that cell's test predictions. :func:`fit_rule` takes
no test array at all, so a rule cannot see test data.

Per task kind:

``binary`` (a 2-class softmax; ``P(pos) = probs[:, 1]``)
    Predict positive iff ``P(pos) >= t``, with ``t`` the threshold that maximises the F-score of the
    positive class on validation (``beta = 1``: F1, SPEC). See :func:`best_threshold` for the
    search, the ties and where ``t`` sits inside the gap between validation scores.
``multiclass``
    Prior correction ``argmax_c p_c / pi_c ** tau``, ``pi_c = n_c / sum(n)`` from the training
    counts, ``tau = 1``. This equals the post-hoc mode of Menon et al.'s logit adjustment,
    ``argmax(z - tau * log pi)``. It uses no validation labels, but accepts them (and checks their
    shape) so every kind shares one signature. A zero training count is an error (``pi_c = 0``).
``multilabel`` (independent sigmoids)
    Label ``j`` is predicted iff ``p_j >= t_j``, each ``t_j`` maximising label ``j``'s F-beta on
    validation (``beta`` default 1; ``method_params: {thresholding: {beta: 2}}`` fits the thresholds
    for an F2 metric such as Dong et al.'s mean F2; ``experiments/dong.yaml`` itself runs no
    thresholding, only the paper's ce and focal at threshold 0.5). A label with no
    positive validation sample keeps ``t_j = 0.5``: its F-score is 0 at every threshold, so there
    is nothing to choose from.

``beta`` also applies to ``binary`` (default 1 = F1), so "the task's F-score" means the same for
both threshold-based kinds. ``tau`` applies only to ``multiclass``.

``la_posthoc`` (post-hoc logit adjustment, Menon et al. ICLR 2021) is defined for the single-label
kinds only (``binary`` as the 2-class softmax it is). It predicts ``argmax_c(log p_c - tau log
pi_c)``: ``log p_c`` is the logit ``z_c`` up to a per-row constant (``log p = z - logsumexp z``), so
this is the official code's ``logits - log(base_probs ** tau)`` (google-research
``logit_adjustment/main.py``, ``--mode=posthoc``), with ``pi_c = n_c / sum(n)`` the training
class frequencies. ``tau = 1`` (the default, the paper's and the official code's value) needs no
validation data; ``tau: fit`` chooses tau from ``LA_TAU_GRID`` by the balanced accuracy (mean
per-class recall, i.e. one minus the balanced error the paper targets) of the validation rows,
ties going to the tau closest to 1, then to the smaller one. The probabilities of the table are
left as they are (only the decisions change), as for ``thresholding``. In ``multiclass`` with
``tau = 1`` it takes the same decisions as ``thresholding``; in ``binary`` they differ
(``thresholding`` fits an F1 threshold there, ``la_posthoc`` thresholds ``p_1/p_0`` at
``(pi_1/pi_0) ** tau``).

Defaults without post-hoc fitting (:func:`default_rule`): ``argmax`` for single-label kinds (for
``binary``: ``p1 > p0``, a tie goes to class 0), ``p_j >= 0.5`` per label for ``multilabel``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..kinds import KINDS

# post-hoc rule id -> parameters and defaults (``None`` passed for a parameter = its default),
# declared with their types and ranges in the torch-free ``tables.py``.
from .tables import POSTHOC_DEFAULTS, POSTHOC_KINDS, POSTHOC_PARAMS

__all__ = [
    "KINDS",
    "LA_TAU_GRID",
    "POSTHOC_DEFAULTS",
    "DecisionRule",
    "best_threshold",
    "default_rule",
    "fit_rule",
]

#: the tau values ``la_posthoc`` tries when ``tau: fit`` (0 = the ce cell's own decisions).
LA_TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))

#: threshold a multi-label label keeps when validation cannot choose one.
FALLBACK_THRESHOLD = 0.5

# Probabilities may come from float32 softmax / sigmoid; allow this much outside [0, 1].
_PROB_TOL = 1e-6


@dataclass(frozen=True)
class DecisionRule:
    """A fitted decision rule: turns ``(N, K)`` probabilities into predictions.

    ``decision`` is ``"argmax"``, ``"prior_correction"`` (``argmax p / priors ** tau``),
    ``"logit_adjustment"`` (``argmax log p - tau log priors``) or ``"threshold"``: binary uses ``thresholds[0]`` on ``P(pos)``; multilabel uses one threshold per
    label, or 0.5 for every label when ``thresholds`` is ``None``. ``params`` holds the rule's
    resolved parameters; ``details`` holds fitting diagnostics (validation F-scores, fallbacks).
    """

    kind: str
    decision: str
    rule_id: str = "default"
    thresholds: tuple[float, ...] | None = None
    priors: tuple[float, ...] | None = None
    params: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def predict(self, probs: np.ndarray) -> np.ndarray:
        """Predictions for ``probs``: 1-D int labels (binary, multiclass) or an ``(N, K)`` 0/1 matrix."""
        n_classes = None
        if self.priors is not None:
            n_classes = len(self.priors)
        elif self.kind == "multilabel" and self.thresholds is not None:
            n_classes = len(self.thresholds)
        probs = _check_probs(probs, self.kind, n_classes, "probs")
        if self.decision == "argmax":
            return np.argmax(probs, axis=1).astype(np.int64)
        if self.decision == "prior_correction":
            priors = np.asarray(self.priors, dtype=float)
            return np.argmax(probs / priors ** self.params["tau"], axis=1).astype(np.int64)
        if self.decision == "logit_adjustment":
            return _adjusted_argmax(probs, np.asarray(self.priors, dtype=float), self.params["tau"])
        if self.decision == "threshold":
            if self.kind == "binary":
                return (probs[:, 1] >= self.thresholds[0]).astype(np.int64)
            thresholds = (
                np.full(probs.shape[1], FALLBACK_THRESHOLD)
                if self.thresholds is None
                else np.asarray(self.thresholds, dtype=float)
            )
            return (probs >= thresholds[None, :]).astype(np.int64)
        raise ValueError(f"unknown decision {self.decision!r}")

    def to_dict(self) -> dict:
        """JSON-serialisable description; :meth:`from_dict` rebuilds the rule."""
        return {
            "rule_id": self.rule_id,
            "kind": self.kind,
            "decision": self.decision,
            "thresholds": None if self.thresholds is None else list(self.thresholds),
            "priors": None if self.priors is None else list(self.priors),
            "params": dict(self.params),
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: dict) -> DecisionRule:
        return cls(
            kind=data["kind"],
            decision=data["decision"],
            rule_id=data.get("rule_id", "default"),
            thresholds=None
            if data.get("thresholds") is None
            else tuple(float(t) for t in data["thresholds"]),
            priors=None if data.get("priors") is None else tuple(float(p) for p in data["priors"]),
            params=dict(data.get("params", {})),
            details=dict(data.get("details", {})),
        )


def default_rule(kind: str) -> DecisionRule:
    """The rule without post-hoc fitting: argmax (binary, multiclass) or 0.5 per label (multilabel)."""
    _check_kind(kind)
    if kind == "multilabel":
        return DecisionRule(kind=kind, decision="threshold")
    return DecisionRule(kind=kind, decision="argmax")


def best_threshold(scores, positives, beta: float = 1.0) -> tuple[float, float]:
    """Threshold ``t`` maximising the F-beta of ``scores >= t`` against 0/1 ``positives``.

    Search: every distinct validation score ``u_0 < u_1 < ... < u_m`` is a candidate cut, "predict
    positive iff score >= u_j"; these are all the distinct predictions a threshold can make, except
    "nothing positive", which scores F = 0 and never wins when a positive exists.

    Ties: among cuts with the same (maximal) F-beta the *lowest* one wins, i.e. the one that predicts
    the most positives (favours recall, the costly error for a rare disease).

    Reported value: any ``t`` in ``(u_{j-1}, u_j]`` gives the same validation predictions; we return
    the midpoint ``(u_{j-1} + u_j) / 2`` of that gap (a margin on both sides for unseen data), or
    ``u_0`` itself when the best cut is the lowest score. Applying ``>= t`` to the validation scores
    reproduces the chosen predictions exactly.

    Returns ``(t, f_beta_at_t)``. Raises ``ValueError`` if ``positives`` has no positive.
    """
    scores = np.asarray(scores, dtype=float).ravel()
    positives = np.asarray(positives).ravel().astype(bool)
    if scores.shape != positives.shape or scores.size == 0:
        raise ValueError(
            f"scores and positives must be non-empty and the same length, "
            f"got {scores.shape} and {positives.shape}"
        )
    n_pos = int(positives.sum())
    if n_pos == 0:
        raise ValueError("no positive sample: the F-score is 0 at every threshold")
    beta2 = float(beta) ** 2
    cuts = np.unique(scores)  # ascending
    pos_sorted = np.sort(scores[positives])
    neg_sorted = np.sort(scores[~positives])
    # Counts of samples with score >= cut.
    tp = n_pos - np.searchsorted(pos_sorted, cuts, side="left")
    fp = neg_sorted.size - np.searchsorted(neg_sorted, cuts, side="left")
    fn = n_pos - tp
    fscore = (1 + beta2) * tp / ((1 + beta2) * tp + beta2 * fn + fp)
    # Exact ties are exact for integer-valued beta**2; the tolerance covers rounding otherwise.
    j = int(np.flatnonzero(fscore >= fscore.max() - 1e-12)[0])
    t = float(cuts[j])
    if j > 0:
        mid = 0.5 * (float(cuts[j - 1]) + t)
        if cuts[j - 1] < mid <= t:  # adjacent floats: the midpoint may round onto u_{j-1}
            t = mid
    return t, float(fscore[j])


def fit_rule(
    rule_id: str,
    val_probs: np.ndarray,
    val_labels: np.ndarray,
    train_counts,
    kind: str,
    n_train: int | None = None,
    **params,
) -> DecisionRule:
    """Fit post-hoc rule ``rule_id`` on validation predictions and training class counts.

    Args:
        rule_id: ``"thresholding"`` or ``"la_posthoc"``.
        val_probs: ``(N_val, K)`` validation probabilities (softmax; sigmoids for multilabel).
        val_labels: validation labels, 1-D class ids (binary, multiclass; may be ``None`` for
            multiclass, which does not use them) or an ``(N_val, K)`` 0/1 matrix (multilabel).
        train_counts: length-``K`` training counts: per class (binary, multiclass) or positives per
            label (multilabel).
        kind: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        n_train: number of training samples, optional; checked against ``train_counts`` and recorded.
        **params: ``POSTHOC_DEFAULTS[rule_id]`` (``tau``, ``beta``; ``la_posthoc``: ``tau``, a number
            or ``"fit"``); ``None`` means the default.
    """
    if rule_id not in POSTHOC_DEFAULTS:
        raise ValueError(
            f"unknown post-hoc rule {rule_id!r}; allowed: {', '.join(POSTHOC_DEFAULTS)}"
        )
    _check_kind(kind)
    if kind not in POSTHOC_KINDS[rule_id]:
        raise ValueError(
            f"post-hoc rule {rule_id!r} has no meaning for {kind} tasks; "
            f"allowed kinds: {', '.join(POSTHOC_KINDS[rule_id])}"
        )
    resolved = _resolve_params(rule_id, params)
    val_probs = _check_probs(val_probs, kind, None, "val_probs")
    n_val, n_classes = val_probs.shape
    counts = _check_counts(train_counts, n_classes, kind, n_train)
    details: dict = {"train_counts": counts.tolist(), "n_train": n_train, "n_val": n_val}

    if rule_id == "la_posthoc":
        return _fit_logit_adjustment(val_probs, val_labels, counts, kind, resolved["tau"], details)

    if kind == "multiclass":
        if val_labels is not None:
            _check_single_labels(val_labels, n_val, n_classes)
        if np.any(counts == 0):
            zero = np.flatnonzero(counts == 0).tolist()
            raise ValueError(
                f"prior correction needs every class in training; zero count for class(es) {zero}"
            )
        priors = counts / counts.sum()
        return DecisionRule(
            kind=kind,
            decision="prior_correction",
            rule_id=rule_id,
            priors=tuple(float(p) for p in priors),
            params={"tau": resolved["tau"]},
            details=details,
        )

    beta = resolved["beta"]
    if kind == "binary":
        labels = _check_single_labels(val_labels, n_val, 2)
        if not labels.any():
            details["fallback"] = "no positive validation sample: threshold kept at 0.5"
            details["val_fscore"] = None
            return DecisionRule(
                kind=kind,
                decision="threshold",
                rule_id=rule_id,
                thresholds=(FALLBACK_THRESHOLD,),
                params={"beta": beta},
                details=details,
            )
        t, f = best_threshold(val_probs[:, 1], labels == 1, beta)
        details["val_fscore"] = f
        return DecisionRule(
            kind=kind,
            decision="threshold",
            rule_id=rule_id,
            thresholds=(t,),
            params={"beta": beta},
            details=details,
        )

    # multilabel
    labels = _check_multilabel(val_labels, val_probs.shape)
    thresholds, fscores, fallback = [], [], []
    for j in range(n_classes):
        if not labels[:, j].any():
            thresholds.append(FALLBACK_THRESHOLD)
            fscores.append(None)
            fallback.append(j)
            continue
        t, f = best_threshold(val_probs[:, j], labels[:, j] == 1, beta)
        thresholds.append(t)
        fscores.append(f)
    details["val_fscore"] = fscores
    details["fallback_labels"] = fallback
    return DecisionRule(
        kind=kind,
        decision="threshold",
        rule_id=rule_id,
        thresholds=tuple(thresholds),
        params={"beta": beta},
        details=details,
    )


def _adjusted_argmax(probs: np.ndarray, priors: np.ndarray, tau: float) -> np.ndarray:
    """``argmax_c(log p_c - tau log pi_c)``; a probability of 0 is a logit of -inf (ties: first class)."""
    with np.errstate(divide="ignore"):
        scores = np.log(probs.clip(min=0.0)) - tau * np.log(priors)[None, :]
    return np.argmax(scores, axis=1).astype(np.int64)


def _fit_logit_adjustment(val_probs, val_labels, counts, kind, tau, details) -> DecisionRule:
    """``la_posthoc``: priors from the training counts; ``tau`` given, or chosen on validation."""
    if np.any(counts == 0):
        zero = np.flatnonzero(counts == 0).tolist()
        raise ValueError(
            f"logit adjustment needs every class in training (log pi_c); zero count for class(es) {zero}"
        )
    priors = counts / counts.sum()
    labels = (
        None
        if val_labels is None and tau != "fit"
        else _check_single_labels(val_labels, val_probs.shape[0], val_probs.shape[1])
    )
    if tau == "fit":
        from sklearn.metrics import balanced_accuracy_score

        scores = []
        for t in LA_TAU_GRID:
            pred = _adjusted_argmax(val_probs, priors, t)
            # Mean recall over the classes present in validation; sklearn warns when a prediction
            # names a class validation lacks (a wrong prediction, counted as such).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                scores.append(float(balanced_accuracy_score(labels, pred)))
        best = max(scores)
        candidates = [t for t, s in zip(LA_TAU_GRID, scores) if s >= best - 1e-12]
        tau = min(candidates, key=lambda t: (abs(t - 1.0), t))
        details.update(tau_fitted=True, tau_grid=list(LA_TAU_GRID), val_balanced_accuracy=scores)
    else:
        details["tau_fitted"] = False
    return DecisionRule(
        kind=kind,
        decision="logit_adjustment",
        rule_id="la_posthoc",
        priors=tuple(float(p) for p in priors),
        params={"tau": float(tau)},
        details=details,
    )


# --- validation helpers -------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; allowed: {', '.join(KINDS)}")


def _resolve_params(rule_id: str, params: dict) -> dict:
    defaults = POSTHOC_DEFAULTS[rule_id]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for rule {rule_id!r}; "
            f"allowed: {', '.join(defaults)}"
        )
    resolved = dict(defaults)
    for key, value in params.items():
        if value is not None:
            try:
                resolved[key] = POSTHOC_PARAMS[rule_id][key].check(value)
            except ValueError as exc:
                raise ValueError(f"parameter {key!r} of rule {rule_id!r}: {exc}") from None
    return resolved


def _check_probs(probs, kind: str, n_classes: int | None, name: str) -> np.ndarray:
    arr = np.asarray(probs, dtype=float)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, K) array, got shape {arr.shape}")
    if kind == "binary" and arr.shape[1] != 2:
        raise ValueError(
            f"binary {name} must be (N, 2) softmax probabilities, got shape {arr.shape}"
        )
    if n_classes is not None and arr.shape[1] != n_classes:
        raise ValueError(f"{name} has {arr.shape[1]} columns, the rule was fitted on {n_classes}")
    if not np.all(np.isfinite(arr)) or arr.min() < -_PROB_TOL or arr.max() > 1 + _PROB_TOL:
        raise ValueError(f"{name} must be finite probabilities in [0, 1] (got logits?)")
    return arr


def _check_counts(train_counts, n_classes: int, kind: str, n_train: int | None) -> np.ndarray:
    counts = np.asarray(train_counts)
    if counts.shape != (n_classes,):
        raise ValueError(
            f"train_counts must have one entry per class/label ({n_classes}), got shape {counts.shape}"
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise ValueError(f"train_counts must be non-negative integers, got {counts.tolist()}")
    counts = counts.astype(np.int64)
    if n_train is not None:
        if (
            isinstance(n_train, (bool, np.bool_))
            or not isinstance(n_train, (int, np.integer))
            or n_train < 1
        ):
            raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
        if kind == "multilabel" and counts.max() > n_train:
            raise ValueError(
                f"a label has more positives ({counts.max()}) than n_train ({n_train})"
            )
        if kind != "multilabel" and counts.sum() != n_train:
            raise ValueError(f"train_counts sum to {counts.sum()}, but n_train is {n_train}")
    return counts


def _check_single_labels(labels, n_val: int, n_classes: int) -> np.ndarray:
    if labels is None:
        raise ValueError("val_labels are required for this kind")
    arr = np.asarray(labels)
    if arr.shape != (n_val,):
        raise ValueError(f"val_labels must be 1-D with {n_val} entries, got shape {arr.shape}")
    if arr.size and (np.any(arr != np.round(arr)) or arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"val_labels must be class ids in [0, {n_classes})")
    return arr.astype(np.int64)


def _check_multilabel(labels, shape: tuple[int, int]) -> np.ndarray:
    if labels is None:
        raise ValueError("val_labels are required for multilabel thresholding")
    arr = np.asarray(labels)
    if arr.shape != shape:
        raise ValueError(f"multilabel val_labels must have shape {shape}, got {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("multilabel val_labels must contain only 0 and 1")
    return arr.astype(np.int64)
