"""GPU acceptance check: one command that measures what matters on one GPU, in at most 8 minutes,
and writes one result JSON (``bench/results/gpu_check.json``, a row of BENCHMARKS.md through
``bench/report.py``).

    bench/gpu_check.sh                     # or: make gpu-check
    python bench/gpu_check.py --dry-run    # the same stages at tiny sizes on the CPU (< 30 s)

Stages (each with its own time limit; a failing stage is recorded and the others still run):

1. ``tests``: the CUDA-only tests and the GPU lease tests (``pytest -m "not slow" -k "(cuda or
   gpu) and not gpu_check" tests/``).
2. ``throughput``: ResNet-50 at 224 px, batch 128, bf16 autocast, channels-last: imbench's training
   (``train_cell``, the second epoch's images/s, validation of a 64-image split included) against
   the same model, optimiser and precision on random tensors already on the device (the upper
   bound: no data path at all). Goals: ≥ 2,500 images/s on an H100-class GPU and ≥ 0.9 of the
   upper bound. The same cell with ``augment: standard`` (device augmentation) is measured too.
3. ``data_path``: ``bench/loader_throughput.py --device cuda`` (pinned memory, asynchronous
   copies), flip path and the like-for-like ``--augment standard`` comparison.
4. ``compile``: the ResNet-50 cell with ``compile: true``: first-epoch seconds (compilation) and the
   second epoch's images/s.
5. ``lmf``: one cell of the ``lmf`` protocol (fp32, Adam, no normalisation, no augmentation) for
   one short epoch: precision used and images/s; weights are random (the GPU machine may be
   offline).
6. ``packing``: 4 small cells (ResNet-18, 64 px) started at once with ``IMBENCH_GPU_SLOTS=4`` on
   one device, against one such cell alone: the leases taken and the throughput gain
   (4 × alone / together).

``--dry-run``: every stage at tiny sizes on the CPU (``test_resnet``, 32 px; the tests stage only
collects; ``compile`` is skipped; packing runs on a simulated device ``0``), to check the command
itself; its result is marked ``quick`` and never enters the BENCHMARKS.md table.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

NAME = "gpu_check"
SLACK_S = 15  # seconds beyond a stage's limit before it is interrupted
REPO = benchlib.REPO


def sizes(dry: bool) -> dict:
    if dry:
        return dict(
            n=96, w=60, h=45, size=32, model="test_resnet", batch=16, epochs=2, small_size=16,
            small_model="test_resnet", small_epochs=1, upper_steps=3, val=8,
        )  # fmt: skip
    return dict(
        n=2048, w=300, h=225, size=224, model="resnet50", batch=128, epochs=2, small_size=64,
        small_model="resnet18", small_epochs=3, upper_steps=30, val=64,
    )  # fmt: skip


# ----------------------------------------------------------------------------- data


def prepare(work: Path, s: dict) -> dict:
    """Synthetic JPEGs, caches at the big and the small size, and a split with a small val/test."""
    from imbench.data.cache import build_cache

    root = benchlib.synthetic_jpegs(work, s["n"], s["w"], s["h"])
    index = benchlib.jpeg_index(root)
    workers = min(8, os.cpu_count() or 1)
    caches = {}
    for size in sorted({s["size"], s["small_size"]}):
        cache = work / f"cache_{s['n']}_{size}px"
        if not (cache / "cache.json").exists():
            build_cache(index, root, cache, size=size, mode="squash", workers=workers)
        caches[size] = cache
    split = index.copy()
    split["split"] = "train"
    split.loc[split.index[: s["val"]], "split"] = "val"
    split.loc[split.index[s["val"] : 2 * s["val"]], "split"] = "test"
    split_path = work / f"split_{s['n']}.csv"
    split.to_csv(split_path, index=False)
    return {"root": root, "caches": caches, "split": split_path}


def train(data, size, model, out, **settings) -> dict:
    from imbench.train import Settings, train_cell

    s = Settings.from_dict({"image_size": size, "pretrained": False, **settings})
    run = train_cell(
        "synthetic", data["caches"][size], data["split"], model, "ce", 0, s, out, log=lambda m: None
    )
    hist = run.get("history") or _history(out)
    last = hist[-1]
    return {
        "images_per_s_last_epoch": round(last["images"] / last["seconds"], 1),
        "epoch_seconds": [h["seconds"] for h in hist],
        "precision": run["resolved"]["precision"] if "resolved" in run else None,
        "device": run["hardware"]["device"],
        "train_loss": [h["train_loss"] for h in hist],
    }


def _history(out: Path) -> list[dict]:
    import pandas as pd

    return pd.read_csv(out / "history.csv").to_dict("records")


# ----------------------------------------------------------------------------- stages


def stage_tests(ctx) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"]
    select = "(cuda or gpu) and not gpu_check"  # not this command's own smoke tests
    if ctx["dry"]:  # collect only, one file: checks the selection, runs nothing
        cmd += ["--collect-only", "-k", select, "tests/test_augment.py"]
    else:
        cmd += ["-rs", "-k", select, "tests/"]
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=ctx["limit"], env=ctx["env"]
    )
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
    if proc.returncode not in (0, 5):
        raise RuntimeError("CUDA tests failed:\n" + "\n".join(tail))
    return {"returncode": proc.returncode, "summary": tail[-1] if tail else ""}


def upper_bound(model_name, size, batch, steps, device, precision="bf16") -> float:
    """Images/s of the same model and optimiser on random tensors already on the device."""
    import torch

    from imbench.models import create_model

    model = create_model(model_name, 7).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 7, (batch,), device=device)
    enabled = device.type == "cuda" and precision == "bf16"
    model.train()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(max(2, steps // 5)):
        step()
    benchlib.sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    benchlib.sync(device)
    return batch * steps / (time.perf_counter() - t0)


def stage_throughput(ctx) -> dict:
    s, data, dev = ctx["sizes"], ctx["data"], ctx["device"]
    common = dict(batch_size=s["batch"], epochs=s["epochs"], device=dev.type, precision="bf16")
    imb = train(data, s["size"], s["model"], ctx["work"] / "cell_flip", augment="flip", **common)
    std = train(
        data, s["size"], s["model"], ctx["work"] / "cell_standard", augment="standard", **common
    )
    ub = upper_bound(s["model"], s["size"], s["batch"], s["upper_steps"], dev)
    return {
        "model": s["model"],
        "image_size": s["size"],
        "batch_size": s["batch"],
        "imbench": imb,
        "imbench_standard_augment": std,
        "upper_bound_images_per_s": round(ub, 1),
        "ratio_to_upper_bound": round(imb["images_per_s_last_epoch"] / ub, 3),
    }


def stage_data_path(ctx) -> dict:
    import loader_throughput

    out = {}
    for augment in ("flip", "standard"):
        argv = ["--device", ctx["device"].type, "--augment", augment, "--repeats", "1"]
        argv += ["--max-wait", "0", "--max-foreign", "99", "--work-dir", str(ctx["work"] / "lt")]
        argv += ["--out", str(ctx["work"] / f"loader_{augment}.json")]
        if ctx["dry"]:
            argv += ["--quick", "--workers", "0", "--no-before"]
        else:
            argv += ["--n-images", "512", "--epochs", "3", "--baseline-epochs", "2"]
        path = loader_throughput.main(argv)
        r = json.loads(Path(path).read_text())
        out[augment] = {f["name"]: f["value"] for f in r["figures"]}
    return out


def stage_compile(ctx) -> dict:
    if ctx["device"].type != "cuda":
        return {"skipped": "torch.compile is exercised on CUDA only"}
    s, data = ctx["sizes"], ctx["data"]
    r = train(
        data, s["size"], s["model"], ctx["work"] / "cell_compile", batch_size=s["batch"],
        epochs=2, device="cuda", precision="bf16", compile=True,
    )  # fmt: skip
    return {"first_epoch_seconds": r["epoch_seconds"][0], **r}


def stage_lmf(ctx) -> dict:
    from imbench.protocols import PROTOCOLS

    s, data = ctx["sizes"], ctx["data"]
    settings = {**PROTOCOLS["lmf"], "epochs": 1, "pretrained": False, "device": ctx["device"].type}
    settings.pop("image_size")
    r = train(data, s["size"], s["model"], ctx["work"] / "cell_lmf", **settings)
    if not all(map(lambda v: v == v and abs(v) < float("inf"), r["train_loss"])):
        raise RuntimeError(f"lmf cell: training loss not finite: {r['train_loss']}")
    return r


PACK_CELL = """
import json, sys, time
from pathlib import Path
from imbench.gpu import gpu_lease
from imbench.train import Settings, train_cell
cache, split, model, out, settings = sys.argv[1:6]
logs = []
with gpu_lease(log=logs.append, poll=0.2) as dev:
    t0 = time.time()
    train_cell("synthetic", cache, split, model, "ce", 0, Settings.from_dict(json.loads(settings)),
               out, log=lambda m: None)
    t1 = time.time()
print(json.dumps({"device": dev, "lease": logs, "start": t0, "end": t1}), flush=True)
"""


def stage_packing(ctx) -> dict:
    """4 cells with 4 slots on one device, against one cell alone."""
    s, data = ctx["sizes"], ctx["data"]
    env = {
        **ctx["env"],
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0",
        "IMBENCH_GPU_SLOTS": "4",
        "IMBENCH_GPU_LOCK_DIR": str(ctx["work"] / "locks"),
    }
    settings = json.dumps(
        {
            "image_size": s["small_size"],
            "batch_size": 64,
            "epochs": s["small_epochs"],
            "device": "auto",
            "pretrained": False,
            "threads": 1,
        }
    )

    def launch(tag, k):
        return [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    PACK_CELL,
                    str(data["caches"][s["small_size"]]),
                    str(data["split"]),
                    s["small_model"],
                    str(ctx["work"] / f"pack_{tag}{i}"),
                    settings,
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(k)
        ]

    def finish(procs):
        res = []
        deadline = time.monotonic() + ctx["limit"]
        try:
            for p in procs:
                out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
                if p.returncode:
                    raise RuntimeError(f"packed cell failed: {err.strip().splitlines()[-1:]}")
                res.append(json.loads(out.strip().splitlines()[-1]))
        finally:  # never leave a cell running after a failure or a timeout
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        return res

    out = {}
    if not ctx["dry"]:  # one cell alone first (also warms the caches)
        t0 = time.perf_counter()
        finish(launch("alone", 1))
        out["alone_seconds"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    together = finish(launch("packed", 4))
    out["together_seconds"] = round(time.perf_counter() - t0, 2)
    out["devices"] = sorted({r["device"] for r in together})
    out["leases"] = [r["lease"][0] for r in together]
    spans = [(r["start"], r["end"]) for r in together]
    out["most_at_once"] = max(sum(a <= t < b for a, b in spans) for t, _ in spans)
    if "alone_seconds" in out:
        out["throughput_gain"] = round(4 * out["alone_seconds"] / out["together_seconds"], 2)
    return out


# (name, function, time limit in s). The order puts the riskiest and slowest stage (compilation)
# last; the result file is rewritten after every stage, so a run cut short keeps what it measured.
STAGES = [
    ("throughput", stage_throughput, 90),
    ("lmf", stage_lmf, 45),
    ("packing", stage_packing, 90),
    ("data_path", stage_data_path, 100),
    ("tests", stage_tests, 120),
    ("compile", stage_compile, 120),
]


@contextlib.contextmanager
def time_limit(seconds: float, name: str):
    """Raise TimeoutError in the main thread after ``seconds`` (SIGALRM; no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"stage {name} exceeded its {seconds:.0f} s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def figures_of(results: dict, dry: bool) -> list[dict]:
    fig = []

    def add(name, value, unit, target=None, op=">="):
        if isinstance(value, (int, float)) and value > 0:
            fig.append(
                {
                    "name": name,
                    "value": value,
                    "unit": unit,
                    "target": None if dry else target,
                    "op": op,
                }
            )

    t = results.get("throughput", {})
    if "imbench" in t:
        tag = f"{t['model']} @ {t['image_size']} px, batch {t['batch_size']}, bf16, channels-last"
        add(
            f"GPU: imbench training ({tag})",
            t["imbench"]["images_per_s_last_epoch"],
            "images/s",
            2500,
        )
        add(
            f"GPU: same model on random device tensors ({tag}; upper bound)",
            t["upper_bound_images_per_s"],
            "images/s",
        )
        add("GPU: imbench / upper bound", t["ratio_to_upper_bound"], "ratio", 0.9)
        add(
            f"GPU: imbench training with augment: standard ({tag})",
            t["imbench_standard_augment"]["images_per_s_last_epoch"],
            "images/s",
        )
    c = results.get("compile", {})
    if "images_per_s_last_epoch" in c:
        add("GPU: torch.compile, second epoch", c["images_per_s_last_epoch"], "images/s")
        add("GPU: torch.compile, first epoch (includes compilation)", c["first_epoch_seconds"], "s")
    lmf = results.get("lmf", {})
    if "images_per_s_last_epoch" in lmf:
        add(
            f"GPU: lmf protocol cell ({lmf.get('precision')})",
            lmf["images_per_s_last_epoch"],
            "images/s",
        )
    for aug, figs in results.get("data_path", {}).items():
        for name, value in figs.items():
            unit = "×" if "/" in name else "images/s"
            add(f"GPU data path ({aug}): {name}", value, unit)
    p = results.get("packing", {})
    if "throughput_gain" in p:
        add(
            "GPU packing: 4 small cells on one device, throughput / one cell alone",
            p["throughput_gain"],
            "×",
        )
    return fig  # fmt: skip


def main(argv=None) -> Path:
    p = benchlib.parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--dry-run", action="store_true", help="every stage at tiny sizes on the CPU (--quick)"
    )
    p.add_argument("--only", nargs="+", default=None, help="run only these stages")
    args = p.parse_args(argv)
    if args.dry_run:
        args.quick, args.device = True, "cpu"
    elif args.device == "cpu":
        args.device = "cuda"
    return benchlib.run_restoring(_main, args, argv)


def _main(args, argv) -> Path:
    device = benchlib.resolve_device(args.device)
    dry = bool(args.quick)
    work = args.work_dir / ("gpu_check_dry" if dry else "gpu_check")
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    s = sizes(dry)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}  # fmt: skip
    ctx = {"dry": dry, "device": device, "work": work, "sizes": s, "env": env}
    results, status = {}, {}

    def run_all():
        t0 = time.perf_counter()
        ctx["data"] = prepare(work, s)
        status["prepare"] = {"ok": True, "seconds": round(time.perf_counter() - t0, 1)}
        for name, fn, limit in STAGES:
            if args.only and name not in args.only:
                continue
            ctx["limit"] = limit
            t0 = time.perf_counter()
            print(f"[gpu_check] {name} ...", flush=True)
            try:
                with time_limit(limit + SLACK_S, name):  # subprocesses also enforce ``limit``
                    results[name] = fn(ctx)
                status[name] = {"ok": True}
            except Exception as exc:  # noqa: BLE001 - recorded; the other stages still run
                status[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
            status[name]["seconds"] = round(time.perf_counter() - t0, 1)
            print(f"[gpu_check] {name}: {status[name]}", flush=True)
            save(benchlib.load_summary([]))
        return {"stages": list(status)}

    def save(load):
        details = {
            "dry_run": dry,
            "sizes": s,
            "status": status,
            "results": results,
            "all_ok": all(v["ok"] for v in status.values()),
            "total_seconds": round(time.perf_counter() - t_all, 1),
        }
        # no stage measured anything (all failed or timed out): no figure, the status says why
        figures = figures_of(results, dry)
        return benchlib.write_result(
            NAME, "gpu_check.py", argv, args, figures, details, load, device
        )

    samples = benchlib.repeat(run_all, 1, args, label=NAME)
    path = save(benchlib.load_summary(samples))
    details = json.loads(Path(path).read_text())["details"]
    if not details["all_ok"]:
        failed = [k for k, v in status.items() if not v["ok"]]
        print(f"[gpu_check] FAILED stages: {failed} (details in {path})", file=sys.stderr)
    return path


if __name__ == "__main__":
    out = main()
    sys.exit(0 if json.loads(Path(out).read_text())["details"]["all_ok"] else 1)
