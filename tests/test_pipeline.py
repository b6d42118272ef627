"""The Snakemake workflow end to end on a tiny grid: outputs, rerun semantics, config errors, lint."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


def smk(
    workdir: Path, *args: str, check: bool = True, timeout: int = 900
) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule → count."""
    jobs = {}
    block = output.split("Job stats:")[-1]
    for line in block.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    shutil.copy(TINY, work / "config.yaml")
    smk(work, "--cores", "2", "--configfile", "config.yaml")
    return work


def test_grid_outputs(tiny_run):
    res = tiny_run / "results" / "tiny"
    for method in ("ce", "ros", "thresholding", "bbfl"):
        for seed in (0, 1):
            cell = res / "synthetic" / "test_resnet" / method / f"seed{seed}"
            assert (cell / "metrics.json").is_file()
            if method != "thresholding":
                assert (cell / "benchmark.tsv").is_file() and (cell / "train.log").is_file()
    summary = pd.read_csv(res / "tables" / "summary.csv")
    assert set(summary.method) == {"ce", "ros", "thresholding", "bbfl"}
    assert (res / "tables" / "synthetic.md").read_text().count(" [") >= 4  # mean [low, high] cells
    # 6 summary figures (with many/medium/few shots) + t-SNE + Grad-CAM + the critical-difference diagram
    assert len(list((res / "figures").glob("*.png"))) == 9
    assert (res / "tables" / "ranking.md").is_file() and (res / "tables" / "ranking.csv").is_file()
    for ext in ("md", "tex"):
        assert (res / "tables" / f"synthetic.{ext}").is_file()
    assert (res / "tables" / "paper_vs_ours.csv").is_file()
    # grouped split written as CSV beside the results' inputs
    split = pd.read_csv(
        tiny_run / "resources" / "prepared" / "synthetic" / "split_seed0_frac0.7_0.15_0.15.csv"
    )
    assert (split.groupby("group").split.nunique() == 1).all()


def test_nothing_left_to_do(tiny_run):
    out = smk(tiny_run, "-n", "--configfile", "config.yaml")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_rerun_one_cell(tiny_run):
    cell = tiny_run / "results" / "tiny" / "synthetic" / "test_resnet" / "ros" / "seed1"
    target = str(cell.relative_to(tiny_run) / "metrics.json")
    other = (
        tiny_run
        / "results"
        / "tiny"
        / "synthetic"
        / "test_resnet"
        / "ros"
        / "seed0"
        / "metrics.json"
    )
    before = other.stat().st_mtime
    shutil.rmtree(cell)
    plan = smk(tiny_run, target, "-n", "--configfile", "config.yaml")
    assert planned_jobs(plan.stdout) == {"train": 1, "evaluate": 1}
    plan = smk(tiny_run, "-n", "--configfile", "config.yaml", "-R", target)
    assert planned_jobs(plan.stdout) == {"train": 1, "evaluate": 1, "aggregate": 1, "all": 1}
    smk(tiny_run, "--cores", "2", "--configfile", "config.yaml", "-R", target)
    assert (cell / "metrics.json").is_file()
    assert other.stat().st_mtime == before  # no other cell was recomputed
    assert (tiny_run / "results" / "tiny" / "tables" / "summary.csv").stat().st_mtime > (
        cell / "metrics.json"
    ).stat().st_mtime


@pytest.fixture
def tiny_copy(tiny_run, tmp_path):
    """A copy of the finished tiny run (files, times and Snakemake's records) for tests that damage it."""
    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    return work


def test_deleted_cell_or_file_is_replanned(tiny_copy):
    """Every file a table is made from is an input: deleting a cell folder, a weight file or a
    training history is noticed and recomputed, never 'Nothing to be done'."""
    cells = tiny_copy / "results" / "tiny" / "synthetic" / "test_resnet"
    for victim, expected in (
        (cells / "bbfl" / "seed1", {"train": 1, "evaluate": 1, "aggregate": 1, "all": 1}),
        (
            cells / "ros" / "seed0" / "best.pt",
            {"train": 1, "evaluate": 1, "aggregate": 1, "all": 1},
        ),
        (
            cells / "ros" / "seed1" / "history.csv",
            {"train": 1, "evaluate": 1, "aggregate": 1, "all": 1},
        ),
        (
            cells / "thresholding" / "seed0" / "predictions.csv",
            {"posthoc": 1, "evaluate": 1, "aggregate": 1, "all": 1},
        ),
    ):
        hidden = tiny_copy / "hidden"
        shutil.move(victim, hidden)
        out = smk(tiny_copy, "-n", "--configfile", "config.yaml")
        jobs = planned_jobs(out.stdout)
        shutil.move(hidden, victim)
        assert {k: v for k, v in jobs.items() if k != "explain"} == expected, (
            victim,
            out.stdout[-1500:],
            out.stderr[-1500:],
        )


def test_split_file_names_every_split_setting(tiny_copy):
    """Another experiment with other fractions plans its own split file; the finished experiment's
    split is neither rewritten nor deleted."""
    cfg = yaml.safe_load((tiny_copy / "config.yaml").read_text())
    cfg.update(experiment="other", split={"seed": 0, "fractions": [0.6, 0.2, 0.2]})
    (tiny_copy / "other.yaml").write_text(yaml.safe_dump(cfg))
    plan = smk(tiny_copy, "-n", "--configfile", "other.yaml").stdout
    assert "resources/prepared/synthetic/split_seed0_frac0.6_0.2_0.2.csv" in plan
    assert planned_jobs(plan)["split"] == 1 and "cache" not in planned_jobs(plan)
    ours = tiny_copy / "resources" / "prepared" / "synthetic" / "split_seed0_frac0.7_0.15_0.15.csv"
    assert "split_seed0_frac0.7_0.15_0.15.csv" not in plan
    record = yaml.safe_load(ours.with_suffix(".json").read_text())
    assert (
        record["fractions"] == [0.7, 0.15, 0.15]
        and record["seed"] == 0
        and len(record["index_sha256"]) == 64
    )


def test_stale_lock_of_a_killed_run_is_removed(tiny_copy):
    """A Snakemake process killed hard leaves its locks; the next run removes them itself (no
    --unlock needed) when no Snakemake process runs in the folder."""
    locks = tiny_copy / ".snakemake" / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "0.output.lock").write_text("results/tiny/tables/summary.csv\n")
    proc = smk(tiny_copy, "--cores", "1", "--configfile", "config.yaml")
    assert "removed 1 stale Snakemake lock" in proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_failing_job_message_reaches_snakemake_and_log(tiny_copy):
    """A job's one-line error is in its log and in Snakemake's own output (it survives a log that
    cannot be written, e.g. on a full disk)."""
    cell = tiny_copy / "results" / "tiny" / "synthetic" / "test_resnet" / "ce" / "seed1"
    lines = (cell / "predictions.csv").read_text().splitlines(keepends=True)
    (cell / "predictions.csv").write_text("".join(lines[:-3]))
    target = str((cell / "metrics.json").relative_to(tiny_copy))
    proc = smk(tiny_copy, "--cores", "1", "--configfile", "config.yaml", "-f", target, check=False)
    assert proc.returncode != 0
    expected = "imbench evaluate: error: results/tiny/synthetic/test_resnet/ce/seed1/predictions.csv: 3 of the"
    assert expected in proc.stderr
    assert expected in (cell / "evaluate.log").read_text()


def test_report(tiny_run):
    """Every figure is embedded in report.html as a decodable PNG; the page renders in a headless
    browser when one is installed (Debian's chromium)."""
    import base64
    import io

    from PIL import Image

    report = tiny_run / "results" / "tiny" / "report.html"
    smk(tiny_run, "--configfile", "config.yaml", "--report", str(report.relative_to(tiny_run)))
    html = report.read_text(errors="replace")
    figures = sorted(p.name for p in (tiny_run / "results" / "tiny" / "figures").glob("*.png"))
    assert len(figures) == 9  # 6 summary figures, t-SNE, Grad-CAM, critical-difference diagram
    for name in figures:
        m = re.search(
            rf"image/png;charset=utf8;filename={re.escape(name)};base64,([A-Za-z0-9+/=]+)", html
        )
        assert m, f"{name} is not embedded in the report"
        with Image.open(io.BytesIO(base64.b64decode(m.group(1)))) as img:
            assert img.format == "PNG" and min(img.size) > 100
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        shot = tiny_run / "report.png"
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tiny_run / 'chromium'}",
                "--window-size=1200,900",
                "--virtual-time-budget=5000",
                f"--screenshot={shot}",
                report.as_uri(),
            ],
            capture_output=True,
            timeout=120,
        )
        with Image.open(shot) as img:  # rendered, not blank
            assert len(set(img.convert("L").getdata())) > 10


def _bad_config(tmp_path, change) -> str:
    cfg = yaml.safe_load(TINY.read_text())
    change(cfg)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", "--configfile", "config.yaml", check=False, timeout=300)
    assert proc.returncode != 0
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()
    lines = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "invalid configuration" in line
    ]
    assert len(lines) == 1, proc.stdout + proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda c: c["methods"].append("smote"),
            r"config key 'methods\.4': 'smote' is not allowed; allowed values: \[.*'ce'",
        ),
        (
            lambda c: c.update(tasks=["ham20000"]),
            r"config key 'tasks\.0': 'ham20000' is not allowed; allowed values: \[.*'synthetic'",
        ),
        (
            lambda c: c.update(models=["resnet_999"]),
            r"config key 'models': unknown model 'resnet_999': not a timm model name .*torchvision",
        ),
        (lambda c: c.update(seeds="zero"), r"config key 'seeds': 'zero' is not of type 'array'"),
        (lambda c: c.pop("models"), r"config key '\(top level\)': 'models' is a required property"),
        (
            lambda c: c.update(protocol_overrides={"epoch": 3}),
            r"config key 'protocol_overrides.epoch': unknown training setting",
        ),
        (
            lambda c: c.update(method_params={"bbfl": {"gama": 1}}),
            r"config key 'method_params.bbfl.gama': method 'bbfl' has no parameter 'gama'",
        ),
        (
            lambda c: c.update(methods=["thresholding"]),
            r"'thresholding' reuses the predictions of 'ce'",
        ),
        # values of every kind, checked against their declarations (tests/test_config.py has the full table)
        (
            lambda c: c["protocol_overrides"].update(epochs=2.5),
            r"config key 'protocol_overrides.epochs': expected an integer ≥ 1, got 2\.5$",
        ),
        (
            lambda c: c["protocol_overrides"].update(batch_size="64"),
            r"config key 'protocol_overrides.batch_size': expected an integer ≥ 1, got '64'",
        ),
        (
            lambda c: c.update(method_params={"bbfl": {"gamma": -5}}),
            r"config key 'method_params.bbfl.gamma': expected a number ≥ 0 or null \(the default\), got -5$",
        ),
        (
            lambda c: c.update(split={"fractions": [0.7, 0.15, 0.05]}),
            r"config key 'split.fractions': expected 3 fractions .* \(sum 0\.9\)$",
        ),
        (
            lambda c: c.update(experiment=".."),
            r"config key 'experiment': expected a plain folder name .*, got '\.\.'$",
        ),
    ],
)
def test_bad_config_stops_before_any_work(tmp_path, change, expected):
    line = _bad_config(tmp_path, change)
    assert re.search(expected, line), line


def test_parameters_of_a_method_not_in_the_grid_warn(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["method_params"] = {"focal": {"gamma": 1.0}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", "--configfile", "config.yaml", timeout=300)
    lines = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert lines == [
        "imbench: warning: config key 'method_params.focal': method 'focal' is not in 'methods' "
        "['ce', 'ros', 'thresholding', 'bbfl']; its parameters are not used"
    ], proc.stderr


def test_lint_is_clean():
    proc = subprocess.run(
        [*SNAKEMAKE, "--lint", "--configfile", str(TINY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# SPEC §7: tasks × models × methods × seeds of every paper grid; post-hoc cells counted apart, and
# methods without meaning for a task kind (LDAM-family, BWCCE, logit adjustment on multi-label
# `odir`) skipped.
PAPER_GRIDS = {
    "lmf": {"train": 3 * 3 * 5 * 3},
    "bbfl": {"train": 3 * 3 * 7 * 3, "posthoc": 3 * 3 * 1 * 3},
    "dong": {"train": 1 * 3 * 2 * 3},
    "le2020": {
        "train": 1 * 4 * 4 * 3 * 5,
        "ensemble": 1 * 4 * 4 * 3,
        "cells": 1 * 4 * 4 * 3,
    },  # 5 folds
}


def _registry_grid(name: str) -> dict[str, int]:
    """Trained, post-hoc and second-stage cells of an experiment that lists its methods through the registry
    (`methods: all`): every method on every task of a kind where it has a meaning."""
    from imbench.config import load_config
    from imbench.data.tasks import get_task
    from imbench.methods import get_method, method_kinds

    cfg = load_config([ROOT / "experiments" / f"{name}.yaml"], base=ROOT / "config.yaml")
    out = {"train": 0, "posthoc": 0, "decouple": 0}
    for task in cfg["tasks"]:
        for m in cfg["methods"]:
            if get_task(task).kind in method_kinds(m):
                method = get_method(m)
                job = "train" if method.trains else "decouple" if method.stage2 else "posthoc"
                out[job] += 1
    return {k: v * len(cfg["models"]) * len(cfg["seeds"]) for k, v in out.items()}


# Every registered method: on the multi-label odir the single-label ones are skipped (drs runs there:
# plain, then re-sampled by the rarest positive label); thresholding runs on every task, la_posthoc
# on the 6 single-label ones, and the second stages crt, tau_norm and lws on those too.
PAPER_GRIDS["all"] = _registry_grid("all")


@pytest.mark.parametrize("name", list(PAPER_GRIDS))
def test_paper_grids_plan_exactly_their_cells(name, tmp_path):
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", "--configfile", f"experiments/{name}.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = planned_jobs(proc.stdout)
    expected = PAPER_GRIDS[name]
    assert jobs["train"] == expected["train"]
    assert jobs.get("ensemble", 0) == expected.get("ensemble", 0)
    assert jobs.get("posthoc", 0) == expected.get("posthoc", 0)
    assert jobs.get("decouple", 0) == expected.get("decouple", 0)
    assert jobs["evaluate"] == (
        expected.get("cells", expected["train"])
        + expected.get("posthoc", 0)
        + expected.get("decouple", 0)
    )


def test_image_level_split_is_planned_in_its_own_file_with_a_warning(tmp_path):
    """split.grouped: false: one warning line, and a split file beside (not over) the grouped one."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg["split"] = {**cfg.get("split", {}), "grouped": False}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", "--configfile", "config.yaml")
    assert "resources/prepared/synthetic/split_seed0_frac0.7_0.15_0.15_ungrouped.csv" in proc.stdout
    assert "--ungrouped" in proc.stdout or "grouping=_ungrouped" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if "split.grouped is false" in line]
    assert len(warnings) == 1 and "leakage" in warnings[0]
    cfg["split"]["grouped"] = True
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", "--configfile", "config.yaml")
    assert "split_seed0_frac0.7_0.15_0.15.csv" in proc.stdout and "_ungrouped" not in proc.stdout
    assert "split.grouped is false" not in proc.stderr


def test_cross_validation_and_per_model_image_sizes(tmp_path):
    """split.cv_folds: fold models → ensemble → evaluation and tables; model_image_size: one cache
    per size, each model trained at its own size."""
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(
        experiment="cv",
        models=["test_resnet", "test_efficientnet"],
        methods=["ce", "thresholding"],
        seeds=[0],
        model_image_size={"test_efficientnet": 24},
        split={"seed": 0, "cv_folds": 3},
        explain={"figures": ["tsne"]},
    )
    cfg["protocol_overrides"] = {**cfg["protocol_overrides"], "epochs": 1, "tta": "flips"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(smk(tmp_path, "-n", "--configfile", "config.yaml").stdout)
    assert (jobs["train"], jobs["ensemble"], jobs["posthoc"], jobs["evaluate"], jobs["cache"]) == (
        6,
        2,
        2,
        4,
        2,
    )
    smk(tmp_path, "--cores", "2", "--configfile", "config.yaml")
    res = tmp_path / "results" / "cv" / "synthetic"
    split = pd.read_csv(
        tmp_path / "resources" / "prepared" / "synthetic" / "split_seed0_frac0.7_0.15_0.15_cv3.csv"
    )
    assert sorted(split.cv_fold.unique()) == [-1, 0, 1, 2]
    for model, size in (("test_resnet", 16), ("test_efficientnet", 24)):
        cell = res / model / "ce" / "seed0"
        for k in range(3):
            run = yaml.safe_load((cell / f"fold{k}" / "run.json").read_text())
            assert (
                run["fold"] == k
                and run["settings"]["image_size"] == size
                and run["settings"]["tta"] == "flips"
            )
        run = yaml.safe_load((cell / "run.json").read_text())
        assert run["folds"] == 3 and (cell / "metrics.json").is_file()
        post = yaml.safe_load((res / model / "thresholding" / "seed0" / "run.json").read_text())
        assert post["base_cell"].endswith(f"{model}/ce/seed0")
    assert (tmp_path / "resources" / "cache" / "synthetic" / "24px-squash" / "images.npy").is_file()
    summary = pd.read_csv(tmp_path / "results" / "cv" / "tables" / "summary.csv")
    assert len(summary[["model", "method"]].drop_duplicates()) == 4
    assert (tmp_path / "results" / "cv" / "figures" / "synthetic_tsne.png").is_file()


def test_model_image_size_must_name_a_model(tmp_path):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["model_image_size"] = {"resnet50": 224}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", "--configfile", "config.yaml", check=False)
    assert proc.returncode != 0
    assert "model_image_size': 'resnet50' is not one of the models" in proc.stdout + proc.stderr
