"""Poly-1 cross-entropy (Leng et al., "PolyLoss: A Polynomial Expansion Perspective of
Classification Loss Functions", ICLR 2022) as an imbench plug-in method ``poly1``.

Cross-entropy is the series ``sum_j (1 - p_t)^j / j`` of the target's probability ``p_t``.
Poly-1 raises the weight of its first term by ``epsilon``:

    L = CE + epsilon * (1 - p_t)

``epsilon > 0`` keeps pushing already well-classified images (it adds a constant gradient in
``p_t``), ``epsilon < 0`` leans towards the focal loss's down-weighting of easy images; the paper
uses ``epsilon = 1`` for ImageNet classification. It applies no class weights; the imbalance
enters only through how hard the minority classes' images are.

Multi-label tasks use the paper's binary form: per label, binary cross-entropy plus
``epsilon * (1 - p_t)`` with ``p_t = p`` for a positive label and ``1 - p`` for a negative one.

Use it with ``plugins: [examples/plugins/my_loss.py]`` and ``methods: [ce, poly1]``
(examples/plugin_demo.yaml); docs/extending.md walks through it.
"""

import imbench


@imbench.register_method(
    "poly1",
    params={
        "epsilon": imbench.Param(
            "float",
            1.0,
            lo=-1.0,
            nullable=True,
            doc="weight of the added first polynomial term (1 - p_t); ≥ -1 keeps the loss ≥ 0",
        ),
    },
    kinds=("multiclass", "binary", "multilabel"),
    source="Leng et al. 2022 (ICLR), PolyLoss",
    summary="cross-entropy plus epsilon * (1 - p_t), the first term of its polynomial expansion",
)
def poly1(class_counts, kind, epsilon):
    # torch is imported here, when a training job builds the loss, not while the workflow plans.
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Poly1Loss(nn.Module):
        def forward(self, logits, targets):
            if kind == "multilabel":
                targets = targets.float()
                bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
                p = torch.sigmoid(logits)
                pt = targets * p + (1 - targets) * (1 - p)
                return (bce + epsilon * (1 - pt)).mean()
            ce = F.cross_entropy(logits, targets, reduction="none")
            pt = F.softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
            return (ce + epsilon * (1 - pt)).mean()

    return Poly1Loss()
