"""The linear_probe setting: a frozen backbone, only the classifier trains."""

from __future__ import annotations

import torch

from imbench.models import create_model
from imbench.train import Settings, train_cell


def test_linear_probe_trains_the_head_only(tiny_synthetic, tmp_path):
    s = Settings.from_dict(
        dict(epochs=2, batch_size=32, image_size=16, lr=3e-2, threads=1, linear_probe=True)
    )
    train_cell(
        "synthetic",
        tiny_synthetic["cache"],
        tiny_synthetic["split"],
        "test_resnet",
        "ce",
        0,
        s,
        tmp_path / "cell",
    )
    best = torch.load(tmp_path / "cell" / "best.pt", weights_only=True)
    torch.manual_seed(0)  # the cell's model before training (train_cell seeds before building it)
    start = create_model("test_resnet", 7).state_dict()
    backbone = [k for k in start if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)  # batch-norm statistics are compared too
    for k in backbone:
        assert torch.equal(best[k], start[k]), k
    assert not torch.equal(best["head.weight"], start["head.weight"])


def test_frozen_backbone_stays_in_eval_mode():
    model = create_model("test_resnet", 3, freeze_backbone=True)
    model.train()
    assert model.training and model.head.training and not model.backbone.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    plain = create_model("test_resnet", 3).train()
    assert plain.backbone.training and all(p.requires_grad for p in plain.parameters())
