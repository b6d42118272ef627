"""t-SNE and Grad-CAM figures on the tiny synthetic dataset with freshly initialised cells."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import timm
import torch

from imbench import explain
from imbench.io import write_json
from imbench.methods import get_method
from imbench.models import create_model
from imbench.train import Settings

MODEL = "test_resnet"


def make_cell(root, method: str, seed: int = 0, task: str = "synthetic", trained: bool = True):
    """A cell folder as ``train_cell`` leaves it (run.json + best.pt), weights from a fresh model."""
    from imbench.data.tasks import get_task

    cell = root / task / MODEL / method / f"seed{seed}"
    cell.mkdir(parents=True)
    classes = list(get_task("synthetic").classes)
    info = dataclasses.asdict(get_method(method))
    settings = dataclasses.asdict(Settings(image_size=16, epochs=1))
    write_json(
        cell / "run.json",
        {
            "task": task,
            "model": MODEL,
            "method": method,
            "seed": seed,
            "settings": settings,
            "kind": "multiclass",
            "classes": classes,
            "method_info": info,
        },
    )
    if trained:
        torch.manual_seed(seed + len(method))
        model = create_model(MODEL, len(classes), head=info["head"])
        torch.save(model.state_dict(), cell / "best.pt")
    return cell


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    root = tmp_path_factory.mktemp("cells")
    return {
        m: make_cell(root, m, trained=m != "thresholding") for m in ("ce", "ldam", "thresholding")
    }


def test_sample_rows_keeps_every_class_and_is_seeded():
    labels = np.array([0] * 500 + [1] * 5 + [2] * 30)
    rows = explain.sample_rows(labels, 60, seed=0)
    assert len(rows) == 60 and np.all(np.diff(rows) > 0)
    assert (labels[rows] == 1).sum() == 5 and (labels[rows] == 2).sum() >= 20
    assert np.array_equal(rows, explain.sample_rows(labels, 60, seed=0))
    assert not np.array_equal(rows, explain.sample_rows(labels, 60, seed=1))
    assert np.array_equal(explain.sample_rows(labels[:50], 60), np.arange(50))


def test_tsne_coordinates_are_reproducible_by_seed():
    x = np.random.default_rng(0).normal(size=(80, 64))  # > 50 features: PCA first
    a, b = explain.tsne_coordinates(x, seed=3), explain.tsne_coordinates(x, seed=3)
    assert a.shape == (80, 2) and np.array_equal(a, b)
    with pytest.raises(ValueError):
        explain.tsne_coordinates(x[:3])


def test_tsne_figure_writes_png_and_same_seed_gives_same_coordinates(
    tiny_synthetic, cells, tmp_path
):
    args = (list(cells.values()), tiny_synthetic["cache"], tiny_synthetic["split"])
    out = tmp_path / "synthetic_tsne.png"
    logs = []
    coords = explain.tsne_figure(*args, out, max_points=40, seed=0, log=logs.append)
    assert out.stat().st_size > 10_000
    assert list(dict.fromkeys(coords["method"])) == ["ce", "ldam"]  # post-hoc cell skipped
    assert any("thresholding" in line for line in logs)
    n_test = int(
        (
            np.loadtxt(tiny_synthetic["split"], dtype=str, delimiter=",", skiprows=1, usecols=5)
            == "test"
        ).sum()
    )
    assert len(coords) == 2 * min(40, n_test)
    # both panels embed the same images
    ce, ldam = coords[coords.method == "ce"], coords[coords.method == "ldam"]
    assert list(ce.image_id) == list(ldam.image_id)
    again = explain.embed_cells(*args, max_points=40, seed=0, log=lambda *_: None)
    assert np.array_equal(coords[["x", "y"]].to_numpy(), again[["x", "y"]].to_numpy())
    other = explain.embed_cells(*args, max_points=40, seed=1, log=lambda *_: None)
    assert not np.allclose(coords[["x", "y"]].to_numpy(), other[["x", "y"]].to_numpy())


def test_tsne_refuses_cells_of_different_tasks(tiny_synthetic, cells, tmp_path):
    odd = make_cell(tmp_path, "ce", task="synthetic_ml")
    with pytest.raises(ValueError, match="mix tasks"):
        explain.embed_cells([cells["ce"], odd], tiny_synthetic["cache"], tiny_synthetic["split"])
    with pytest.raises(ValueError, match="no cell with a trained model"):
        explain.embed_cells(
            [cells["thresholding"]], tiny_synthetic["cache"], tiny_synthetic["split"]
        )


def test_gradcam_maps_have_image_size_and_unit_range(tiny_synthetic, cells, tmp_path):
    out = tmp_path / "g.png"
    ex = explain.gradcam_figure(
        cells["ldam"], tiny_synthetic["cache"], tiny_synthetic["split"], out, per_class=2, seed=0
    )
    assert out.stat().st_size > 10_000
    n, h, w, _ = ex["images"].shape
    assert ex["maps"].shape == (n, h, w) == (n, 16, 16)
    assert np.isfinite(ex["maps"]).all() and ex["maps"].min() >= 0 and ex["maps"].max() <= 1
    assert ex["maps"].max() > 0  # at least one non-constant map
    # every class with test images appears, at most 2 images each
    _, counts = np.unique(ex["label"], return_counts=True)
    assert counts.max() <= 2 and len(counts) >= 5
    # 16-px images: layer4 and layer3 of the ResNet are 1×1, so the last larger map is used
    assert ex["layer"] == "layer2" and tuple(ex["map_shape"][-2:]) == (2, 2)
    again = explain.gradcam_examples(
        cells["ldam"], tiny_synthetic["cache"], tiny_synthetic["split"], per_class=2
    )
    assert np.array_equal(again["image_id"], ex["image_id"]) and np.allclose(
        again["maps"], ex["maps"], atol=1e-6
    )


def test_gradcam_refuses_a_posthoc_cell(tiny_synthetic, cells, tmp_path):
    with pytest.raises(FileNotFoundError, match="post-hoc"):
        explain.gradcam_figure(
            cells["thresholding"],
            tiny_synthetic["cache"],
            tiny_synthetic["split"],
            tmp_path / "x.png",
        )


@pytest.mark.parametrize(
    "name,size,expected",
    [
        ("test_resnet", 64, "layer4"),
        ("test_resnet", 32, "layer3"),
        ("test_efficientnet", 64, "bn2"),
    ],
)
def test_target_layer_is_the_last_map_before_pooling(name, size, expected):
    backbone = timm.create_model(name, num_classes=0)
    layer, module, shape = explain.find_target_layer(backbone, size)
    assert layer == expected and module is backbone.get_submodule(expected) and len(shape) == 4
    assert (
        explain.find_target_layer(
            backbone, size, layer="conv_stem" if "efficient" in name else "layer1"
        )[2][2]
        > 2
    )


def test_target_layer_refuses_a_transformer():
    with pytest.raises(ValueError, match="convolutional"):
        explain.find_target_layer(timm.create_model("test_vit", num_classes=0), 64)


def test_main_writes_both_figures(tiny_synthetic, cells, tmp_path, capsys):
    argv = [
        "--cells",
        *map(str, cells.values()),
        "--cache-dir",
        str(tiny_synthetic["cache"]),
        "--split",
        str(tiny_synthetic["split"]),
        "--out-dir",
        str(tmp_path / "fig"),
        "--max-points",
        "30",
        "--per-class",
        "1",
        "--threads",
        "1",
    ]
    assert explain.main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "synthetic_gradcam.png",
        "synthetic_tsne.png",
    ]
    assert explain.figure_names("synthetic") == ["synthetic_tsne.png", "synthetic_gradcam.png"]
    assert "gradcam" in capsys.readouterr().out
    assert explain.main([*argv[:-4], "--figures", "gradcam", "--gradcam-method", "ldam"]) == 0
    with pytest.raises(SystemExit):
        explain.main([*argv, "--figures", "gradcam", "--gradcam-method", "thresholding"])
