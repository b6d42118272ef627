"""experiments/ratio_demo.yaml end to end through Snakemake: the imbalance axis on the embedded data."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from test_pipeline import ROOT, smk

DEMO = ROOT / "experiments" / "ratio_demo.yaml"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("ratio_demo")
    shutil.copy(DEMO, work / "config.yaml")
    smk(work, "--cores", "2", "--configfile", "config.yaml")
    return work


def test_ratio_demo_runs_end_to_end(demo_run):
    cfg = yaml.safe_load(DEMO.read_text())
    ratios = cfg["imbalance"]["ratio"]
    res = demo_run / "results" / "ratio_demo"
    assert (res / "figures" / "ratio_sweep.png").stat().st_size > 0
    for r in ratios:
        assert (res / "figures" / f"synthetic@rho{r}_shots.png").is_file()
        assert (res / "tables" / f"synthetic@rho{r}.md").is_file()
    summary = pd.read_csv(res / "tables" / "summary.csv", dtype={"ratio": str})
    assert summary.columns[:2].tolist() == ["task", "ratio"]
    assert sorted(set(summary.ratio), key=float) == [str(r) for r in ratios]
    shot_metrics = {"many_shot_recall", "medium_shot_recall", "few_shot_recall"}
    assert shot_metrics <= set(summary.metric)
    paired = pd.read_csv(res / "tables" / "paired_vs_ce.csv", dtype={"ratio": str})
    assert "ratio" in paired.columns
    shots = pd.read_csv(res / "tables" / "shots.csv")
    assert {"many", "medium", "few", "n_many", "n_medium", "n_few"} <= set(shots.columns)
    md = (res / "tables" / f"synthetic@rho{ratios[-1]}.md").read_text()
    assert "## Recall by training-set size" in md and "| method | many | medium | few |" in md


def test_ratio_figure_is_in_the_report(demo_run):
    report = demo_run / "results" / "ratio_demo" / "report.html"
    smk(demo_run, "--configfile", "config.yaml", "--report", str(report.relative_to(demo_run)))
    html = report.read_text(errors="replace")
    for name in ("ratio_sweep.png", "synthetic@rho400_shots.png"):
        assert f"image/png;charset=utf8;filename={name};base64," in html, name


def test_variant_splits_subsample_training_only(demo_run):
    prepared = demo_run / "resources" / "prepared" / "synthetic"
    (base_csv,) = [p for p in prepared.glob("split_*.csv") if "@" not in p.name]
    base = pd.read_csv(base_csv, dtype={"image_id": str, "group": str})
    for path in sorted(prepared.glob("split_*@rho*_seed0.csv")):
        var = pd.read_csv(path, dtype={"image_id": str, "group": str})
        record = json.loads(path.with_suffix(".json").read_text())
        keep = var.split != "unused"
        assert var.image_id.tolist() == base.image_id.tolist()
        assert (base.split[~keep] == "train").all()  # only training images dropped
        pd.testing.assert_frame_equal(var[base.split != "train"], base[base.split != "train"])
        counts = np.bincount(var.label[var.split == "train"], minlength=7).tolist()
        assert counts == record["train_counts"]
        assert max(counts) == max(record["train_counts_before"])  # the largest class keeps all
        # the cells trained on exactly those counts
        run = json.loads(
            next(
                (demo_run / "results" / "ratio_demo").glob(
                    f"synthetic@rho{record['ratio']:g}/*/ce/seed0/run.json"
                )
            ).read_text()
        )
        assert run["train_class_counts"] == record["train_counts"]


def test_nothing_left_to_do_and_cache_is_shared(demo_run):
    proc = smk(demo_run, "-n", "--configfile", "config.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    # one cache and one base split for the base task, none per variant
    assert [p.name for p in (demo_run / "resources" / "cache").iterdir()] == ["synthetic"]


def test_ratio_sweep_plans_one_split_per_variant_and_shared_data():
    """experiments/ratio_sweep.yaml: every (task, ratio) is a task variant with its own subsampled
    split; index, base split and cache are the base task's, once."""
    from test_pipeline import SNAKEMAKE, planned_jobs

    proc = subprocess.run(
        [*SNAKEMAKE, "-n", "--configfile", "experiments/ratio_sweep.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = planned_jobs(proc.stdout)
    cfg = yaml.safe_load((ROOT / "experiments" / "ratio_sweep.yaml").read_text())
    n_variants = len(cfg["tasks"]) * len(cfg["imbalance"]["ratio"])
    assert jobs["imbalance_split"] == n_variants
    assert jobs["split"] == jobs["index"] == jobs["cache"] == len(cfg["tasks"])
    assert jobs["train"] == n_variants * (len(cfg["methods"]) - 1) * len(cfg["seeds"])
    assert "ham10000@rho200" in proc.stdout and "isic2019@rho10" in proc.stdout


@pytest.mark.parametrize(
    "imbalance, expected",
    [
        ({"ratio": [10, 0.5]}, "config key 'imbalance.ratio[1]': 0.5 must be a finite number ≥ 1"),
        ({"ratio": ["ten"]}, "config key 'imbalance.ratio[0]': 'ten' is not a number"),
        ({"ratios": [10]}, "config key 'imbalance.ratios': unknown key"),
    ],
)
def test_bad_imbalance_stops_the_workflow_with_one_line(tmp_path, imbalance, expected):
    cfg = yaml.safe_load(DEMO.read_text())
    cfg["imbalance"] = imbalance
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", "--configfile", "config.yaml", check=False)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if expected in line]
    assert len(lines) == 1, proc.stderr[-2000:]
