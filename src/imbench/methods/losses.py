"""Loss functions of the imbalance methods benchmarked by imbench.

One factory, :func:`make_loss`, builds every loss from a loss id, the training
class counts and the task kind.  Each returned module is called as
``loss(logits, targets)`` and returns a scalar tensor.

Conventions shared by all losses
--------------------------------
* Single-label tasks (``multiclass`` and ``binary``): ``logits`` is (B, K) and
  ``targets`` holds int64 class indices (B,).  A binary task is a 2-class
  softmax problem (K = 2, class 1 = positive), so every multi-class loss is
  also a binary loss, unchanged.
* Multi-label tasks: ``logits`` is (B, K) and ``targets`` a 0/1 float matrix
  (B, K); ``class_counts`` holds the positive count of each label and
  ``n_samples`` the number of training samples (n_neg = n_samples - n_pos).
* ``n_c`` = training count of class c, ``N`` = Σ n_c (single-label) or
  ``n_samples`` (multi-label), ``K`` = number of classes/labels,
  ``π_c = n_c / N``, ``p = softmax(z)``, ``p_t = p[y]``.
* "weighted mean" = Σ_i w_{y_i} l_i / Σ_i w_{y_i} (PyTorch ``weight=``);
  "mean" = ÷ batch size B, even when per-sample factors are applied;
  "element mean" = ÷ (B·K).
* Every log-probability comes from ``log_softmax``/``logsigmoid``-type
  primitives (``F.cross_entropy``, ``F.binary_cross_entropy_with_logits``,
  ``F.softplus``); no ``log(softmax(z))``.  Focal modulators (1 - p_t)^γ are
  computed as ``-expm1(log p_t)`` (softmax) or ``sigmoid(∓z)`` (sigmoid), and
  clamped at the smallest normal float before the power, so that logits of
  ±1e4 give finite values and gradients for every γ ≥ 0.
* Half-precision logits are promoted to float32 inside the loss; float32 and
  float64 logits are used as they are.  Class weights and margins are buffers
  (``.to(device)`` / ``.to(torch.float64)`` move them) and are cast to the
  logits' dtype at every call; nothing is created on a fixed device.
* Parameters passed as ``None`` take their default.  Every module carries
  ``loss_id``, ``kind``, ``num_classes``, ``params``
  (the resolved parameters: exactly the keys of ``LOSS_DEFAULTS[loss_id]``,
  JSON-serialisable) and ``class_weights`` (which per-class weights it applies,
  a token of ``LOSS_CLASS_WEIGHTS``).

See ``docs/methods.md`` for the table of methods and for every choice made
where public implementations disagree.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "KINDS",
    "LOSS_DEFAULTS",
    "LOSS_KINDS",
    "LOSS_CLASS_WEIGHTS",
    "LMF_PAPER_ALPHA_BETA",
    "make_loss",
    "balanced_class_weights",
    "bwcce_class_weights",
    "class_balanced_weights",
    "ldam_margins",
    "drw_switch_epoch",
    "ImbalanceLoss",
    "SoftmaxCrossEntropy",
    "MultiLabelBCE",
    "SoftmaxFocalLoss",
    "SigmoidFocalLoss",
    "LDAMLoss",
    "LDAMDRWLoss",
    "LMFLoss",
    "LogitAdjustedLoss",
    "ClassBalancedFocalLoss",
    "ClassBalancedSoftmaxCE",
    "VSLoss",
    "LADELoss",
]

# The tables (parameters and defaults, task kinds, the LMF paper's α/β) are in the torch-free
# ``imbench.methods.tables``, which the configuration checks read without importing torch.
from .tables import (
    KINDS,
    LMF_PAPER_ALPHA_BETA,
    LOSS_CLASS_WEIGHTS,
    LOSS_DEFAULTS,
    LOSS_KINDS,  # noqa: E402
    LOSS_PARAMS,
    check_loss_params,
)

# --------------------------------------------------------------------------
# Class statistics (float64 numpy; all raise ValueError on unusable counts)
# --------------------------------------------------------------------------


def _counts_array(class_counts: Any) -> np.ndarray:
    """Validate generic count properties and return float64 counts."""
    if isinstance(class_counts, torch.Tensor):
        class_counts = class_counts.detach().cpu().numpy()
    if isinstance(class_counts, (str, bytes, Mapping)):
        raise ValueError(
            f"class_counts must be a sequence of non-negative integer counts, got {type(class_counts).__name__}"
        )
    try:
        arr = np.asarray(class_counts, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"class_counts must be a sequence of non-negative integer counts, got {class_counts!r}"
        ) from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"class_counts[{i}] = {float(arr[i])!r} is not a non-negative integer count "
            "(pass training counts, not frequencies)"
        )
    return arr


def _require_nonzero(
    counts: np.ndarray,
    why: str,
    context: str = "",
    noun: str = "class",
    count_name: str = "a training count",
) -> None:
    zero = np.flatnonzero(counts == 0)
    if zero.size:
        i = int(zero[0])
        raise ValueError(f"{context}{noun} {i} has {count_name} of 0; {why} needs it to be > 0")


def balanced_class_weights(class_counts: Any, context: str = "") -> np.ndarray:
    """sklearn ``compute_class_weight('balanced')``: w_c = N / (K n_c)."""
    n = _counts_array(class_counts)
    _require_nonzero(n, "the balanced class weight N/(K n_c)", context)
    return n.sum() / (n.size * n)


def bwcce_class_weights(class_counts: Any) -> np.ndarray:
    """LMF's BWCCE weights w_c = (1 - n_c/N) / (K - 1) (they sum to 1)."""
    n = _counts_array(class_counts)
    if n.size < 2:
        raise ValueError(f"bwcce needs at least 2 classes, got {n.size}")
    if n.sum() <= 0:
        raise ValueError("class_counts sum to 0; bwcce needs N > 0")
    return (1.0 - n / n.sum()) / (n.size - 1)


def class_balanced_weights(
    class_counts: Any,
    beta: float,
    context: str = "",
    noun: str = "class",
    count_name: str = "a training count",
) -> np.ndarray:
    """Cui et al. 2019 weights w_c = (1-β)/(1-β^{n_c}), normalised to Σ w = K.

    β = 0 gives all-ones weights.  A zero count is rejected (1 - β^0 = 0).
    """
    n = _counts_array(class_counts)
    _require_nonzero(n, "the class-balanced weight (1-β)/(1-β^n_c)", context, noun, count_name)
    w = (1.0 - beta) / (1.0 - np.power(beta, n))  # β=0 -> 1/(1-0) = 1 for n>0
    return w / w.sum() * n.size


def ldam_margins(class_counts: Any, max_m: float, context: str = "") -> np.ndarray:
    """LDAM margins m_c = max_m · (n_min / n_c)^{1/4}; the rarest class gets max_m."""
    n = _counts_array(class_counts)
    _require_nonzero(n, "the LDAM margin m_c = max_m (n_min/n_c)^(1/4)", context)
    return max_m * np.power(n.min() / n, 0.25)


def drw_switch_epoch(num_epochs: int, drw_start: float) -> int:
    """First 0-based epoch that uses the re-weighted loss: ⌊drw_start · num_epochs⌋.

    A 1e-9 guard absorbs binary rounding (0.29·100 = 28.999999999999996 -> 29).
    With 200 epochs and drw_start = 0.8 this is 160, i.e. the same epochs as
    kaidic/LDAM-DRW's ``idx = epoch // 160`` on its 0-based epoch counter.
    """
    return int(math.floor(drw_start * num_epochs + 1e-9))


# --------------------------------------------------------------------------
# Numerics helpers
# --------------------------------------------------------------------------


def _focal_modulator(one_minus_pt: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 - p_t)^γ with finite gradients when 1 - p_t underflows to 0.

    The clamp only acts below the smallest normal float, where the exact
    gradient of the focal term is itself 0 in the limit (γ < 1 otherwise gives
    0^(γ-1) = inf and 0·inf = NaN).
    """
    if gamma == 0:
        return torch.ones_like(one_minus_pt)
    tiny = torch.finfo(one_minus_pt.dtype).tiny
    return one_minus_pt.clamp_min(tiny).pow(gamma)


def _one_hot(targets: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    classes = torch.arange(num_classes, device=targets.device)
    return (targets.unsqueeze(1) == classes).to(dtype)


def _ldam_logits(z: torch.Tensor, y: torch.Tensor, margins: torch.Tensor, s: float) -> torch.Tensor:
    """s·(z - m_y e_y): the margin of the target class is taken off the target logit only."""
    return s * (z - _one_hot(y, z.shape[1], z.dtype) * margins[y].unsqueeze(1))


def _as_buffer(values: np.ndarray | None) -> torch.Tensor | None:
    if values is None:
        return None
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=torch.get_default_dtype())


# --------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------


class ImbalanceLoss(nn.Module):
    """Base class: input checks, dtype promotion and the recorded metadata."""

    def __init__(self, loss_id: str, kind: str, num_classes: int, params: dict[str, object]):
        super().__init__()
        self.loss_id = loss_id
        self.kind = kind
        self.num_classes = int(num_classes)
        self.params: dict[str, object] = dict(params)

    def extra_repr(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"loss_id={self.loss_id!r}, kind={self.kind!r}, num_classes={self.num_classes}, {inner}".rstrip(
            ", "
        )

    def _prepare(
        self, logits: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if (
            not isinstance(logits, torch.Tensor)
            or logits.dim() != 2
            or logits.shape[1] != self.num_classes
        ):
            shape = (
                tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            )
            raise ValueError(
                f"loss {self.loss_id!r} expects logits of shape (B, {self.num_classes}), got {shape}"
            )
        if not logits.is_floating_point():
            raise ValueError(
                f"loss {self.loss_id!r} expects floating-point logits, got {logits.dtype}"
            )
        z = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
        if not isinstance(targets, torch.Tensor):
            raise ValueError(
                f"loss {self.loss_id!r} expects a tensor of targets, got {type(targets).__name__}"
            )
        if self.kind == "multilabel":
            if targets.shape != logits.shape:
                raise ValueError(
                    f"loss {self.loss_id!r} (multilabel) expects a 0/1 target matrix of shape "
                    f"{tuple(logits.shape)}, got {tuple(targets.shape)}"
                )
            return z, targets.to(z.dtype)
        if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
            raise ValueError(
                f"loss {self.loss_id!r} ({self.kind}) expects int64 class indices of shape "
                f"({logits.shape[0]},), got {tuple(targets.shape)}"
            )
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise ValueError(
                f"loss {self.loss_id!r} ({self.kind}) expects integer class indices, got {targets.dtype}"
            )
        return z, targets.long()

    @staticmethod
    def _cast(buf: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor | None:
        return None if buf is None else buf.to(dtype=z.dtype)


class SoftmaxCrossEntropy(ImbalanceLoss):
    """Softmax cross-entropy, optionally class-weighted (``ce``, ``cost_sensitive``, ``bwcce``).

    Without weights: mean over the batch.  With weights: PyTorch's weighted
    mean Σ w_{y_i} CE_i / Σ w_{y_i}.
    """

    def __init__(self, loss_id, kind, num_classes, params, weight: np.ndarray | None = None):
        super().__init__(loss_id, kind, num_classes, params)
        self.register_buffer("weight", _as_buffer(weight))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, y = self._prepare(logits, targets)
        return F.cross_entropy(z, y, weight=self._cast(self.weight, z))


class MultiLabelBCE(ImbalanceLoss):
    """BCE-with-logits over all B·K elements (``ce`` and ``cost_sensitive`` multi-label).

    ``pos_weight`` (per label, = n_neg/n_pos for ``cost_sensitive``) multiplies
    the positive term only, as in ``F.binary_cross_entropy_with_logits``; the
    result is the plain element mean (not divided by the weights).
    """

    def __init__(self, loss_id, kind, num_classes, params, pos_weight: np.ndarray | None = None):
        super().__init__(loss_id, kind, num_classes, params)
        self.register_buffer("pos_weight", _as_buffer(pos_weight))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, t = self._prepare(logits, targets)
        return F.binary_cross_entropy_with_logits(z, t, pos_weight=self._cast(self.pos_weight, z))


class SoftmaxFocalLoss(ImbalanceLoss):
    """Softmax focal loss, mean over the batch (``focal``, ``cw_focal``).

    l_i = -α_{y_i} (1 - p_t)^γ log p_t with p_t taken from the *unweighted*
    softmax and not detached (gradients flow through the modulator).  α sits
    inside the NLL (AdeelH / LMF semantics) and the reduction is ÷ B, never
    ÷ Σ α.  γ = 0 and no α gives plain cross-entropy.
    """

    def __init__(
        self, loss_id, kind, num_classes, params, gamma: float, alpha: np.ndarray | None = None
    ):
        super().__init__(loss_id, kind, num_classes, params)
        self.gamma = float(gamma)
        self.register_buffer("alpha", _as_buffer(alpha))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, y = self._prepare(logits, targets)
        logpt = F.log_softmax(z, dim=1).gather(1, y.unsqueeze(1)).squeeze(1)
        loss = -_focal_modulator(-torch.expm1(logpt), self.gamma) * logpt
        if self.alpha is not None:
            loss = self._cast(self.alpha, z)[y] * loss
        return loss.mean()


class SigmoidFocalLoss(ImbalanceLoss):
    """Element-wise sigmoid focal loss, mean over all B·K elements (multi-label ``focal``, ``cw_focal``).

    l_ij = α_t (1 - p_t)^γ BCE(z_ij, t_ij), p_t = p t + (1 - p)(1 - t),
    α_t = α⁺_j t + α⁻_j (1 - t).  With α⁺ = α and α⁻ = 1 - α this is
    ``torchvision.ops.sigmoid_focal_loss(reduction='mean')``; α = -1 disables α.
    """

    def __init__(
        self,
        loss_id,
        kind,
        num_classes,
        params,
        gamma: float,
        alpha_pos: np.ndarray | None,
        alpha_neg: np.ndarray | None,
    ):
        super().__init__(loss_id, kind, num_classes, params)
        self.gamma = float(gamma)
        self.register_buffer("alpha_pos", _as_buffer(alpha_pos))
        self.register_buffer("alpha_neg", _as_buffer(alpha_neg))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, t = self._prepare(logits, targets)
        bce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        # 1 - p_t, without the cancellation of 1 - sigmoid(z) for large z.
        one_minus_pt = t * torch.sigmoid(-z) + (1.0 - t) * torch.sigmoid(z)
        loss = _focal_modulator(one_minus_pt, self.gamma) * bce
        if self.alpha_pos is not None:
            a_pos = self._cast(self.alpha_pos, z)
            a_neg = self._cast(self.alpha_neg, z)
            loss = (a_pos * t + a_neg * (1.0 - t)) * loss
        return loss.mean()


class LDAMLoss(ImbalanceLoss):
    """LDAM (Cao et al. 2019): CE(s·(z - m_y e_y), y).

    The margin m_y is subtracted from the target logit only and s multiplies
    every logit after the margin.  Without weights the reduction is the plain
    batch mean; with class weights it is PyTorch's weighted mean ÷ Σ w_{y_i}
    (as kaidic/LDAM-DRW).  ``ldam`` pairs it with a cosine (normalised) head;
    ``ldam_lmf`` (the LMF code's LDAM baseline) uses the margins as the class
    weights and a plain linear head.
    """

    def __init__(
        self,
        loss_id,
        kind,
        num_classes,
        params,
        margins: np.ndarray,
        s: float,
        weight: np.ndarray | None = None,
    ):
        super().__init__(loss_id, kind, num_classes, params)
        self.s = float(s)
        self.register_buffer("margins", _as_buffer(margins))
        self.register_buffer("weight", _as_buffer(weight))

    def _current_weight(self) -> torch.Tensor | None:
        return self.weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, y = self._prepare(logits, targets)
        m = self._cast(self.margins, z)
        return F.cross_entropy(
            _ldam_logits(z, y, m, self.s), y, weight=self._cast(self._current_weight(), z)
        )


class LDAMDRWLoss(LDAMLoss):
    """LDAM with deferred re-weighting (DRW).

    Unweighted LDAM (plain mean) until epoch ⌊drw_start · num_epochs⌋
    (0-based), then LDAM weighted by class-balanced weights
    (1-β)/(1-β^{n_c}) normalised to Σ w = K, with PyTorch's weighted mean.
    Call :meth:`set_epoch` at the start of every epoch; before the first call
    the loss is in its unweighted phase.
    """

    def __init__(
        self,
        loss_id,
        kind,
        num_classes,
        params,
        margins,
        s,
        cb_weight: np.ndarray,
        drw_start: float,
    ):
        super().__init__(loss_id, kind, num_classes, params, margins=margins, s=s, weight=None)
        self.register_buffer("cb_weight", _as_buffer(cb_weight))
        self.drw_start = float(drw_start)
        self.drw_active = False
        self.switch_epoch: int | None = None

    def set_epoch(self, epoch: int, num_epochs: int) -> None:
        """Select the phase for 0-based ``epoch`` of a run of ``num_epochs`` epochs."""
        for name, value in (("epoch", epoch), ("num_epochs", num_epochs)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"set_epoch: {name} must be an int, got {value!r}")
        if num_epochs < 1 or epoch < 0:
            raise ValueError(
                f"set_epoch: need epoch >= 0 and num_epochs >= 1, got epoch={epoch}, num_epochs={num_epochs}"
            )
        self.switch_epoch = drw_switch_epoch(int(num_epochs), self.drw_start)
        self.drw_active = int(epoch) >= self.switch_epoch

    def _current_weight(self) -> torch.Tensor | None:
        return self.cb_weight if self.drw_active else None


class LMFLoss(ImbalanceLoss):
    """LMF (official Adnan-Sadi/LMFLOSS semantics): α·LDAM + β·Focal on the same logits.

    * LDAM term: CE(s·(z - m_y e_y), y, weight = m), i.e. the margins are also
      the class weights and the reduction is ÷ Σ m_{y_i}.
    * Focal term: -m_{y_i} (1 - p_t)^γ log p_t on the raw logits z (no margin,
      no s), p_t from the unweighted softmax, mean over the batch (÷ B).

    Paper-faithful LMF uses a plain linear head (not a subclass of
    :class:`LDAMLoss`, so code that picks a cosine head for LDAM does not
    pick it for LMF).
    """

    def __init__(
        self,
        loss_id,
        kind,
        num_classes,
        params,
        margins: np.ndarray,
        s: float,
        alpha: float,
        beta: float,
        gamma: float,
    ):
        super().__init__(loss_id, kind, num_classes, params)
        self.register_buffer(
            "margins", _as_buffer(margins)
        )  # also the LDAM class weights and focal α
        self.s = float(s)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.gamma = float(gamma)

    def terms(
        self, logits: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The unscaled (LDAM, focal) terms, for logging."""
        z, y = self._prepare(logits, targets)
        m = self._cast(self.margins, z)
        ldam = F.cross_entropy(_ldam_logits(z, y, m, self.s), y, weight=m)
        logpt = F.log_softmax(z, dim=1).gather(1, y.unsqueeze(1)).squeeze(1)
        focal = (-m[y] * _focal_modulator(-torch.expm1(logpt), self.gamma) * logpt).mean()
        return ldam, focal

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        ldam, focal = self.terms(logits, targets)
        return self.alpha * ldam + self.beta * focal


class LogitAdjustedLoss(ImbalanceLoss):
    """Logit-adjusted CE (Menon et al. 2021; = Balanced Softmax at τ = 1).

    CE(z + τ log π, y), mean over the batch.  Only the loss sees the
    adjusted logits: predictions use the raw z.  ``balanced_softmax`` is this
    module with ``log_prior`` = log n_c and τ = 1 (Ren et al.'s form; log n_c
    and log π_c differ by the constant log N, which the softmax cancels).
    """

    def __init__(self, loss_id, kind, num_classes, params, log_prior: np.ndarray, tau: float):
        super().__init__(loss_id, kind, num_classes, params)
        self.tau = float(tau)
        self.register_buffer("log_prior", _as_buffer(log_prior))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, y = self._prepare(logits, targets)
        return F.cross_entropy(z + self.tau * self._cast(self.log_prior, z), y)


class ClassBalancedSoftmaxCE(ImbalanceLoss):
    """Class-balanced softmax cross-entropy (``cb_ce``), official form of Cui et al. 2019.

    l_i = w_{y_i} · CE(z_i, y_i) with the CB(β) weights w_c = (1-β)/(1-β^{n_c}) normalised to
    Σ_c w_c = K, reduced by the **mean over the batch** (÷ B, not ÷ Σ w_{y_i}): the official code
    (richardaecn/class-balanced-loss, ``src/cifar_main.py``) passes the per-sample weights to
    ``tf.losses.softmax_cross_entropy``, whose default reduction divides the weighted sum by the
    number of non-zero weights, i.e. by B.
    """

    def __init__(self, loss_id, kind, num_classes, params, weight: np.ndarray):
        super().__init__(loss_id, kind, num_classes, params)
        self.register_buffer("weight", _as_buffer(weight))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, y = self._prepare(logits, targets)
        return (self._cast(self.weight, z)[y] * F.cross_entropy(z, y, reduction="none")).mean()


class VSLoss(ImbalanceLoss):
    """Vector-scaling loss (Kini et al., NeurIPS 2021), official form of orparask/VS-Loss.

    CE(Δ ⊙ z + ι, y), mean over the batch, with the multiplicative scale Δ_c = (n_c / n_max)^γ
    (1 for the largest class, smaller for rarer ones) and the additive shift ι_c = τ log π_c.
    The official ``VSLoss`` divides z by ((1/n_c)^γ / min_j (1/n_j)^γ) = (n_max / n_c)^γ, which is
    the same product. γ = 0 is logit-adjusted CE with this τ; τ = 0 is the CDT-style scaling alone.
    Only the loss sees the scaled logits: predictions use the raw z.
    """

    def __init__(self, loss_id, kind, num_classes, params, scale: np.ndarray, shift: np.ndarray):
        super().__init__(loss_id, kind, num_classes, params)
        self.register_buffer("scale", _as_buffer(scale))
        self.register_buffer("shift", _as_buffer(shift))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, y = self._prepare(logits, targets)
        return F.cross_entropy(z * self._cast(self.scale, z) + self._cast(self.shift, z), y)


class LADELoss(ImbalanceLoss):
    """LADE (Hong et al., CVPR 2021), official form of hyperconnect/LADE.

    ``PriorCE(z, y) + α · LADER(z, y)``, both on the raw logits z (official config: weights 1 and
    α = 0.1, ``remine_lambda`` λ = 0.1, for ImageNet-LT and CIFAR-100-LT alike):

    - PriorCE (``loss/PriorCELoss.py``): CE(z + log(π + 1e-9), y), batch mean, π_c = n_c / N;
    - LADER (``loss/LADELoss.py``): for every class c, over the B samples of the batch,
      ``T1_c = Σ_{i: y_i = c} z_ic / (b_c + 1e-8)`` (b_c = samples of c in the batch; T1_c = 0
      when there are none), ``T2_c = logsumexp_i(z_ic - log(π_c + 1e-9) + log(1/K + 1e-9)) - log B``,
      and ``LADER = -Σ_c π_c (T1_c - T2_c - λ T2_c²)``.

    Test time: predictions are the raw logits' softmax, the paper's estimate under a uniform target
    label distribution (its default; a known non-uniform test prior p_t would add log p_t).
    """

    def __init__(self, loss_id, kind, num_classes, params, prior: np.ndarray):
        super().__init__(loss_id, kind, num_classes, params)
        self.register_buffer("prior", _as_buffer(prior))
        self.alpha = float(params["alpha"])
        self.remine_lambda = float(params["remine_lambda"])

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, y = self._prepare(logits, targets)
        prior = self._cast(self.prior, z)
        log_prior = torch.log(prior + 1e-9)
        prior_ce = F.cross_entropy(z + log_prior, y)
        onehot = _one_hot(y, self.num_classes, z.dtype)  # (B, K)
        per_class = onehot.sum(0)
        first = (z * onehot).sum(0) / (per_class + 1e-8)
        balanced = math.log(1.0 / self.num_classes + 1e-9)
        second = torch.logsumexp(z - log_prior + balanced, dim=0) - math.log(z.shape[0])
        estimate = first - second - self.remine_lambda * second**2
        return prior_ce - self.alpha * (estimate * prior).sum()


class ClassBalancedFocalLoss(ImbalanceLoss):
    """Class-balanced sigmoid focal loss, official form of Cui et al. 2019.

    Element-wise sigmoid focal with no α: l_ij = w · (1 - p_t)^γ · BCE(z_ij, t_ij),
    the modulator computed as exp(-γ (t z + softplus(-z))).  Single-label
    tasks use one-hot targets and the per-sample weight w = w_{y_i};
    multi-label tasks use the per-element weight w = w_j of label j (CB
    weights from positive counts).  Reduction: Σ over all elements ÷ B.
    """

    def __init__(self, loss_id, kind, num_classes, params, weight: np.ndarray, gamma: float):
        super().__init__(loss_id, kind, num_classes, params)
        self.gamma = float(gamma)
        self.register_buffer("weight", _as_buffer(weight))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, y = self._prepare(logits, targets)
        w = self._cast(self.weight, z)
        if self.kind == "multilabel":
            t = y
            elem_w = w.unsqueeze(0)
        else:
            t = _one_hot(y, self.num_classes, z.dtype)
            elem_w = w[y].unsqueeze(1)
        bce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        if self.gamma == 0:
            loss = bce
        else:
            loss = torch.exp(-self.gamma * (t * z + F.softplus(-z))) * bce
        return (elem_w * loss).sum() / z.shape[0]


# --------------------------------------------------------------------------
# Parameter resolution
# --------------------------------------------------------------------------


def _check(loss_id: str, name: str, value: object) -> object:
    """``value`` checked against the declaration ``LOSS_PARAMS[loss_id][name]`` (tables.py)."""
    param = LOSS_PARAMS[loss_id][name]
    try:
        # 'paper' (LMF's α, β) is looked up per cell before a loss is built; here only numbers.
        return dataclasses.replace(param, literals=()).check(value)
    except ValueError as exc:
        raise ValueError(f"parameter {name!r}: {exc}") from None


def _focal_alpha(value: object, kind: str, k: int) -> object:
    """Resolve the ``alpha`` of ``focal``: per-class list (softmax) or torchvision scalar (sigmoid),
    as declared per task kind in ``LOSS_PARAMS["focal"]["alpha"]``."""
    if kind == "multilabel" and value is None:
        return 0.25
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = value.tolist() if isinstance(value, np.ndarray) else value.detach().cpu().tolist()
    try:
        out = LOSS_PARAMS["focal"]["alpha"].for_kind(kind).check(value, n_classes=k)
    except ValueError as exc:
        raise ValueError(f"parameter 'alpha' of {kind} focal: {exc}") from None
    return float(out) if kind == "multilabel" else out


def _resolve(loss_id: str, kind: str, k: int, params: dict[str, object]) -> dict[str, object]:
    defaults = LOSS_DEFAULTS[loss_id]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) if defaults else "none"
        raise ValueError(
            f"unknown parameter {unknown[0]!r} for loss {loss_id!r}; allowed: {allowed}"
        )
    # None means "the default" (the convention of the sampler and post-hoc registries too);
    # for focal's alpha the default itself is None (no α / torchvision's 0.25).
    resolved = {**defaults, **{name: v for name, v in params.items() if v is not None}}
    out: dict[str, object] = {}
    for name, value in resolved.items():
        try:
            if loss_id == "focal" and name == "alpha":
                out[name] = _focal_alpha(value, kind, k)
            else:
                out[name] = _check(loss_id, name, value)
        except ValueError as err:
            raise ValueError(f"loss {loss_id!r}: {err}") from None
    check_loss_params(loss_id, out)
    return out


# --------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------


def make_loss(
    loss_id: str,
    class_counts: Any,
    kind: str = "multiclass",
    n_samples: int | None = None,
    **params: object,
) -> nn.Module:
    """Build the loss ``loss_id`` for a task of the given ``kind``.

    Args:
        loss_id: one of ``LOSS_DEFAULTS``.
        class_counts: training count per class (multilabel: positive count per label).
        kind: ``"multiclass"``, ``"binary"`` (K = 2 softmax, class 1 positive) or ``"multilabel"``.
        n_samples: number of training samples; required for ``multilabel``, ignored otherwise.
        **params: overrides of ``LOSS_DEFAULTS[loss_id]``; ``None`` means the default.

    Returns:
        A module ``loss(logits, targets) -> scalar`` with ``params`` (resolved
        parameters), ``loss_id``, ``kind``, ``num_classes`` and ``class_weights``
        (the per-class weights it applies, see ``LOSS_CLASS_WEIGHTS``);
        ``ldam_drw`` also has ``set_epoch(epoch, num_epochs)``.

    Raises:
        ValueError: unknown id, parameter or kind; a kind where the loss has no
            meaning; malformed counts; a zero count where the loss divides by it.
    """
    loss = _make_loss(loss_id, class_counts, kind, n_samples, **params)
    weights = LOSS_CLASS_WEIGHTS[loss_id]
    if loss_id == "focal" and loss.params.get("alpha") not in (None, -1.0):
        weights = "alpha"
    elif loss_id == "cost_sensitive" and kind == "multilabel":
        weights = "pos_weight"
    loss.class_weights = weights
    return loss


def _make_loss(
    loss_id: str,
    class_counts: Any,
    kind: str = "multiclass",
    n_samples: int | None = None,
    **params: object,
) -> nn.Module:
    """:func:`make_loss` without the ``class_weights`` record."""
    if not isinstance(loss_id, str) or loss_id not in LOSS_DEFAULTS:
        raise ValueError(f"unknown loss id {loss_id!r}; allowed: {', '.join(LOSS_DEFAULTS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; allowed: {', '.join(KINDS)}")
    if kind not in LOSS_KINDS[loss_id]:
        raise ValueError(
            f"loss {loss_id!r} has no meaning for {kind} tasks; allowed kinds: {', '.join(LOSS_KINDS[loss_id])}"
        )
    counts = _counts_array(class_counts)
    k = int(counts.size)

    if kind == "multilabel":
        if (
            n_samples is None
            or isinstance(n_samples, bool)
            or not isinstance(n_samples, (int, np.integer))
            or n_samples < 1
        ):
            raise ValueError(
                f"multilabel losses need n_samples = number of training samples (int >= 1), got {n_samples!r}"
            )
        n_samples = int(n_samples)
        over = np.flatnonzero(counts > n_samples)
        if over.size:
            i = int(over[0])
            raise ValueError(
                f"class_counts[{i}] = {int(counts[i])} positives exceeds n_samples = {n_samples}"
            )
        n_neg = n_samples - counts
    else:
        if kind == "binary" and k != 2:
            raise ValueError(
                f"binary tasks are 2-class softmax problems: class_counts needs 2 entries [n_neg, n_pos], got {k}"
            )
        if k < 2:
            raise ValueError(
                f"multiclass tasks need at least 2 classes, got class_counts of length {k}"
            )
        if counts.sum() <= 0:
            raise ValueError("class_counts sum to 0; need at least one training sample")
        n_neg = None

    p = _resolve(loss_id, kind, k, params)
    args = (loss_id, kind, k, p)
    ctx = f"loss {loss_id!r}: "

    from .api import PLUGIN_LOSSES

    if loss_id in PLUGIN_LOSSES:
        return _plugin_loss(PLUGIN_LOSSES[loss_id], counts, *args)

    if kind == "multilabel":
        assert n_neg is not None
        if loss_id == "ce":
            return MultiLabelBCE(*args)
        if loss_id == "cost_sensitive":
            _require_nonzero(counts, "pos_weight = n_neg/n_pos", ctx, "label", "a positive count")
            _require_nonzero(
                n_neg, "a non-zero pos_weight = n_neg/n_pos", ctx, "label", "a negative count"
            )
            return MultiLabelBCE(*args, pos_weight=n_neg / counts)
        if loss_id == "focal":
            a = float(p["alpha"])  # type: ignore[arg-type]
            if a < 0:
                return SigmoidFocalLoss(*args, gamma=p["gamma"], alpha_pos=None, alpha_neg=None)
            return SigmoidFocalLoss(
                *args, gamma=p["gamma"], alpha_pos=np.full(k, a), alpha_neg=np.full(k, 1.0 - a)
            )
        if loss_id == "cw_focal":
            _require_nonzero(
                counts, "the balanced weight N/(2 n_pos)", ctx, "label", "a positive count"
            )
            _require_nonzero(
                n_neg, "the balanced weight N/(2 n_neg)", ctx, "label", "a negative count"
            )
            return SigmoidFocalLoss(
                *args,
                gamma=p["gamma"],
                alpha_pos=n_samples / (2.0 * counts),
                alpha_neg=n_samples / (2.0 * n_neg),
            )
        if loss_id == "cb_focal":
            w = class_balanced_weights(counts, p["beta"], ctx, "label", "a positive count")
            return ClassBalancedFocalLoss(*args, weight=w, gamma=p["gamma"])
        raise AssertionError(loss_id)  # pragma: no cover - LOSS_KINDS excludes the rest

    if loss_id == "ce":
        return SoftmaxCrossEntropy(*args)
    if loss_id == "cost_sensitive":
        return SoftmaxCrossEntropy(*args, weight=balanced_class_weights(counts, ctx))
    if loss_id == "bwcce":
        return SoftmaxCrossEntropy(*args, weight=bwcce_class_weights(counts))
    if loss_id == "focal":
        alpha = None if p["alpha"] is None else np.asarray(p["alpha"], dtype=np.float64)
        return SoftmaxFocalLoss(*args, gamma=p["gamma"], alpha=alpha)
    if loss_id == "cw_focal":
        return SoftmaxFocalLoss(*args, gamma=p["gamma"], alpha=balanced_class_weights(counts, ctx))
    if loss_id == "ldam":
        return LDAMLoss(*args, margins=ldam_margins(counts, p["max_m"], ctx), s=p["s"])
    if loss_id == "ldam_drw":
        return LDAMDRWLoss(
            *args,
            margins=ldam_margins(counts, p["max_m"], ctx),
            s=p["s"],
            cb_weight=class_balanced_weights(counts, p["beta"], ctx),
            drw_start=p["drw_start"],
        )
    if loss_id == "lmf":
        return LMFLoss(
            *args,
            margins=ldam_margins(counts, p["max_m"], ctx),
            s=p["s"],
            alpha=p["alpha"],
            beta=p["beta"],
            gamma=p["gamma"],
        )
    if loss_id == "logit_adjustment":
        _require_nonzero(counts, "log π_c", ctx)
        return LogitAdjustedLoss(*args, log_prior=np.log(counts / counts.sum()), tau=p["tau"])
    if loss_id == "cb_focal":
        w = class_balanced_weights(counts, p["beta"], ctx)
        return ClassBalancedFocalLoss(*args, weight=w, gamma=p["gamma"])
    if loss_id == "balanced_softmax":  # Ren et al.'s official code: logits + log(sample_per_class)
        _require_nonzero(counts, "log n_c", ctx)
        return LogitAdjustedLoss(*args, log_prior=np.log(counts), tau=1.0)
    if loss_id == "cb_ce":
        return ClassBalancedSoftmaxCE(*args, weight=class_balanced_weights(counts, p["beta"], ctx))
    if loss_id == "vs_loss":
        _require_nonzero(counts, "log π_c and the scale (n_c/n_max)^γ", ctx)
        return VSLoss(
            *args,
            scale=np.power(counts / counts.max(), p["gamma"]),
            shift=p["tau"] * np.log(counts / counts.sum()),
        )
    if loss_id == "lade":
        _require_nonzero(counts, "log π_c", ctx)
        return LADELoss(*args, prior=counts / counts.sum())
    if loss_id == "focal_lmf":  # the LMF code's Focal baseline: AdeelH focal with α = the margins
        return SoftmaxFocalLoss(
            *args, gamma=p["gamma"], alpha=ldam_margins(counts, p["max_m"], ctx)
        )
    if (
        loss_id == "ldam_lmf"
    ):  # the LMF code's LDAM baseline: the margins are also the class weights
        m = ldam_margins(counts, p["max_m"], ctx)
        return LDAMLoss(*args, margins=m, s=p["s"], weight=m)
    raise AssertionError(loss_id)  # pragma: no cover


def _plugin_loss(
    factory, counts: np.ndarray, loss_id: str, kind: str, k: int, p: dict
) -> nn.Module:
    """The loss of a plug-in method (:mod:`imbench.plugins`): ``factory(class_counts, kind, **params)``,
    given the resolved parameters; the module gets the attributes of a built-in loss."""
    try:
        loss = factory(counts.copy(), kind, **p)
    except Exception as exc:  # noqa: BLE001 - user code: one line naming the loss
        raise ValueError(
            f"loss {loss_id!r}: its plug-in function failed: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(loss, nn.Module):
        raise ValueError(
            f"loss {loss_id!r}: its plug-in function returned {type(loss).__name__}, "
            "not a torch.nn.Module"
        )
    loss.loss_id, loss.kind, loss.num_classes, loss.params = loss_id, kind, k, dict(p)
    return loss
