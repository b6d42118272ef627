"""mixup and remix (imbench.methods.mixing): values and gradients against plain formulations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from imbench.methods import build_loss, build_mixer, default_params, method_kinds, split_params
from imbench.methods.mixing import Mixer, mixed_loss, mixup_inputs, remix_label_weights


def _soft_ce(logits, soft):
    """Cross-entropy with soft targets, written out: -sum_c q_c log softmax(z)_c, batch mean."""
    z = logits - logits.max(1, keepdim=True).values
    logp = z - torch.log(torch.exp(z).sum(1, keepdim=True))
    return -(soft * logp).sum(1).mean()


def test_mixup_inputs():
    x = torch.arange(12.0).view(3, 4)
    perm = torch.tensor([2, 0, 1])
    out = mixup_inputs(x, 0.3, perm)
    for i in range(3):
        torch.testing.assert_close(out[i], 0.3 * x[i] + 0.7 * x[perm[i]])
    assert torch.equal(x, torch.arange(12.0).view(3, 4))  # not changed in place


@pytest.mark.parametrize("lam", [0.0, 0.37, 1.0])
def test_mixup_loss_is_ce_on_mixed_one_hot_targets(lam):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y_a = torch.tensor([0, 1, 2, 3, 1])
    y_b = torch.tensor([3, 1, 0, 0, 2])
    loss = mixed_loss(build_loss("mixup", [5, 4, 3, 2]), logits, y_a, y_b, lam)
    soft = lam * F.one_hot(y_a, 4) + (1 - lam) * F.one_hot(y_b, 4)
    ref = _soft_ce(logits, soft.double())
    torch.testing.assert_close(loss, ref)
    (grad,) = torch.autograd.grad(loss, logits)
    expected = (torch.softmax(logits, 1) - soft) / 5  # d/dz of the mean soft-target CE
    torch.testing.assert_close(grad, expected.detach())


def test_mixup_multilabel_is_bce_on_mixed_multi_hot_targets():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y_a = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=torch.float64)
    y_b = y_a[[1, 2, 3, 0]]
    loss_fn = build_loss("mixup", [2, 1, 2], kind="multilabel", n_samples=4)
    loss = mixed_loss(loss_fn, logits, y_a, y_b, 0.25)
    target = 0.25 * y_a + 0.75 * y_b
    p = torch.sigmoid(logits)
    ref = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    torch.testing.assert_close(loss, ref)
    (grad,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(grad, ((p - target) / 12).detach())


def _remix_rule(lam, n_i, n_j, kappa=3.0, tau=0.5):
    """The paper's rule, one pair at a time."""
    if n_i / n_j >= kappa and lam < tau:
        return 0.0
    if n_i / n_j <= 1 / kappa and 1 - lam < tau:
        return 1.0
    return lam


def test_remix_label_weights_follow_the_paper():
    counts = torch.tensor([300.0, 100.0, 99.0, 10.0], dtype=torch.float64)
    y_a = torch.tensor([0, 0, 1, 3, 2, 1, 0, 3])
    y_b = torch.tensor([1, 2, 0, 0, 0, 1, 3, 3])
    for lam in (0.1, 0.49, 0.5, 0.51, 0.9):
        got = remix_label_weights(lam, y_a, y_b, counts, 3.0, 0.5).tolist()
        expected = [
            _remix_rule(lam, float(counts[a]), float(counts[b]))
            for a, b in zip(y_a.tolist(), y_b.tolist())
        ]
        assert got == pytest.approx(expected)
    # 300/100 = 3 is >= kappa: relabelled to the minority class when lam < 0.5
    assert remix_label_weights(0.3, y_a[:1], y_b[:1], counts, 3.0, 0.5).item() == 0.0
    # 300/99 > 3 but 100/99 < 3: only the first relabels
    assert (
        remix_label_weights(0.3, torch.tensor([1]), torch.tensor([2]), counts, 3.0, 0.5).item()
        == 0.3
    )


def test_remix_loss_value_and_gradient():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y_a = torch.tensor([0, 1, 2, 0])
    y_b = torch.tensor([2, 0, 2, 1])
    lam = torch.tensor([0.0, 1.0, 0.3, 0.8], dtype=torch.float64)
    loss = mixed_loss(None, logits, y_a, y_b, lam)
    soft = lam[:, None] * F.one_hot(y_a, 3) + (1 - lam[:, None]) * F.one_hot(y_b, 3)
    torch.testing.assert_close(loss, _soft_ce(logits, soft))
    (grad,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(grad, ((torch.softmax(logits, 1) - soft) / 4).detach())


def test_mixer_draws_are_a_function_of_seed_and_epoch():
    x = torch.randn(6, 2, 3, 3)
    y = torch.tensor([0, 0, 0, 1, 1, 2])

    def run(epoch):
        m = Mixer("mixup", [3, 2, 1], "multiclass", seed=5)
        m.set_epoch(epoch)
        return [m.mix(x, y) for _ in range(2)]

    a, b, c = run(0), run(0), run(1)
    for (xa, ma), (xb, mb) in zip(a, b):
        assert torch.equal(xa, xb) and ma[2] == mb[2] and torch.equal(ma[1], mb[1])
    assert a[0][1][2] != c[0][1][2]
    rng = np.random.default_rng(np.random.SeedSequence([5, 0, 0x6D6978]))
    assert a[0][1][2] == pytest.approx(rng.beta(1.0, 1.0))  # lam ~ Beta(alpha, alpha)
    off = Mixer("mixup", [3, 2, 1], "multiclass", seed=5, alpha=0.0)
    off.set_epoch(0)
    xo, (_, _, lam) = off.mix(x, y)
    assert lam == 1.0 and torch.equal(xo, x)


def test_registry_params_and_kinds():
    assert default_params("mixup") == {"alpha": 1.0}
    assert default_params("remix") == {"alpha": 1.0, "kappa": 3.0, "tau": 0.5}
    assert method_kinds("mixup") == ("multiclass", "binary", "multilabel")
    assert method_kinds("remix") == ("multiclass", "binary")
    assert split_params("remix", {"kappa": 2.0}) == ({}, {}, {})  # the mixer's own
    mixer = build_mixer("remix", [3, 1], "binary", 0, kappa=2.0)
    assert mixer.params == {"alpha": 1.0, "kappa": 2.0, "tau": 0.5}
    assert build_mixer("ce", [3, 1], "binary", 0) is None
    with pytest.raises(ValueError, match="method 'mixup' has no parameter 'kappa'"):
        build_mixer("mixup", [3, 1], "binary", 0, kappa=2.0)
    with pytest.raises(ValueError, match="remix has no meaning for multilabel tasks"):
        Mixer("remix", [3, 1], "multilabel", 0)
    with pytest.raises(ValueError, match="parameter 'alpha' of mixup"):
        build_mixer("mixup", [3, 1], "binary", 0, alpha=-1.0)


def test_remix_training_resumes_to_identical_numbers(tiny_synthetic, tmp_path):
    """The mixing draws are a function of (seed, epoch): a run killed after its first epoch and
    resumed gives the numbers of an uninterrupted one, and mixing changes the training."""
    from imbench.train import Settings, train_cell

    def train(out, method="remix", log=lambda m: None):
        s = Settings.from_dict(dict(epochs=2, batch_size=32, image_size=16, lr=3e-3, threads=1))
        t = tiny_synthetic
        return train_cell(
            "synthetic", t["cache"], t["split"], "test_resnet", method, 0, s, out, log=log
        )

    class Killed(Exception):
        pass

    def die(msg):
        if msg.startswith("epoch 1/"):
            raise Killed

    run = train(tmp_path / "full")
    assert run["mixing_params"] == {"alpha": 1.0, "kappa": 3.0, "tau": 0.5}
    with pytest.raises(Killed):
        train(tmp_path / "resumed", log=die)
    train(tmp_path / "resumed")
    for name in ("predictions.csv", "history.csv"):
        full = pd.read_csv(tmp_path / "full" / name).drop(columns="seconds", errors="ignore")
        res = pd.read_csv(tmp_path / "resumed" / name).drop(columns="seconds", errors="ignore")
        pd.testing.assert_frame_equal(full, res)
    train(tmp_path / "ce", method="ce")
    ce = pd.read_csv(tmp_path / "ce" / "history.csv")
    assert not np.allclose(ce.train_loss, pd.read_csv(tmp_path / "full" / "history.csv").train_loss)
