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
    assert (
        abs(frac["train"] - 0.70) < 0.02
        and abs(frac["val"] - 0.15) < 0.02
        and abs(frac["test"] - 0.15) < 0.02
    )
    # class proportions within 2 points of the global ones in every split
    glob = out.label_name.value_counts(normalize=True)
    for split, part in out.groupby("split"):
        local = part.label_name.value_counts(normalize=True).reindex(glob.index, fill_value=0)
        assert (local - glob).abs().max() < 0.02, split


def test_split_is_reproducible_and_seed_dependent(tiny_synthetic):
    index = tiny_synthetic["index"]
    a, b, c = (
        grouped_split(index, seed=1),
        grouped_split(index, seed=1),
        grouped_split(index, seed=2),
    )
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

    index = pd.DataFrame(
        {
            "image_id": [f"d{i}" for i in range(6)],
            "path": "x",
            "label": [0, 1] * 3,
            "label_name": ["a", "b"] * 3,
            "group": [f"d{i}" for i in range(6)],
            "official_split": ["train", "train", "valid", "val", "test", "test"],
        }
    )
    index.to_csv(tmp_path / "index.csv", index=False)
    assert (
        main(
            ["split", "--index", str(tmp_path / "index.csv"), "--out", str(tmp_path / "split.csv")]
        )
        == 0
    )
    out = pd.read_csv(tmp_path / "split.csv")
    assert out.split.tolist() == ["train", "train", "val", "val", "test", "test"]
    index.assign(official_split="holdout").to_csv(tmp_path / "bad.csv", index=False)
    assert (
        main(["split", "--index", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "s2.csv")])
        == 2
    )
    assert not (tmp_path / "s2.csv").exists()


def lesion_index(n_groups=300, per_group=3, seed=0):
    """Several images per lesion (all of one class), imbalanced classes."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n_groups, p=[0.7, 0.2, 0.1])
    return pd.DataFrame(
        {
            "image_id": [f"i{k}" for k in range(n_groups * per_group)],
            "label": np.repeat(labels, per_group),
            "group": np.repeat([f"g{g}" for g in range(n_groups)], per_group),
        }
    )


def test_ungrouped_split_is_stratified_and_lets_groups_cross():
    import warnings

    from imbench.data.split import LeakageWarning, groups_in_several_splits, make_split

    index = lesion_index()
    with pytest.warns(
        LeakageWarning, match=r"split.grouped is false: \d+ of 300 groups .* more than one split"
    ):
        images = make_split(index, seed=0, grouped=False)
    assert not images.grouped.any()
    assert groups_in_several_splits(images) > 0  # the leakage the option exists to show
    with pytest.raises(ValueError, match="appears in several splits"):
        check_no_leakage(images)
    # stratified by class over images: each of the 20 folds holds every class to ±1 image, so a
    # split's class shares are within a few images (here < 2.5 points) of the global ones
    glob = index.label.value_counts(normalize=True)
    for split, frac in zip(("train", "val", "test"), (0.70, 0.15, 0.15)):
        part = images[images.split == split]
        assert abs(len(part) / len(index) - frac) < 0.01
        local = part.label.value_counts(normalize=True).reindex(glob.index, fill_value=0)
        assert (local - glob).abs().max() < 0.025, split
    assert (
        images.split.tolist() == make_split(index, seed=0, grouped=False).split.tolist()
    )  # reproducible

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the grouped default warns about nothing
        grouped = make_split(index, seed=0)
    assert grouped.grouped.all() and groups_in_several_splits(grouped) == 0
    check_no_leakage(grouped)


def test_ungrouped_cv_folds_let_groups_cross():
    from imbench.data.split import add_cv_folds, make_split

    index = lesion_index()
    with pytest.warns(UserWarning):
        single = make_split(index, seed=0, grouped=False)
    folds = add_cv_folds(single, 5, seed=0, grouped=False)
    inner = folds[folds.cv_fold >= 0]
    assert (inner.groupby("group").cv_fold.nunique() > 1).any()
    grouped = add_cv_folds(make_split(index, seed=0), 5, seed=0)
    assert (grouped[grouped.cv_fold >= 0].groupby("group").cv_fold.nunique() == 1).all()


def test_cli_ungrouped_split_warns_in_one_line(tmp_path, capsys):
    from imbench.cli import main

    index = lesion_index().assign(path="x", label_name=lambda d: d.label.astype(str))
    index.to_csv(tmp_path / "index.csv", index=False)
    assert (
        main(["split", "--index", str(tmp_path / "index.csv"), "--out", str(tmp_path / "g.csv")])
        == 0
    )
    assert "warning" not in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "g.csv").grouped.all()
    assert (
        main(
            [
                "split",
                "--index",
                str(tmp_path / "index.csv"),
                "--out",
                str(tmp_path / "u.csv"),
                "--ungrouped",
            ]
        )
        == 0
    )
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1 and "leakage" in err[0] and "groups" in err[0]
    assert not pd.read_csv(tmp_path / "u.csv").grouped.any()
