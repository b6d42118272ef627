"""The plug-in example (examples/plugin_demo.yaml with examples/plugins/my_loss.py) end to end
through Snakemake: the plug-in method is trained, evaluated, compared with ce and reported, and the
example loss computes what its docstring says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import saved_registries
from test_pipeline import smk

from imbench import plugins
from imbench.io import read_json
from imbench.methods import METHODS, build_loss

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "plugin_demo.yaml"
CFG = yaml.safe_load(DEMO.read_text())
LOSS_PLUGIN = "examples/plugins/my_loss.py"


def test_the_demo_runs_the_loss_plugin_beside_ce():
    assert CFG["plugins"] == [LOSS_PLUGIN]
    assert CFG["methods"] == ["ce", "poly1"]
    assert "poly1" not in METHODS  # not a method of the package: the plug-in adds it


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("plugin_demo")
    shutil.copy(ROOT / "config.yaml", work / "config.yaml")
    (work / "examples" / "plugins").mkdir(parents=True)
    shutil.copy(ROOT / LOSS_PLUGIN, work / LOSS_PLUGIN)
    shutil.copy(DEMO, work / "examples" / "plugin_demo.yaml")
    smk(work, "--cores", "2", "--configfile", "examples/plugin_demo.yaml")
    return work


def test_the_plugin_method_is_in_the_tables_and_compared_with_ce(demo_run):
    tables_dir = demo_run / "results" / "plugin_demo" / "tables"
    summary = pd.read_csv(tables_dir / "summary.csv")
    assert set(summary.method) == {"ce", "poly1"}
    paired = pd.read_csv(tables_dir / "paired_vs_ce.csv")
    assert set(paired.method) == {"poly1"} and set(paired.baseline) == {"ce"}
    assert (paired.n_seeds == len(CFG["seeds"])).all()
    cell = demo_run / "results" / "plugin_demo" / "synthetic" / "test_resnet" / "poly1" / "seed0"
    run = read_json(cell / "run.json")
    sha = plugins.file_sha256(demo_run / LOSS_PLUGIN)
    assert run["plugins"] == [{"path": LOSS_PLUGIN, "sha256": sha}]
    assert run["method_info"]["source"].startswith("Leng et al. 2022")
    ce_run = read_json(cell.parents[1] / "ce" / "seed0" / "run.json")
    assert "plugins" not in ce_run


def test_the_report_is_built(demo_run):
    report = demo_run / "results" / "plugin_demo" / "report.html"
    smk(
        demo_run,
        "--configfile",
        "examples/plugin_demo.yaml",
        "--report",
        str(report.relative_to(demo_run)),
    )
    assert report.is_file() and report.stat().st_size > 10_000


@pytest.fixture
def restored_registry():
    with saved_registries():
        yield


def test_poly1_is_cross_entropy_plus_epsilon_times_one_minus_pt(restored_registry, monkeypatch):
    monkeypatch.chdir(ROOT)
    plugins.load_plugins([LOSS_PLUGIN])
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 4, generator=gen)
    targets = torch.randint(0, 4, (16,), generator=gen)
    counts = [40, 20, 10, 5]
    pt = F.softmax(logits, 1)[torch.arange(16), targets]
    ce = F.cross_entropy(logits, targets, reduction="none")
    for eps in (0.0, 1.0, 2.5):
        loss = build_loss("poly1", counts, "multiclass", epsilon=eps)
        assert torch.allclose(loss(logits, targets), (ce + eps * (1 - pt)).mean())
    assert build_loss("poly1", counts, "multiclass").params == {"epsilon": 1.0}
    y = (torch.rand(16, 4, generator=gen) > 0.5).float()
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    expected = (bce + 0.5 * (1 - (y * p + (1 - y) * (1 - p)))).mean()
    loss = build_loss("poly1", counts, "multilabel", n_samples=100, epsilon=0.5)
    assert torch.allclose(loss(logits, y), expected)
