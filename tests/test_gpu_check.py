"""bench/gpu_check.py, the GPU acceptance command, smoke-tested on the CPU (``--dry-run``: tiny
sizes, the same code paths). The full dry run (every stage, including the packing of 4 cells in
separate processes) is slow-marked; the default run covers the training stages and the result
file."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--max-wait", "0", "--max-foreign", "99"]


def _gpu_check():
    spec = importlib.util.spec_from_file_location(
        "bench_gpu_check", ROOT / "bench" / "gpu_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path, *extra):
    out = tmp_path / "gpu_check.json"
    path = _gpu_check().main(
        ["--dry-run", "--out", str(out), "--work-dir", str(tmp_path / "work"), *QUIET, *extra]
    )
    return json.loads(Path(path).read_text())


@pytest.mark.timeout(120)
def test_dry_run_of_the_training_stages(tmp_path):
    r = _run(tmp_path, "--only", "throughput", "compile", "lmf")
    d = r["details"]
    assert r["benchmark"] == "gpu_check" and r["quick"] is True and d["dry_run"] is True
    assert d["all_ok"], d["status"]
    assert set(d["status"]) == {"prepare", "throughput", "compile", "lmf"}
    t = d["results"]["throughput"]
    assert t["imbench"]["images_per_s_last_epoch"] > 0 and t["upper_bound_images_per_s"] > 0
    assert t["imbench_standard_augment"]["images_per_s_last_epoch"] > 0
    assert d["results"]["compile"] == {"skipped": "torch.compile is exercised on CUDA only"}
    assert d["results"]["lmf"]["precision"] == "fp32"
    names = [f["name"] for f in r["figures"]]
    assert any("upper bound" in n for n in names) and any("lmf" in n for n in names)
    assert all(f.get("target") is None for f in r["figures"])  # a dry run meets no goal


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_full_dry_run(tmp_path):
    r = _run(tmp_path)
    d = r["details"]
    assert d["all_ok"], d["status"]
    p = d["results"]["packing"]
    assert p["devices"] == ["0"] and p["most_at_once"] >= 2
    assert sorted(x.split(" (")[0] for x in p["leases"]) == [
        f"leased GPU 0 slot {k}/4" for k in range(1, 5)
    ]
    assert set(d["results"]["data_path"]) == {"flip", "standard"}


def test_shell_wrapper_and_make_target():
    script = ROOT / "bench" / "gpu_check.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "gpu-check:" in (ROOT / "Makefile").read_text()


def test_a_stage_over_its_limit_is_recorded_and_the_rest_still_run(tmp_path, monkeypatch):
    import time

    m = _gpu_check()
    monkeypatch.setattr(m, "SLACK_S", 0)
    monkeypatch.setattr(m, "prepare", lambda work, s: {})
    monkeypatch.setattr(
        m, "STAGES", [("stuck", lambda ctx: time.sleep(30), 0.5), ("next", lambda ctx: {}, 5)]
    )
    t0 = time.monotonic()
    path = m.main(
        ["--dry-run", "--out", str(tmp_path / "r.json"), "--work-dir", str(tmp_path), *QUIET]
    )
    d = json.loads(Path(path).read_text())["details"]
    assert time.monotonic() - t0 < 20
    assert (
        d["status"]["stuck"]["ok"] is False
        and "exceeded its 0 s limit" in d["status"]["stuck"]["error"]
    )
    assert d["status"]["next"]["ok"] is True and d["all_ok"] is False
