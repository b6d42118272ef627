"""Shared pieces of the bench/ scripts: command-line options, load accounting, machine facts, and
the JSON result format that ``bench/report.py`` turns into the table of BENCHMARKS.md.

Load accounting. The machine is shared, so every timed repeat records:

- ``load1``: the 1-minute load average (``uptime``) just before it starts;
- ``foreign_cores``: CPU used by *other* processes while it ran, in cores: the machine's busy time
  (``/proc/stat``) minus this process's and its reaped children's CPU time, over the wall time;
- ``steal_cores``: CPU time the hypervisor gave to other guests, in cores.

Before each repeat the script waits (up to ``--max-wait`` seconds) until a short idle probe shows
less than ``--max-foreign`` cores used by others; a repeat during which others used more than that
is thrown away and run again (at most ``--retries`` times), and the result says so. The 1-minute load
average alone cannot decide this: the benchmark's own previous repeat keeps it above 1 for a
minute after it ends.

A result file (``bench/results/<name>.json``) holds ``figures`` (the headline numbers, each with its
target where the issue sets one), ``details`` (everything measured), ``load``, ``machine``,
``command`` and ``date``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# ----------------------------------------------------------------------------- options


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and one repeat: checks that the script runs (numbers meaningless)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (median reported)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="torch device")
    p.add_argument(
        "--out", type=Path, default=None, help="result JSON (default bench/results/<name>.json)"
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "imbench-bench",
        help="where generated images and caches are kept (reused between runs)",
    )
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.25,
        help="a repeat is redone when other processes used more CPU cores than this",
    )
    p.add_argument(
        "--max-wait",
        type=float,
        default=300.0,
        help="seconds to wait for a quiet machine before each repeat",
    )
    p.add_argument("--retries", type=int, default=3, help="re-measurements allowed per repeat")
    return p


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    return torch.device(name)


def sync(device) -> None:
    """Wait for queued GPU work (a no-op on the CPU) so a timer read after it is honest."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- load accounting


def _proc_stat() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    user, nice, system, idle, iowait, irq, softirq = f[:7]
    steal = f[7] if len(f) > 7 else 0
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def load1() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


class CpuMeter:
    """Context manager: CPU used by other processes (and stolen) while the block runs, in cores."""

    def __enter__(self):
        self.load1 = load1()
        self.t0, self.own0 = time.perf_counter(), _own_cpu()
        self.busy0, self.steal0 = _proc_stat()
        return self

    def __exit__(self, *exc):
        wall = max(time.perf_counter() - self.t0, 1e-9)
        busy, steal = _proc_stat()
        own = _own_cpu() - self.own0
        self.wall = wall
        self.foreign_cores = round(max(0.0, (busy - self.busy0) - own) / wall, 3)
        self.steal_cores = round((steal - self.steal0) / wall, 3)
        return False

    def record(self) -> dict:
        return {
            "load1": self.load1,
            "foreign_cores": self.foreign_cores,
            "steal_cores": self.steal_cores,
        }


def wait_quiet(max_foreign: float, max_wait: float, probe: float = 1.0) -> dict:
    """Sleep until others use less than ``max_foreign`` cores (a ``probe``-second idle sample)."""
    t0 = time.perf_counter()
    while True:
        with CpuMeter() as m:
            time.sleep(probe)
        if m.foreign_cores < max_foreign or time.perf_counter() - t0 > max_wait:
            return {
                "waited_s": round(time.perf_counter() - t0, 1),
                "idle_foreign_cores": m.foreign_cores,
                "load1": load1(),
            }


def _log(message: str) -> None:
    print(message, flush=True)


def repeat(fn, repeats: int, args, label: str = "", log=_log) -> list[dict]:
    """Run ``fn()`` (which returns a dict of measurements) ``repeats`` times on a quiet machine.

    Each sample gets a ``load`` record; a sample disturbed by others (``foreign_cores`` above
    ``args.max_foreign``) is redone up to ``args.retries`` times and kept, flagged, if all fail.
    """
    samples = []
    for i in range(repeats):
        for attempt in range(args.retries + 1):
            quiet = wait_quiet(
                args.max_foreign, 0 if args.quick else args.max_wait, 0.2 if args.quick else 1.0
            )
            with CpuMeter() as m:
                out = fn()
            rec = {
                **out,
                "load": {**m.record(), "waited_s": quiet["waited_s"], "attempt": attempt + 1},
            }
            disturbed = m.foreign_cores > args.max_foreign
            rec["load"]["disturbed"] = disturbed
            shown = {k: v for k, v in out.items() if isinstance(v, (int, float))}
            log(
                f"{label} repeat {i + 1}/{repeats} attempt {attempt + 1}: {shown} "
                f"load1={m.load1} foreign={m.foreign_cores} cores steal={m.steal_cores}"
            )
            if not disturbed or args.quick or attempt == args.retries:
                samples.append(rec)
                break
    return samples


def load_summary(samples: list[dict]) -> dict:
    loads = [s["load"] for s in samples]
    return {
        "repeats": len(loads),
        "disturbed_repeats_kept": sum(bool(x.get("disturbed")) for x in loads),
        "retried": sum(x.get("attempt", 1) - 1 for x in loads),
        "load1_before": [x["load1"] for x in loads],
        "foreign_cores_max": max((x["foreign_cores"] for x in loads), default=None),
        "foreign_cores_median": median([x["foreign_cores"] for x in loads]),
        "steal_cores_max": max((x["steal_cores"] for x in loads), default=None),
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def quartiles(values) -> list | None:
    """[Q1, median, Q3] (``statistics.quantiles``, exclusive method), rounded to 4 places."""
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return [round(v, 4) for v in values * 3] if values else None
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return [round(q1, 4), round(q2, 4), round(q3, 4)]


# ----------------------------------------------------------------------------- machine facts


def machine(device=None) -> dict:
    """CPU, memory, package versions (read from the installed metadata: nothing heavy is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    info = {
        "cpu": cpu,
        "cores": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    for pkg in ("torch", "torchvision", "timm", "numpy", "pillow", "snakemake"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    try:
        from PIL import features

        info["libjpeg_turbo"] = bool(features.check_feature("libjpeg_turbo"))
    except Exception:  # noqa: BLE001 - informative only
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        info["memory_gib"] = round(mem / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if device is not None:
        info["device"] = str(device)
        if getattr(device, "type", "") == "cuda":
            import torch

            info["gpu"] = torch.cuda.get_device_name(device)
    return info


def describe(info: dict) -> str:
    """One line for the BENCHMARKS.md table's machine column."""
    s = f"{info.get('cores')}× {info.get('cpu')}"
    if info.get("gpu"):
        s += f", {info['gpu']}"
    return s + f", torch {info.get('torch', '?').split('+')[0]}"


# ----------------------------------------------------------------------------- results


def command(script: str, argv) -> str:
    return shlex.join(["python", f"bench/{script}", *[str(a) for a in argv]])


def write_result(
    name: str,
    script: str,
    argv,
    args,
    figures: list[dict],
    details: dict,
    samples_load: dict,
    device=None,
) -> Path:
    """Write the result JSON and return its path.

    ``figures``: ``{"name", "value", "unit"}`` plus optional ``"target"`` and ``"op"`` (">=" or "<=");
    ``met`` is filled in here.
    """
    for f in figures:
        if f.get("target") is not None and f.get("value") is not None:
            op = f.get("op", ">=")
            f["met"] = (
                bool(f["value"] >= f["target"]) if op == ">=" else bool(f["value"] <= f["target"])
            )
    payload = {
        "benchmark": name,
        "quick": bool(args.quick),
        "date": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "command": command(script, argv),
        "machine": machine(device),
        "load": samples_load,
        "figures": figures,
        "details": details,
    }
    out = args.out or (RESULTS / f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    tmp.replace(out)
    print(f"wrote {out}", flush=True)
    return out


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


# ----------------------------------------------------------------------------- data


def synthetic_jpegs(work_dir: Path, n: int, width: int, height: int, seed: int = 0) -> Path:
    """A synthetic HAM10000-format tree of ``n`` JPEGs at ``width``×``height``, generated once and
    reused (the generator writes its metadata file last, so a tree with one is complete)."""
    from imbench.data.ham10000 import METADATA_NAME
    from imbench.data.synthetic import generate

    root = work_dir / f"synthetic_{n}_{width}x{height}_seed{seed}"
    if not (root / METADATA_NAME).exists():
        print(f"generating {n} synthetic {width}×{height} JPEGs in {root} (once) ...", flush=True)
        generate(root, n_images=n, seed=seed, width=width, height=height)
    return root


def jpeg_index(root: Path):
    """The normalised index (image_id, path, label, …) of a synthetic tree."""
    from imbench.data.tasks import get_task

    return get_task("synthetic").build(root)


def restore_torch_state():
    """Snapshot of the global torch settings a benchmark changes; call the result to restore them."""
    import torch

    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()

    def restore():
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)

    return restore


if __name__ == "__main__":  # pragma: no cover
    sys.exit("benchlib is imported by the bench/ scripts; run one of them instead")


def run_restoring(main, args, argv):
    """``main(args, argv)`` with torch's global state (threads, flags) restored afterwards; ``argv``
    defaults to the process's own arguments (recorded in the result file)."""
    restore = restore_torch_state()
    try:
        return main(args, argv if argv is not None else sys.argv[1:])
    finally:
        restore()
