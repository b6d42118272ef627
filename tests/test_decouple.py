"""Decoupling's second stage (crt, tau_norm, lws): the parts against independent formulations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imbench.config import ConfigError, check_config
from imbench.decouple import (
    TAU_GRID,
    ScaledClassifier,
    balanced_accuracy,
    class_balanced_epoch,
    resolve_stage2_params,
    tau_normalize,
    train_classifier,
)
from imbench.methods import declared_params, default_params, get_method, method_kinds


def test_tau_normalize_matches_row_loop():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 7, generator=g, dtype=torch.float64) * torch.arange(1, 6).view(5, 1)
    for tau in (0.0, 0.5, 1.0, 1.7, 2.0):
        expected = w.clone()
        for c in range(w.shape[0]):  # the official pnorm, one row at a time
            expected[c] = w[c] / torch.sqrt((w[c] ** 2).sum()) ** tau
        torch.testing.assert_close(tau_normalize(w, tau), expected)
    assert torch.equal(tau_normalize(w, 0.0), w)
    torch.testing.assert_close(tau_normalize(w, 1.0).norm(dim=1), torch.ones(5, dtype=w.dtype))
    assert TAU_GRID[0] == 0.0 and TAU_GRID[-1] == 2.0 and len(TAU_GRID) == 21


def test_lws_value_and_gradient_against_closed_form():
    g = torch.Generator().manual_seed(1)
    linear = nn.Linear(4, 3).double()
    head = ScaledClassifier(linear).double()
    with torch.no_grad():
        head.scales.copy_(torch.tensor([0.5, 1.0, 2.0]))
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    loss = F.cross_entropy(head(x), y)
    loss.backward()
    z = (x @ linear.weight.T + linear.bias).detach().numpy()  # the frozen classifier's logits
    s = np.array([0.5, 1.0, 2.0])
    logits = z * s
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[y.numpy()]
    ref_loss = -np.mean(np.log(p[np.arange(6), y.numpy()]))
    ref_grad = ((p - onehot) * z).mean(0)  # d/ds_c of the mean CE of s_c z_c
    assert float(loss.detach()) == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(head.scales.grad.numpy(), ref_grad, rtol=1e-10)
    assert linear.weight.grad is None and linear.bias.grad is None  # frozen


def test_class_balanced_epoch():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1)
    idx = class_balanced_epoch(labels, 3, np.random.default_rng(0))
    assert len(idx) == 3 * 10
    assert np.bincount(labels[idx], minlength=3).tolist() == [10, 10, 10]
    per_image = np.bincount(idx, minlength=len(labels))
    assert per_image[:10].tolist() == [1] * 10  # the largest class: every image once
    assert set(per_image[10:13].tolist()) <= {3, 4} and per_image[10:13].sum() == 10
    assert per_image[13] == 10
    again = class_balanced_epoch(labels, 3, np.random.default_rng(0))
    assert np.array_equal(idx, again)
    with pytest.raises(ValueError, match=r"no image of class\(es\) \[3\]"):
        class_balanced_epoch(labels, 4, np.random.default_rng(0))


def test_balanced_accuracy_matches_sklearn():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 50)
    pred = rng.integers(0, 4, 50)
    assert balanced_accuracy(y, pred, 4) == pytest.approx(balanced_accuracy_score(y, pred))


def _blobs(n_per_class, seed):
    rng = np.random.default_rng(seed)
    centres = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    labels = np.repeat(np.arange(3), n_per_class)
    feats = centres[labels] + rng.normal(size=(len(labels), 2))
    return torch.tensor(feats, dtype=torch.float32), labels


def test_crt_training_is_deterministic_and_keeps_the_best_epoch():
    feats, labels = _blobs([200, 20, 5], 0)
    val_feats, val_labels = _blobs([30, 30, 30], 1)

    def run():
        torch.manual_seed(0)
        head = nn.Linear(2, 3)
        state, history = train_classifier(
            head,
            feats,
            labels,
            val_feats,
            val_labels,
            3,
            seed=0,
            epochs=4,
            lr=0.2,
            momentum=0.9,
            weight_decay=5e-4,
            batch_size=64,
            log=lambda m: None,
        )
        return state, history

    (s1, h1), (s2, h2) = run(), run()
    assert h1 == h2 and all(torch.equal(s1[k], s2[k]) for k in s1)
    scores = [h["val_balanced_accuracy"] for h in h1]
    assert max(scores) > 0.9
    head = nn.Linear(2, 3)
    head.load_state_dict(s1)
    kept = balanced_accuracy(val_labels, head(val_feats).argmax(1).numpy(), 3)
    assert kept == max(scores)
    assert [h["lr"] for h in h1] == pytest.approx(
        [0.2 * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in range(4)]
    )


def test_registry_and_params():
    for name in ("crt", "tau_norm", "lws"):
        m = get_method(name)
        assert not m.trains and m.base == "ce" and m.stage2 == name and m.posthoc is None
        assert method_kinds(name) == ("multiclass", "binary")
    assert default_params("crt") == {
        "epochs": 10,
        "lr": 0.2,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "batch_size": 512,
    }
    assert default_params("lws")["epochs"] == 5
    assert default_params("tau_norm") == {"tau": "fit"}
    assert set(declared_params("tau_norm")) == {"tau"}
    assert resolve_stage2_params("tau_norm", {"tau": 0.5}) == {"tau": 0.5}
    with pytest.raises(ValueError, match="method 'crt' has no parameter 'tau'"):
        resolve_stage2_params("crt", {"tau": 1.0})
    with pytest.raises(ValueError, match="parameter 'epochs' of method 'crt'"):
        resolve_stage2_params("crt", {"epochs": 0})


def _config(**extra):
    cfg = {
        "experiment": "x",
        "tasks": ["synthetic"],
        "models": ["test_resnet"],
        "methods": ["ce", "crt"],
        "seeds": [0],
        "protocol": "demo",
        "split": {"seed": 0, "fractions": [0.7, 0.15, 0.15]},
    }
    cfg.update(extra)
    return cfg


def test_config_checks():
    assert check_config(_config()) == []
    with pytest.raises(ConfigError, match="'crt' reuses the predictions of 'ce'"):
        check_config(_config(methods=["crt"]))
    with pytest.raises(ConfigError, match="does not combine with split.cv_folds"):
        check_config(_config(split={"seed": 0, "fractions": [0.7, 0.15, 0.15], "cv_folds": 3}))
    with pytest.raises(ConfigError, match="method_params.tau_norm.tau"):
        check_config(_config(methods=["ce", "tau_norm"], method_params={"tau_norm": {"tau": -1}}))


def test_run_decouple_on_a_trained_ce_cell(tiny_synthetic, tmp_path):
    """The second stage writes a cell's files from the ce cell's saved network, the same bytes on
    a rerun, and refuses another method's cell or other data in one line."""
    import json

    import pandas as pd

    from imbench.decouple import run_decouple
    from imbench.train import Settings, train_cell

    t = tiny_synthetic
    s = Settings.from_dict(dict(epochs=1, batch_size=32, image_size=16, lr=3e-3, threads=1))
    ce = tmp_path / "ce"
    train_cell("synthetic", t["cache"], t["split"], "test_resnet", "ce", 0, s, ce)
    base = pd.read_csv(ce / "predictions.csv")
    small = {"epochs": 2, "batch_size": 64}
    for method, params in (("crt", small), ("lws", small), ("tau_norm", {})):
        out = tmp_path / method
        run = run_decouple(method, ce, t["cache"], t["split"], 0, out, params=params)
        preds = pd.read_csv(out / "predictions.csv")
        assert list(preds.columns) == list(base.columns)
        assert preds[["split", "image_id", "label"]].equals(base[["split", "image_id", "label"]])
        probs = preds.filter(like="prob_").to_numpy()
        assert np.allclose(probs.sum(1), 1, atol=1e-4) and (preds.pred == probs.argmax(1)).all()
        saved = json.loads((out / "run.json").read_text())
        assert saved["method"] == method and saved["second_stage"]["step"] == method
        assert (
            saved["train_class_counts"]
            == json.loads((ce / "run.json").read_text())["train_class_counts"]
        )
        again = tmp_path / f"{method}_again"
        run_decouple(method, ce, t["cache"], t["split"], 0, again, params=params)
        for name in ("predictions.csv", "run.json"):
            a, b = (out / name).read_bytes(), (again / name).read_bytes()
            if name == "run.json":  # the output folder is not recorded; everything else is equal
                assert json.loads(a) == json.loads(b)
            else:
                assert a == b
    assert run["second_stage"]["tau"] in TAU_GRID
    with pytest.raises(ValueError, match="'crt' needs a 'ce' cell, this is a 'crt' cell"):
        run_decouple("crt", tmp_path / "crt", t["cache"], t["split"], 0, tmp_path / "x")
    other = tmp_path / "split.csv"
    split = pd.read_csv(t["split"])
    split.loc[split.index[0], "split"] = "test" if split.split.iloc[0] != "test" else "val"
    split.to_csv(other, index=False)
    with pytest.raises(ValueError, match="are not the data the base cell"):
        run_decouple("crt", ce, t["cache"], other, 0, tmp_path / "y")
