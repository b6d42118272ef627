"""The embedded long-tail grid (experiments/longtail_demo.yaml) end to end through Snakemake, and
the job plan of the decoupling second stage: it reuses the ce cell and trains nothing else.

The grid runs as the file defines it, with its first seed only and with the methods the default
grid (config.yaml, run by other tests) leaves out, plus ce: every registered method runs in the
suite, and a method added to the registry joins this test with no edit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_pipeline import planned_jobs, smk

from imbench.methods import get_method, list_methods

ROOT = Path(__file__).resolve().parents[1]
LONGTAIL = ROOT / "experiments" / "longtail_demo.yaml"
DEFAULT_METHODS = yaml.safe_load((ROOT / "config.yaml").read_text())["methods"]
CFG = {
    **yaml.safe_load(LONGTAIL.read_text()),
    "seeds": [0],
    "methods": ["ce"] + [m for m in list_methods(variants=False) if m not in DEFAULT_METHODS],
}
POSTHOC = sum(get_method(m).posthoc is not None for m in CFG["methods"])
STAGE2 = sum(get_method(m).stage2 is not None for m in CFG["methods"])
CELLS = Path("results") / "longtail_demo" / "synthetic" / "test_resnet"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("longtail")
    shutil.copy(ROOT / "config.yaml", work / "config.yaml")
    (work / "longtail_demo.yaml").write_text(yaml.safe_dump(CFG))
    smk(work, "--cores", "2", "--configfile", "longtail_demo.yaml")
    return work


def test_every_method_is_compared_with_ce(demo_run):
    tables = demo_run / "results" / "longtail_demo" / "tables"
    summary = pd.read_csv(tables / "summary.csv")
    assert set(summary.method) == set(CFG["methods"])
    paired = pd.read_csv(tables / "paired_vs_ce.csv")
    assert set(paired.method) == set(CFG["methods"]) - {"ce"}
    for method in ("crt", "tau_norm", "lws"):
        for seed in CFG["seeds"]:
            cell = demo_run / CELLS / method / f"seed{seed}"
            assert (cell / "metrics.json").is_file() and (cell / "decouple.log").is_file()
            assert not (cell / "best.pt").exists() and not (cell / "train.log").exists()


def test_second_stage_reuses_the_ce_cell(demo_run):
    ce_weights = demo_run / CELLS / "ce" / "seed0" / "best.pt"
    before = ce_weights.stat().st_mtime_ns
    cell = demo_run / CELLS / "crt" / "seed0"
    shutil.rmtree(cell)
    target = str(CELLS / "crt" / "seed0" / "metrics.json")
    plan = smk(demo_run, target, "-n", "--configfile", "longtail_demo.yaml")
    assert planned_jobs(plan.stdout) == {"decouple": 1, "evaluate": 1}
    smk(demo_run, target, "--cores", "1", "--configfile", "longtail_demo.yaml")
    # forcing the second stage again: its own job, its evaluation and the tables; no training
    forced = str(CELLS / "lws" / "seed0" / "run.json")
    plan = smk(demo_run, "-n", "--configfile", "longtail_demo.yaml", "-R", forced)
    assert planned_jobs(plan.stdout) == {"decouple": 1, "evaluate": 1, "aggregate": 1, "all": 1}
    assert ce_weights.stat().st_mtime_ns == before  # the first stage was never rerun
    assert (cell / "metrics.json").is_file()
    # and a rerun of the first stage reruns every cell derived from it, once
    plan = smk(
        demo_run,
        "-n",
        "--configfile",
        "longtail_demo.yaml",
        "-R",
        str(CELLS / "ce" / "seed0" / "best.pt"),
    )
    expected = {
        "train": 1,
        "decouple": STAGE2,
        "posthoc": POSTHOC,
        "evaluate": 1 + STAGE2 + POSTHOC,
    }
    expected.update({"aggregate": 1, "all": 1})
    assert planned_jobs(plan.stdout) == {k: v for k, v in expected.items() if v}
