"""Label-aware smoothing (MiSLAS: Zhong, Cui, Liu, Jia, *Improving Calibration for Long-Tailed
Recognition*, CVPR 2021; official code dvlab-research/MiSLAS, ``LabelAwareSmoothing``).

Definition. A sample of class y is trained against the smoothed target
q = (1 − ε_y) e_y + ε_y / K · 1, i.e. with p = softmax(z)

    l_i = (1 − ε_y) · (−log p_y) + ε_y · (1/K) Σ_j (−log p_j),

and the loss is the mean over the batch. The smoothing ε_c of class c grows with its training
count n_c, from ε_K = ``smooth_tail`` at the rarest count n_K to ε_1 = ``smooth_head`` at the
largest count n_1 (head classes are the over-confident ones). With r_c = (n_c − n_K)/(n_1 − n_K)
in [0, 1], the profile ``shape`` is (paper Eq. 2, the official code's three closed forms):

- ``concave`` (default): ε_c = ε_K + (ε_1 − ε_K) · sin(π r_c / 2);
- ``linear``:            ε_c = ε_K + (ε_1 − ε_K) · r_c;
- ``convex``:            ε_c = ε_1 + (ε_1 − ε_K) · sin(3π/2 + π r_c / 2).

Choices, where the paper or its code leave room:

- Defaults ε_1 = 0.3, ε_K = 0.0, concave: the values of the official ImageNet-LT, iNaturalist 2018
  and CIFAR-10 (ρ = 100) and CIFAR-100 (ρ = 50) configurations (``config/*/*_stage2_mislas.yaml``)
  and the code's default shape; the other official configurations use 0.1–0.4 at the head and
  0–0.1 at the tail.
- MiSLAS applies the loss in its second stage (the classifier re-trained after a mixup-trained
  first stage, with shifted batch-norm statistics). Here it is the loss of the whole training,
  as every loss method of the benchmark; the two-stage recipe is not reproduced.
- The official code's fourth profile, ``exp`` with a ``power``, is not offered.
- ε_1 ≥ ε_K is what the paper recommends but is not required: any ε in [0, 1) per end is accepted,
  and ε_1 < ε_K smooths rare classes more.
- Equal counts (n_1 = n_K: no imbalance, where the official code divides 0 by 0): every class is a
  head class and gets ε_1.
- Binary tasks: the 2-class softmax form (one ε for the negative and one for the positive class).
- Multi-label tasks: no meaning. The smoothing redistributes one softmax target over the K
  classes; the paper defines no per-label (sigmoid) form, so the method's cells of a multi-label
  task are skipped at planning with the usual note.
- Predictions use the plain softmax of z; ``run.json`` records ``class_weights: none``.
"""

from __future__ import annotations

import math

import numpy as np

from ...kinds import SINGLE_LABEL
from ...params import Param
from ..api import register_method

SHAPES = ("concave", "linear", "convex")


def smoothing_factors(
    class_counts, smooth_head: float, smooth_tail: float, shape: str = "concave"
) -> np.ndarray:
    """ε_c of every class from its training count (module docstring), float64."""
    n = np.asarray(class_counts, dtype=np.float64)
    if shape not in SHAPES:
        raise ValueError(f"shape {shape!r}: expected one of {SHAPES}")
    n_1, n_k = n.max(), n.min()
    if n_1 == n_k:
        return np.full(n.shape, float(smooth_head))
    r = (n - n_k) / (n_1 - n_k)
    if shape == "concave":
        return smooth_tail + (smooth_head - smooth_tail) * np.sin(r * math.pi / 2)
    if shape == "linear":
        return smooth_tail + (smooth_head - smooth_tail) * r
    return smooth_head + (smooth_head - smooth_tail) * np.sin(1.5 * math.pi + r * math.pi / 2)


_EPS = dict(type="float", lo=0.0, hi=1.0, hi_open=True, nullable=True)


@register_method(
    "label_aware_smoothing",
    params={
        "smooth_head": Param(default=0.3, doc="ε_1: smoothing of the most frequent class", **_EPS),
        "smooth_tail": Param(default=0.0, doc="ε_K: smoothing of the rarest class", **_EPS),
        "shape": Param(
            "str",
            "concave",
            choices=SHAPES,
            nullable=True,
            doc="profile of ε between the rarest and the most frequent class",
        ),
    },
    kinds=SINGLE_LABEL,
    source="Zhong et al. 2021 (MiSLAS; official code dvlab-research/MiSLAS)",
    summary="label-aware smoothing: CE against (1 - eps_y) e_y + eps_y/K, eps_y from 0.0 (rarest) "
    "to 0.3 (most frequent) along a concave profile of the class counts",
)
def label_aware_smoothing(class_counts, kind, smooth_head, smooth_tail, shape):
    """The loss of one cell (torch is imported here, not while the workflow plans)."""
    import torch.nn.functional as F

    from ..losses import ImbalanceLoss, _as_buffer

    eps = smoothing_factors(class_counts, smooth_head, smooth_tail, shape)
    params = {"smooth_head": smooth_head, "smooth_tail": smooth_tail, "shape": shape}

    class LabelAwareSmoothingLoss(ImbalanceLoss):
        def __init__(self):
            super().__init__("label_aware_smoothing", kind, len(eps), params)
            self.register_buffer("smoothing", _as_buffer(eps))

        def forward(self, logits, targets):
            z, y = self._prepare(logits, targets)
            e = self._cast(self.smoothing, z)[y]
            logp = F.log_softmax(z, dim=1)
            nll = -logp.gather(1, y.unsqueeze(1)).squeeze(1)
            return ((1.0 - e) * nll - e * logp.mean(dim=1)).mean()

    return LabelAwareSmoothingLoss()
