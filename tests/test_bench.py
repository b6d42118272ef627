"""Smoke test of the bench/ scripts: each runs in --quick mode and writes a valid result JSON.

No timing is asserted (the numbers of a --quick run mean nothing). The planning script runs
``snakemake -n`` in a subprocess, which takes several seconds, so it is started first, in the
background, and checked last; the other scripts run in this process meanwhile.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
QUIET = ["--max-wait", "0", "--max-foreign", "99"]  # never wait for a quiet machine in a test


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(path: Path, benchmark: str) -> dict:
    result = json.loads(path.read_text())
    assert result["benchmark"] == benchmark
    assert result["quick"] is True
    assert result["command"].startswith("python bench/")
    assert {"cpu", "cores", "torch"} <= set(result["machine"])
    assert result["load"]["repeats"] >= 1
    assert result["figures"], "no figures"
    for f in result["figures"]:
        assert {"name", "value", "unit"} <= set(f)
        assert isinstance(f["value"], (int, float)) and f["value"] > 0
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module", autouse=True)
def planning_run(work):
    out = work / "planning.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(BENCH / "planning.py"),
            "--quick",
            "--out",
            str(out),
            "--work-dir",
            str(work / "planning"),
            *QUIET,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc, out
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_loop_overhead_quick(work):
    out = _load("loop_overhead").main(
        ["--quick", "--out", str(work / "loop.json"), "--work-dir", str(work / "data"), *QUIET]
    )
    r = _check(out, "loop_overhead")
    d = r["details"]
    (setting,) = d["settings"]
    run = setting["samples"][0]
    epochs = d["epochs_per_run"]
    # imbench, the plain loop and the LMF loop each ran every epoch on the same images
    assert set(run["epochs"]) == {"imbench", "plain", "lmf"}
    for name, ep in run["epochs"].items():
        assert len(ep["seconds"]) == len(ep["images"]) == epochs, name
    assert run["epochs"]["imbench"]["images"] == run["epochs"]["plain"]["images"]
    assert run["epochs"]["lmf"]["images"] == run["epochs"]["plain"]["images"]
    # one paired ratio per epoch after the warm-up one; the headline is their median
    for name, ratios in run["epoch_ratios"].items():
        assert len(ratios) == epochs - 1, name
    headline = r["figures"][0]
    assert headline["name"].startswith("imbench / plain PyTorch loop")
    assert headline["value"] == setting["median_epoch_ratios"]["imbench/plain"]
    assert any(f["name"].startswith("imbench / LMF official loop") for f in r["figures"])
    assert setting["memory_format_used"] in ("contiguous", "channels_last")


def test_checkpoint_cost_quick(work):
    out = _load("checkpoint_cost").main(
        ["--quick", "--out", str(work / "ckpt.json"), "--work-dir", str(work / "data"), *QUIET]
    )
    r = _check(out, "checkpoint_cost")
    cells = r["details"]["train_cell"]
    assert cells["every epoch (0 min)"]["checkpoint_writes"] == 2
    assert cells["default interval (10 min)"]["checkpoint_writes"] == 1


def test_plain_loop_quick(work):
    out = _load("plain_loop").main(
        ["--quick", "--out", str(work / "plain.json"), "--work-dir", str(work / "data"), *QUIET]
    )
    r = _check(out, "plain_loop")
    d = r["details"]
    (setting,) = d["settings"]
    run = setting["samples"][0]
    epochs = d["epochs_per_run"]
    # imbench and every plain variant ran and reported every epoch, training images included
    assert set(run["epochs"]) == {"imbench", "plain", "plain+cl", "plain+det", "plain+cl+det"}
    for name, ep in run["epochs"].items():
        assert len(ep["epoch_seconds"]) == len(ep["epoch_images"]) == epochs, name
        assert all(t > 0 for t in ep["epoch_seconds"]) and all(n > 0 for n in ep["epoch_images"]), (
            name
        )
    # one paired ratio per variant and epoch after the warm-up one; the headline is their median
    for name, ratios in run["epoch_ratios"].items():
        assert len(ratios) == epochs - 1, name
    headline = r["figures"][0]
    assert headline["unit"] == "ratio" and headline["name"].startswith("imbench / plain")
    medians, quartiles = setting["median_epoch_ratios"], setting["epoch_ratio_quartiles"]
    assert headline["value"] == medians["imbench"] == quartiles["imbench"][1]
    assert {f["name"].split(" (")[0] for f in r["figures"]} >= {
        "plain PyTorch loop",
        "imbench training loop",
    }


def test_loader_throughput_quick(work):
    out = _load("loader_throughput").main(
        ["--quick", "--out", str(work / "loader.json"), "--work-dir", str(work / "data"), *QUIET]
    )
    r = _check(out, "loader_throughput")
    assert r["details"]["samples"][0]["imbench_epochs"]
    assert r["details"]["identical_to_elementwise"] is True
    assert r["details"]["before_images_per_s"] > 0


def test_input_contention_quick(work):
    """The contention benchmark runs both phases, restores the copies' thread handling and the
    thread count, and its busy phase really had a competitor."""
    import torch

    from imbench import train

    before = torch.get_num_threads()
    out = _load("input_contention").main(["--quick", "--out", str(work / "ic.json"), *QUIET])
    r = _check(out, "input_contention")
    assert train.one_thread.__name__ == "one_thread" and torch.get_num_threads() == before
    sample = r["details"]["samples"][0]
    assert sample["competitor_ran_throughout"] is True
    assert "foreign_cores" in sample["load_busy_phase"]  # too short to measure in --quick
    assert {"quiet_after_2t", "busy_before_2t", "busy_after_1t"} <= set(sample)


def test_preprocessing_quick(work):
    out = _load("preprocessing").main(
        ["--quick", "--out", str(work / "prep.json"), "--work-dir", str(work / "data"), *QUIET]
    )
    r = _check(out, "preprocessing")
    assert r["details"]["ham"]["n"] > 0 and r["details"]["fundus"]["n"] > 0


def test_report_table(work, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    r = json.loads((work / "loop.json").read_text())
    r["quick"] = False  # quick results are left out of the table
    (results / "loop_overhead.json").write_text(json.dumps(r))
    shutil.copy(work / "prep.json", results / "preprocessing.json")
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(
        "# B\n\nbefore\n<!-- bench-table:start -->\nold\n<!-- bench-table:end -->\nafter\n"
    )
    assert _load("report").main(["--results", str(results), "--file", str(doc)]) == 0
    text = doc.read_text()
    assert "before" in text and "after" in text and "\nold\n" not in text
    assert "imbench / plain PyTorch loop" in text and "build_cache" not in text


def test_planning_quick(planning_run):
    proc, out = planning_run
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log
    r = _check(out, "planning")
    assert r["details"]["jobs"] > 0
    assert r["details"]["n_created_under_results"] == 0


def test_loader_throughput_standard_quick(work):
    """The like-for-like comparison: the same recipe on both sides, and the host share."""
    out = _load("loader_throughput").main(
        [
            "--quick",
            "--augment",
            "standard",
            "--out",
            str(work / "loader_std.json"),
            "--work-dir",
            str(work / "data"),
            *QUIET,
        ]
    )
    r = _check(out, "loader_throughput_standard")
    s = r["details"]["samples"][0]
    assert s["imbench_epochs"] and s["host_epochs"] and s["baseline_epochs"]
    names = [f["name"] for f in r["figures"]]
    assert any("ImageFolder" in n for n in names) and any("host share" in n for n in names)
