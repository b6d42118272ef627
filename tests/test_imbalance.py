"""The imbalance axis: training split subsampled to ratio ρ with the exponential profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imbench.data.imbalance import (
    ImbalanceError,
    expand_tasks,
    imbalance_settings,
    parse_variant,
    profile_targets,
    subsample_split,
    variant_name,
    with_ratio_column,
)


def toy_split(train_counts, group_size=1, n_eval=3):
    """Training images per class (``group_size`` images per group) plus ``n_eval`` val and test
    images per class."""
    rows = []
    for c, n in enumerate(train_counts):
        for i in range(n):
            rows.append(("train", c, f"tr{c}_{i // group_size}"))
        for s in ("val", "test"):
            for i in range(n_eval):
                rows.append((s, c, f"{s}{c}_{i}"))
    df = pd.DataFrame(rows, columns=["split", "label", "group"])
    df.insert(0, "image_id", [f"img{i:04d}" for i in range(len(df))])
    return df


def test_profile_matches_the_ldam_drw_formula():
    # IMBALANCECIFAR10.get_img_num_per_cls: int(img_max * (1/ρ) ** (i / (K - 1)))
    counts = [500] * 10
    expected = [int(500 * (1 / 100) ** (i / 9)) for i in range(10)]
    assert profile_targets(counts, 100).tolist() == expected
    assert expected[0] == 500 and expected[-1] == 5


def test_profile_ranks_classes_by_count_and_never_grows():
    # ranks: class 1 (1000) → 0, class 2 (400) → 1, class 0 (300) → 2, class 3 (5) → 3
    t = profile_targets([300, 1000, 400, 5], 10)
    n = [int(1000 * 10 ** (-r / 3)) for r in range(4)]  # 1000, 464, 215, 100
    assert t.tolist() == [n[2], n[0], min(400, n[1]), 5]
    # ties by class index
    assert profile_targets([100, 100, 100], 4).tolist() == [100, 50, 25]


def test_exact_counts_on_toy_split_and_val_test_untouched():
    split = toy_split([100, 80, 60, 40])
    out, record = subsample_split(split, 27, seed=0)
    train = out[out.split == "train"]
    # targets 100 · 27^(−r/3) = 100, 33, 11, 3
    assert np.bincount(train.label, minlength=4).tolist() == [100, 33, 11, 3]
    assert record["train_counts"] == [100, 33, 11, 3]
    assert record["train_counts_before"] == [100, 80, 60, 40]
    assert record["achieved_ratio"] == pytest.approx(100 / 3)
    # validation and test rows unchanged, dropped training images marked unused, same rows
    for s in ("val", "test"):
        pd.testing.assert_frame_equal(out[split.split == s], split[split.split == s])
    assert set(out.split) == {"train", "val", "test", "unused"}
    assert (out.split == "unused").sum() == 280 - 147
    assert out.image_id.tolist() == split.image_id.tolist()
    assert set(split.split[out.split == "unused"]) == {"train"}


def test_class_with_fewer_than_its_target_keeps_all_and_ratio_is_recorded():
    split = toy_split([200, 150, 2])
    out, record = subsample_split(split, 10, seed=0)
    # targets 200, 63, 20 → the last class keeps its 2
    assert record["train_counts_target"] == [200, 63, 2]
    assert record["train_counts"] == [200, 63, 2]
    assert record["achieved_ratio"] == pytest.approx(100.0)


def test_groups_are_kept_whole():
    split = toy_split([120, 90, 60], group_size=3)
    out, record = subsample_split(split, 10, seed=3)
    train = split.split == "train"
    per_group = pd.DataFrame({"g": split.group[train], "s": out.split[train]}).groupby("g").s
    assert (per_group.nunique() == 1).all()
    # first fit never overshoots a target (groups of 3: targets 120, 37, 12 → 120, 36, 12)
    assert record["train_counts"] == [120, 36, 12]


def test_deterministic_from_the_seed():
    split = toy_split([100, 80, 60, 40])
    a, _ = subsample_split(split, 20, seed=1)
    b, _ = subsample_split(split, 20, seed=1)
    c, _ = subsample_split(split, 20, seed=2)
    assert a.split.tolist() == b.split.tolist()
    assert a.split.tolist() != c.split.tolist()


def test_group_with_several_classes_is_refused():
    split = toy_split([10, 10])
    split.loc[split.index[0], "group"] = "tr1_0"
    with pytest.raises(ImbalanceError, match="group 'tr1_0' has images of several classes"):
        subsample_split(split, 2)


def test_multilabel_and_cv_are_refused():
    with pytest.raises(ImbalanceError, match="multi-label"):
        subsample_split(toy_split([10, 5]), 2, kind="multilabel")
    with pytest.raises(ImbalanceError, match="cross-validation"):
        subsample_split(toy_split([10, 5]).assign(cv_fold=0), 2)


@pytest.mark.parametrize("bad", [0.5, 0, -3, "ten", None, True, float("nan"), [10]])
def test_bad_ratio_is_one_error_naming_the_key(bad):
    with pytest.raises(ImbalanceError, match=r"^imbalance\.ratio\[1\]: "):
        imbalance_settings({"imbalance": {"ratio": [10, bad]}})


def test_bad_sections():
    with pytest.raises(ImbalanceError, match=r"^imbalance\.ratios: unknown key"):
        imbalance_settings({"imbalance": {"ratios": [10]}})
    with pytest.raises(ImbalanceError, match=r"^imbalance\.seed: "):
        imbalance_settings({"imbalance": {"ratio": [10], "seed": -1}})
    with pytest.raises(ImbalanceError, match=r"^imbalance\.ratio: .* twice"):
        imbalance_settings({"imbalance": {"ratio": [10, 10.0]}})
    with pytest.raises(ImbalanceError, match=r"^task 'synthetic@rho0\.5'"):
        parse_variant("synthetic@rho0.5")
    with pytest.raises(ImbalanceError, match=r"^task 'synthetic@50'"):
        parse_variant("synthetic@50")


def test_variants_and_ratio_column():
    assert variant_name("synthetic", 50) == "synthetic@rho50"
    assert variant_name("synthetic", 12.5) == "synthetic@rho12.5"
    assert variant_name("synthetic", 12.3456789) == "synthetic@rho12.3456789"
    assert parse_variant(variant_name("s", 1 / 0.03))[1] == 1 / 0.03  # the name keeps every digit
    with pytest.raises(ImbalanceError, match=r"^imbalance\.ratio\[0\]: 1e\+16 is too large"):
        imbalance_settings({"imbalance": {"ratio": [1e16]}})
    assert parse_variant("ham10000@rho200") == ("ham10000", 200.0)
    assert parse_variant("ham10000") == ("ham10000", None)
    cfg = {"imbalance": {"ratio": [10, 100]}}
    assert expand_tasks(["synthetic", "ham10000@rho5"], cfg) == [
        "synthetic@rho10",
        "synthetic@rho100",
        "ham10000@rho5",
    ]
    assert expand_tasks(["synthetic"], {}) == ["synthetic"]
    df = pd.DataFrame({"task": ["a@rho10", "a"], "x": [1, 2]})
    assert with_ratio_column(df).columns.tolist() == ["task", "ratio", "x"]
    assert with_ratio_column(df)["ratio"].tolist() == ["10", ""]


# ----------------------------------------------------------------------------- configuration


def _cfg(**over):
    cfg = {
        "experiment": "x",
        "tasks": ["synthetic"],
        "models": ["test_resnet"],
        "methods": ["ce"],
        "seeds": [0],
        "protocol": "demo",
    }
    return {**cfg, **over}


@pytest.mark.parametrize(
    "over, expected",
    [
        ({"imbalance": {"ratio": [10, 0.5]}}, r"config key 'imbalance\.ratio\[1\]': 0\.5 must be"),
        (
            {"imbalance": {"ratio": ["x"]}},
            r"config key 'imbalance\.ratio\[0\]': 'x' is not a number",
        ),
        ({"tasks": ["synthetic@rho0.5"]}, r"config key 'tasks': task 'synthetic@rho0\.5'"),
        ({"tasks": ["nosuch@rho5"]}, r"config key 'tasks': unknown task 'nosuch@rho5'"),
        (
            {"tasks": ["synthetic_ml"], "imbalance": {"ratio": [10]}},
            r"config key 'imbalance': task 'synthetic_ml' is multi-label",
        ),
        (
            {"imbalance": {"ratio": [10]}, "split": {"cv_folds": 5}},
            r"config key 'imbalance': .*split\.cv_folds",
        ),
        (
            {"evaluation": {"shot_thresholds": [100, 20]}},
            r"evaluation\.shot_thresholds': expected \[low, high\]",
        ),
        (
            {"evaluation": {"shot_thresholds": [0.1, 20]}},
            r"evaluation\.shot_thresholds': .* mixes a fraction",
        ),
    ],
)
def test_bad_settings_stop_planning_with_one_line(over, expected):
    from imbench.config import ConfigError, check_config

    with pytest.raises(ConfigError, match=expected) as err:
        check_config(_cfg(**over))
    assert "\n" not in str(err.value)


def test_variants_pass_the_configuration_checks():
    from imbench.config import check_config
    from imbench.data.tasks import get_task

    assert check_config(_cfg(tasks=["synthetic@rho50"])) == []
    assert check_config(_cfg(imbalance={"ratio": [10, 100]})) == []
    assert get_task("synthetic@rho50") is get_task("synthetic")


# ----------------------------------------------------------------------------- shot groups


def test_shot_groups_and_recalls():
    from imbench.metrics import shot_group, shot_recalls

    counts = [500, 101, 100, 20, 19, 3]
    assert shot_group(counts) == ["many", "many", "medium", "medium", "few", "few"]
    rec = shot_recalls(counts, [0.9, 0.7, 0.5, 0.3, 0.2, None])
    assert rec["many"] == pytest.approx(0.8) and rec["medium"] == pytest.approx(0.4)
    assert rec["few"] == pytest.approx(0.2)  # a class without a recall is left out
    assert (rec["n_many"], rec["n_medium"], rec["n_few"]) == (2, 2, 2)
    # fractions of the largest class: few < 50, many > 250
    assert shot_group(counts, [0.1, 0.5]) == ["many", "medium", "medium", "few", "few", "few"]
    assert np.isnan(shot_recalls([5, 3], [1.0, 0.5])["many"])


def test_shots_table_has_ratio_and_groups_per_cell():
    from imbench.aggregate import shots_long, shots_table

    cells = [
        {
            "task": "synthetic@rho10",
            "model": "m",
            "method": "ce",
            "seed": 0,
            "train_class_counts": [200, 50, 5],
            "test": {"per_class": [{"recall": 1.0}, {"recall": 0.5}, {"recall": 0.0}]},
        }
    ]
    t = shots_table(cells)
    assert t.columns[:2].tolist() == ["task", "ratio"] and t.ratio.tolist() == ["10"]
    assert t[["many", "medium", "few"]].iloc[0].tolist() == [1.0, 0.5, 0.0]
    assert t.achieved_ratio.tolist() == [40.0]
    long = shots_long(t, "x")
    assert long.metric.tolist() == ["many_shot_recall", "medium_shot_recall", "few_shot_recall"]


def test_a_cell_trains_on_the_subsampled_images_only(tiny_synthetic, tmp_path):
    from imbench.train import Settings, train_cell

    split = pd.read_csv(tiny_synthetic["split"], dtype={"image_id": str, "group": str})
    out, record = subsample_split(split, 20, seed=0, num_classes=7)
    path = tmp_path / "split@rho20.csv"
    out.to_csv(path, index=False)
    s = Settings.from_dict(dict(epochs=1, batch_size=32, image_size=16, threads=1))
    run = train_cell(
        "synthetic@rho20", tiny_synthetic["cache"], path, "test_resnet", "ce", 0, s, tmp_path / "c"
    )
    assert run["train_class_counts"] == record["train_counts"]
    assert run["task"] == "synthetic@rho20"
    preds = pd.read_csv(tmp_path / "c" / "predictions.csv")
    assert len(preds) == (split.split != "train").sum()  # validation and test as in the base split
