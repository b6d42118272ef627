"""Cross-validation (Le et al.'s protocol): grouped folds, fold training, test-time augmentation and
the fold ensemble."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from imbench.data.split import add_cv_folds, grouped_split
from imbench.ensemble import ensemble_folds
from imbench.models import create_model
from imbench.train import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Settings,
    Split,
    predict,
    split_rows,
    train_cell,
)

TINY = dict(epochs=1, batch_size=32, image_size=16, lr=3e-3, threads=1)


# ----------------------------------------------------------------------------- folds


def test_real_ham10000_folds_are_grouped_stratified_and_keep_the_test_split(real_ham_index):
    single = grouped_split(real_ham_index, seed=0)
    out = add_cv_folds(single, 5, seed=0)
    assert out.split.tolist() == single.split.tolist()  # the test split is untouched
    test = out.split == "test"
    assert (out.cv_fold[test] == -1).all()
    assert sorted(out.cv_fold[~test].unique()) == [0, 1, 2, 3, 4]
    assert (out[~test].groupby("group").cv_fold.nunique() == 1).all()  # no lesion in two folds
    assert not set(out.group[test]) & set(out.group[~test])
    sizes = out.cv_fold[~test].value_counts(normalize=True)
    assert (sizes - 0.2).abs().max() < 0.02
    glob = out.label_name[~test].value_counts(normalize=True)
    for k, part in out[~test].groupby("cv_fold"):
        local = part.label_name.value_counts(normalize=True).reindex(glob.index, fill_value=0)
        assert (local - glob).abs().max() < 0.02, k


def test_folds_are_reproducible_and_checked(tiny_synthetic):
    single = grouped_split(tiny_synthetic["index"], seed=0)
    a, b = add_cv_folds(single, 3, seed=1), add_cv_folds(single, 3, seed=1)
    assert a.cv_fold.tolist() == b.cv_fold.tolist()
    assert a.cv_fold.tolist() != add_cv_folds(single, 3, seed=2).cv_fold.tolist()
    with pytest.raises(ValueError, match="at least 2 folds"):
        add_cv_folds(single, 1)
    with pytest.raises(ValueError, match="too few for 10000 folds"):
        add_cv_folds(single, 10000)
    with pytest.raises(ValueError, match="no 'split' column"):
        add_cv_folds(single.drop(columns="split"), 3)


def test_split_rows_of_a_fold():
    index = pd.DataFrame(
        {"split": ["train", "val", "test", "train", "val", "test"], "cv_fold": [0, 1, -1, 1, 0, -1]}
    )
    rows = split_rows(index, fold=0)
    assert (
        rows["val"].tolist() == [0, 4]
        and rows["train"].tolist() == [1, 3]
        and rows["test"].tolist() == [2, 5]
    )
    assert split_rows(index)["train"].tolist() == [0, 3]
    with pytest.raises(ValueError, match="fold 7 is not in"):
        split_rows(index, fold=7)
    with pytest.raises(ValueError, match="no cv_fold column"):
        split_rows(index.drop(columns="cv_fold"), fold=0)


# ----------------------------------------------------------------------------- test-time augmentation


def test_tta_is_the_mean_over_the_four_flips():
    torch.manual_seed(0)
    model = create_model("test_resnet", 4)
    images = torch.randint(0, 256, (5, 16, 12, 3), dtype=torch.uint8)
    index = pd.DataFrame(
        {"image_id": [str(i) for i in range(5)], "group": list("abcde"), "label": [0, 1, 2, 3, 0]}
    )
    split = Split(images.numpy(), index, np.arange(5))
    s = Settings(image_size=16, eval_batch_size=2)  # several batches
    got = predict(model, split, s, torch.device("cpu"), "multiclass", tta="flips")
    # independent: normalise the float images once, flip the float tensors, average the softmaxes
    x = images.permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(
        1, 3, 1, 1
    )
    model.eval()
    with torch.no_grad():
        views = [x, x.flip(3), x.flip(2), x.flip(2).flip(3)]
        want = torch.stack([model(v).softmax(1) for v in views]).mean(0).numpy()
        plain = model(x).softmax(1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        predict(model, split, s, torch.device("cpu"), "multiclass"), plain, rtol=1e-5, atol=1e-6
    )
    assert not np.allclose(got, plain)  # the views do differ
    ml = predict(model, split, s, torch.device("cpu"), "multilabel", tta="flips")
    with torch.no_grad():
        np.testing.assert_allclose(
            ml,
            torch.stack([torch.sigmoid(model(v)) for v in views]).mean(0).numpy(),
            rtol=1e-5,
            atol=1e-6,
        )


def test_bad_tta_setting():
    with pytest.raises(ValueError, match="tta"):
        Settings.from_dict({"tta": "crops"})


# ----------------------------------------------------------------------------- fold training + ensemble


@pytest.fixture(scope="module")
def folds(tiny_synthetic, tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    split = add_cv_folds(
        pd.read_csv(tiny_synthetic["split"], dtype={"image_id": str, "group": str}), 3, seed=0
    )
    split.to_csv(root / "split_cv.csv", index=False)
    s = Settings.from_dict({**TINY, "tta": "flips"})
    runs = [
        train_cell(
            "synthetic",
            tiny_synthetic["cache"],
            root / "split_cv.csv",
            "test_resnet",
            "ce",
            0,
            s,
            root / f"fold{k}",
            log=lambda m: None,
            fold=k,
        )
        for k in range(3)
    ]
    return {
        "root": root,
        "split": split,
        "runs": runs,
        "dirs": [root / f"fold{k}" for k in range(3)],
    }


def test_fold_models_train_on_the_other_folds(folds):
    split = folds["split"]
    for k, run in enumerate(folds["runs"]):
        assert run["fold"] == k
        train = split[(split.split != "test") & (split.cv_fold != k)]
        assert run["n_train"] == len(train)
        assert run["train_class_counts"] == np.bincount(train.label, minlength=7).tolist()
        preds = pd.read_csv(folds["dirs"][k] / "predictions.csv", dtype={"image_id": str})
        assert set(preds.image_id[preds.split == "val"]) == set(split.image_id[split.cv_fold == k])
        assert set(preds.image_id[preds.split == "test"]) == set(
            split.image_id[split.split == "test"]
        )
        assert run["settings"]["tta"] == "flips"


def test_ensemble_is_the_mean_of_the_folds_with_out_of_fold_validation(folds, tmp_path):
    run = ensemble_folds(list(reversed(folds["dirs"])), tmp_path / "cell")  # any order
    split = folds["split"]
    tables = [pd.read_csv(d / "predictions.csv", dtype={"image_id": str}) for d in folds["dirs"]]
    out = pd.read_csv(tmp_path / "cell" / "predictions.csv", dtype={"image_id": str})
    cols = [c for c in out.columns if c.startswith("prob_")]
    test = out[out.split == "test"].set_index("image_id")
    mean = sum(t[t.split == "test"].set_index("image_id")[cols] for t in tables) / 3
    # written with 6 significant digits, as every predictions table
    np.testing.assert_allclose(
        test[cols].to_numpy(), mean.loc[test.index].to_numpy(), rtol=0, atol=5e-7
    )
    assert (test.pred.to_numpy() == test[cols].to_numpy().argmax(1)).all()
    val = out[out.split == "val"].set_index("image_id")
    assert set(val.index) == set(split.image_id[split.split != "test"])  # every pool image once
    for t in tables:  # each from the model that held it out
        own = t[t.split == "val"].set_index("image_id")
        np.testing.assert_allclose(val.loc[own.index, cols].to_numpy(), own[cols].to_numpy())
    pool = split[split.split != "test"]
    assert run["train_class_counts"] == np.bincount(pool.label, minlength=7).tolist()
    assert run["folds"] == 3 and run["n_train"] == len(pool) and "fold" not in run
    assert len(run["fold_best_epochs"]) == 3 and run["tta"] == "flips"
    assert len(run["fold_optimizer_steps"]) == 3 and all(s > 0 for s in run["fold_optimizer_steps"])
    assert run["resolved"]["optimizer_steps"] == run["fold_optimizer_steps"][0]
    saved = json.loads((tmp_path / "cell" / "run.json").read_text())
    assert saved["identity_hash"] == run["identity_hash"]
    hist = pd.read_csv(tmp_path / "cell" / "history.csv")
    assert sorted(hist.fold.unique()) == [0, 1, 2]


def test_ensemble_refuses_incomplete_or_mixed_folds(folds, tmp_path):
    with pytest.raises(ValueError, match=r"expected folds 0..1"):
        ensemble_folds(folds["dirs"][1:], tmp_path / "a")
    with pytest.raises(ValueError, match=r"expected folds 0..2, got \[0, 0, 2\]"):
        ensemble_folds([folds["dirs"][0], folds["dirs"][0], folds["dirs"][2]], tmp_path / "b")
    overlap = (
        tmp_path / "overlap"
    )  # fold 1's run with fold 0's predictions: validation images twice
    overlap.mkdir()
    (overlap / "run.json").write_bytes((folds["dirs"][1] / "run.json").read_bytes())
    (overlap / "predictions.csv").write_bytes((folds["dirs"][0] / "predictions.csv").read_bytes())
    with pytest.raises(ValueError, match="validation fold of two fold models"):
        ensemble_folds([folds["dirs"][0], overlap, folds["dirs"][2]], tmp_path / "b")
    other = tmp_path / "other"
    other.mkdir()
    for name in ("predictions.csv", "history.csv"):
        (other / name).write_bytes((folds["dirs"][1] / name).read_bytes())
    run = json.loads((folds["dirs"][1] / "run.json").read_text())
    run["method"] = "focal"
    (other / "run.json").write_text(json.dumps(run))
    with pytest.raises(ValueError, match="another 'method'"):
        ensemble_folds([folds["dirs"][0], other, folds["dirs"][2]], tmp_path / "c")
    single = tmp_path / "single"
    single.mkdir()
    run = json.loads((folds["dirs"][0] / "run.json").read_text())
    del run["fold"]
    (single / "run.json").write_text(json.dumps(run))
    with pytest.raises(ValueError, match="not a cross-validation fold run"):
        ensemble_folds([single, folds["dirs"][1]], tmp_path / "d")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()
