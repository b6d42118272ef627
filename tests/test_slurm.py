"""The SLURM path: profiles/slurm is valid for this workflow, and (slow) a real run on a cluster.

The fast tests need no cluster: the profile's keys are checked against the workflow's rules, and
a dry run through the profile (executor plugin installed) shows what each job would ask SLURM for.
The slow test runs workflow/slurm/run_demo.sh on the cluster that answers `sinfo` (a local one:
`sudo workflow/slurm/start_cluster.sh`); see docs/slurm.md.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILE_DIR = ROOT / "profiles" / "slurm"
PROFILE = PROFILE_DIR / "profile.yaml"
DEMO_CONFIG = ROOT / "workflow" / "slurm" / "demo.yaml"
SCRIPTS = [
    ROOT / "workflow" / "slurm" / name
    for name in ("start_cluster.sh", "stop_cluster.sh", "run_demo.sh")
]
PLUGIN = "snakemake_executor_plugin_slurm"


def workflow_rules() -> set[str]:
    names = set()
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        names.update(
            re.findall(r"^\s*(?:rule|checkpoint)\s+(\w+)\s*:", path.read_text(), flags=re.M)
        )
    return names


@pytest.fixture(scope="module")
def profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def test_profile_is_the_only_profile_file():
    # Snakemake 9 reads profile.yaml, or config.yaml for backwards compatibility: keep one of them.
    assert PROFILE.is_file()
    assert not (PROFILE_DIR / "config.yaml").exists()


def test_profile_keys(profile):
    assert profile["executor"] == "slurm"
    assert isinstance(profile["jobs"], int) and profile["jobs"] > 0
    assert profile["latency-wait"] >= 5
    defaults = profile["default-resources"]
    for key in ("slurm_partition", "slurm_account", "runtime", "mem_mb"):
        assert key in defaults, key
    rules = workflow_rules()
    assert {"train", "cache", "evaluate", "index", "split"} <= rules
    unknown = (set(profile["set-resources"]) | set(profile.get("set-threads", {}))) - rules
    assert not unknown, f"profile names rules the workflow does not have: {sorted(unknown)}"
    for rule, res in profile["set-resources"].items():
        for key in ("runtime", "mem_mb"):
            if key in res:
                assert isinstance(res[key], int) and res[key] > 0, (rule, key)
    train = profile["set-resources"]["train"]
    assert train["gpu"] == 1
    assert train["slurm_partition"]
    # Only training and the second stage of decoupling (a forward pass of the network) ask for a GPU.
    assert [r for r, res in profile["set-resources"].items() if "gpu" in res or "gres" in res] == [
        "train",
        "decouple",
    ]


def test_failed_and_preempted_jobs_are_retried(profile):
    """A failed job is submitted again and a pre-empted one is requeued by SLURM; both are
    documented in docs/slurm.md."""
    assert isinstance(profile["retries"], int) and profile["retries"] >= 1
    assert profile["slurm-requeue"] is True
    doc = (ROOT / "docs" / "slurm.md").read_text()
    assert "## Retries and pre-emption" in doc and "--requeue" in doc


def test_plugin_pinned_in_extra():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pins = [req for req in extras["slurm"] if req.startswith("snakemake-executor-plugin-slurm==")]
    assert len(pins) == 1, extras["slurm"]
    if importlib.util.find_spec(PLUGIN) is not None:
        from importlib.metadata import version

        assert pins[0].split("==")[1] == version("snakemake-executor-plugin-slurm")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_valid_bash(script):
    assert os.access(script, os.X_OK), f"{script} is not executable"
    assert "set -euo pipefail" in script.read_text()
    subprocess.run(["bash", "-n", str(script)], check=True)


def resources_by_rule(output: str) -> dict[str, list[str]]:
    """rule name -> the 'resources:' lines of its jobs in a dry run's output."""
    found: dict[str, list[str]] = {}
    rule = None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            rule = m.group(1)
        elif rule and line.strip().startswith("resources:"):
            found.setdefault(rule, []).append(line.strip())
    return found


@pytest.mark.skipif(
    importlib.util.find_spec(PLUGIN) is None,
    reason='snakemake-executor-plugin-slurm not installed (pip install -e ".[slurm]")',
)
def test_dry_run_through_profile(tmp_path):
    # A dry run submits nothing and needs no cluster; it shows the resources of every job.
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-n",
        "--profile",
        str(PROFILE_DIR),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(DEMO_CONFIG),
        "--max-threads",
        "1",
    ]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Using profile" in out
    res = resources_by_rule(out)
    assert len(res["train"]) == 2
    for line in res["train"]:
        assert "gpu=1" in line and "slurm_partition=gpu" in line and "slurm_account=" in line, line
    for rule in ("synthetic_data", "index", "split", "cache", "evaluate", "explain"):
        assert res[rule], rule
        for line in res[rule]:
            assert "gpu=" not in line and "slurm_partition=cpu" in line, (rule, line)


def cluster_answers() -> str | None:
    """None when a SLURM cluster with accounting answers, else the reason to skip."""
    if shutil.which("sinfo") is None:
        return "sinfo not on PATH (no SLURM client; local cluster: sudo workflow/slurm/start_cluster.sh)"
    try:
        subprocess.run(["sinfo", "-h"], check=True, capture_output=True, timeout=20)
    except (subprocess.SubprocessError, OSError):
        return "no SLURM controller answers sinfo (local cluster: sudo workflow/slurm/start_cluster.sh)"
    try:
        subprocess.run(
            ["sacct", "-n", "-X", "-S", "now"], check=True, capture_output=True, timeout=20
        )
    except (subprocess.SubprocessError, OSError):
        return "sacct does not work (no SLURM accounting), which the plugin's job polling needs"
    if importlib.util.find_spec(PLUGIN) is None:
        return 'snakemake-executor-plugin-slurm not installed (pip install -e ".[slurm]")'
    return None


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_demo_on_cluster(tmp_path):
    reason = cluster_answers()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "SNAKEMAKE": str(Path(sys.executable).parent / "snakemake")}
    env.setdefault("IMBENCH_SLURM_DEMO_DIR", str(tmp_path / "slurm_demo"))
    proc = subprocess.run(
        [str(ROOT / "workflow" / "slurm" / "run_demo.sh")],
        capture_output=True,
        text=True,
        timeout=1700,
        env=env,
        cwd=ROOT,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "OK: 9 SLURM jobs COMPLETED" in out
