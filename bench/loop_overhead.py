"""Loop overhead: images/s of imbench's training loop against a plain PyTorch loop and the LMF loop.

CPU (the default): three loops train the same timm model (built by
``imbench.models.create_model`` from the same seed, each its own copy and optimiser: the demo
protocol's AdamW, batch 32, the same torch threads (``--threads``, default PyTorch's own), no
augmentation on any side) on the same images:

- **imbench**: the real ``imbench.train.train_cell`` (method ``ce``) with its settings as a cell
  resolves them (``memory_format: auto``, ``deterministic: auto``), on the ``imbench cache`` of the
  images; its per-epoch images/s come from ``history.csv``;
- **plain**: the loop of the PyTorch tutorials (``bench/plain_loop.py``'s ``plain_epochs``): float32
  NCHW tensors in memory normalised once, ``TensorDataset`` + ``DataLoader(shuffle=True)``, default
  global flags; it copies no imbench setting;
- **LMF**: the training loop of the LMF paper's official code with the same model
  (``ImageFolder`` over the JPEGs, PIL decoding, ``Resize((size, size))`` + ``ToTensor``,
  ``DataLoader(shuffle=True)``), see :func:`lmf_epochs`.

Each epoch of every loop includes one validation pass (imbench's ``seconds`` do). The images are a
synthetic HAM10000-format tree of 600×450 JPEGs; imbench and the plain loop read its cache at the
setting's size, the LMF loop decodes and resizes the JPEGs every epoch, as its code does.

The loops run *interleaved epoch by epoch* in one process: the plain and LMF loops are generators
that run one epoch per ``next()``, advanced from ``train_cell``'s per-epoch log callback (after
the epoch's timed span), in an order that alternates between epochs. Epoch 1 of every loop is
warm-up and is dropped; each later epoch gives one paired ratio (imbench / plain, LMF / plain,
imbench / LMF) of epochs run seconds apart on the same machine, and the figures are the medians
of those pairs over all repeats. The machine's load during every repeat is in the JSON.

Settings: ``--setting MODEL:PX:N_TRAIN`` (repeatable); default ``resnet18:64:256`` and
``resnet50:224:32`` (one step per epoch: a resnet50 step of 32 images at 224 px takes seconds on
one thread), 4 epochs, 3 repeats. ``--quick``: ``test_resnet:32:32``, 2 epochs, 1 repeat.

CUDA (``--device cuda``): ResNet-50 at 224 px with bf16 autocast and channels-last, imbench
against a bare loop with imbench's own settings (:func:`bare_epochs`, :func:`interleaved`): that
run gives the GPU images/s figure.
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
    from imbench.train import threads_used

    torch.set_num_threads(threads_used(settings))  # auto: PyTorch's default, as a plain script
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


# ----------------------------------------------------------------------------- against plain and LMF loops


def jpeg_setup(work: Path, n_train: int, n_val: int, n_test: int, size: int):
    """The same images for the three loops: a synthetic HAM10000-format tree of 600×450 JPEGs
    (``benchlib.synthetic_jpegs``), imbench's cache of it at ``size`` px (``squash``, as ``imbench
    cache``), a split file (the first ``n_train`` images train, the next ``n_val`` val, the rest
    test) and, for the LMF loop, class-per-folder trees of symbolic links to the train and val
    JPEGs (``ImageFolder``'s layout). Returns (cache, split_csv, train_tree, val_tree)."""
    import os

    import pandas as pd

    from imbench.data.cache import build_cache

    n = n_train + n_val + n_test
    root = benchlib.synthetic_jpegs(work, n, 600, 450)
    index = benchlib.jpeg_index(root)
    cache = work / f"{root.name}_cache_{size}px"
    if not (cache / "index.csv").exists():
        build_cache(index, root, cache, size=size, mode="squash", workers=1)
    split = ["train"] * n_train + ["val"] * n_val + ["test"] * (len(index) - n_train - n_val)
    split_csv = cache / f"split_{n_train}_{n_val}.csv"
    if not split_csv.exists():
        frame = pd.DataFrame(
            {"image_id": index["image_id"], "group": index["group"], "split": split}
        )
        frame.to_csv(split_csv, index=False)
    trees = []
    for part in ("train", "val"):
        tree = work / f"{root.name}_folders_{n_train}_{n_val}" / part
        done = tree / ".complete"
        if not done.exists():
            for row, s in zip(index.itertuples(index=False), split):
                if s != part:
                    continue
                d = tree / row.label_name
                d.mkdir(parents=True, exist_ok=True)
                link = d / Path(row.path).name
                if not link.exists():
                    os.symlink((root / row.path).resolve(), link)
            done.touch()
        trees.append(tree)
    return cache, split_csv, trees[0], trees[1]


def _threads(value: str):
    if value == "auto":
        return value
    n = int(value)
    if n < 1:
        raise ValueError(value)
    return n


def _threads_tag(threads) -> str:
    """'1 thread', '2 threads', or 'auto = N threads' (PyTorch's default for this process)."""
    from imbench.train import DEFAULT_THREADS

    n = DEFAULT_THREADS if threads == "auto" else threads
    text = f"{n} thread{'s' if n > 1 else ''}"
    return f"threads auto = {text}" if threads == "auto" else text


def lmf_epochs(train_tree: Path, val_tree: Path, model_name: str, settings, seed: int):
    """The training loop of the LMF paper's official code with the same model: ``ImageFolder`` +
    PIL decoding + ``Resize((size, size))`` + ``ToTensor`` (no normalisation, no augmentation: the
    ``lmf`` protocol) read by a ``DataLoader(batch_size, shuffle=True)`` (no workers: the same process and torch
    threads as the other loops), ``model.train()``, forward, cross-entropy, ``zero_grad``, backward,
    step; then a validation pass over its own ``ImageFolder``. A generator that runs one epoch per
    ``next()`` and yields ``(training images, seconds)``. The optimiser is the other loops' (the
    demo protocol's AdamW), so only the data path and the loop differ."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    from imbench.models import create_model

    size = settings.image_size
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
    train_set = datasets.ImageFolder(str(train_tree), transform=tf)
    val_set = datasets.ImageFolder(str(val_tree), transform=tf)
    train_loader = DataLoader(
        train_set,
        batch_size=settings.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    val_loader = DataLoader(val_set, batch_size=settings.eval_batch_size)
    torch.manual_seed(seed)
    model = create_model(model_name, 7, pretrained=False)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    while True:
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(False)
        try:
            t0 = time.perf_counter()
            model.train()
            seen = 0
            for x, y in train_loader:
                if len(y) < 2:
                    continue
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                seen += len(y)
            model.eval()
            with torch.no_grad():
                for x, _ in val_loader:
                    model(x).softmax(1)
            seconds = time.perf_counter() - t0
        finally:
            torch.use_deterministic_algorithms(previous)
        yield seen, seconds


def against_plain(work: Path, model: str, size: int, n_train: int, settings, rotate: int) -> dict:
    """One repeat: imbench's epochs (``train_cell`` with the settings as resolved, ``auto``
    included), each followed by one epoch of the plain loop and one of the LMF loop (their order
    alternating), all on the same images."""
    import plain_loop

    n_val = max(8, n_train // 4)
    cache, split_csv, train_tree, val_tree = jpeg_setup(work, n_train, n_val, 16, size)
    gens = {
        "plain": plain_loop.plain_epochs(cache, split_csv, model, settings, 0, False, False),
        "lmf": lmf_epochs(train_tree, val_tree, model, settings, 0),
    }
    runs = {name: [] for name in gens}

    def after_imbench_epoch():
        k = len(runs["plain"])
        if k >= settings.epochs:
            return
        names = list(gens) if (k + rotate) % 2 == 0 else list(gens)[::-1]
        for name in names:
            runs[name].append(next(gens[name]))

    imb = run_imbench(
        cache,
        split_csv,
        model,
        settings,
        work / "loop_run",
        seed=0,
        after_epoch=after_imbench_epoch,
    )
    while len(runs["plain"]) < settings.epochs:
        after_imbench_epoch()
    steady = slice(1, None) if settings.epochs > 1 else slice(None)
    rates = {"imbench": [n / t for n, t in zip(imb["epoch_images"], imb["epoch_seconds"])]}
    rates.update({name: [n / t for n, t in r] for name, r in runs.items()})
    pairs = {
        "imbench/plain": (rates["imbench"], rates["plain"]),
        "lmf/plain": (rates["lmf"], rates["plain"]),
        "imbench/lmf": (rates["imbench"], rates["lmf"]),
    }
    return {
        "images_per_s": {k: round(benchlib.median(v[steady]), 2) for k, v in rates.items()},
        "epoch_ratios": {
            k: [round(x / y, 4) for x, y in zip(a[steady], b[steady])]
            for k, (a, b) in pairs.items()
        },
        "epochs": {
            "imbench": {"seconds": imb["epoch_seconds"], "images": imb["epoch_images"]},
            **{
                k: {"seconds": [round(t, 3) for _, t in r], "images": [n for n, _ in r]}
                for k, r in runs.items()
            },
        },
    }


def parse_setting(text: str) -> tuple[str, int, int]:
    try:
        model, px, n = text.split(":")
        return model, int(px), int(n)
    except ValueError:
        raise SystemExit(
            f"--setting {text!r}: expected MODEL:PIXELS:N_TRAIN, e.g. resnet18:64:256"
        ) from None


def main(argv=None) -> Path:
    p = benchlib.parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--setting",
        action="append",
        default=None,
        metavar="MODEL:PX:N_TRAIN",
        help="CPU: model, image size and training images (repeatable; default resnet18:64:256 "
        "and resnet50:224:32)",
    )
    p.add_argument("--model", default=None, help="CUDA: timm model (default resnet50)")
    p.add_argument("--image-size", type=int, default=None, help="CUDA: pixels (default 224)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (CPU), 64 (CUDA)")
    p.add_argument(
        "--threads",
        type=_threads,
        default="auto",
        help="torch threads of all three loops: auto = PyTorch's default for the process (what "
        "a plain script gets, and imbench's `threads: auto`), or a number (the workflow's train "
        "rule uses 1)",
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs per run, the first is warm-up")
    p.add_argument("--n-train", type=int, default=None, help="CUDA: training images")
    p.add_argument("--n-val", type=int, default=None, help="CUDA: validation images")
    args = p.parse_args(argv)
    return benchlib.run_restoring(_main, args, argv)


def _main(args, argv) -> Path:
    import torch

    from imbench.protocols import resolve
    from imbench.train import deterministic_used, memory_format_used

    device = benchlib.resolve_device(args.device)
    if device.type == "cuda":
        return _main_cuda(args, argv, device)
    if args.quick:
        setups = [parse_setting(s) for s in (args.setting or ["test_resnet:32:32"])]
        epochs, repeats = args.epochs or 2, args.repeats or 1
    else:
        setups = [
            parse_setting(s) for s in (args.setting or ["resnet18:64:256", "resnet50:224:32"])
        ]
        epochs, repeats = args.epochs or 4, args.repeats or 3
    batch = args.batch_size or 32
    cpu = torch.device("cpu")
    figures, per_setting, all_samples = [], [], []
    for model, size, n_train in setups:
        settings = resolve(
            "demo",
            {
                "epochs": epochs,
                "image_size": size,
                "batch_size": batch,
                "threads": args.threads,
                "device": "cpu",
                "pretrained": False,
                "augment": "none",
            },
        )
        state = {"i": 0}

        def one(state=state, model=model, size=size, n_train=n_train, settings=settings):
            state["i"] += 1
            return against_plain(args.work_dir, model, size, n_train, settings, state["i"])

        samples = benchlib.repeat(one, repeats, args, label=f"{NAME} {model} {size}px")
        all_samples.extend(samples)
        ratios = {
            k: [r for s in samples for r in s["epoch_ratios"][k]]
            for k in samples[0]["epoch_ratios"]
        }
        rates = {k: [s["images_per_s"][k] for s in samples] for k in samples[0]["images_per_s"]}
        medians = {k: round(benchlib.median(v), 4) for k, v in ratios.items()}
        tag = f"{model} {size}px cpu, batch {batch}, {_threads_tag(args.threads)}"
        n_pairs = len(ratios["imbench/plain"])
        figures += [
            {
                "name": f"imbench / plain PyTorch loop images/s, median of {n_pairs} interleaved "
                f"epoch pairs ({tag})",
                "value": medians["imbench/plain"],
                "unit": "ratio",
                "target": 0.95,
                "op": ">=",
            },
            {
                "name": f"LMF official loop (ImageFolder + PIL + DataLoader) / plain ({tag})",
                "value": medians["lmf/plain"],
                "unit": "ratio",
            },
            {
                "name": f"imbench / LMF official loop ({tag})",
                "value": medians["imbench/lmf"],
                "unit": "ratio",
            },
            {
                "name": f"imbench training loop ({tag})",
                "value": benchlib.median(rates["imbench"]),
                "unit": "images/s",
            },
            {
                "name": f"plain PyTorch loop ({tag})",
                "value": benchlib.median(rates["plain"]),
                "unit": "images/s",
            },
            {
                "name": f"LMF official loop ({tag})",
                "value": benchlib.median(rates["lmf"]),
                "unit": "images/s",
            },
        ]
        per_setting.append(
            {
                "model": model,
                "image_size": size,
                "n_train": n_train,
                "memory_format_used": memory_format_used(cpu, settings),
                "deterministic_used": deterministic_used(cpu, settings),
                "median_epoch_ratios": medians,
                "epoch_ratio_quartiles": {k: benchlib.quartiles(v) for k, v in ratios.items()},
                "median_images_per_s": {k: benchlib.median(v) for k, v in rates.items()},
                "samples": samples,
            }
        )
    details = {
        "batch_size": batch,
        "threads": args.threads,
        "epochs_per_run": epochs,
        "warmup_epochs_dropped": 1,
        "repeats_per_setting": repeats,
        "augment": "none (all three loops)",
        "settings": per_setting,
    }
    return benchlib.write_result(
        NAME, "loop_overhead.py", argv, args, figures, details, benchlib.load_summary(all_samples)
    )


def _main_cuda(args, argv, device) -> Path:
    """GPU: imbench against the bare loop (imbench's own settings), ResNet-50 at 224 px."""
    from imbench.protocols import resolve

    cuda = True
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
            "batch_size": (args.batch_size or 64),
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
            f"({len(samples)} runs; {tag}, batch {(args.batch_size or 64)}, "
            f"{_threads_tag(args.threads)})",
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
        "batch_size": (args.batch_size or 64),
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
