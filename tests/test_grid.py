"""One grid definition: the workflow, the configuration checks and `imbench plan` agree on it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from imbench import grid, plan
from imbench.config import check_config, load_config
from imbench.data.tasks import get_task
from imbench.methods import get_method, method_kinds

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "config.yaml", *sorted((ROOT / "experiments").glob("*.yaml"))]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_plan_checks_and_grid_agree(path):
    cfg = load_config([path], base=ROOT / "config.yaml")
    skips = check_config(copy.deepcopy(cfg))
    assert skips == grid.skips(cfg)
    p = plan.make_plan(copy.deepcopy(cfg))
    assert p.skipped == skips
    cells = list(grid.cells(cfg))
    assert p.n_cells == len(cells)
    assert p.n_trained == sum(get_method(m).trains for _, _, m, _ in cells)
    assert p.image_sizes == grid.image_sizes(cfg)
    # the skip rule itself: a method runs on a task exactly when the task's kind is one of its kinds
    for task in grid.tasks(cfg):
        for method in cfg["methods"]:
            runs = any(c[0] == task and c[2] == method for c in cells)
            assert runs == (get_task(task).kind in method_kinds(method))


def test_cells_nest_tasks_models_methods_seeds():
    cfg = {
        "tasks": ["synthetic", "synthetic_ml"],
        "models": ["a", "b"],
        "methods": ["ce", "ldam"],
        "seeds": [0, 1],
        "protocol": "demo",
    }
    cells = list(grid.cells(cfg))
    assert cells[:3] == [
        ("synthetic", "a", "ce", 0),
        ("synthetic", "a", "ce", 1),
        ("synthetic", "a", "ldam", 0),
    ]
    assert ("synthetic_ml", "a", "ldam", 0) not in cells  # ldam: single-label only
    assert len(cells) == 2 * 2 * 2 + 1 * 2 * 2
    assert grid.skips(cfg) == [
        (
            "synthetic_ml",
            "ldam",
            "method 'ldam' has no meaning for multilabel task 'synthetic_ml'; skipped",
        )
    ]


def test_image_size_falls_back_to_the_protocol():
    cfg = {
        "protocol": "demo",
        "protocol_overrides": {"image_size": 48},
        "models": ["a", "b"],
        "model_image_size": {"b": 299},
    }
    assert grid.image_sizes(cfg) == {"a": 48, "b": 299}
    assert grid.image_size(cfg, "a", 64) == 64  # the caller's resolved protocol size
