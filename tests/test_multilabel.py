"""The multi-label path end to end: index, split, training, post-hoc thresholds, metrics, tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imbench.aggregate import aggregate, figure_names
from imbench.config import check_config
from imbench.data.cache import build_cache
from imbench.data.multilabel import label_matrix, make_index
from imbench.data.split import grouped_split
from imbench.data.synthetic import generate
from imbench.data.tasks import get_task
from imbench.evaluate import evaluate_cell, run_posthoc
from imbench.methods.samplers import sampling_classes
from imbench.train import Settings, train_cell

CLASSES = get_task("synthetic_ml").classes


def test_sampling_class_is_rarest_positive():
    base = pd.DataFrame({"image_id": list("abcde"), "path": list("abcde"), "group": list("abcde")})
    y = np.array([[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 0, 0], [0, 1, 1]])  # counts p 3, q 2, r 2
    index = make_index(base, y, ["p", "q", "r"])
    # q and r are rarer than p; the q/r tie goes to the lower index; no positive → K ("none")
    assert index.label.tolist() == [1, 0, 2, 3, 1]
    assert index.label_name.tolist() == ["q", "p", "r", "none", "q"]
    assert np.array_equal(label_matrix(index, ["p", "q", "r"]), y)
    # the samplers derive the same sampling classes from the label matrix
    assert sampling_classes(y).tolist() == index.label.tolist()


@pytest.fixture(scope="module")
def ml_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    generate(root / "raw", n_images=300, seed=1, width=40, height=30, second_lesion_fraction=0.4)
    index = get_task("synthetic_ml").build(root / "raw")
    split = grouped_split(index, seed=0)
    split.to_csv(root / "split.csv", index=False)
    build_cache(index, root / "raw", root / "cache", size=16, workers=1)
    return root, index


def test_index_has_second_lesions(ml_data):
    _, index = ml_data
    y = label_matrix(index, CLASSES)
    assert (y.sum(1) == 2).mean() > 0.2 and (y.sum(1) >= 1).all()


def test_train_posthoc_evaluate_aggregate(ml_data, tmp_path):
    root, _ = ml_data
    s = Settings.from_dict(dict(epochs=1, batch_size=32, image_size=16))
    cells = []
    for method in ("ce", "bbfl", "cb_focal"):
        d = tmp_path / "synthetic_ml" / "test_resnet" / method / "seed0"
        train_cell(
            "synthetic_ml", root / "cache", root / "split.csv", "test_resnet", method, 0, s, d
        )
        cells.append(d)
    preds = pd.read_csv(cells[0] / "predictions.csv")
    assert [f"label_{c}" for c in CLASSES] + [f"pred_{c}" for c in CLASSES] <= list(preds.columns)
    th = tmp_path / "synthetic_ml" / "test_resnet" / "thresholding" / "seed0"
    run_posthoc("thresholding", cells[0], th)
    rule = json.loads((th / "run.json").read_text())["decision_rule"]
    assert rule["decision"] == "threshold" and len(rule["thresholds"]) == len(CLASSES)
    cells.append(th)
    for d in cells:
        m = evaluate_cell(d, n_boot=20)
        assert m["headline"] == "odir_score" and m["test"]["confusion_matrix"] is None
        assert 0 <= m["test"]["scalars"]["mean_f2"] <= 1
    aggregate("t", tmp_path / "res", [d / "metrics.json" for d in cells], n_boot=20)
    for name in figure_names("synthetic_ml"):
        assert (tmp_path / "res" / "figures" / name).is_file()
    assert "confusion" not in " ".join(figure_names("synthetic_ml"))
    md = (tmp_path / "res" / "tables" / "synthetic_ml.md").read_text()
    assert "## odir_score (headline)" in md and "## mean_f2" in md


def test_methods_without_meaning_are_skipped_at_planning():
    cfg = {
        "tasks": ["synthetic_ml", "synthetic"],
        "methods": ["ce", "ldam", "lmf", "focal"],
        "models": ["test_resnet"],
        "protocol": "demo",
    }
    skips = check_config(cfg)
    assert {(t, m) for t, m, _ in skips} == {("synthetic_ml", "ldam"), ("synthetic_ml", "lmf")}
    assert all("has no meaning for multilabel task 'synthetic_ml'" in note for _, _, note in skips)
