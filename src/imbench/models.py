"""Models: a timm backbone (pooled features) + the classifier head a method asks for.

- ``linear``: ``nn.Linear`` on the pooled features (what every paper uses, LMF included).
- ``cosine``: cosine-similarity classifier (LDAM's ``NormedLinear``): logits are
  cos(feature, w_c) ∈ [−1, 1]; LDAM's scale ``s`` (30) lives in the loss. Without it, ``s``-scaled
  raw logits make LDAM diverge (LDAM-DRW issue #20), which is why ``ldam``/``ldam_drw`` use it.
"""

from __future__ import annotations

import math

import timm
import torch
import torch.nn.functional as F
from torch import nn


class CosineClassifier(nn.Module):
    """logits_c = <x/|x|, w_c/|w_c|>; no bias."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.uniform_(self.weight, -1 / math.sqrt(in_features), 1 / math.sqrt(in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


class Classifier(nn.Module):
    """``backbone`` (timm, ``num_classes=0`` → pooled features) followed by ``head``."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def create_model(name: str, num_classes: int, head: str = "linear", pretrained: bool = False,
                 drop_rate: float = 0.0) -> Classifier:
    """Build ``name`` from timm with a fresh ``head`` for ``num_classes`` outputs."""
    if not timm.is_model(name):
        raise ValueError(f"unknown model {name!r}: not a timm model name (see timm.list_models())")
    backbone = timm.create_model(name, pretrained=pretrained, num_classes=0, drop_rate=drop_rate)
    n_feat = backbone.num_features
    if head == "linear":
        layer: nn.Module = nn.Linear(n_feat, num_classes)
    elif head == "cosine":
        layer = CosineClassifier(n_feat, num_classes)
    else:
        raise ValueError(f"unknown head {head!r}; expected 'linear' or 'cosine'")
    return Classifier(backbone, layer)
