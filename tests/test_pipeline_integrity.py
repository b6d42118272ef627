"""Whole-workflow checks of content identity and reproducibility (slow: each runs the tiny grid or
part of it; the quick checks of the same behaviour are in test_integrity.py and test_pipeline.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_pipeline import ROOT, SNAKEMAKE, TINY, smk


def _config(work: Path, **changes) -> None:
    cfg = yaml.safe_load(TINY.read_text())
    cfg.update(changes)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.mark.slow
def test_killed_training_is_not_resumed_on_regenerated_data(tmp_path):
    """Kill a training job mid-run, regenerate the dataset with other content of the same size,
    rerun: the old weights are not resumed."""
    _config(
        tmp_path,
        methods=["ce"],
        seeds=[0],
        explain={"enabled": False},
        protocol_overrides={
            "epochs": 6,
            "image_size": 16,
            "batch_size": 32,
            "checkpoint_every_min": 0,  # a checkpoint after every epoch: one to kill the job on
        },
    )
    cell = tmp_path / "results" / "tiny" / "synthetic" / "test_resnet" / "ce" / "seed0"
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "1",
        f"{cell.relative_to(tmp_path)}/predictions.csv",
        "--configfile",
        "config.yaml",
    ]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while not (cell / "checkpoint.pt").exists():
            assert proc.poll() is None and time.time() < deadline, (
                "training ended before a checkpoint appeared"
            )
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (cell / "checkpoint.pt").exists() and not (cell / "predictions.csv").exists()
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    cfg["synthetic"] = {**cfg["synthetic"], "noise": 2.0}  # other pixels, same images and size
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = smk(
        tmp_path,
        f"{cell.relative_to(tmp_path)}/metrics.json",
        "--cores",
        "1",
        "--configfile",
        "config.yaml",
    )
    log = (cell / "train.log").read_text()
    assert "resuming" not in log, log
    assert "ignoring" in log and "other data" in log, log
    assert "stale Snakemake lock" in out.stderr


@pytest.mark.slow
def test_identical_runs_give_identical_bytes(tmp_path):
    """metrics.json, predictions.csv and every table of two independent runs are byte-identical."""
    runs = []
    for name in ("a", "b"):
        work = tmp_path / name
        work.mkdir()
        _config(work, explain={"enabled": False})
        smk(work, "--cores", "2", "--configfile", "config.yaml")
        res = work / "results" / "tiny"
        files = sorted(
            [
                *res.glob("*/*/*/seed*/metrics.json"),
                *res.glob("*/*/*/seed*/predictions.csv"),
                *res.glob("tables/*"),
            ]
        )
        runs.append({str(p.relative_to(res)): p.read_bytes() for p in files})
    assert len(runs[0]) > 20 and runs[0].keys() == runs[1].keys()
    differ = [k for k in runs[0] if runs[0][k] != runs[1][k]]
    assert not differ, differ
