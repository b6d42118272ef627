"""Training one cell: outputs, reproducibility, resume after a kill, every method end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from imbench.methods import build_loss, build_sampler, get_method, list_methods, method_kinds
from imbench.models import create_model
from imbench.train import Settings, train_cell

TINY = dict(epochs=2, batch_size=32, image_size=16, lr=3e-3, threads=1)


def _train(tiny, out, method="ce", seed=0, log=lambda m: None, **over):
    s = Settings.from_dict({**TINY, **over})
    return train_cell("synthetic", tiny["cache"], tiny["split"], "test_resnet", method, seed, s, out, log=log)


def test_outputs_and_records(tiny_synthetic, tmp_path):
    run = _train(tiny_synthetic, tmp_path / "cell")
    cell = tmp_path / "cell"
    for name in ("predictions.csv", "history.csv", "run.json", "best.pt"):
        assert (cell / name).is_file(), name
    assert not (cell / "checkpoint.pt").exists()
    preds = pd.read_csv(cell / "predictions.csv")
    split = pd.read_csv(tiny_synthetic["split"])
    assert set(preds.split) == {"val", "test"}
    assert len(preds) == (split.split != "train").sum()
    probs = preds.filter(like="prob_").to_numpy()
    assert probs.shape[1] == 7 and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert (preds.pred == probs.argmax(1)).all()
    hist = pd.read_csv(cell / "history.csv")
    assert list(hist.epoch) == [1, 2] and {"train_loss", "val_macro_f1", "lr", "seconds"} <= set(hist.columns)
    saved = json.loads((cell / "run.json").read_text())
    assert saved["settings"]["epochs"] == 2 and saved["versions"]["torch"] == torch.__version__
    assert saved["best_val_macro_f1"] == pytest.approx(hist.val_macro_f1.max())
    assert saved["timings"]["train_images_per_second"] > 0
    assert saved["hardware"]["device"] == "cpu"
    assert run["train_class_counts"] == np.bincount(split[split.split == "train"].label, minlength=7).tolist()


def test_same_seed_same_numbers(tiny_synthetic, tmp_path):
    _train(tiny_synthetic, tmp_path / "a", method="bbfl", seed=4)
    _train(tiny_synthetic, tmp_path / "b", method="bbfl", seed=4)
    _train(tiny_synthetic, tmp_path / "c", method="bbfl", seed=5)
    a, b, c = (pd.read_csv(tmp_path / x / "predictions.csv") for x in "abc")
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


class Killed(Exception):
    pass


def test_killed_run_resumes_to_identical_numbers(tiny_synthetic, tmp_path):
    _train(tiny_synthetic, tmp_path / "full", method="ldam_drw", epochs=3)

    def die_after_first_epoch(msg):
        if msg.startswith("epoch 1/"):
            raise Killed

    with pytest.raises(Killed):
        _train(tiny_synthetic, tmp_path / "resumed", method="ldam_drw", epochs=3, log=die_after_first_epoch)
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "predictions.csv").exists()
    messages = []
    _train(tiny_synthetic, tmp_path / "resumed", method="ldam_drw", epochs=3, log=messages.append)
    assert any(m.startswith("resuming from") for m in messages)
    assert not any(m.startswith("epoch 1/") for m in messages)
    for name in ("predictions.csv", "history.csv"):
        full = pd.read_csv(tmp_path / "full" / name).drop(columns="seconds", errors="ignore")
        res = pd.read_csv(tmp_path / "resumed" / name).drop(columns="seconds", errors="ignore")
        pd.testing.assert_frame_equal(full, res)


def test_checkpoint_with_other_settings_is_ignored(tiny_synthetic, tmp_path):
    def die(msg):
        if msg.startswith("epoch 1/"):
            raise Killed

    with pytest.raises(Killed):
        _train(tiny_synthetic, tmp_path / "x", epochs=2, log=die)
    messages = []
    _train(tiny_synthetic, tmp_path / "x", epochs=2, lr=1e-3, log=messages.append)
    assert any("written for other settings" in m for m in messages)
    assert any(m.startswith("epoch 1/") for m in messages)


TRAINED = [m for m in list_methods() if get_method(m).trains]


@pytest.mark.parametrize("method", TRAINED)
def test_every_method_trains_one_step(method, tiny_synthetic):
    """Each method's loss, sampler and head run forward and backward on the real data path."""
    labels = pd.read_csv(tiny_synthetic["split"]).query("split == 'train'").label.to_numpy()
    counts = np.bincount(labels, minlength=7)
    loss_fn = build_loss(method, counts.tolist(), kind="multiclass", n_samples=len(labels))
    sampler = build_sampler(method, labels, 32, seed=0)
    sampler.set_epoch(0)
    if hasattr(loss_fn, "set_epoch"):
        loss_fn.set_epoch(0, 10)
    torch.manual_seed(0)
    model = create_model("test_resnet", 7, head=get_method(method).head)
    idx = np.asarray(next(iter(sampler)))
    x = torch.rand(len(idx), 3, 16, 16)
    y = torch.as_tensor(labels[idx])
    loss = loss_fn(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert "multiclass" in method_kinds(method)


def test_cosine_head_for_ldam_only():
    assert get_method("ldam").head == get_method("ldam_drw").head == "cosine"
    assert get_method("lmf").head == "linear"  # paper-faithful: LMF's official code uses a plain head
    model = create_model("test_resnet", 7, head="cosine")
    out = model(torch.rand(4, 3, 16, 16))
    assert out.abs().max() <= 1 + 1e-5


def test_bad_settings():
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) \['epoch'\]"):
        Settings.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="optimizer='rmsprop' is not one of"):
        Settings.from_dict({"optimizer": "rmsprop"})


def test_posthoc_method_does_not_train(tiny_synthetic, tmp_path):
    with pytest.raises(ValueError, match="post-hoc"):
        _train(tiny_synthetic, tmp_path / "t", method="thresholding")


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_sklearn(seed):
    from sklearn.metrics import f1_score

    from imbench.train import macro_f1

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 60)
    labels[labels == 3] = 0  # class 3 absent from the labels
    probs = rng.dirichlet(np.ones(6), 60)  # 6 classes: class 5 never true
    ref = f1_score(labels, probs.argmax(1), labels=list(range(6)), average="macro", zero_division=0)
    assert macro_f1(labels, probs, 6) == pytest.approx(ref)


def test_early_stopping_and_grad_clip(tiny_synthetic, tmp_path):
    messages = []
    _train(tiny_synthetic, tmp_path / "es", epochs=6, lr=0.0, early_stopping=1, grad_clip=1.0, log=messages.append)
    hist = pd.read_csv(tmp_path / "es" / "history.csv")
    # lr 0: only batch-norm statistics move, so the validation score soon stops improving; training
    # then ends exactly `patience` epochs after the best one
    best = int(hist.epoch[hist.val_macro_f1.to_numpy().argmax()])
    assert any(m.startswith("early stopping") for m in messages)
    assert len(hist) < 6 and int(hist.epoch.iloc[-1]) - best == 1


def test_autocast_is_off_on_cpu():
    from imbench.train import autocast

    with autocast(torch.device("cpu"), Settings()):
        assert not torch.is_autocast_enabled("cpu")


def test_corrupt_checkpoint_is_not_trusted(tiny_synthetic, tmp_path):
    cell = tmp_path / "c"
    cell.mkdir()
    (cell / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    messages = []
    _train(tiny_synthetic, cell, log=messages.append)
    assert any("ignoring unreadable checkpoint" in m and "starting from scratch" in m for m in messages)
    _train(tiny_synthetic, tmp_path / "ref")
    pd.testing.assert_frame_equal(pd.read_csv(cell / "predictions.csv"), pd.read_csv(tmp_path / "ref" / "predictions.csv"))


def test_nan_loss_names_the_cell(tiny_synthetic, tmp_path):
    with pytest.raises(FloatingPointError, match=r"cell synthetic/test_resnet/focal/seed0: training loss is nan"):
        _train(tiny_synthetic, tmp_path / "nan", method="focal", lr=1e30, epochs=1)
    assert not (tmp_path / "nan" / "predictions.csv").exists()


def test_sigkill_mid_epoch_then_rerun_gives_identical_metrics(tiny_synthetic, tmp_path):
    """A real kill: the training process gets SIGKILL during its second epoch, then is rerun."""
    import os
    import signal
    import subprocess
    import sys

    settings = json.dumps({**TINY, "epochs": 4})
    def cmd(out):
        return [sys.executable, "-m", "imbench", "train", "--task", "synthetic", "--cache-dir",
                str(tiny_synthetic["cache"]), "--split", str(tiny_synthetic["split"]), "--model", "test_resnet",
                "--method", "bbfl", "--seed", "3", "--settings", settings, "--out-dir", str(out)]

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(cmd(tmp_path / "full"), check=True, capture_output=True, env=env)
    proc = subprocess.Popen(cmd(tmp_path / "killed"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    for line in proc.stdout:
        if line.startswith("epoch 2/4"):  # epoch 2 checkpointed; epoch 3 is under way
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (tmp_path / "killed" / "checkpoint.pt").exists() and not (tmp_path / "killed" / "predictions.csv").exists()
    rerun = subprocess.run(cmd(tmp_path / "killed"), check=True, capture_output=True, text=True, env=env)
    assert "resuming from" in rerun.stdout and "after epoch 2 of 4" in rerun.stdout
    for name in ("predictions.csv", "history.csv"):
        a = pd.read_csv(tmp_path / "full" / name).drop(columns="seconds", errors="ignore")
        b = pd.read_csv(tmp_path / "killed" / name).drop(columns="seconds", errors="ignore")
        pd.testing.assert_frame_equal(a, b)


def _outputs(cell):
    return {name: (cell / name).read_bytes() for name in ("predictions.csv", "history.csv", "run.json", "best.pt")}


@pytest.mark.parametrize("failure", ["nan", "oom", "missing_weights"])
def test_failures_name_the_cell_and_leave_previous_outputs_untouched(failure, tiny_synthetic, tmp_path,
                                                                     monkeypatch):
    """A cell that completed once and fails on a rerun (other settings) keeps its complete outputs:
    training writes them only at the end, each through a temporary name."""
    cell = tmp_path / "cell"
    _train(tiny_synthetic, cell, method="focal", epochs=1)
    before = _outputs(cell)
    if failure == "nan":
        err, match, over = FloatingPointError, r"cell synthetic/test_resnet/focal/seed0: training loss is nan", \
            {"lr": 1e30, "epochs": 2}
    elif failure == "oom":
        import contextlib

        import imbench.train

        @contextlib.contextmanager
        def out_of_memory(device, settings):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            yield

        monkeypatch.setattr(imbench.train, "autocast", out_of_memory)
        err, match, over = RuntimeError, r"cell synthetic/test_resnet/focal/seed0: out of cpu memory at batch size 32", \
            {"epochs": 2}
    else:
        from imbench.models import MissingWeightsError

        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        err, match, over = MissingWeightsError, r"cell synthetic/test_resnet/focal/seed0: pretrained weights of " \
            r"model 'test_resnet' .* are not cached", {"pretrained": True}
    with pytest.raises(err, match=match) as info:
        _train(tiny_synthetic, cell, method="focal", **over)
    assert "\n" not in str(info.value)
    assert _outputs(cell) == before
    assert not list(cell.glob("*.tmp*")) and not list(cell.glob(".*"))
