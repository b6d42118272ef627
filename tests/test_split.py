"""Grouped stratified splits: no group leakage, class proportions kept, reproducible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imbench.data.split import check_no_leakage, grouped_split


def test_real_ham10000_split_is_grouped_and_stratified(real_ham_index):
    index = real_ham_index
    out = grouped_split(index, seed=0)
    # no lesion in two splits
    assert (out.groupby("group").split.nunique() == 1).all()
    # sizes close to 70/15/15
    frac = out.split.value_counts(normalize=True)
    assert abs(frac["train"] - 0.70) < 0.02 and abs(frac["val"] - 0.15) < 0.02 and abs(frac["test"] - 0.15) < 0.02
    # class proportions within 2 points of the global ones in every split
    glob = out.label_name.value_counts(normalize=True)
    for split, part in out.groupby("split"):
        local = part.label_name.value_counts(normalize=True).reindex(glob.index, fill_value=0)
        assert (local - glob).abs().max() < 0.02, split


def test_split_is_reproducible_and_seed_dependent(tiny_synthetic):
    index = tiny_synthetic["index"]
    a, b, c = grouped_split(index, seed=1), grouped_split(index, seed=1), grouped_split(index, seed=2)
    assert a.split.tolist() == b.split.tolist()
    assert a.split.tolist() != c.split.tolist()
    assert set(a.split) == {"train", "val", "test"}


def test_leakage_check_catches_shared_group():
    df = pd.DataFrame({"group": ["a", "a", "b"], "split": ["train", "test", "val"]})
    with pytest.raises(ValueError, match="group 'a' appears in several splits"):
        check_no_leakage(df)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.3, -0.1), (0.6, 0.2, 0.3)])
def test_bad_fractions(tiny_synthetic, fractions):
    with pytest.raises(ValueError, match="fractions"):
        grouped_split(tiny_synthetic["index"], fractions)


def test_too_few_groups():
    df = pd.DataFrame({"label": [0, 1] * 5, "group": np.arange(10).astype(str)})
    with pytest.raises(ValueError, match="10 groups are too few for 20 folds"):
        grouped_split(df)


def test_official_split_is_kept(tmp_path):
    """A dataset with a published split (DermaMNIST) keeps it instead of a grouped split."""
    from imbench.cli import main

    index = pd.DataFrame({"image_id": [f"d{i}" for i in range(6)], "path": "x", "label": [0, 1] * 3,
                          "label_name": ["a", "b"] * 3, "group": [f"d{i}" for i in range(6)],
                          "official_split": ["train", "train", "valid", "val", "test", "test"]})
    index.to_csv(tmp_path / "index.csv", index=False)
    assert main(["split", "--index", str(tmp_path / "index.csv"), "--out", str(tmp_path / "split.csv")]) == 0
    out = pd.read_csv(tmp_path / "split.csv")
    assert out.split.tolist() == ["train", "train", "val", "val", "test", "test"]
    index.assign(official_split="holdout").to_csv(tmp_path / "bad.csv", index=False)
    assert main(["split", "--index", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "s2.csv")]) == 2
    assert not (tmp_path / "s2.csv").exists()
