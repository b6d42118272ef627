"""Checkpoint cost: seconds per epoch spent writing ``checkpoint.pt``, before and after.

Before: every epoch wrote the model, the optimiser (Adam's two moments: twice the model again)
and a separate copy of the best weights, whatever the interval. After
(:mod:`imbench.checkpoint`): the same model and optimiser state, the best weights only when they
are not the current model's, plus the scheduler, the random state and the best epoch's
validation probabilities; written at most every ``checkpoint_every_min`` minutes (default 10) and
after the last epoch.

For each model (default resnet18 and resnet50, 7 classes, AdamW after one step so its moments
exist) the script times atomic writes (temporary name, then rename, as training does) of both
payloads into ``--work-dir``, interleaved (before, after, before, …), and reports the median
seconds and the size of each. The per-epoch cost then follows from the epoch duration D and the
number of epochs E: before, one write per epoch; after, at most ⌊E·D / (60·interval)⌋ + 1 writes
(one per interval, and the last), i.e. for epochs shorter than the interval about one write per
interval instead of one per epoch. ``--epoch-seconds`` gives D (default: 60 s, a resnet18 epoch of
a few thousand 64 px images on one CPU thread, and a typical GPU epoch) for the per-epoch figures.

It also runs ``train_cell`` (test_resnet, 32 px, a few epochs) with the default interval and with
``checkpoint_every_min: 0`` and reports ``run.json``'s ``checkpoint_writes`` and
``checkpoint_seconds`` of both.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

NAME = "checkpoint_cost"


def payloads(model_name: str):
    """(before, after) checkpoint contents of a model after one AdamW step."""
    import functools
    import json

    import numpy as np
    import torch

    from imbench.models import create_model
    from imbench.settings import Settings
    from imbench.train import cpu_copy, make_optimizer, make_scheduler

    torch.manual_seed(0)
    model = create_model(model_name, 7, pretrained=False)
    s = Settings(epochs=10, image_size=32)
    opt = make_optimizer(model, s)
    sched = make_scheduler(opt, s)
    model.train()
    loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    sched.step()
    history = json.dumps([{"epoch": 1, "train_loss": 1.0, "val_macro_f1": 0.5}] * 10)
    identity = {"task": "t", "model": model_name, "settings": {}}
    before = {
        "identity_hash": "0" * 16,
        "identity": identity,
        "epoch": 0,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "best_f1": 0.5,
        "best_epoch": 0,
        "best_state": cpu_copy(model.state_dict()),
        "history": history,
    }
    after = {
        "identity_hash": "0" * 16,
        "identity": identity,
        "rng": torch.get_rng_state(),
        "epoch": 0,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "best_f1": 0.5,
        "best_epoch": 0,
        "best_state": None,  # the last epoch is the best one (else: one more copy of the weights)
        "best_val_probs": torch.from_numpy(np.zeros((2000, 7), np.float32)),
        "history": history,
    }
    return functools.partial(_write, before), functools.partial(_write, after)


def _write(payload, path: Path) -> tuple[float, int]:
    import functools

    import torch

    from imbench.io import write_with

    t0 = time.perf_counter()
    write_with(path, functools.partial(torch.save, payload))
    return time.perf_counter() - t0, path.stat().st_size


def run_cells(work: Path, epochs: int) -> dict:
    import loop_overhead

    from imbench.protocols import resolve
    from imbench.train import train_cell

    cache, split_csv = loop_overhead.build_cache(work, 256, 64, 16, 32)
    out = {}
    for label, minutes in (("every epoch (0 min)", 0), ("default interval (10 min)", 10)):
        s = resolve(
            "demo",
            {
                "epochs": epochs,
                "device": "cpu",
                "pretrained": False,
                "checkpoint_every_min": minutes,
            },
        )
        d = work / f"ckpt_cell_{minutes}"
        run = train_cell(
            "synthetic", cache, split_csv, "test_resnet", "ce", 0, s, d, log=lambda m: None
        )
        out[label] = {
            "epochs": epochs,
            "checkpoint_writes": run["timings"]["checkpoint_writes"],
            "checkpoint_seconds": run["timings"]["checkpoint_seconds"],
            "train_seconds": run["timings"]["train_seconds"],
        }
    return out


def main(argv=None) -> Path:
    p = benchlib.parser(__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet18,resnet50")
    p.add_argument("--epoch-seconds", type=float, default=60.0)
    p.add_argument("--epochs", type=int, default=30, help="epochs of the cell the costs are for")
    p.add_argument("--interval-min", type=float, default=10.0)
    args = p.parse_args(argv)
    return benchlib.run_restoring(_main, args, argv)


def _main(args, argv) -> Path:
    repeats = args.repeats or (1 if args.quick else 5)
    models = ["test_resnet"] if args.quick else args.models.split(",")
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    figures, per_model, samples_all = [], {}, []
    E, D = args.epochs, args.epoch_seconds
    writes_after = min(E, math.floor(E * D / (60 * args.interval_min)) + 1)
    for name in models:
        before, after = payloads(name)

        def one(before=before, after=after, name=name):
            tb, sb = before(work / f"ckpt_before_{name}.pt")
            ta, sa = after(work / f"ckpt_after_{name}.pt")
            return {
                "before_s": round(tb, 4),
                "after_s": round(ta, 4),
                "before_bytes": sb,
                "after_bytes": sa,
            }

        samples = benchlib.repeat(one, repeats, args, label=f"{NAME} {name}")
        samples_all.extend(samples)
        tb = benchlib.median([s["before_s"] for s in samples])
        ta = benchlib.median([s["after_s"] for s in samples])
        mb_b, mb_a = samples[0]["before_bytes"] / 2**20, samples[0]["after_bytes"] / 2**20
        per_epoch_after = ta * writes_after / E
        per_model[name] = {
            "write_s_before": tb,
            "write_s_after": ta,
            "mb_before": round(mb_b, 1),
            "mb_after": round(mb_a, 1),
            "per_epoch_s_before": tb,
            "per_epoch_s_after": round(per_epoch_after, 4),
            "samples": samples,
        }
        tag = f"{name}, {E} epochs of {D:g} s, interval {args.interval_min:g} min"
        figures += [
            {
                "name": f"checkpoint write, before ({name}, {mb_b:.0f} MB)",
                "value": round(tb, 3),
                "unit": "s",
            },
            {
                "name": f"checkpoint write, after ({name}, {mb_a:.0f} MB)",
                "value": round(ta, 3),
                "unit": "s",
            },
            {
                "name": f"checkpoint time per epoch, before ({tag})",
                "value": round(tb, 3),
                "unit": "s",
            },
            {
                "name": f"checkpoint time per epoch, after ({tag}: {writes_after} writes)",
                "value": round(per_epoch_after, 3),
                "unit": "s",
            },
        ]
    cells = run_cells(work, 2 if args.quick else 6)
    details = {
        "epochs": E,
        "epoch_seconds": D,
        "interval_min": args.interval_min,
        "writes_after": writes_after,
        "models": per_model,
        "train_cell": cells,
    }
    return benchlib.write_result(
        NAME, "checkpoint_cost.py", argv, args, figures, details, benchlib.load_summary(samples_all)
    )


if __name__ == "__main__":
    main()
