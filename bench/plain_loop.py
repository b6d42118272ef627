"""imbench's training loop against a plain PyTorch loop written the way the PyTorch tutorials write it.

``bench/loop_overhead.py`` gives the headline ratio of imbench against this plain loop (and
against the LMF paper's official loop); this script breaks the comparison down by the two CPU
settings that used to make the difference (channels-last input batches with a channels-first
model, deterministic algorithms), one variant per setting. The plain loop is the tutorial one:

- the training images are float32 NCHW tensors in memory, ImageNet-normalised once, in a
  ``TensorDataset`` read by a ``DataLoader(batch_size, shuffle=True)`` (no workers);
- default global flags: no channels-last, no ``torch.use_deterministic_algorithms``;
- per batch: ``model.train()`` (per epoch), ``optimizer.zero_grad()``, forward,
  ``F.cross_entropy``, ``loss.backward()``, ``optimizer.step()``;
- then one validation pass per epoch (``model.eval()``, ``torch.no_grad()``, batches of the
  protocol's ``eval_batch_size``), because imbench's per-epoch ``seconds`` include its validation
  pass too.

Three variants of the plain loop add imbench's two CPU settings one at a time, so the table shows
which of them costs what: ``plain+cl`` (each input batch made channels-last while the model stays
channels-first, as ``imbench.train.images_to_input`` builds it on the CPU), ``plain+det``
(deterministic algorithms on) and ``plain+cl+det`` (both: imbench's settings, i.e. the bare loop of
``loop_overhead.py`` without its flips). Every loop trains the same timm model built by
``imbench.models.create_model`` from the same seed, with the protocol's optimiser (the demo
protocol's AdamW), batch size and thread count; each has its own model and optimiser.

imbench's loop is the real one, ``imbench.train.train_cell`` (method ``ce``, ``augment: none`` so
that neither side augments; everything else the demo protocol's), on a cache in the format of
``imbench cache`` (random pixels; see ``loop_overhead.build_cache``). Its images/s per epoch come
from ``history.csv``. Repeats alternate imbench's ``deterministic`` setting: odd repeats run it
as configured by default (``auto``: off on the CPU), even repeats with ``deterministic: true``
(``imbench-det``).

Interleaving, as in ``loop_overhead.py``: the plain loops are generators that run one epoch per
``next()``; after each imbench epoch (from ``train_cell``'s per-epoch log callback, outside the
epoch's timed span) every plain variant runs its next epoch, in an order that rotates per epoch.
The global deterministic flag is set for each variant's epoch and restored afterwards. Epoch 1 of
every loop is warm-up and is dropped; every later epoch gives one paired ratio per variant
(variant images/s divided by the plain loop's images/s in the same round); the figures are the
medians of those paired ratios.

Settings: ``--setting MODEL:PX:N_TRAIN`` (repeatable); default ``resnet18:64:512`` and
``resnet50:224:32`` (a few steps: one resnet50 epoch of 32 images takes about 15 s on one thread),
batch 32, 1 thread, 4 epochs, 2 repeats. ``--quick`` runs ``test_resnet:32:64`` for 2 epochs.

``imbench_outside_epochs_s`` in a sample is ``train_cell``'s wall time outside its timed epochs,
which here includes the plain loops' epochs run from its callback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402
import loop_overhead  # noqa: E402

NAME = "plain_loop"
#: name -> (channels-last input batches, deterministic algorithms)
VARIANTS = {
    "plain": (False, False),
    "plain+cl": (True, False),
    "plain+det": (False, True),
    "plain+cl+det": (True, True),
}


def plain_epochs(
    cache: Path,
    split_csv: Path,
    model_name: str,
    settings,
    seed: int,
    channels_last: bool,
    deterministic: bool,
):
    """The tutorial loop as a generator: one epoch (training + validation pass) per ``next()``,
    yielding ``(training images, seconds)``."""
    import numpy as np
    import pandas as pd
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from imbench.models import create_model

    images = np.load(cache / "images.npy", mmap_mode="r")
    labels_all = pd.read_csv(cache / "index.csv")["label"].to_numpy()
    split = pd.read_csv(split_csv)["split"].to_numpy()
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def tensor(
        rows,
    ):  # float32 NCHW, normalised once, contiguous (the tutorial's tensors in memory)
        x = (
            torch.from_numpy(np.ascontiguousarray(images[rows]))
            .permute(0, 3, 1, 2)
            .float()
            .div(255)
        )
        return ((x - mean) / std).contiguous()

    train_loader = DataLoader(
        TensorDataset(tensor(tr), torch.as_tensor(labels_all[tr], dtype=torch.long)),
        batch_size=settings.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    val_loader = DataLoader(TensorDataset(tensor(va)), batch_size=settings.eval_batch_size)
    K = int(labels_all.max()) + 1
    torch.manual_seed(seed)
    model = create_model(model_name, K, pretrained=False)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )

    while True:
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(deterministic)
        try:
            t0 = time.perf_counter()
            model.train()
            seen = 0
            for x, y in train_loader:
                if len(y) < 2:  # batch norm cannot train on one image; train_cell skips it too
                    continue
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                optimizer.step()
                seen += len(y)
            model.eval()
            with torch.no_grad():
                for (x,) in val_loader:
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    model(x).softmax(1)
            seconds = time.perf_counter() - t0
        finally:
            torch.use_deterministic_algorithms(previous)
        yield seen, seconds


def interleaved(
    cache: Path, split_csv: Path, model: str, settings, work: Path, rotate: int
) -> dict:
    """One repeat: imbench's epochs with every plain variant's epoch after each of them."""
    import torch

    gens = {
        name: plain_epochs(cache, split_csv, model, settings, 0, cl, det)
        for name, (cl, det) in VARIANTS.items()
    }
    runs = {name: [] for name in VARIANTS}
    names = list(VARIANTS)

    def after_imbench_epoch():
        k = len(runs["plain"])
        if k >= settings.epochs:
            return
        shift = (k + rotate) % len(names)
        for name in names[shift:] + names[:shift]:
            runs[name].append(next(gens[name]))

    torch.use_deterministic_algorithms(False)  # train_cell switches it on when its setting says so
    imb = loop_overhead.run_imbench(
        cache,
        split_csv,
        model,
        settings,
        work / "plain_loop_run",
        seed=0,
        after_epoch=after_imbench_epoch,
    )
    while len(runs["plain"]) < settings.epochs:
        after_imbench_epoch()
    torch.use_deterministic_algorithms(False)
    steady = slice(1, None) if settings.epochs > 1 else slice(None)
    label = "imbench" if settings.deterministic == "auto" else "imbench-det"
    rates = {label: [n / t for n, t in zip(imb["epoch_images"], imb["epoch_seconds"])]}
    rates.update({name: [n / t for n, t in r] for name, r in runs.items()})
    pair_ratios = {
        name: [round(a / b, 4) for a, b in zip(rate[steady], rates["plain"][steady])]
        for name, rate in rates.items()
        if name != "plain"
    }
    return {
        "imbench_label": label,
        "images_per_s": {
            name: round(benchlib.median(rate[steady]), 1) for name, rate in rates.items()
        },
        "epoch_ratios": pair_ratios,
        "epochs": {
            label: {"epoch_seconds": imb["epoch_seconds"], "epoch_images": imb["epoch_images"]},
            **{
                name: {
                    "epoch_seconds": [round(t, 3) for _, t in r],
                    "epoch_images": [n for n, _ in r],
                }
                for name, r in runs.items()
            },
        },
        "imbench_outside_epochs_s": imb["outside_epochs_s"],
    }


def parse_setting(text: str) -> tuple[str, int, int]:
    try:
        model, px, n = text.split(":")
        return model, int(px), int(n)
    except ValueError:
        raise SystemExit(
            f"--setting {text!r}: expected MODEL:PIXELS:N_TRAIN, e.g. resnet18:64:512"
        ) from None


def main(argv=None) -> Path:
    p = benchlib.parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--setting",
        action="append",
        default=None,
        metavar="MODEL:PX:N_TRAIN",
        help="model, image size and training images (repeatable; default resnet18:64:512 "
        "and resnet50:224:32)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None, help="epochs per run, the first is warm-up")
    args = p.parse_args(argv)
    if args.device != "cpu":
        raise SystemExit("--device: this comparison is defined for the CPU only")
    return benchlib.run_restoring(_main, args, argv)


def _main(args, argv) -> Path:
    from imbench.protocols import resolve

    if args.quick:
        setups = [parse_setting(s) for s in (args.setting or ["test_resnet:32:64"])]
        epochs, repeats = args.epochs or 2, args.repeats or 1
    else:
        setups = [
            parse_setting(s) for s in (args.setting or ["resnet18:64:512", "resnet50:224:32"])
        ]
        epochs, repeats = args.epochs or 4, args.repeats or 2
    figures, per_setting, all_samples = [], [], []
    for model, size, n_train in setups:
        n_val = max(8, n_train // 4)
        cache, split_csv = loop_overhead.build_cache(args.work_dir, n_train, n_val, 16, size)
        state = {"i": 0}

        def one(state=state, size=size, cache=cache, split_csv=split_csv, model=model):
            state["i"] += 1
            det = "auto" if state["i"] % 2 == 1 else True  # odd: imbench's default; even: on
            settings = resolve(
                "demo",
                {
                    "epochs": epochs,
                    "image_size": size,
                    "batch_size": args.batch_size,
                    "threads": args.threads,
                    "device": "cpu",
                    "pretrained": False,
                    "augment": "none",
                    "deterministic": det,
                },
            )
            return interleaved(cache, split_csv, model, settings, args.work_dir, rotate=state["i"])

        samples = benchlib.repeat(one, repeats, args, label=f"{NAME} {model} {size}px")
        all_samples.extend(samples)
        ratios: dict[str, list[float]] = {}
        rates: dict[str, list[float]] = {}
        for s in samples:
            for name, r in s["epoch_ratios"].items():
                ratios.setdefault(name, []).extend(r)
            for name, v in s["images_per_s"].items():
                rates.setdefault(name, []).append(v)
        medians = {name: round(benchlib.median(r), 4) for name, r in ratios.items()}
        tag = f"{model} {size}px cpu, batch {args.batch_size}, {args.threads} thread{'s' if args.threads > 1 else ''}"
        n_pairs = len(ratios.get("imbench", []))
        figures.append(
            {
                "name": f"imbench / plain PyTorch loop images/s, median of {n_pairs} interleaved epoch "
                f"pairs ({tag})",
                "value": medians.get("imbench"),
                "unit": "ratio",
                "target": 0.95,
                "op": ">=",
            }
        )
        for name, what in (
            ("imbench-det", "imbench with deterministic: true / plain"),
            ("plain+cl", "plain + channels-last input / plain"),
            ("plain+det", "plain + deterministic algorithms / plain"),
            ("plain+cl+det", "plain + both (imbench's settings) / plain"),
        ):
            if name in medians:
                figures.append({"name": f"{what} ({tag})", "value": medians[name], "unit": "ratio"})
        figures.append(
            {
                "name": f"plain PyTorch loop ({tag})",
                "value": benchlib.median(rates["plain"]),
                "unit": "images/s",
            }
        )
        if "imbench" in rates:
            figures.append(
                {
                    "name": f"imbench training loop ({tag})",
                    "value": benchlib.median(rates["imbench"]),
                    "unit": "images/s",
                }
            )
        per_setting.append(
            {
                "model": model,
                "image_size": size,
                "n_train": n_train,
                "n_val": n_val,
                "median_epoch_ratios": medians,
                "epoch_ratio_quartiles": {
                    name: benchlib.quartiles(r) for name, r in ratios.items()
                },
                "median_images_per_s": {name: benchlib.median(v) for name, v in rates.items()},
                "samples": samples,
            }
        )
    details = {
        "batch_size": args.batch_size,
        "threads": args.threads,
        "epochs_per_run": epochs,
        "warmup_epochs_dropped": 1,
        "repeats_per_setting": repeats,
        "variants": {
            name: {"channels_last_input": cl, "deterministic": det}
            for name, (cl, det) in VARIANTS.items()
        },
        "settings": per_setting,
    }
    return benchlib.write_result(
        NAME, "plain_loop.py", argv, args, figures, details, benchlib.load_summary(all_samples)
    )


if __name__ == "__main__":
    main()
