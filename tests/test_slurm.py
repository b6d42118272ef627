"""The SLURM path: profiles/slurm is valid for this workflow, and (slow) a real run on a cluster.

The fast tests need no cluster: the profile's keys are checked against the workflow's rules, and
a dry run through the profile (executor plugin installed) shows what each job would ask SLURM for.
The slow test runs workflow/slurm/run_demo.sh on the cluster that answers `sinfo` (a local one:
`sudo workflow/slurm/start_cluster.sh`); see docs/slurm.md. The slow two-node tests start the
local cluster with two nodes themselves (`start_cluster.sh --nodes 2`, as root, Slurm packages
already installed) and stop it again afterwards unless it was running before.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
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


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--nodes", "9"], {}, "must be 1 to 8, got '9'"),
        (["--nodes=0"], {}, "must be 1 to 8, got '0'"),
        (["--nodes"], {}, "--nodes needs a value"),
        ([], {"IMBENCH_SLURM_NODES": "two"}, "must be 1 to 8, got 'two'"),
        (["--nodes", "2"], {"IMBENCH_SLURM_SUBNET": "10.300.7"}, "IMBENCH_SLURM_SUBNET must be"),
        (["--node", "2"], {}, "unknown argument '--node'"),
    ],
)
def test_start_cluster_rejects_bad_options(args, env, message):
    """Options are checked before anything else (root, packages, daemons): one error line."""
    proc = subprocess.run(
        [str(SCRIPTS[0]), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("[start_cluster] ERROR: "), proc.stderr
    assert message in lines[0]


def test_start_cluster_help_documents_nodes():
    proc = subprocess.run(
        [str(SCRIPTS[0]), "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    assert "--nodes N" in proc.stdout and "IMBENCH_SLURM_NODES" in proc.stdout
    assert not proc.stdout.startswith("#!")


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
    demo_dir = os.environ.get("IMBENCH_SLURM_DEMO_DIR", str(tmp_path / "slurm_demo"))
    run_demo(demo_dir, timeout=1700)


def run_demo(demo_dir, timeout: int) -> str:
    """workflow/slurm/run_demo.sh with this environment's snakemake, its output in ``demo_dir``;
    asserts that it succeeded with its 9 jobs COMPLETED and returns what it printed."""
    snakemake = str(Path(sys.executable).parent / "snakemake")
    env = {**os.environ, "SNAKEMAKE": snakemake, "IMBENCH_SLURM_DEMO_DIR": str(demo_dir)}
    proc = subprocess.run(
        [str(ROOT / "workflow" / "slurm" / "run_demo.sh")],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "OK: 9 SLURM jobs COMPLETED" in out
    return out


# --- two nodes ----------------------------------------------------------------------------------

SLURM_DIR = ROOT / "workflow" / "slurm"
TWO_NODES = ("node1", "node2")
# Daemons and commands start_cluster.sh needs installed (it installs them with apt-get, which these
# offline tests do not do).
CLUSTER_COMMANDS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")


def pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def two_node_cluster_missing() -> str | None:
    """None when this machine can run start_cluster.sh --nodes 2, else the reason to skip."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, daemons): sudo python -m pytest -m slow ..."
    path = f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin"
    for tool in ("ip", "unshare", "nsenter"):
        if shutil.which(tool, path=path) is None:
            return f"'{tool}' not found (iproute2 / util-linux)"
    missing = [c for c in CLUSTER_COMMANDS if shutil.which(c, path=path) is None]
    if missing:
        return (
            f"Slurm packages not installed (no {', '.join(missing)}): "
            "sudo workflow/slurm/start_cluster.sh installs them"
        )
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and "workflow/slurm/start_cluster.sh" not in conf.read_text():
        return f"{conf} was not written by start_cluster.sh (a real cluster node?)"
    return None


@pytest.fixture(scope="module")
def two_node_cluster():
    """The local cluster with two nodes, started for these tests and stopped after them (left
    running if it was running before)."""
    reason = two_node_cluster_missing()
    if reason:
        pytest.skip(reason)
    was_running = pid_alive(Path("/run/slurmctld.pid"))

    def stop() -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SLURM_DIR / "stop_cluster.sh")], capture_output=True, text=True, timeout=300
        )

    t0 = time.monotonic()
    proc = subprocess.run(
        [str(SLURM_DIR / "start_cluster.sh"), "--nodes", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and "configuration changed while SLURM is running" in out:
        pytest.skip("a SLURM cluster of another shape is running: workflow/slurm/stop_cluster.sh")
    if proc.returncode != 0 and not was_running:
        stop()  # nothing half-started is left behind
    assert proc.returncode == 0, out[-5000:]
    print(f"start_cluster.sh --nodes 2: {time.monotonic() - t0:.1f} s")
    yield
    if not was_running:
        proc = stop()
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def sacct_jobs(*args: str) -> list[dict[str, str]]:
    """Allocations (-X) that sacct lists for ARGS: JobID, JobName, NodeList, State per job."""
    fields = ["JobID", "JobName", "NodeList", "State"]
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", "now-1days", "-o", ",".join(fields), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines() if line]


def jobs_per_node(jobs: list[dict[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["NodeList"]] = counts.get(job["NodeList"], 0) + 1
    return dict(sorted(counts.items()))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_node_cluster_runs_jobs_on_both_nodes(two_node_cluster, tmp_path):
    """Batch jobs that call srun inside (as the plugin's job-step executor does) land on both
    nodes, each step sees its node's own hostname, and a GPU job runs on each node."""
    name = f"imbench-two-nodes-{uuid.uuid4().hex[:8]}"
    submitted = []
    for i in range(4):
        cmd = ["sbatch", "--parsable", "-A", "imbench", "-J", name, "-n", "1"]
        cmd += ["-o", str(tmp_path / "%j.out"), "--wrap", 'srun sh -c "hostname; sleep 3"']
        if i >= 2:
            cmd[-2:-2] = ["-p", "gpu", "--gpus=1"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout
        submitted.append(out.strip().split(";")[0])
    deadline = time.monotonic() + 180
    done = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
    while True:
        jobs = sacct_jobs("--name", name)
        if len(jobs) == len(submitted) and all(j["State"].split()[0] in done for j in jobs):
            break
        assert time.monotonic() < deadline, f"jobs not finished after 180 s: {jobs}"
        time.sleep(1)
    print(f"jobs per node: {jobs_per_node(jobs)}")
    assert sorted(j["JobID"] for j in jobs) == sorted(submitted)
    assert all(j["State"] == "COMPLETED" for j in jobs), jobs
    assert {j["NodeList"] for j in jobs} == set(TWO_NODES), jobs
    for job in jobs:
        # The step's hostname (its node's UTS namespace) is the node SLURM allocated.
        assert (tmp_path / f"{job['JobID']}.out").read_text().split() == [job["NodeList"]], job
    for node in TWO_NODES:
        out = subprocess.run(
            [
                "srun",
                "-A",
                "imbench",
                "-p",
                "gpu",
                "--gpus=1",
                "-w",
                node,
                "sh",
                "-c",
                'echo "$(hostname) $CUDA_VISIBLE_DEVICES"',
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert out.split() == [node, "0"], out


def comparable_results(results: Path) -> dict[str, object]:
    """What a run of demo.yaml produced, less what depends on timing: every table byte for byte,
    each cell's metrics.json, and its run.json without "timings"."""
    import json

    found: dict[str, object] = {}
    for path in sorted((results / "tables").iterdir()):
        found[f"tables/{path.name}"] = path.read_bytes()
    for path in sorted(results.glob("synthetic/*/*/*/metrics.json")):
        found[str(path.relative_to(results))] = json.loads(path.read_text())
    for path in sorted(results.glob("synthetic/*/*/*/run.json")):
        run = json.loads(path.read_text())
        run.pop("timings")
        found[str(path.relative_to(results))] = run
    return found


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    importlib.util.find_spec(PLUGIN) is None,
    reason='snakemake-executor-plugin-slurm not installed (pip install -e ".[slurm]")',
)
def test_demo_on_two_node_cluster(two_node_cluster, tmp_path):
    """The demo through profiles/slurm on two nodes: every job COMPLETED, jobs on both nodes, and
    the same results as a local run of the same grid (timing fields aside)."""
    t0 = time.monotonic()
    run_demo(tmp_path / "demo", timeout=1500)
    log = (tmp_path / "demo" / "run_demo.log").read_text()
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    jobs = sacct_jobs("--name", run_id)
    counts = jobs_per_node(jobs)
    print(f"demo on two nodes: {time.monotonic() - t0:.0f} s, jobs per node: {counts}")
    assert len(jobs) == 9 and all(j["State"] == "COMPLETED" for j in jobs), jobs
    assert set(counts) == set(TWO_NODES), counts

    local = tmp_path / "local"
    local.mkdir()
    snakemake = str(Path(sys.executable).parent / "snakemake")
    cmd = [snakemake, "--cores", "2", "--max-threads", "1", "-s", str(ROOT / "Snakefile")]
    cmd += ["--directory", str(local), "--configfile", str(DEMO_CONFIG)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=local)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    on_cluster = comparable_results(tmp_path / "demo" / "results" / "slurm_demo")
    on_host = comparable_results(local / "results" / "slurm_demo")
    assert on_cluster.keys() == on_host.keys()
    differ = [key for key in on_cluster if on_cluster[key] != on_host[key]]
    assert not differ, f"results differ from a local run: {differ}"
