"""Loader throughput: training images/s at 224 px of imbench's data path against per-epoch JPEG
decoding with torchvision, measured in the same run on the same images.

Images: ``n`` synthetic 600×450 JPEGs (HAM10000's size) from ``imbench.data.synthetic.generate``.

imbench's path (what ``train_cell``'s batch loop does, without the model): the JPEGs are cached
once at 224 px (``imbench.data.cache.build_cache``, squash mode; not timed here: see
preprocessing.py), the cache is loaded into memory as a ``Split``, then per epoch:
``build_sampler('ce', ...)`` batches → ``torch.as_tensor(idx)`` → ``images_to_input`` (each
selected uint8 image flipped at random and converted straight into a float batch tensor reused
between steps, then ImageNet normalisation in place) with ``torch.set_num_threads(2)``, and the
labels. The same run measures the previous path (gather the uint8 batch, then convert it with
whole-batch element-wise operations) as the "before" figure; both give identical tensors
(checked in every run: ``identical_to_elementwise``).

Baseline: ``torchvision.datasets.ImageFolder`` over the same JPEGs (a class-per-folder tree of
symbolic links) with ``RandomResizedCrop(224)``, ``RandomHorizontalFlip``, ``ToTensor``,
``Normalize`` (ImageNet), read by a ``DataLoader`` (batch 64, shuffle, 2 workers, persistent
workers): PIL decodes every JPEG every epoch.

Each repeat runs several epochs of both; the first epoch of each is warm-up (the baseline's
includes starting its workers) and is left out. images/s = images / seconds over the other epochs.
With ``--device cuda`` both batches are also copied to the GPU (imbench runs ``to_input`` there).
The OS file cache is warm (the JPEGs were just written or read): disk reads are not measured.

``--augment standard``: the like-for-like comparison (result ``loader_throughput_standard``, with
``_cuda`` on a GPU). Both sides apply the same augmentation, the ``standard`` recipe of
``imbench.augment`` (random resized crop of 40–100 % area, aspect 3/4–4/3; rotation in [−90°, 90°],
shear in [−20°, 20°], scale in [0.8, 1.2]; horizontal and vertical flips;
brightness/contrast/saturation in [0.7, 1.3], hue ±0.1):

- imbench: per batch, the uint8 rows are gathered from the in-memory cache (into pinned memory and
  copied asynchronously on CUDA) and ``augment_batch`` augments and normalises the whole batch on
  the device (``--device``; on the CPU with ``--threads`` torch threads);
- imbench, host share: the same epochs with only the gather (and, on CUDA, the pinned copy): the
  work left to the host's cores when the device augments;
- baseline: ImageFolder + PIL + DataLoader (``--workers``) with torchvision's
  ``RandomResizedCrop(scale=(0.4, 1), ratio=(3/4, 4/3))``, ``RandomAffine(90, scale=(0.8, 1.2),
  shear=20)`` (PIL fills with black where imbench mirrors), ``RandomHorizontalFlip``,
  ``RandomVerticalFlip``, ``ColorJitter(0.3, 0.3, 0.3, 0.1)``, ``ToTensor``, ``Normalize``: every
  image decoded and augmented by PIL every epoch.

The three run interleaved within each repeat.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

NAME = "loader_throughput"


def imbench_cache(root: Path, work: Path, size: int):
    from imbench.data.cache import build_cache

    cache = work / f"{root.name}_cache_{size}px"
    if not (cache / "index.csv").exists():
        build_cache(benchlib.jpeg_index(root), root, cache, size=size, mode="squash", workers=2)
    return cache


def to_input_elementwise(batch_u8, settings, device, generator=None):
    """The element-wise conversion imbench used before its current CPU path (kept here to measure
    the two in the same run): whole-batch ``.float()``, ``torch.where`` flips and broadcast
    normalisation, each allocating a new float batch. Same draws, same values (tests/test_input.py)."""
    import torch

    from imbench.train import IMAGENET_MEAN, IMAGENET_STD

    x = batch_u8.to(device).permute(0, 3, 1, 2).float().div_(255)
    if generator is not None and settings.augment == "flip":
        n = x.shape[0]
        flips = torch.rand(n, 2, generator=generator).to(device)
        x = torch.where((flips[:, 0] < 0.5).view(n, 1, 1, 1), x.flip(3), x)
        x = torch.where((flips[:, 1] < 0.5).view(n, 1, 1, 1), x.flip(2), x)
    if settings.normalize == "imagenet":
        x = (x - torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)) / torch.tensor(
            IMAGENET_STD, device=device
        ).view(1, 3, 1, 1)
    return x


def check_identical(device) -> bool:
    """True when imbench's batch path gives exactly the element-wise conversion's values."""
    import torch

    from imbench.train import InputBuffer, Settings, images_to_input, to_input

    u8 = torch.randint(
        0, 256, (16, 24, 20, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    idx = torch.arange(16).flip(0)
    ok = True
    for s, gen in (
        (Settings(image_size=24), True),
        (Settings(image_size=24), False),
        (Settings(image_size=24, normalize="none"), True),
        (Settings(image_size=24, augment="none"), True),
    ):
        g = (lambda: torch.Generator().manual_seed(7)) if gen else (lambda: None)
        a = to_input_elementwise(u8[idx], s, device, g())
        if device.type == "cpu":
            b = images_to_input(u8, idx, s, g(), InputBuffer()(16, 3, 24, 20))
        else:
            b = to_input(u8[idx], s, device, g())
        ok &= bool(torch.equal(a, b))
    return ok


def imbench_epochs(
    cache: Path, epochs: int, batch_size: int, threads: int, device, elementwise: bool = False
) -> list[tuple[int, float]]:
    """(images, seconds) per epoch of imbench's host data path, exactly as train_cell's batch loop
    runs it: on the CPU each selected image is flipped and converted from the in-memory split into
    a reused batch tensor (``images_to_input``); on CUDA the gathered uint8 batch goes to the device
    and is converted there (``to_input``). ``elementwise``: gather + the previous element-wise
    conversion instead (the "before" figure)."""
    import numpy as np
    import torch

    from imbench.data.cache import load_cache
    from imbench.methods import build_sampler
    from imbench.train import InputBuffer, Settings, Split, images_to_input, to_device, to_input

    torch.set_num_threads(threads)
    images, index = load_cache(cache)
    train = Split(images, index, np.arange(len(index)))
    size, channels = train.images.shape[1], train.images.shape[3]
    settings = Settings(
        image_size=size,
        batch_size=batch_size,
        augment="flip",
        normalize="imagenet",
        threads=threads,
    )
    sampler = build_sampler("ce", train.labels.numpy(), batch_size, seed=0)
    buffer = InputBuffer()
    out = []
    x = y = None
    for epoch in range(epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(
            int(np.random.SeedSequence([0, epoch]).generate_state(1)[0])
        )
        n = 0
        for idx in sampler:
            if len(idx) < 2:
                continue
            idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
            if elementwise:
                x = to_input_elementwise(train.images[idx], settings, device, gen)
            elif device.type == "cpu":
                x = images_to_input(
                    train.images, idx, settings, gen, buffer(len(idx), channels, size, size)
                )
            else:  # as train_cell on a GPU: pinned gather, asynchronous copy, conversion on the device
                x = to_input(to_device(train.images, idx, device), settings, device, gen)
            y = to_device(train.labels, idx, device)
            n += len(idx)
        benchlib.sync(device)
        out.append((n, time.perf_counter() - t0))
    del x, y
    return out


def folder_tree(root: Path, work: Path) -> Path:
    """A class-per-folder view (symbolic links) of a synthetic tree, for ImageFolder."""
    index = benchlib.jpeg_index(root)
    tree = work / f"{root.name}_imagefolder"
    done = tree / ".complete"
    if not done.exists():
        for row in index.itertuples(index=False):
            d = tree / row.label_name
            d.mkdir(parents=True, exist_ok=True)
            link = d / Path(row.path).name
            if not link.exists():
                os.symlink((root / row.path).resolve(), link)
        done.touch()
    return tree


def baseline_epochs(
    tree: Path, epochs: int, batch_size: int, workers: int, size: int, device, augment="flip"
) -> list[tuple[int, float]]:
    import torch
    from torchvision import datasets, transforms

    if augment == "standard":
        tf = standard_transform(size)
    else:
        tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            ]
        )
    ds = datasets.ImageFolder(str(tree), transform=tf)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )
    out = []
    try:
        for _ in range(epochs):
            t0 = time.perf_counter()
            n = 0
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                n += len(x)
            benchlib.sync(device)
            out.append((n, time.perf_counter() - t0))
    finally:
        del loader  # stop the workers inside the measured window's accounting
    return out


def device_augment_epochs(
    cache: Path, epochs: int, batch_size: int, threads: int, device, host_only: bool = False
) -> list[tuple[int, float]]:
    """(images, seconds) per epoch of the ``standard`` recipe on the device: the gather (pinned,
    asynchronous copy on CUDA) and ``augment_batch``; ``host_only``: the gather and copy only."""
    import numpy as np
    import torch

    from imbench.augment import augment_batch
    from imbench.data.cache import load_cache
    from imbench.methods import build_sampler
    from imbench.train import InputBuffer, Settings, Split, to_device

    torch.set_num_threads(threads)
    buffer = InputBuffer()
    images, index = load_cache(cache)
    train = Split(images, index, np.arange(len(index)))
    settings = Settings(
        image_size=train.images.shape[1], batch_size=batch_size, augment="standard", threads=threads
    )
    sampler = build_sampler("ce", train.labels.numpy(), batch_size, seed=0)
    out = []
    x = y = None
    for epoch in range(epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(
            int(np.random.SeedSequence([0, epoch]).generate_state(1)[0])
        )
        n = 0
        for idx in sampler:
            if len(idx) < 2:
                continue
            idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
            x = to_device(train.images, idx, device)
            if not host_only:  # into a reused batch buffer on the CPU, as train_one_epoch does
                dest = (
                    buffer(len(idx), *x.shape[3:], *x.shape[1:3]) if device.type == "cpu" else None
                )
                x = augment_batch(x, settings, device, gen, out=dest)
            y = to_device(train.labels, idx, device)
            n += len(idx)
        benchlib.sync(device)
        out.append((n, time.perf_counter() - t0))
    del x, y
    return out


def standard_transform(size: int):
    """torchvision's per-image version of the ``standard`` recipe (imbench.augment.RECIPES)."""
    from torchvision import transforms

    from imbench.augment import IMAGENET_MEAN, IMAGENET_STD, RECIPES

    r = RECIPES["standard"]
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(size, scale=r.scale, ratio=r.ratio),
            transforms.RandomAffine(r.degrees, scale=r.zoom, shear=r.shear),
            transforms.RandomHorizontalFlip(r.hflip),
            transforms.RandomVerticalFlip(r.vflip),
            transforms.ColorJitter(r.brightness, r.contrast, r.saturation, r.hue),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def rate(epochs: list[tuple[int, float]]) -> float:
    steady = epochs[1:] if len(epochs) > 1 else epochs
    return sum(n for n, _ in steady) / sum(t for _, t in steady)


def main(argv=None) -> Path:
    p = benchlib.parser(__doc__.split("\n\n")[0])
    p.add_argument("--n-images", type=int, default=None, help="JPEGs (default 1024)")
    p.add_argument("--width", type=int, default=600)
    p.add_argument("--height", type=int, default=450)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="torch threads of imbench's path")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
    p.add_argument(
        "--epochs", type=int, default=None, help="imbench epochs per repeat (first is warm-up)"
    )
    p.add_argument(
        "--baseline-epochs",
        type=int,
        default=None,
        help="baseline epochs per repeat (first is warm-up)",
    )
    p.add_argument(
        "--augment",
        choices=("flip", "standard"),
        default="flip",
        help="flip: imbench's flip path against RandomResizedCrop+flip; standard: the same "
        "augmentation on both sides (device augmentation against ImageFolder+PIL)",
    )
    p.add_argument(
        "--no-before",
        action="store_true",
        help="skip the measurement of the previous element-wise conversion",
    )
    args = p.parse_args(argv)
    return benchlib.run_restoring(_main, args, argv)


def _main(args, argv) -> Path:
    device = benchlib.resolve_device(args.device)
    if args.quick:
        n, w, h, size = args.n_images or 64, 60, 45, 32
        epochs, b_epochs, repeats = args.epochs or 2, args.baseline_epochs or 2, args.repeats or 1
    else:
        n, w, h, size = args.n_images or 1024, args.width, args.height, args.image_size
        epochs, b_epochs, repeats = args.epochs or 6, args.baseline_epochs or 3, args.repeats or 5
    args.work_dir.mkdir(parents=True, exist_ok=True)
    root = benchlib.synthetic_jpegs(args.work_dir, n, w, h)
    cache = imbench_cache(root, args.work_dir, size)
    tree = folder_tree(root, args.work_dir)
    jpeg_bytes = [f.stat().st_size for f in (root / "images").glob("*.jpg")]
    if args.augment == "standard":
        return _standard(args, argv, device, n, w, h, size, epochs, b_epochs, repeats, cache, tree)

    def one():
        imb = imbench_epochs(cache, epochs, args.batch_size, args.threads, device)
        base = baseline_epochs(tree, b_epochs, args.batch_size, args.workers, size, device)
        r_imb, r_base = rate(imb), rate(base)
        out = {
            "imbench_images_per_s": round(r_imb, 1),
            "baseline_images_per_s": round(r_base, 1),
            "speedup": round(r_imb / r_base, 2),
            "imbench_epochs": [(k, round(t, 4)) for k, t in imb],
            "baseline_epochs": [(k, round(t, 4)) for k, t in base],
        }
        if not args.no_before:
            before = imbench_epochs(
                cache, epochs, args.batch_size, args.threads, device, elementwise=True
            )
            out["before_images_per_s"] = round(rate(before), 1)
            out["before_epochs"] = [(k, round(t, 4)) for k, t in before]
        return out

    samples = benchlib.repeat(one, repeats, args, label=NAME)
    imb = benchlib.median([s["imbench_images_per_s"] for s in samples])
    base = benchlib.median([s["baseline_images_per_s"] for s in samples])
    tag = f"{size} px, batch {args.batch_size}, {device.type}"
    figures = [
        {
            "name": f"imbench data path: cache → images_to_input into a reused batch ({tag}, {args.threads} threads)",
            "value": round(imb, 1),
            "unit": "images/s",
            "target": None if args.quick else 3000,
            "op": ">=",
        },
        {
            "name": f"baseline: ImageFolder + PIL decode + RandomResizedCrop/flip/ToTensor/Normalize "
            f"({w}×{h} JPEG → {size} px, DataLoader {args.workers} workers)",
            "value": round(base, 1),
            "unit": "images/s",
        },
        {
            "name": "imbench data path / baseline",
            "value": round(imb / base, 2),
            "unit": "×",
            "target": None if args.quick else 5,
            "op": ">=",
        },
    ]
    before = None
    if not args.no_before:
        before = benchlib.median([s["before_images_per_s"] for s in samples])
        figures.append(
            {
                "name": f"before: gather → element-wise conversion (the previous to_input; {tag}, "
                f"{args.threads} threads)",
                "value": round(before, 1),
                "unit": "images/s",
            }
        )
    details = {
        "n_images": n,
        "jpeg_size": [w, h],
        "jpeg_kib_mean": round(sum(jpeg_bytes) / len(jpeg_bytes) / 1024, 1),
        "image_size": size,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "workers": args.workers,
        "device": str(device),
        "imbench_epochs_per_repeat": epochs,
        "baseline_epochs_per_repeat": b_epochs,
        "warmup_epochs_dropped": 1,
        "speedup_per_repeat": [s["speedup"] for s in samples],
        "before_images_per_s": before,
        "identical_to_elementwise": check_identical(device),
        "samples": samples,
    }
    name = NAME if device.type == "cpu" else f"{NAME}_{device.type}"
    return benchlib.write_result(
        name,
        "loader_throughput.py",
        argv,
        args,
        figures,
        details,
        benchlib.load_summary(samples),
        device,
    )


def _standard(args, argv, device, n, w, h, size, epochs, b_epochs, repeats, cache, tree) -> Path:
    """The like-for-like comparison of ``--augment standard`` (module docstring)."""

    def one():
        imb = device_augment_epochs(cache, epochs, args.batch_size, args.threads, device)
        host = device_augment_epochs(
            cache, epochs, args.batch_size, args.threads, device, host_only=True
        )
        base = baseline_epochs(
            tree, b_epochs, args.batch_size, args.workers, size, device, augment="standard"
        )
        r_imb, r_host, r_base = rate(imb), rate(host), rate(base)
        return {
            "imbench_images_per_s": round(r_imb, 1),
            "host_images_per_s": round(r_host, 1),
            "baseline_images_per_s": round(r_base, 1),
            "speedup": round(r_imb / r_base, 2),
            "host_speedup": round(r_host / r_base, 2),
            "imbench_epochs": [(k, round(t, 4)) for k, t in imb],
            "host_epochs": [(k, round(t, 4)) for k, t in host],
            "baseline_epochs": [(k, round(t, 4)) for k, t in base],
        }

    samples = benchlib.repeat(one, repeats, args, label=f"{NAME}_standard")
    imb = benchlib.median([s["imbench_images_per_s"] for s in samples])
    host = benchlib.median([s["host_images_per_s"] for s in samples])
    base = benchlib.median([s["baseline_images_per_s"] for s in samples])
    tag = f"{size} px, batch {args.batch_size}, {device.type}"
    target = not args.quick
    figures = [
        {
            "name": f"standard augmentation, imbench: cache → augment_batch on the device ({tag}, "
            f"{args.threads} threads)",
            "value": round(imb, 1),
            "unit": "images/s",
            "target": 3000 if target else None,
            "op": ">=",
        },
        {
            "name": f"standard augmentation, baseline: ImageFolder + PIL + the same torchvision "
            f"transforms ({w}×{h} JPEG → {size} px, DataLoader {args.workers} workers)",
            "value": round(base, 1),
            "unit": "images/s",
        },
        {
            "name": "standard augmentation: imbench / baseline",
            "value": round(imb / base, 2),
            "unit": "×",
            "target": 5 if target else None,
            "op": ">=",
        },
        {
            "name": f"standard augmentation, imbench host share: gather{' + pinned copy' if device.type == 'cuda' else ''} "
            f"only, the device augments ({tag})",
            "value": round(host, 1),
            "unit": "images/s",
        },
        {
            "name": "standard augmentation: imbench host share / baseline",
            "value": round(host / base, 2),
            "unit": "×",
        },
    ]
    details = {
        "augment": "standard",
        "n_images": n,
        "jpeg_size": [w, h],
        "image_size": size,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "workers": args.workers,
        "device": str(device),
        "imbench_epochs_per_repeat": epochs,
        "baseline_epochs_per_repeat": b_epochs,
        "warmup_epochs_dropped": 1,
        "speedup_per_repeat": [s["speedup"] for s in samples],
        "host_speedup_per_repeat": [s["host_speedup"] for s in samples],
        "samples": samples,
    }
    name = f"{NAME}_standard" + ("" if device.type == "cpu" else f"_{device.type}")
    return benchlib.write_result(
        name,
        "loader_throughput.py",
        argv,
        args,
        figures,
        details,
        benchlib.load_summary(samples),
        device,
    )


if __name__ == "__main__":
    main()
