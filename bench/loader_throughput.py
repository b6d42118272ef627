"""Loader throughput: training images/s at 224 px of imbench's data path against per-epoch JPEG
decoding with torchvision, measured in the same run on the same images.

Images: ``n`` synthetic 600×450 JPEGs (HAM10000's size) from ``imbench.data.synthetic.generate``.

imbench's path (what ``train_cell`` does per batch, without the model): the JPEGs are cached once
at 224 px (``imbench.data.cache.build_cache``, squash mode; not timed here: see preprocessing.py),
the cache is loaded into memory as a ``Split``, then per epoch: ``build_sampler('ce', ...)``
batches → ``torch.as_tensor(idx)`` → uint8 gather ``split.images[idx]`` → ``to_input`` (uint8 →
float NCHW, random horizontal and vertical flips per sample, ImageNet normalisation) on the host
with ``torch.set_num_threads(2)``, and the labels.

Baseline: ``torchvision.datasets.ImageFolder`` over the same JPEGs (a class-per-folder tree of
symbolic links) with ``RandomResizedCrop(224)``, ``RandomHorizontalFlip``, ``ToTensor``,
``Normalize`` (ImageNet), read by a ``DataLoader`` (batch 64, shuffle, 2 workers, persistent
workers): PIL decodes every JPEG every epoch.

Each repeat runs several epochs of both; the first epoch of each is warm-up (the baseline's
includes starting its workers) and is left out. images/s = images / seconds over the other epochs.
With ``--device cuda`` both batches are also copied to the GPU (imbench runs ``to_input`` there).
The OS file cache is warm (the JPEGs were just written or read): disk reads are not measured.
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


def _flip_draws(n: int, generator):
    """to_input's random draws, unchanged: one (n, 2) uniform tensor; < 0.5 means flip."""
    import torch

    f = torch.rand(n, 2, generator=generator)
    return (f[:, 0] < 0.5).tolist(), (f[:, 1] < 0.5).tolist()


def _normalise_rows_(x, settings):
    """x /= 255, then ImageNet normalisation, in place, on a float (N, C, H, W) tensor whose memory
    is NHWC (what ``.float()`` of the permuted uint8 batch gives). It works on the (N·H, W·C) view
    with the per-channel constants tiled along a row: the same element-wise operations as
    ``to_input``'s ``(x - mean) / std`` (bit-identical results), but with a long contiguous inner
    dimension, where broadcasting a (1, 3, 1, 1) tensor has an inner loop of 3 elements."""
    import torch

    from imbench.train import IMAGENET_MEAN, IMAGENET_STD

    n, c, h, w = x.shape
    rows = x.permute(0, 2, 3, 1).view(n * h, w * c)
    rows.div_(255)
    if settings.normalize == "imagenet":
        rows.sub_(torch.tensor(IMAGENET_MEAN, device=x.device).repeat(w))
        rows.div_(torch.tensor(IMAGENET_STD, device=x.device).repeat(w))
    return x


def to_input_proposed(batch_u8, settings, device, generator=None, out=None):
    """The CPU path of ``imbench.train.to_input`` proposed in BENCHMARKS.md, measured beside it.

    Same random draws, bit-identical output and strides (``check_proposed``). Differences: the
    flips are applied per selected sample to a copy of the uint8 NHWC batch (a quarter of the
    bytes of the float batch, no full-batch ``flip`` + ``where``), and the normalisation runs in
    place on the one float tensor (see ``_normalise_rows_``). ``out``: a float tensor of the
    result's shape and strides to convert into (no new 38 MB allocation per batch at 224 px).
    On CUDA the current ``to_input`` is kept (its element-wise work is cheap on a GPU).
    """
    import torch

    from imbench.train import to_input

    if device.type != "cpu":
        return to_input(batch_u8, settings, device, generator)
    x = batch_u8
    if generator is not None and settings.augment == "flip":
        hflip, vflip = _flip_draws(x.shape[0], generator)
        x = x.clone()  # the caller's batch is left as it is
        for i, (h, v) in enumerate(zip(hflip, vflip)):
            if h:
                x[i] = x[i].flip(1)  # W of HWC
            if v:
                x[i] = x[i].flip(0)  # H
    x = x.permute(0, 3, 1, 2)
    x = out.copy_(x) if out is not None else x.float()
    return _normalise_rows_(x, settings)


class Buffered:
    """``to_input_proposed`` converting every batch into one reused float tensor (NHWC memory, as
    ``.float()`` of the permuted batch has): the training loop would keep it between steps."""

    def __init__(self):
        self.out = None

    def buffer(self, n, h, w, c, device):
        """A (n, c, h, w) float tensor with NHWC memory; a smaller last batch gets a slice of it."""
        import torch

        if self.out is None or self.out.shape[0] < n or self.out.shape[1:] != (c, h, w):
            self.out = torch.empty((n, c, h, w), device=device, memory_format=torch.channels_last)
        return self.out[:n]

    def __call__(self, batch_u8, settings, device, generator=None):
        if device.type != "cpu":
            return to_input_proposed(batch_u8, settings, device, generator)
        return to_input_proposed(batch_u8, settings, device, generator, out=self.buffer(*batch_u8.shape, device))


class Fused(Buffered):
    """A further step (changes the loop, not only ``to_input``): no batch gather; each selected
    image is (flipped and) converted from the in-memory split straight into the reused buffer.
    Called with the split's images and the batch indices instead of a gathered batch."""

    gathers = False

    def __call__(self, images, idx, settings, device, generator=None):
        from imbench.train import to_input

        if device.type != "cpu":
            return to_input(images[idx], settings, device, generator)
        n = len(idx)
        _, h, w, c = images.shape
        out = self.buffer(n, h, w, c, device)
        flips = _flip_draws(n, generator) if generator is not None and settings.augment == "flip" else None
        for j, i in enumerate(idx.tolist()):
            src = images[i]
            if flips and flips[0][j]:
                src = src.flip(1)
            if flips and flips[1][j]:
                src = src.flip(0)
            out[j].copy_(src.permute(2, 0, 1))
        return _normalise_rows_(out, settings)


def check_proposed(device) -> bool:
    """True when every proposed variant gives exactly imbench's output (values and strides)."""
    import torch

    from imbench.train import Settings, to_input

    u8 = torch.randint(0, 256, (16, 24, 20, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    idx = torch.arange(16).flip(0)
    ok = True
    for s, gen in ((Settings(image_size=24), True), (Settings(image_size=24), False),
                   (Settings(image_size=24, normalize="none"), True), (Settings(image_size=24, augment="none"), True)):
        g = (lambda: torch.Generator().manual_seed(7)) if gen else (lambda: None)
        a = to_input(u8[idx], s, device, g())
        for b in (to_input_proposed(u8[idx], s, device, g()), Buffered()(u8[idx], s, device, g()),
                  Fused()(u8, idx, s, device, g())):
            ok &= bool(torch.equal(a, b) and a.stride() == b.stride())
    return ok


def imbench_epochs(cache: Path, epochs: int, batch_size: int, threads: int, device,
                   convert=None) -> list[tuple[int, float]]:
    """(images, seconds) per epoch of imbench's host data path, as in train_cell's loop
    (``convert``: a stand-in for ``to_input``, to measure a proposed change)."""
    import numpy as np
    import torch

    from imbench.data.cache import load_cache
    from imbench.methods import build_sampler
    from imbench.train import Settings, Split, to_input

    convert = convert or to_input
    torch.set_num_threads(threads)
    images, index = load_cache(cache)
    train = Split(images, index, np.arange(len(index)))
    settings = Settings(image_size=images.shape[1], batch_size=batch_size, augment="flip", normalize="imagenet",
                        threads=threads)
    sampler = build_sampler("ce", train.labels.numpy(), batch_size, seed=0)
    out = []
    x = y = None
    for epoch in range(epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([0, epoch]).generate_state(1)[0]))
        n = 0
        for idx in sampler:
            if len(idx) < 2:
                continue
            idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
            if getattr(convert, "gathers", True):
                x = convert(train.images[idx], settings, device, gen)
            else:
                x = convert(train.images, idx, settings, device, gen)
            y = train.labels[idx].to(device, non_blocking=True)
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


def baseline_epochs(tree: Path, epochs: int, batch_size: int, workers: int, size: int,
                    device) -> list[tuple[int, float]]:
    import torch
    from torchvision import datasets, transforms

    tf = transforms.Compose([
        transforms.RandomResizedCrop(size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    ds = datasets.ImageFolder(str(tree), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0, pin_memory=device.type == "cuda",
                                         generator=torch.Generator().manual_seed(0))
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
    p.add_argument("--epochs", type=int, default=None, help="imbench epochs per repeat (first is warm-up)")
    p.add_argument("--baseline-epochs", type=int, default=None, help="baseline epochs per repeat (first is warm-up)")
    p.add_argument("--no-proposed", action="store_true",
                   help="skip the measurement of the to_input change proposed in BENCHMARKS.md")
    args = p.parse_args(argv)
    restore = benchlib.restore_torch_state()
    try:
        return _main(args, argv if argv is not None else sys.argv[1:])
    finally:
        restore()


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

    def one():
        imb = imbench_epochs(cache, epochs, args.batch_size, args.threads, device)
        base = baseline_epochs(tree, b_epochs, args.batch_size, args.workers, size, device)
        r_imb, r_base = rate(imb), rate(base)
        out = {"imbench_images_per_s": round(r_imb, 1), "baseline_images_per_s": round(r_base, 1),
               "speedup": round(r_imb / r_base, 2),
               "imbench_epochs": [(k, round(t, 4)) for k, t in imb],
               "baseline_epochs": [(k, round(t, 4)) for k, t in base]}
        if not args.no_proposed:
            for key, convert in (("proposed", to_input_proposed), ("proposed_buffer", Buffered()),
                                 ("proposed_fused", Fused())):
                prop = imbench_epochs(cache, epochs, args.batch_size, args.threads, device, convert)
                out[f"{key}_images_per_s"] = round(rate(prop), 1)
                out[f"{key}_epochs"] = [(k, round(t, 4)) for k, t in prop]
        return out

    samples = benchlib.repeat(one, repeats, args, label=NAME)
    imb = benchlib.median([s["imbench_images_per_s"] for s in samples])
    base = benchlib.median([s["baseline_images_per_s"] for s in samples])
    tag = f"{size} px, batch {args.batch_size}, {device.type}"
    figures = [
        {"name": f"imbench data path: cache → gather → to_input ({tag}, {args.threads} threads)",
         "value": round(imb, 1), "unit": "images/s", "target": None if args.quick else 3000, "op": ">="},
        {"name": f"baseline: ImageFolder + PIL decode + RandomResizedCrop/flip/ToTensor/Normalize "
                 f"({w}×{h} JPEG → {size} px, DataLoader {args.workers} workers)",
         "value": round(base, 1), "unit": "images/s"},
        {"name": "imbench data path / baseline", "value": round(imb / base, 2), "unit": "×",
         "target": None if args.quick else 5, "op": ">="},
    ]
    proposed = {}
    if not args.no_proposed:
        for key, what in (("proposed", "with the proposed to_input change"),
                          ("proposed_buffer", "with the proposed to_input change and a reused output tensor"),
                          ("proposed_fused", "with per-image conversion into a reused tensor, no batch gather")):
            proposed[key] = benchlib.median([s[f"{key}_images_per_s"] for s in samples])
            figures.append({"name": f"same path {what} (BENCHMARKS.md; {tag}, {args.threads} threads)",
                            "value": round(proposed[key], 1), "unit": "images/s"})
    details = {
        "n_images": n, "jpeg_size": [w, h], "jpeg_kib_mean": round(sum(jpeg_bytes) / len(jpeg_bytes) / 1024, 1),
        "image_size": size, "batch_size": args.batch_size, "threads": args.threads, "workers": args.workers,
        "device": str(device), "imbench_epochs_per_repeat": epochs, "baseline_epochs_per_repeat": b_epochs,
        "warmup_epochs_dropped": 1, "speedup_per_repeat": [s["speedup"] for s in samples],
        "proposed_to_input_images_per_s": proposed.get("proposed"),
        "proposed_to_input_buffer_images_per_s": proposed.get("proposed_buffer"),
        "proposed_fused_images_per_s": proposed.get("proposed_fused"),
        "proposed_to_input_bit_identical": None if args.no_proposed else check_proposed(device),
        "samples": samples,
    }
    name = NAME if device.type == "cpu" else f"{NAME}_{device.type}"
    return benchlib.write_result(name, "loader_throughput.py", argv, args, figures, details,
                                 benchlib.load_summary(samples), device)


if __name__ == "__main__":
    main()
