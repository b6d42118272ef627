"""Train one cell: (task, model, method, seed) under one protocol.

Reads the cached uint8 images, trains with the method's loss/sampler/head, keeps the weights of
the epoch with the best validation macro-F1, and writes into ``out_dir``:

- ``predictions.csv``: one row per validation and test image: split, image_id, group, the label,
  the class probabilities (``prob_<class>``) and the default decision (``pred``: argmax);
- ``history.csv``: per epoch: mean training loss, validation macro-F1, learning rate, seconds,
  images and optimiser steps;
- ``run.json``: resolved settings and method parameters, package versions, hardware, timings, and
  a ``resolved`` block with what a comparison with a paper must list (split, precision, head,
  class weights, epochs, optimiser steps, augmentation, pretrained weights; see
  :func:`resolved_block` and docs/methods.md);
- ``best.pt``: the best epoch's model weights.

The loop has the shape of torchvision's reference training script: :func:`train_one_epoch` (with
:func:`train_step`, one optimiser step per batch), :func:`evaluate` (one validation pass per
epoch; the best epoch's validation probabilities are the ones written, no extra pass), the
learning-rate schedule as a ``torch.optim.lr_scheduler.LambdaLR`` of :func:`lr_factor`, a
:class:`imbench.checkpoint.Checkpoint` and a :class:`CellOutputs` writer; the predictions file's
format belongs to :mod:`imbench.predictions`.

A killed run resumes from ``checkpoint.pt`` (see :mod:`imbench.checkpoint`: written atomically at
most every ``checkpoint_every_min`` minutes and after the last epoch) when started again with the
same settings and the same data: the checkpoint's identity covers the cell, the resolved settings
and the content of what it trains on (the cache's fingerprint, see ``imbench.data.cache``, and the
SHA-256 of the split file), so a checkpoint of other settings, other pixels, labels or split
assignment is reported in one line, removed and training starts from scratch.
Per-epoch randomness (sampler draws, augmentation) is a pure function of (seed, epoch) and the
global random state is restored from the checkpoint, so a resumed
run produces exactly the numbers of an uninterrupted one on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score

from . import __version__
from .augment import augment_batch, is_batched
from .checkpoint import Checkpoint
from .data.cache import cache_fingerprint, file_sha256, load_cache
from .data.multilabel import label_matrix
from .data.tasks import get_task
from .io import read_csv, write_csv, write_json, write_with
from .methods import build_loss, build_mixer, build_sampler, get_method
from .models import MissingWeightsError, create_model
from .predictions import default_decision, predictions_frame, write_predictions
from .settings import Settings  # a torch-free module (planning imports it); re-exported here

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- data


class Split:
    """Images (uint8 NHWC tensor), labels and ids of one split, all in memory.

    ``labels``: int64 class ids (single-label) or a float 0/1 (N, K) matrix (multi-label).
    """

    def __init__(
        self,
        images: np.ndarray,
        index: pd.DataFrame,
        rows: np.ndarray,
        kind: str = "multiclass",
        classes=(),
    ):
        self.rows = rows
        self.images = torch.from_numpy(np.ascontiguousarray(images[rows]))
        if kind == "multilabel":
            self.labels = torch.as_tensor(label_matrix(index, classes)[rows], dtype=torch.float32)
        else:
            self.labels = torch.as_tensor(index["label"].to_numpy()[rows], dtype=torch.long)
        self.image_id = index["image_id"].to_numpy()[rows]
        self.group = index["group"].to_numpy()[rows]

    def __len__(self) -> int:
        return len(self.rows)


def to_input(
    batch_u8: torch.Tensor,
    settings: Settings,
    device: torch.device,
    generator: torch.Generator | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """uint8 NHWC → float NCHW on ``device``, optionally flipped at random (per sample).

    Random flips: one ``torch.rand(n, 2, generator)`` draw per batch; sample i is flipped
    horizontally when its first number is < 0.5 and vertically when its second is. Values: x / 255,
    then (x − mean) / std with ImageNet's constants when ``normalize`` is ``imagenet``.

    The result has NCHW shape and the memory layout of :func:`memory_format_used` (channels-last
    or contiguous NCHW). On the CPU it is computed by :func:`images_to_input` (uint8 flips of the
    chosen samples, one conversion, normalisation in place); ``out``, a float tensor of the
    result's shape, is written into instead of allocating one (its layout is kept). On CUDA the
    batch (a host tensor, best one from :func:`to_device`, or one already on the device) is
    converted on the device; ``out`` is ignored.
    """
    fmt = torch_memory_format(memory_format_used(device, settings))
    if device.type == "cpu":
        n, h, w, c = batch_u8.shape
        if out is None:
            out = torch.empty((n, c, h, w), memory_format=fmt)
        return images_to_input(batch_u8, torch.arange(n), settings, generator, out)
    x = batch_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    if generator is not None and settings.augment == "flip":
        n = x.shape[0]
        flips = to_device(
            torch.rand(n, 2, generator=generator), None, device
        )  # host RNG: same draws as on the CPU
        hflip = (flips[:, 0] < 0.5).view(n, 1, 1, 1)
        vflip = (flips[:, 1] < 0.5).view(n, 1, 1, 1)
        x = torch.where(hflip, x.flip(3), x)
        x = torch.where(vflip, x.flip(2), x)
    if settings.normalize == "imagenet":
        mean, std = _normalization(device)
        x = (x - mean) / std
    return x.contiguous(memory_format=fmt)


@functools.cache
def _normalization(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet's mean and std as (1, 3, 1, 1) tensors on ``device``, made once per device."""
    return (
        torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1),
        torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1),
    )


@contextlib.contextmanager
def one_thread():
    """Run the block's PyTorch operators on the calling thread only, then restore the count.

    For loops of small operators (one image each): handing each to the intra-op thread pool costs
    a synchronisation per operator, which under CPU contention (another process on the cores)
    made the 2-thread image copy several times slower than the 1-thread one (BENCHMARKS.md).
    Switching the count costs well under a microsecond."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def images_to_input(
    images: torch.Tensor,
    idx: torch.Tensor,
    settings: Settings,
    generator: torch.Generator | None,
    out: torch.Tensor,
) -> torch.Tensor:
    """CPU: rows ``idx`` of the uint8 NHWC ``images`` as :func:`to_input` returns them, in ``out``.

    ``out`` is a float tensor of shape (len(idx), C, H, W), channels-last or contiguous (a batch
    buffer reused between steps). Each image is flipped as uint8 and converted straight into its
    slot, so the batch is never gathered or allocated; the normalisation then runs in place:
    channels-last, on the (N·H, W·C) row view with the per-channel constants tiled along a row;
    contiguous, with (1, C, 1, 1) constants. Both give the same float operations (x / 255,
    − mean, / std) in the same order as the element-wise form, so the values do not depend on the
    layout.

    It runs on the calling thread only (:func:`one_thread`): with two threads, a machine shared
    with another process made the pool's hand-offs cost more than the second thread gained
    (``bench/input_contention.py``, BENCHMARKS.md).
    """
    with one_thread():  # one image per copy: pool hand-offs cost more than they save under load
        return _images_to_input(images, idx, settings, generator, out)


def _images_to_input(images, idx, settings, generator, out) -> torch.Tensor:
    flip = generator is not None and settings.augment == "flip"
    draws = (torch.rand(len(idx), 2, generator=generator) < 0.5).tolist() if flip else None
    for j, i in enumerate(idx.tolist()):
        src = images[i]  # H, W, C
        if flip and draws[j][0]:
            src = src.flip(1)
        if flip and draws[j][1]:
            src = src.flip(0)
        out[j].copy_(src.permute(2, 0, 1))
    n, c, h, w = out.shape
    if not out.is_contiguous(memory_format=torch.channels_last) or c == 1:
        out.div_(255)  # contiguous NCHW
        if settings.normalize == "imagenet":
            out.sub_(torch.tensor(IMAGENET_MEAN[:c]).view(1, c, 1, 1))
            out.div_(torch.tensor(IMAGENET_STD[:c]).view(1, c, 1, 1))
        return out
    rows = out.permute(0, 2, 3, 1).view(n * h, w * c)
    rows.div_(255)
    if settings.normalize == "imagenet":
        rows.sub_(torch.tensor(IMAGENET_MEAN[:c]).repeat(w))
        rows.div_(torch.tensor(IMAGENET_STD[:c]).repeat(w))
    return out


def to_device(images: torch.Tensor, idx: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` (all rows when None) of a host tensor, on ``device``.

    CUDA: the rows are gathered straight into page-locked (pinned) host memory and copied with
    ``non_blocking=True``, a DMA transfer queued on the current stream that the host does not wait
    for, so it overlaps the host's work on the next batch. The pinned buffer comes from PyTorch's
    caching host allocator, which records the copy on it and does not hand the block out again
    before the copy has finished; nothing else needs to synchronise. Other devices: a plain gather
    (and copy)."""
    if device.type != "cuda":
        return (images if idx is None else images[idx]).to(device)
    n = len(images) if idx is None else len(idx)
    staged = torch.empty((n, *images.shape[1:]), dtype=images.dtype, pin_memory=True)
    if idx is None:
        staged.copy_(images)
    else:
        torch.index_select(images, 0, idx, out=staged)
    return staged.to(device, non_blocking=True)


class InputBuffer:
    """The float batch tensor that :func:`images_to_input` writes into, kept between steps.

    Reusing it is safe in a training loop: a batch is read by the forward pass only, and the
    backward pass that holds it ends before the next batch is written."""

    def __init__(self, memory_format: torch.memory_format = torch.channels_last):
        self._buf = None
        self.memory_format = memory_format

    def __call__(self, n: int, c: int, h: int, w: int) -> torch.Tensor:
        if self._buf is None or self._buf.shape[0] < n or self._buf.shape[1:] != (c, h, w):
            self._buf = torch.empty((n, c, h, w), memory_format=self.memory_format)
        return self._buf[:n]


#: What ``memory_format: auto`` and ``deterministic: auto`` resolve to per device type, chosen from
#: measurements against a plain PyTorch loop (BENCHMARKS.md, "Against a plain PyTorch loop").
AUTO_MEMORY_FORMAT = {"cpu": "channels_last", "cuda": "channels_last"}
AUTO_DETERMINISTIC = {"cpu": False, "cuda": False}


def memory_format_used(device: torch.device, settings: Settings) -> str:
    """The memory layout of the model and of its input batches: ``channels_last`` or
    ``contiguous`` (NCHW); ``auto`` is :data:`AUTO_MEMORY_FORMAT` of the device type."""
    if settings.memory_format != "auto":
        return settings.memory_format
    return AUTO_MEMORY_FORMAT.get(device.type, "contiguous")


def torch_memory_format(name: str) -> torch.memory_format:
    return torch.channels_last if name == "channels_last" else torch.contiguous_format


def deterministic_used(device: torch.device, settings: Settings) -> bool:
    """Whether ``torch.use_deterministic_algorithms`` is on for the cell: ``deterministic`` as set
    (true applies on the CPU only), ``auto`` is :data:`AUTO_DETERMINISTIC` of the device type."""
    if device.type != "cpu":
        return False
    if settings.deterministic == "auto":
        return AUTO_DETERMINISTIC.get(device.type, False)
    return bool(settings.deterministic)


#: PyTorch's default number of CPU threads for this process, read when this module is first
#: imported (before imbench sets any): what ``threads: auto`` restores.
DEFAULT_THREADS = torch.get_num_threads()


def threads_used(settings: Settings) -> int:
    """CPU threads for the cell: ``threads`` as set, ``auto`` is :data:`DEFAULT_THREADS` (what a
    plain PyTorch script in the same process would use: on most machines one per physical core)."""
    return DEFAULT_THREADS if settings.threads == "auto" else int(settings.threads)


def cudnn_benchmark_used(device: torch.device) -> bool:
    """Whether cuDNN times its convolution algorithms and keeps the fastest
    (``torch.backends.cudnn.benchmark``): on CUDA, where a cell's batches all have one image size
    (the last, shorter batch costs one more search) and results are not bit-reproducible anyway
    (``deterministic`` is off the CPU); off elsewhere."""
    return device.type == "cuda"


def precision_used(device: torch.device, settings: Settings) -> str:
    """The precision a cell trains in: ``bf16`` with ``precision: bf16`` on CUDA, else ``fp32``."""
    return "bf16" if device.type == "cuda" and settings.precision == "bf16" else "fp32"


def autocast(device: torch.device, settings: Settings):
    """bf16 autocast on CUDA with ``precision: bf16``; a no-op context on the CPU or with fp32.

    bf16 keeps fp32's exponent range, so no loss scaling is needed; losses are computed in fp32
    (the loss modules cast logits to float32)."""
    enabled = precision_used(device, settings) == "bf16"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


# Test-time augmentation views: (flip width, flip height) of an NHWC batch.
TTA_VIEWS = {
    "none": ((False, False),),
    "flips": ((False, False), (True, False), (False, True), (True, True)),
}


@torch.no_grad()
def predict(
    model, split: Split, settings: Settings, device: torch.device, kind: str, tta: str = "none"
) -> np.ndarray:
    """Class probabilities for a split: softmax (single-label) or sigmoid (multi-label).

    ``tta="flips"``: the arithmetic mean of the probabilities of four views of every image (as is,
    flipped horizontally, vertically, both), the flips of the ``flip`` augmentation."""
    model.eval()
    out = []
    for start in range(0, len(split), settings.eval_batch_size):
        batch = split.images[start : start + settings.eval_batch_size]
        if (
            device.type == "cuda"
        ):  # one pinned, asynchronous copy; the TTA flips then run on the GPU
            batch = to_device(batch, None, device)
        probs = 0
        for flip_w, flip_h in TTA_VIEWS[tta]:
            view = batch.flip(2) if flip_w else batch
            view = view.flip(1) if flip_h else view
            with autocast(device, settings):
                logits = model(to_input(view, settings, device)).float()
            probs = probs + (torch.sigmoid(logits) if kind == "multilabel" else logits.softmax(1))
        out.append((probs / len(TTA_VIEWS[tta])).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def selection_f1(labels: np.ndarray, probs: np.ndarray, kind: str) -> float:
    """The checkpoint-selection metric: scikit-learn's macro-F1 of the default decision (argmax
    over all the task's classes, or prob ≥ 0.5 per label); a class never true and never predicted
    counts 0 (``zero_division=0``)."""
    pred = default_decision(probs, kind == "multilabel")
    if kind == "multilabel":
        return float(f1_score(labels.astype(int), pred, average="macro", zero_division=0))
    return float(
        f1_score(labels, pred, labels=np.arange(probs.shape[1]), average="macro", zero_division=0)
    )


def evaluate(model, split: Split, settings: Settings, device: torch.device, kind: str):
    """One validation pass: ``(probabilities, selection macro-F1)`` of ``split``."""
    probs = predict(model, split, settings, device, kind)
    return probs, selection_f1(split.labels.numpy(), probs, kind)


# ----------------------------------------------------------------------------- optimisation


def baseline_steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps of one plain (shuffled, every sample once) epoch: ⌈N/B⌉ batches, less a last
    batch of a single sample, which the training loop skips."""
    full, rest = divmod(int(n_train), int(batch_size))
    return full + (1 if rest >= 2 else 0)


def epoch_batches(sampler, epoch: int, settings: Settings, steps: int | None):
    """The batches (index lists of ≥ 2 samples) of 0-based ``epoch``.

    ``steps`` None (``budget: epochs``): the sampler's epoch ``epoch``, as it is. ``steps`` = S
    (``budget: steps``): exactly S batches, taken from the sampler's epoch ``epoch`` and, when that
    has fewer (rus), from its epochs ``epoch + j·E`` for j = 1, 2, … (E = ``settings.epochs``; ids
    no regular epoch uses), cut after S batches when it has more (ros). Both are pure functions of
    (seed, epoch), so a resumed run repeats them. A one-sample batch (batch normalisation cannot
    train on it) is skipped and not counted.
    """
    taken, j = 0, 0
    while steps is None or taken < steps:
        sampler.set_epoch(epoch + j * settings.epochs)
        usable = 0
        for idx in sampler:
            if len(idx) < 2:
                continue
            usable += 1
            yield idx
            taken += 1
            if steps is not None and taken >= steps:
                return
        if steps is None or usable == 0:
            return
        j += 1


def make_optimizer(model, s: Settings):
    if s.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "adam":  # L2 penalty in the gradient, as torch.optim.Adam (LMF protocol)
        return torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
    )


def lr_factor(epoch: int, s: Settings) -> float:
    """Learning-rate multiplier of a 0-based epoch: linear warm-up over ``warmup_epochs`` epochs
    ((e + 1) / (W + 1)), then cosine from 1 to 0 over the remaining epochs (``cosine``), × γ every
    ``step_size`` epochs (``step``) or 1 (``none``)."""
    if epoch < s.warmup_epochs:
        return (epoch + 1) / (s.warmup_epochs + 1)
    if s.scheduler == "cosine":
        span = max(1, s.epochs - s.warmup_epochs)
        return float(0.5 * (1 + np.cos(np.pi * (epoch - s.warmup_epochs) / span)))
    if s.scheduler == "step":
        return float(s.step_gamma ** (epoch // s.step_size))
    return 1.0


def make_scheduler(optimizer, s: Settings) -> torch.optim.lr_scheduler.LambdaLR:
    """The per-epoch schedule: ``LambdaLR`` with :func:`lr_factor`, stepped once after every epoch
    (epoch e trains at ``lr × lr_factor(e)``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_factor, s=s))


# ----------------------------------------------------------------------------- environment


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("setting device=cuda but no CUDA device is available")
    return torch.device(name)


def versions() -> dict:
    import sklearn
    import timm
    import torchvision

    return {
        "imbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
    }


def hardware(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# ----------------------------------------------------------------------------- main


def data_fingerprint(cache_dir: str | Path, split_path: str | Path, log=None) -> dict:
    """What a cell trains on, by content: the cache's verified fingerprint and the split file's
    SHA-256 (part of the checkpoint identity and of ``run.json``)."""
    cache = cache_fingerprint(cache_dir, log=log)
    return {
        "cache": cache["fingerprint"],
        "cache_mode": cache.get("mode"),
        "split_sha256": file_sha256(split_path),
    }


def load_split(cache_dir: str | Path, split_path: str | Path):
    """The cached images and their index with the ``split`` (and, when present, ``cv_fold`` and
    ``grouped``) column of ``split_path`` attached.

    The split must list the cache's images in the same order, with the same labels and groups
    (both made from the same index); otherwise one line names both files."""
    images, index = load_cache(cache_dir)
    split = read_csv(split_path, dtype={"image_id": str, "group": str})
    if "split" not in split.columns:
        raise ValueError(f"{split_path}: no 'split' column")
    if (
        len(split) != len(index)
        or not (split["image_id"].to_numpy() == index["image_id"].to_numpy()).all()
    ):
        raise ValueError(
            f"{split_path}: its image_id column does not match {Path(cache_dir) / 'index.csv'} "
            "(rebuild the cache or the split from the same index)"
        )
    for col in ("label", "group"):
        if col in split.columns and col in index.columns and not split[col].equals(index[col]):
            raise ValueError(
                f"{split_path}: its {col} column does not match {Path(cache_dir) / 'index.csv'} "
                "(the split and the cache were made from different indexes; rebuild them)"
            )
    # "unused": a training image the imbalance axis left out (imbench.data.imbalance)
    bad = sorted(set(split["split"].astype(str)) - {"train", "val", "test", "unused"})
    if bad:
        raise ValueError(f"{split_path}: split values {bad} are not train/val/test/unused")
    index = index.copy()
    index["split"] = split["split"].to_numpy()
    for col in ("cv_fold", "grouped"):
        if col in split.columns:
            index[col] = split[col].to_numpy()
    return images, index


def split_rows(index: pd.DataFrame, fold: int | None = None) -> dict[str, np.ndarray]:
    """Row numbers of the train, val and test images.

    Without ``fold``: the ``split`` column. With ``fold`` k (cross-validation): test as in the
    ``split`` column, val = the images of fold k, train = the other folds' images."""
    split = index["split"].to_numpy()
    if fold is None:
        return {name: np.flatnonzero(split == name) for name in ("train", "val", "test")}
    if "cv_fold" not in index.columns:
        raise ValueError(
            f"fold {fold} asked for, but the split has no cv_fold column "
            "(write it with `imbench split --cv-folds K`)"
        )
    cv = index["cv_fold"].to_numpy()
    if fold not in set(cv[cv >= 0].tolist()):
        raise ValueError(
            f"fold {fold} is not in the split's cv_fold column (folds {sorted(set(cv[cv >= 0]))})"
        )
    return {
        "train": np.flatnonzero((split != "test") & (split != "unused") & (cv != fold)),
        "val": np.flatnonzero(cv == fold),
        "test": np.flatnonzero(split == "test"),
    }


def train_step(
    model,
    loss_fn,
    optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: Settings,
    device,
    mixer=None,
) -> torch.Tensor:
    """One optimiser step on the input batch ``x`` with targets ``y``; returns the (detached) mean
    loss. ``model`` is the module that runs the forward pass (compiled or not); the gradient norm
    is clipped over the optimiser's parameters when ``grad_clip`` > 0. ``mixer`` (mixup, remix:
    :mod:`imbench.methods.mixing`) mixes the batch and its targets first, and gives the loss."""
    if mixer is not None:
        x, mixed = mixer.mix(x, y)
    with autocast(device, settings):
        logits = model(x)
    if mixer is None:
        loss = loss_fn(logits.float(), y)
    else:
        loss = mixer.loss(loss_fn, logits.float(), mixed)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if settings.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    optimizer.step()
    return loss.detach()


def train_one_epoch(
    model,
    loss_fn,
    optimizer,
    train: Split,
    batches,
    settings: Settings,
    device: torch.device,
    generator: torch.Generator,
    x_buffer: InputBuffer,
    mixer=None,
) -> tuple[float, int, int]:
    """Train over ``batches`` (index lists of ``train``): ``(mean loss, images, steps)``.

    Each batch is turned into the model's input (random flips from ``generator``, or a batched
    recipe of :mod:`imbench.augment`; normalisation) and passed to :func:`train_step`. The loss is summed on the device, so there is no host
    synchronisation per step."""
    model.train()
    total = torch.zeros((), device=device)
    n_seen = n_steps = 0
    size, C = train.images.shape[1], train.images.shape[3]
    for idx in batches:
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        if is_batched(settings):  # a recipe of imbench.augment: per-sample, on the device
            out = x_buffer(len(idx), C, size, size) if device.type == "cpu" else None
            x = augment_batch(
                to_device(train.images, idx, device), settings, device, generator, out=out
            )
            x = x.contiguous(
                memory_format=torch_memory_format(memory_format_used(device, settings))
            )
        elif device.type == "cpu":  # straight from the split into the reused batch tensor
            x = images_to_input(
                train.images, idx, settings, generator, x_buffer(len(idx), C, size, size)
            )
        else:  # pinned gather, asynchronous copy, conversion on the device
            x = to_input(to_device(train.images, idx, device), settings, device, generator)
        y = to_device(train.labels, idx, device)
        loss = train_step(model, loss_fn, optimizer, x, y, settings, device, mixer)
        total += loss * len(idx)
        n_seen += len(idx)
        n_steps += 1
    return float(total) / max(1, n_seen), n_seen, n_steps


def cpu_copy(state: dict) -> dict:
    """A host copy of a state dict: one copy per tensor on any device (``.to("cpu", copy=True)``)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The host generator of an epoch's augmentation draws: a pure function of (seed, epoch)."""
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    )


class CellOutputs:
    """Writes a cell's outputs (``best.pt``, ``history.csv``, ``predictions.csv``, ``run.json``),
    each through a temporary name; the caller writes them only once training has finished."""

    def __init__(self, out_dir: Path):
        self.dir = out_dir

    def weights(self, state: dict) -> None:
        write_with(self.dir / "best.pt", functools.partial(torch.save, state))

    def history(self, history: list[dict]) -> None:
        write_csv(self.dir / "history.csv", pd.DataFrame(history))

    def predictions(self, frames: list[pd.DataFrame]) -> None:
        write_predictions(self.dir / "predictions.csv", pd.concat(frames, ignore_index=True))

    def run(self, run: dict) -> None:
        write_json(self.dir / "run.json", run)


#: Settings that change how a cell runs but not what it computes: not part of the checkpoint
#: identity, so changing them keeps a checkpoint usable.
NOT_IN_IDENTITY = ("checkpoint_every_min",)

#: Settings that do not change how much device memory training takes: left out of
#: :func:`memory_key` (every other setting, including ones added later, is in it).
MEMORY_NEUTRAL = (
    "epochs",
    "lr",
    "weight_decay",
    "momentum",
    "scheduler",
    "warmup_epochs",
    "step_size",
    "step_gamma",
    "normalize",
    "drop_rate",
    "threads",
    "device",
    "deterministic",
    "budget",
    "grad_clip",
    "early_stopping",
    "checkpoint_every_min",
    "method_params",
)


def memory_key(model_name: str, settings: Settings) -> str:
    """What a training job's peak device memory depends on, as the key under which
    :mod:`imbench.gpu` records and looks up measured peaks (``IMBENCH_GPU_SLOTS=auto``): the model
    and every setting not in :data:`MEMORY_NEUTRAL` (image size, batch sizes, precision, memory
    format, augmentation, compile, linear probe, optimiser, ...). Task, method and seed are left
    out: they change the classifier head, the loss and the sampling, whose memory is small next to
    the margin the lease adds."""
    kept = {
        k: v for k, v in sorted(dataclasses.asdict(settings).items()) if k not in MEMORY_NEUTRAL
    }
    return f"train {model_name} " + json.dumps(kept, sort_keys=True, separators=(",", ":"))


@dataclasses.dataclass
class Progress:
    """Where training stands: the epochs' history rows and the best epoch so far (0-based; -1
    before any) with its validation macro-F1, host copy of the weights and validation
    probabilities. What a checkpoint carries besides the model, optimiser and scheduler."""

    history: list = dataclasses.field(default_factory=list)
    best_f1: float = -1.0
    best_epoch: int = -1
    best_state: dict | None = None
    best_val_probs: np.ndarray | None = None

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def record(self, epoch: int, row: dict, val_f1: float, val_probs: np.ndarray, model) -> None:
        """Add epoch ``epoch``'s history row; keep its weights and probabilities if it is the best."""
        if val_f1 > self.best_f1:
            self.best_f1, self.best_epoch = val_f1, epoch
            self.best_state, self.best_val_probs = cpu_copy(model.state_dict()), val_probs
        self.history.append(row)

    def stops_early(self, epoch: int, patience: int) -> bool:
        """Early stopping: no better validation macro-F1 for ``patience`` epochs (0 = never)."""
        return bool(patience) and self.best_epoch >= 0 and epoch - self.best_epoch > patience

    def save(self, ckpt: Checkpoint, model, optimizer, scheduler) -> None:
        """Write the resume point after the last epoch done (see :mod:`imbench.checkpoint`); the
        best weights only when they are not the current model's."""
        epoch = self.epochs_done - 1
        ckpt.save(
            epoch=epoch,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            best_f1=self.best_f1,
            best_epoch=self.best_epoch,
            best_state=None if self.best_epoch == epoch else self.best_state,
            best_val_probs=torch.from_numpy(self.best_val_probs),
            history=json.dumps(self.history),
        )

    @classmethod
    def resume(cls, state: dict, model, optimizer, scheduler) -> Progress:
        """Load a checkpoint's states into the model, optimiser and scheduler; its progress."""
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        best = model.state_dict() if state["best_state"] is None else state["best_state"]
        return cls(
            history=json.loads(state["history"]),
            best_f1=state["best_f1"],
            best_epoch=state["best_epoch"],
            best_state=cpu_copy(best),
            best_val_probs=state["best_val_probs"].cpu().numpy(),
        )


def load_cell_data(cache_dir, split_path, settings: Settings, task, fold, log):
    """The cell's images and index, the fingerprint of its data and its train/val/test splits,
    checked: the cached size is the protocol's and no split is empty."""
    images, index = load_split(cache_dir, split_path)
    data = data_fingerprint(cache_dir, split_path, log=log)
    if images.shape[1] != settings.image_size:
        raise ValueError(
            f"{cache_dir}: cached images are {images.shape[1]} px but the protocol asks for "
            f"{settings.image_size} px"
        )
    splits = {
        name: Split(images, index, rows, task.kind, task.classes)
        for name, rows in split_rows(index, fold).items()
    }
    for name, sp in splits.items():
        if len(sp) == 0:
            raise ValueError(f"{cache_dir}/index.csv: the {name} split is empty")
    return index, data, splits


def train_cell(
    task_name: str,
    cache_dir: str | Path,
    split_path: str | Path,
    model_name: str,
    method_name: str,
    seed: int,
    settings: Settings,
    out_dir: str | Path,
    log=print,
    fold: int | None = None,
    plugins: list[dict] | None = None,
) -> dict:
    """Train one cell and write its outputs into ``out_dir``. Returns the ``run.json`` content.

    ``fold``: train the cross-validation model of that fold (validation = the fold's images).
    ``plugins``: the loaded plug-in files (:func:`imbench.plugins.load_plugins`: path and SHA-256);
    recorded in ``run.json`` and part of the checkpoint identity, so an edited plug-in never
    resumes a checkpoint of its old code."""
    t_start = time.time()
    task = get_task(task_name)
    method = get_method(method_name)
    if not method.trains:
        raise ValueError(
            f"method {method_name!r} is post-hoc: it trains nothing (use `imbench posthoc`)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kind, K = task.kind, task.num_classes
    cell_name = f"{task_name}/{model_name}/{method_name}/seed{seed}" + (
        f"/fold{fold}" if fold is not None else ""
    )

    torch.set_num_threads(threads_used(settings))
    device = resolve_device(settings.device)
    if device.type == "cuda":  # timings.peak_device_memory_bytes: this cell's peak
        torch.cuda.reset_peak_memory_stats(device)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(deterministic_used(device, settings))
    torch.backends.cudnn.benchmark = cudnn_benchmark_used(device)
    memory_format = torch_memory_format(memory_format_used(device, settings))

    index, data, splits = load_cell_data(cache_dir, split_path, settings, task, fold, log)
    train, val = splits["train"], splits["val"]
    train_labels = train.labels.numpy()
    if kind == "multilabel":
        train_labels = train_labels.astype(np.int64)
        counts = train_labels.sum(0)  # positives per label
    else:
        counts = np.bincount(train_labels, minlength=K)

    # method, model, optimiser, schedule
    loss_fn = build_loss(
        method_name, counts.tolist(), kind=kind, n_samples=len(train), **settings.method_params
    ).to(device)
    sampler = build_sampler(
        method_name,
        train_labels,
        settings.batch_size,
        seed,
        num_epochs=settings.epochs,
        **settings.method_params,
    )

    # mixup / remix: the inputs and targets of every batch are mixed (None for other methods)
    mixer = build_mixer(method_name, counts.tolist(), kind, seed, **settings.method_params)
    torch.manual_seed(seed)
    try:
        model = create_model(
            model_name,
            K,
            head=method.head,
            pretrained=settings.pretrained,
            drop_rate=settings.drop_rate,
            freeze_backbone=settings.linear_probe,
        ).to(device)
    except MissingWeightsError as exc:
        raise MissingWeightsError(f"cell {cell_name}: {exc}") from None
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(model, settings)
    scheduler = make_scheduler(optimizer, settings)
    step_model = torch.compile(model) if settings.compile else model

    # resume
    identity = {
        "task": task_name,
        "model": model_name,
        "method": method_name,
        "seed": seed,
        "settings": {
            k: v for k, v in dataclasses.asdict(settings).items() if k not in NOT_IN_IDENTITY
        },
        "n_train": len(train),
        "data": data,
    }
    if fold is not None:
        identity["fold"] = fold
    if plugins:
        identity["plugins"] = [dict(p) for p in plugins]
    ckpt = Checkpoint(out_dir / "checkpoint.pt", identity, settings.checkpoint_every_min, log)
    state = ckpt.load(device)
    progress = Progress() if state is None else Progress.resume(state, model, optimizer, scheduler)
    if state is not None:
        log(f"resuming from {ckpt.path} after epoch {progress.epochs_done} of {settings.epochs}")

    # training
    steps = (
        baseline_steps_per_epoch(len(train), settings.batch_size)
        if settings.budget == "steps"
        else None
    )
    x_buffer = InputBuffer(memory_format)
    saved = progress.epochs_done
    for epoch in range(progress.epochs_done, settings.epochs):
        if progress.stops_early(epoch, settings.early_stopping):
            log(
                f"early stopping: no better validation macro-F1 for {settings.early_stopping} epochs"
            )
            break
        t0 = time.time()
        lr = optimizer.param_groups[0]["lr"]
        if hasattr(loss_fn, "set_epoch"):
            loss_fn.set_epoch(epoch, settings.epochs)
        if mixer is not None:
            mixer.set_epoch(epoch)
        # One-sample batches (N ≡ 1 mod B) cannot be batch-normalised in training mode; they are
        # skipped and not counted in the epoch's images or steps.
        batches = epoch_batches(sampler, epoch, settings, steps)
        if sys.stderr.isatty():
            from tqdm import tqdm

            batches = tqdm(
                batches,
                total=steps or len(sampler),
                desc=f"epoch {epoch + 1}/{settings.epochs}",
                leave=False,
            )
        try:
            train_loss, n_seen, n_steps = train_one_epoch(
                step_model,
                loss_fn,
                optimizer,
                train,
                batches,
                settings,
                device,
                epoch_generator(seed, epoch),
                x_buffer,
                mixer,
            )
        except torch.OutOfMemoryError:
            raise RuntimeError(
                f"cell {cell_name}: out of {device.type} memory at batch size "
                f"{settings.batch_size}; lower batch_size in protocol_overrides"
            ) from None
        scheduler.step()
        val_probs, val_f1 = evaluate(model, val, settings, device, kind)
        seconds = time.time() - t0
        if not np.isfinite(train_loss):
            raise FloatingPointError(
                f"cell {cell_name}: training loss is {train_loss} at epoch {epoch + 1} "
                f"(lower the learning rate or check the method's parameters)"
            )
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_macro_f1": val_f1,
            "lr": lr,
            "seconds": round(seconds, 3),
            "images": n_seen,
            "steps": n_steps,
        }
        progress.record(epoch, row, val_f1, val_probs, model)
        if ckpt.due() or epoch == settings.epochs - 1:
            progress.save(ckpt, model, optimizer, scheduler)
            saved = progress.epochs_done
        log(
            f"epoch {epoch + 1}/{settings.epochs} loss {train_loss:.4f} val_macro_f1 {val_f1:.4f} "
            f"lr {lr:.2e} {seconds:.1f}s"
        )
    if saved < progress.epochs_done:  # stopped early after an epoch that was not written
        progress.save(ckpt, model, optimizer, scheduler)

    # outputs: the best epoch's weights, its validation predictions, the test predictions
    model.load_state_dict(progress.best_state)
    outputs = CellOutputs(out_dir)
    outputs.weights(progress.best_state)
    outputs.history(progress.history)
    outputs.predictions(final_predictions(model, splits, progress, settings, device, task))
    history = progress.history
    train_seconds = sum(h["seconds"] for h in history)
    run = {
        **identity,
        "settings": dataclasses.asdict(settings),
        "kind": kind,
        "classes": list(task.classes),
        "method_info": dataclasses.asdict(method),
        "loss_params": getattr(loss_fn, "params", {}),
        "sampler_params": getattr(sampler, "params", {}),
        **({"mixing_params": mixer.params} if mixer is not None else {}),
        "train_class_counts": counts.tolist(),
        "samples_per_epoch": int(getattr(sampler, "num_samples", len(train))),
        "precision": precision_used(device, settings),
        "optimizer_steps": sum(int(h.get("steps", 0)) for h in history),
        "resolved": resolved_block(
            settings, method, loss_fn, sampler, model_name, index, fold, device, history, steps
        ),
        "best_epoch": progress.best_epoch + 1,
        "best_val_macro_f1": progress.best_f1,
        "versions": versions(),
        "hardware": hardware(device),
        "timings": {
            "wall_seconds": round(time.time() - t_start, 3),
            "train_seconds": round(train_seconds, 3),
            "train_images_per_second": round(sum(h["images"] for h in history) / train_seconds, 1)
            if train_seconds
            else None,
            "checkpoint_seconds": round(ckpt.seconds, 3),
            "checkpoint_writes": ckpt.writes,
            # the CUDA allocator's peak of reserved memory (what imbench.gpu sizes slots from)
            "peak_device_memory_bytes": int(torch.cuda.max_memory_reserved(device))
            if device.type == "cuda"
            else None,
        },
        "identity_hash": ckpt.hash,
        "split_file": str(split_path),
    }
    outputs.run(run)
    ckpt.remove()  # the run is complete; best.pt holds the weights
    return run


def final_predictions(
    model, splits: dict, progress: Progress, settings: Settings, device, task
) -> list[pd.DataFrame]:
    """The predictions tables of the validation and test splits with the best weights (loaded in
    ``model``). Validation without TTA: the best epoch's own validation probabilities (the same
    weights, so the same numbers; no second pass)."""
    frames = []
    for name in ("val", "test"):
        sp = splits[name]
        if name == "val" and settings.tta == "none":
            probs = progress.best_val_probs
        else:
            probs = predict(model, sp, settings, device, task.kind, tta=settings.tta)
        frames.append(
            predictions_frame(
                name,
                sp.image_id,
                sp.group,
                sp.labels.numpy(),
                probs,
                task.classes,
                multilabel=task.kind == "multilabel",
            )
        )
    return frames


def pretrained_weights(model_name: str, pretrained: bool) -> str | None:
    """The weights a cell starts from: None (random initialisation), ``torchvision:<arch>.<WEIGHTS>``
    or ``timm:<arch>.<tag>`` (timm's default tag resolved, e.g. ``resnet50`` → ``timm:resnet50.a1_in1k``);
    ``le2020_`` models name their backbone's weights."""
    if not pretrained:
        return None
    from .models import pretrained_weights_id

    return pretrained_weights_id(model_name)


def resolved_block(
    settings: Settings,
    method,
    loss_fn,
    sampler,
    model_name: str,
    index: pd.DataFrame,
    fold: int | None,
    device: torch.device,
    history: list[dict],
    steps: int | None,
) -> dict:
    """What a comparison with a paper must list about a cell, as it actually ran (``run.json``
    ``resolved``; field names documented in docs/methods.md, "What run.json records")."""
    rows = split_rows(index, fold)
    part = pd.Series("", index=index.index)
    for name, r in rows.items():
        part.iloc[r] = name
    used = part != ""
    crossing = int(
        (
            pd.DataFrame({"group": index["group"][used], "split": part[used]})
            .groupby("group")["split"]
            .nunique()
            > 1
        ).sum()
    )
    if "grouped" in index.columns:
        grouped = bool(index["grouped"].iloc[0])
    else:  # a split file written before the column existed: what the data shows
        grouped = crossing == 0
    return {
        "split_grouped": grouped,
        "groups_in_several_splits": crossing,
        "precision": precision_used(device, settings),
        "head": method.head,
        "loss": getattr(loss_fn, "loss_id", method.loss),
        "class_weights": getattr(loss_fn, "class_weights", "none"),
        "sampler": getattr(sampler, "sampler_id", method.sampler),
        "epochs": settings.epochs,
        "epochs_trained": len(history),
        "budget": settings.budget,
        "steps_per_epoch": steps,
        "optimizer_steps": sum(int(h.get("steps", 0)) for h in history),
        "batch_size": settings.batch_size,
        "optimizer": settings.optimizer,
        "lr": settings.lr,
        "scheduler": settings.scheduler,
        "image_size": settings.image_size,
        "normalize": settings.normalize,
        "augment": settings.augment,
        "tta": settings.tta,
        "memory_format": memory_format_used(device, settings),
        "deterministic": deterministic_used(device, settings),
        "cudnn_benchmark": cudnn_benchmark_used(device),
        "threads": threads_used(settings),
        "pretrained": bool(settings.pretrained),
        "pretrained_weights": pretrained_weights(model_name, settings.pretrained),
    }
