"""Evaluation refuses predictions that do not cover the split or are malformed, naming the file,
and writes byte-identical metrics for identical inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from imbench.aggregate import aggregate
from imbench.evaluate import evaluate_cell, run_posthoc
from imbench.train import Settings, train_cell


@pytest.fixture(scope="module")
def cell(tiny_synthetic, tmp_path_factory):
    d = tmp_path_factory.mktemp("evalcell") / "synthetic" / "test_resnet" / "ce" / "seed0"
    s = Settings.from_dict(dict(epochs=1, batch_size=32, image_size=16, lr=3e-3, threads=1))
    train_cell(
        "synthetic", tiny_synthetic["cache"], tiny_synthetic["split"], "test_resnet", "ce", 0, s, d
    )
    return d


@pytest.fixture
def copy(cell, tmp_path):
    d = tmp_path / "synthetic" / "test_resnet" / "ce" / "seed0"
    shutil.copytree(cell, d)
    return d


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def test_predictions_cut_at_a_row_boundary_are_refused(copy, tiny_synthetic):
    p = copy / "predictions.csv"
    lines = _lines(p)
    p.write_text("".join(lines[:-5]))  # whole rows: still a well-formed CSV
    for split in (tiny_synthetic["split"], None):  # given, or found through run.json
        with pytest.raises(
            ValueError, match=rf"^{p}: 5 of the \d+ test images of .*split.csv are missing"
        ):
            evaluate_cell(copy, n_boot=10, split=split)
    assert not (copy / "metrics.json").exists()


def test_predictions_cut_mid_row_are_refused(copy):
    p = copy / "predictions.csv"
    p.write_text(p.read_text()[:-20])
    with pytest.raises(ValueError, match=rf"^{p}: "):
        evaluate_cell(copy, n_boot=10)


def _edit(path, fn):
    df = pd.read_csv(path, dtype={"image_id": str, "group": str})
    fn(df)
    df.to_csv(path, index=False)


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda df: df.loc.__setitem__((3, "prob_mel"), np.nan), "an empty value"),
        (lambda df: df.loc.__setitem__((3, "prob_mel"), 1.5), "a probability outside"),
        (lambda df: df.loc.__setitem__((3, "prob_mel"), -0.2), "a probability outside"),
        (lambda df: df.loc.__setitem__((3, "prob_mel"), np.inf), "a probability outside"),
        (lambda df: df.loc.__setitem__((3, "label"), 9), "a label that is not a class id"),
        (lambda df: df.loc.__setitem__((3, "pred"), -1), "a decision that is not a class id"),
        (lambda df: df.loc.__setitem__((3, "split"), "train"), "a split other than val/test"),
        (
            lambda df: df.loc.__setitem__((3, "image_id"), df.loc[4, "image_id"]),
            "an image_id listed twice",
        ),
    ],
)
def test_malformed_predictions_are_refused(copy, damage, words):
    p = copy / "predictions.csv"
    _edit(p, damage)
    with pytest.raises(ValueError, match=rf"^{p}: {words}"):
        evaluate_cell(copy, n_boot=10)


def test_probabilities_not_summing_to_one(copy):
    p = copy / "predictions.csv"
    probs = [c for c in pd.read_csv(p).columns if c.startswith("prob_")]
    _edit(p, lambda df: df.loc.__setitem__((0, probs), 0.5))
    with pytest.raises(ValueError, match=rf"^{p}: class probabilities not summing to 1"):
        evaluate_cell(copy, n_boot=10)


def test_duplicated_row_is_refused(copy):
    p = copy / "predictions.csv"
    lines = _lines(p)
    p.write_text("".join(lines + lines[-1:]))
    with pytest.raises(ValueError, match=rf"^{p}: an image_id listed twice"):
        evaluate_cell(copy, n_boot=10)


def test_predictions_of_other_images_are_refused(copy, tiny_synthetic, tmp_path):
    split = pd.read_csv(tiny_synthetic["split"], dtype={"image_id": str, "group": str})
    split.loc[split.split == "test", "image_id"] = (
        split.loc[split.split == "test", "image_id"] + "x"
    )
    other = tmp_path / "other_split.csv"
    split.to_csv(other, index=False)
    run = json.loads((copy / "run.json").read_text())
    del run["data"]["split_sha256"]  # a run.json that does not record its split's hash
    (copy / "run.json").write_text(json.dumps(run))
    with pytest.raises(
        ValueError, match=rf"{copy / 'predictions.csv'}: .* test images of {other} are missing"
    ):
        evaluate_cell(copy, n_boot=10, split=other)


def test_split_changed_since_training_is_refused(copy, tiny_synthetic, tmp_path):
    changed = tmp_path / "split.csv"
    changed.write_text(tiny_synthetic["split"].read_text() + "\n")
    with pytest.raises(ValueError, match="trained on another version of"):
        evaluate_cell(copy, n_boot=10, split=changed)


def test_posthoc_checks_its_base_predictions(copy, tmp_path):
    p = copy / "predictions.csv"
    _edit(p, lambda df: df.loc.__setitem__((2, "prob_nv"), 2.0))
    with pytest.raises(ValueError, match=rf"^{p}: a probability outside"):
        run_posthoc("thresholding", copy, tmp_path / "th")


def test_corrupt_metrics_json_is_named_by_aggregation(copy, tmp_path):
    evaluate_cell(copy, n_boot=10)
    m = copy / "metrics.json"
    m.write_text(m.read_text()[:50])
    with pytest.raises(ValueError, match=rf"^{m}: not valid JSON"):
        aggregate("x", tmp_path / "res", [m], n_boot=10)


def test_identical_evaluations_are_byte_identical(cell, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    evaluate_cell(cell, a, n_boot=20)
    evaluate_cell(cell, b, n_boot=20)
    assert a.read_bytes() == b.read_bytes()
    assert "seconds" not in json.loads(a.read_text())


def test_identical_aggregations_are_byte_identical(cell, tmp_path):
    """Tables from the same metrics are the same bytes (no timing, path or order dependence)."""
    evaluate_cell(cell, n_boot=20)
    outs = []
    for name in ("one", "two"):
        res = tmp_path / name
        aggregate("x", res, [cell / "metrics.json"], n_boot=20)
        outs.append(
            {p.relative_to(res): p.read_bytes() for p in sorted((res / "tables").glob("*"))}
        )
    assert outs[0].keys() == outs[1].keys() and len(outs[0]) >= 5
    assert outs[0] == outs[1]
