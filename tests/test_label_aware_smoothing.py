"""label_aware_smoothing (MiSLAS, Zhong et al. 2021): the ε profile, the loss value and gradient
against independent formulations, and the method's place in the registry and the grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imbench.config import ConfigError, check_config, validate_config
from imbench.methods import build_loss, default_params, get_method, list_methods, method_kinds
from imbench.methods.builtin.label_aware_smoothing import smoothing_factors

COUNTS = [400, 100, 25, 10]
BASE = {
    "experiment": "las",
    "tasks": ["synthetic"],
    "models": ["test_resnet"],
    "methods": ["ce", "label_aware_smoothing"],
    "seeds": [0],
    "protocol": "demo",
}


def expected_eps(counts, head, tail, shape):
    """ε_c written out per class from the paper's three profiles (r from 0 at the rarest class to 1
    at the most frequent); the convex form as 1 − cos, equal to the code's sin(3π/2 + x) form."""
    n_1, n_k = max(counts), min(counts)
    out = []
    for n in counts:
        r = (n - n_k) / (n_1 - n_k)
        if shape == "concave":
            out.append(tail + (head - tail) * math.sin(math.pi / 2 * r))
        elif shape == "linear":
            out.append(tail + (head - tail) * r)
        else:
            out.append(tail + (head - tail) * (1.0 - math.cos(math.pi / 2 * r)))
    return out


@pytest.mark.parametrize("shape", ["concave", "linear", "convex"])
def test_profile_runs_from_tail_to_head(shape):
    eps = smoothing_factors(COUNTS, 0.4, 0.1, shape)
    np.testing.assert_allclose(eps, expected_eps(COUNTS, 0.4, 0.1, shape), rtol=0, atol=1e-12)
    assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.1)
    assert np.all(np.diff(eps) <= 0)  # more smoothing for more frequent classes


def test_profiles_order_and_defaults():
    concave, linear, convex = (
        smoothing_factors(COUNTS, 0.3, 0.0, s) for s in ("concave", "linear", "convex")
    )
    assert np.all(concave[1:-1] > linear[1:-1]) and np.all(linear[1:-1] > convex[1:-1])
    # official defaults: smooth_head 0.3, smooth_tail 0.0, concave
    assert default_params("label_aware_smoothing") == {
        "smooth_head": 0.3,
        "smooth_tail": 0.0,
        "shape": "concave",
    }
    loss = build_loss("label_aware_smoothing", COUNTS)
    np.testing.assert_allclose(
        loss.smoothing.numpy(), expected_eps(COUNTS, 0.3, 0.0, "concave"), atol=1e-7
    )
    # no imbalance: every class is a head class
    assert smoothing_factors([5, 5, 5], 0.3, 0.0).tolist() == [0.3, 0.3, 0.3]


def reference_loss(z, y, eps):
    """Σ over classes c of PyTorch's own label-smoothed CE of the samples of class c (smoothing ε_c,
    summed), ÷ B: the mean over the batch of per-sample smoothing."""
    total = z.new_zeros(())
    for c in torch.unique(y).tolist():
        rows = y == c
        total = total + F.cross_entropy(
            z[rows], y[rows], label_smoothing=float(eps[c]), reduction="sum"
        )
    return total / len(y)


@pytest.mark.parametrize("shape", ["concave", "linear", "convex"])
@pytest.mark.parametrize("kind,counts", [("multiclass", COUNTS), ("binary", [90, 10])])
def test_value_and_gradient_match_independent_forms(shape, kind, counts):
    g = torch.Generator().manual_seed(0)
    k = len(counts)
    z = (3 * torch.randn(64, k, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = torch.randint(0, k, (64,), generator=g)
    # buffers take the default dtype when the loss is built (float32 in training): build in float64
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        loss_fn = build_loss(
            "label_aware_smoothing",
            counts,
            kind=kind,
            smooth_head=0.35,
            smooth_tail=0.05,
            shape=shape,
        )
    finally:
        torch.set_default_dtype(default)
    eps = expected_eps(counts, 0.35, 0.05, shape)
    value = loss_fn(z, y)
    (grad,) = torch.autograd.grad(value, z)
    zr = z.detach().clone().requires_grad_(True)
    ref = reference_loss(zr, y, eps)
    (ref_grad,) = torch.autograd.grad(ref, zr)
    assert value.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    # the closed-form gradient of CE against a soft target q: (softmax(z) − q) / B
    e = torch.tensor(eps, dtype=torch.float64)[y].unsqueeze(1)
    q = (1 - e) * F.one_hot(y, k).to(torch.float64) + e / k
    torch.testing.assert_close(
        grad, (torch.softmax(z.detach(), 1) - q) / len(y), rtol=1e-10, atol=1e-12
    )


def test_extreme_logits_and_half_precision_stay_finite():
    loss_fn = build_loss("label_aware_smoothing", COUNTS)
    z = torch.tensor([[1e4, -1e4, 0.0, 5.0], [-1e4, 1e4, 1e4, 0.0]], requires_grad=True)
    value = loss_fn(z, torch.tensor([1, 3]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()
    assert loss_fn(z.detach().half(), torch.tensor([1, 3])).dtype == torch.float32


def test_registry_grid_and_checks():
    m = get_method("label_aware_smoothing")
    assert m.trains and m.loss == "label_aware_smoothing" and m.head == "linear"
    assert m.sampler == "shuffle" and m.variant_of is None
    assert "label_aware_smoothing" in list_methods(variants=False)  # in `methods: all`
    assert method_kinds("label_aware_smoothing") == ("multiclass", "binary")
    assert build_loss("label_aware_smoothing", [10, 5]).class_weights == "none"
    # multi-label: skipped at planning with the usual note, and refused by the loss factory
    skips = check_config(dict(BASE, tasks=["synthetic", "synthetic_ml"]))
    assert skips == [
        (
            "synthetic_ml",
            "label_aware_smoothing",
            "method 'label_aware_smoothing' has no meaning for multilabel task 'synthetic_ml'; skipped",
        )
    ]
    with pytest.raises(ValueError, match="no meaning for multilabel tasks"):
        build_loss("label_aware_smoothing", [3, 4], kind="multilabel", n_samples=10)
    # parameters are checked at planning: one line naming the key
    validate_config(dict(BASE, method_params={"label_aware_smoothing": {"shape": "linear"}}))
    for params, key, expected in (
        ({"shape": "exp"}, "shape", "expected one of 'concave', 'linear', 'convex'"),
        ({"smooth_head": 1.0}, "smooth_head", "expected a number in [0, 1)"),
        ({"power": 2}, "power", "has no parameter 'power'"),
    ):
        with pytest.raises(ConfigError) as err:
            validate_config(dict(BASE, method_params={"label_aware_smoothing": params}))
        msg = str(err.value)
        assert (
            msg.startswith(f"config key 'method_params.label_aware_smoothing.{key}'")
            and expected in msg
        )
