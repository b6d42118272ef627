"""Loop overhead: images/s of imbench's training loop against a bare PyTorch loop.

Both loops train the same model (built by ``imbench.models.create_model`` from the same seed) on
the same in-memory uint8 images, with the same batch size, optimiser (the demo protocol's AdamW),
precision, thread count and determinism flag, and both do the same work per epoch:

- training: shuffle, gather a uint8 batch, convert to float NCHW, random horizontal and vertical
  flips per sample, ImageNet normalisation, forward, cross-entropy, backward, optimiser step;
- validation: one pass over the validation split in eval mode (batches of ``eval_batch_size``),
  softmax, macro-F1.

imbench's loop is the real one: ``imbench.train.train_cell`` on a cache written in the format of
``imbench cache`` (random pixels; the pixel values do not change the cost), method ``ce``. Its
per-epoch images/s are read from ``history.csv`` (``images / seconds``; ``seconds`` covers the
training steps *and* the validation pass, which is why the bare loop times the same validation
pass). The bare loop is a plain ``for idx in randperm(n).split(batch)`` loop written here.

The two loops run *interleaved epoch by epoch* in one process: the bare loop is a generator that
runs one epoch per ``next()``, and it is advanced from ``train_cell``'s per-epoch log callback,
which runs after the epoch's timed span (steps, validation) has ended. A repeat is therefore
``A1 B1 A2 B2 …`` (imbench first) or ``B1 A1 B2 A2 …`` (bare first; the order alternates between
repeats), and each epoch k ≥ 2 gives one paired ratio (imbench / bare images/s) of two epochs run
seconds apart. The speed of a shared virtual machine drifts by ±10 % or more within a minute;
whole runs timed back to back (the previous form of this benchmark) spread their ratios from 0.74
to 1.24, while adjacent epochs see the same machine. The figure is the median of all paired epoch
ratios; the ratio of the two loops' total images/s is in the JSON too.

Epoch 1 of every run is warm-up and is left out. Time spent by ``train_cell`` outside its epochs
(loading the cache, checkpoint writes, the final validation and test predictions, writing files) is
reported separately as ``outside_epochs_s``.

CPU default: timm ``test_resnet`` at 32 px, batch 64, 1 thread (the demo protocol). With
``--device cuda`` the defaults become ResNet-50 at 224 px with bf16 autocast and channels-last,
as ``train_cell`` runs on a GPU; that run gives the GPU images/s figure.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

NAME = "loop_overhead"


def build_cache(
    work: Path, n_train: int, n_val: int, n_test: int, size: int, seed: int = 0
) -> tuple[Path, Path]:
    """A cache (images.npy + index.csv) of random pixels with HAM10000's class proportions, and its
    split file, in the formats ``imbench cache`` and ``imbench split`` write."""
    import numpy as np
    import pandas as pd

    from imbench.data.ham10000 import CLASSES
    from imbench.data.synthetic import class_counts

    n = n_train + n_val + n_test
    cache = work / f"loop_cache_{n_train}_{n_val}_{n_test}_{size}px"
    split_csv = cache / "split.csv"
    if split_csv.exists():
        return cache, split_csv
    cache.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = class_counts(max(n, 200))
    p = np.array([counts[c] for c in CLASSES], float)
    labels = rng.choice(len(CLASSES), size=n, p=p / p.sum())
    labels[: len(CLASSES)] = np.arange(len(CLASSES))  # every class present
    arr = np.lib.format.open_memmap(
        cache / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3)
    )
    for s in range(0, n, 512):
        arr[s : s + 512] = rng.integers(0, 256, arr[s : s + 512].shape, dtype=np.uint8)
    arr.flush()
    del arr
    ids = [f"IMG_{i:06d}" for i in range(n)]
    index = pd.DataFrame(
        {
            "image_id": ids,
            "path": [f"images/{i}.jpg" for i in ids],
            "label": labels,
            "label_name": [CLASSES[k] for k in labels],
            "group": [f"G{i:06d}" for i in range(n)],
        }
    )
    index.to_csv(cache / "index.csv", index=False)
    split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    split = split[rng.permutation(n)]
    split[: len(CLASSES)] = "train"
    k = len(CLASSES)
    split[k : k + 2], split[k + 2 : k + 4] = "val", "test"  # no empty split, however small
    pd.DataFrame({"image_id": ids, "group": index["group"], "split": split}).to_csv(
        split_csv, index=False
    )
    return cache, split_csv


def run_imbench(
    cache: Path, split_csv: Path, model: str, settings, out_dir: Path, seed: int, after_epoch=None
) -> dict:
    """``train_cell`` from scratch; ``after_epoch()`` runs after each epoch's timed span."""
    import pandas as pd

    from imbench.train import train_cell

    def log(message: str) -> None:
        if after_epoch is not None and message.startswith("epoch "):
            after_epoch()

    shutil.rmtree(out_dir, ignore_errors=True)  # no checkpoint to resume from
    t0 = time.perf_counter()
    run = train_cell("synthetic", cache, split_csv, model, "ce", seed, settings, out_dir, log=log)
    wall = time.perf_counter() - t0
    hist = pd.read_csv(out_dir / "history.csv")
    return {
        "epoch_seconds": hist["seconds"].tolist(),
        "epoch_images": hist["images"].tolist(),
        "wall_s": round(wall, 3),
        "outside_epochs_s": round(wall - float(hist["seconds"].sum()), 3),
        "val_macro_f1_last": float(hist["val_macro_f1"].iloc[-1]),
        "n_train": run["n_train"],
    }


def bare_epochs(cache: Path, split_csv: Path, model_name: str, settings, device, seed: int):
    """The same training as train_cell's, written as a plain PyTorch loop: a generator that runs
    one epoch per ``next()`` and yields ``(images, seconds, validation macro-F1)``."""
    import numpy as np
    import pandas as pd
    import torch
    import torch.nn.functional as F

    from imbench.models import create_model

    torch.set_num_threads(settings.threads)
    if settings.deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    images = np.load(cache / "images.npy", mmap_mode="r")
    labels_all = pd.read_csv(cache / "index.csv")["label"].to_numpy()
    split = pd.read_csv(split_csv)["split"].to_numpy()
    tr, va = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
    x_tr = torch.from_numpy(np.ascontiguousarray(images[tr]))
    y_tr = torch.as_tensor(labels_all[tr], dtype=torch.long)
    x_va = torch.from_numpy(np.ascontiguousarray(images[va]))
    y_va = labels_all[va]
    K = int(labels_all.max()) + 1

    torch.manual_seed(seed)
    model = create_model(model_name, K, pretrained=False).to(device)
    cuda = device.type == "cuda"
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    use_amp = cuda and settings.precision == "bf16"

    def amp():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)

    def prepare(u8, gen=None):
        x = u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        if gen is not None:
            r = torch.rand(len(x), 2, generator=gen).to(device)
            h, v = (r[:, 0] < 0.5).view(-1, 1, 1, 1), (r[:, 1] < 0.5).view(-1, 1, 1, 1)
            x = torch.where(h, x.flip(3), x)  # no host sync on a GPU (boolean indexing would sync)
            x = torch.where(v, x.flip(2), x)
        x = x.sub_(mean).div_(std)
        return x.contiguous(memory_format=torch.channels_last) if cuda else x

    for epoch in range(settings.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        model.train()
        seen = 0
        for idx in torch.randperm(len(x_tr), generator=gen).split(settings.batch_size):
            if len(idx) < 2:
                continue
            x = prepare(x_tr[idx], gen)
            y = y_tr[idx].to(device, non_blocking=True)
            with amp():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
        model.eval()
        with torch.no_grad():
            probs = []
            for s in range(0, len(x_va), settings.eval_batch_size):
                with amp():
                    out = model(prepare(x_va[s : s + settings.eval_batch_size]))
                probs.append(out.float().softmax(1).cpu())
            pred = torch.cat(probs).numpy().argmax(1)
        cm = np.bincount(y_va * K + pred, minlength=K * K).reshape(K, K)
        denom = cm.sum(0) + cm.sum(1)
        f1 = np.divide(2 * np.diag(cm), denom, out=np.zeros(K), where=denom > 0).mean()
        benchlib.sync(device)
        yield seen, time.perf_counter() - t0, float(f1)


def interleaved(
    cache: Path, split_csv: Path, model: str, settings, device, work: Path, bare_first: bool
) -> dict:
    """One repeat: imbench's and the bare loop's epochs alternated (see the module docstring)."""
    bare = bare_epochs(cache, split_csv, model, settings, device, seed=0)
    bare_runs = []

    def bare_epoch():
        if len(bare_runs) < settings.epochs:
            bare_runs.append(next(bare))

    if bare_first:
        bare_epoch()  # B1 A1 B2 A2 …: the hook after imbench's epoch k runs bare epoch k + 1
    imb = run_imbench(
        cache, split_csv, model, settings, work / "loop_run", seed=0, after_epoch=bare_epoch
    )
    while (
        len(bare_runs) < settings.epochs
    ):  # imbench stopped early (it does not with these settings)
        bare_epoch()
    imb_rate = [n / t for n, t in zip(imb["epoch_images"], imb["epoch_seconds"])]
    bare_rate = [n / t for n, t, _ in bare_runs]
    steady = slice(1, None) if settings.epochs > 1 else slice(None)
    pairs = [a / b for a, b in zip(imb_rate[steady], bare_rate[steady])]

    def total(images, seconds):
        return sum(images[steady]) / sum(seconds[steady])

    imb_ips = total(imb["epoch_images"], imb["epoch_seconds"])
    bare_ips = total([n for n, _, _ in bare_runs], [t for _, t, _ in bare_runs])
    return {
        "imbench_images_per_s": round(imb_ips, 1),
        "bare_images_per_s": round(bare_ips, 1),
        "ratio": round(imb_ips / bare_ips, 4),
        "epoch_ratios": [round(r, 4) for r in pairs],
        "order": "bare first" if bare_first else "imbench first",
        "runs": {
            "imbench": imb,
            "bare": {
                "epoch_seconds": [round(t, 3) for _, t, _ in bare_runs],
                "epoch_images": [n for n, _, _ in bare_runs],
                "val_macro_f1_last": bare_runs[-1][2],
            },
        },
    }


def main(argv=None) -> Path:
    p = benchlib.parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--model", default=None, help="timm model (default: test_resnet on CPU, resnet50 on CUDA)"
    )
    p.add_argument(
        "--image-size", type=int, default=None, help="pixels (default: 32 on CPU, 224 on CUDA)"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (the demo protocol and the workflow's train rule use 1)",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs per run, the first is warm-up")
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-val", type=int, default=None)
    args = p.parse_args(argv)
    return benchlib.run_restoring(_main, args, argv)


def _main(args, argv) -> Path:
    from imbench.protocols import resolve

    device = benchlib.resolve_device(args.device)
    cuda = device.type == "cuda"
    model = args.model or ("resnet50" if cuda else "test_resnet")
    size = args.image_size or (224 if cuda else 32)
    if args.quick:
        n_train, n_val, epochs, repeats = (
            args.n_train or 96,
            args.n_val or 32,
            args.epochs or 2,
            args.repeats or 1,
        )
    else:
        n_train = args.n_train or (4096 if cuda else 2048)
        n_val, epochs, repeats = args.n_val or n_train // 4, args.epochs or 8, args.repeats or 6
    settings = resolve(
        "demo",
        {
            "epochs": epochs,
            "image_size": size,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "device": device.type,
            "pretrained": False,
        },
    )
    work = args.work_dir
    cache, split_csv = build_cache(work, n_train, n_val, 64 if not args.quick else 16, size)
    state = {"i": 0}

    def one():
        state["i"] += 1
        return interleaved(
            cache, split_csv, model, settings, device, work, bare_first=state["i"] % 2 == 0
        )

    samples = benchlib.repeat(one, repeats, args, label=NAME)
    imb = benchlib.median([s["imbench_images_per_s"] for s in samples])
    bare = benchlib.median([s["bare_images_per_s"] for s in samples])
    epoch_ratios = [r for s in samples for r in s["epoch_ratios"]]
    ratio = round(benchlib.median(epoch_ratios), 4)
    tag = f"{model} {size}px {device.type}"
    figures = [
        {
            "name": f"loop overhead: imbench / bare images/s, median of {len(epoch_ratios)} interleaved epoch pairs "
            f"({len(samples)} runs; {tag}, batch {args.batch_size}, "
            f"{args.threads} thread{'s' if args.threads > 1 else ''})",
            "value": ratio,
            "unit": "ratio",
            "target": None if cuda else 0.95,
            "op": ">=",
        },
        {"name": f"imbench training loop ({tag})", "value": round(imb, 1), "unit": "images/s"},
        {"name": f"bare PyTorch loop ({tag})", "value": round(bare, 1), "unit": "images/s"},
    ]
    details = {
        "model": model,
        "image_size": size,
        "device": str(device),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "epochs_per_run": epochs,
        "warmup_epochs_dropped": 1,
        "n_train": n_train,
        "n_val": n_val,
        "amp": "bf16" if cuda else "off",
        "deterministic": settings.deterministic,
        "stderr_isatty": sys.stderr.isatty(),
        "imbench_images_per_s_median": imb,
        "bare_images_per_s_median": bare,
        "ratio_of_medians": round(imb / bare, 4),
        "ratio_per_repeat": [s["ratio"] for s in samples],
        "ratio_median_of_repeats": benchlib.median([s["ratio"] for s in samples]),
        "epoch_ratios": epoch_ratios,
        "epoch_ratio_quartiles": benchlib.quartiles(epoch_ratios),
        "imbench_outside_epochs_s_median": benchlib.median(
            [s["runs"]["imbench"]["outside_epochs_s"] for s in samples]
        ),
        "samples": samples,
    }
    if cuda:
        details["gpu_images_per_s"] = imb
    name = NAME if device.type == "cpu" else f"{NAME}_{device.type}"
    return benchlib.write_result(
        name,
        "loop_overhead.py",
        argv,
        args,
        figures,
        details,
        benchlib.load_summary(samples),
        device,
    )


if __name__ == "__main__":
    main()
