"""Decoupling (Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition", ICLR 2020; official code facebookresearch/classifier-balancing): the second stage.

Stage 1 is the plain (instance-balanced) ``ce`` cell. Stage 2 reuses that cell's saved network
(``best.pt``, the weights of its best validation epoch) and re-fits only the classifier; it is its
own job (``imbench decouple``, Snakemake rule ``decouple``), so it never retrains the network and
rerunning it leaves the ``ce`` cell alone.

Features. The network is frozen: the head's input (``Classifier.features``: the pooled backbone
features, or Le et al.'s neck output) is computed **once** per image, in evaluation mode (batch
normalisation with its running statistics, no dropout) and without augmentation, and the
classifier is then trained on these cached features. The official code keeps the data
augmentation in stage 2 and recomputes the frozen features of every augmented batch; caching them
is the choice that makes stage 2 cost seconds, and it is stated here and in docs/methods.md.

Class-balanced sampling (:func:`class_balanced_epoch`). Every stage-2 epoch draws from a sequence of
``n_max`` images of each class (``K * n_max`` in all, the length of the official
``ClassAwareSampler``), each class's images cycled in a fresh random order, and the sequence
shuffled. As in the official training loop (``run_networks.py``: ``epoch_steps = int(N_train /
batch_size)``, "instead of oversampled data number"), an epoch stops after ``⌊N / batch_size⌋``
batches, N the number of training images, so an epoch sees about N images, N/K per class; we run
at least one batch where N < batch_size (the official loop would run none). The official sampler also
cycles through each class's images in a reshuffled order, but visits the classes in a reshuffled
cycle, 4 consecutive draws per visit (``num_samples_cls: 4``): its per-class numbers equal ours up
to one visit, and its batches hold runs of 4 images of one class where ours are shuffled.

Batch normalisation. The official stage 2 puts the frozen network in training mode, so its batch
normalisation layers re-estimate their running statistics on the class-balanced batches (only the
gradients are switched off); here the features are computed once with the stage-1 statistics, and
stage 2 changes no statistic of the network.

The three methods:

``crt`` (classifier re-training)
    A new ``nn.Linear`` (PyTorch's default initialisation, as the official ``DotProductClassifier``)
    trained with cross-entropy on the cached features with class-balanced sampling.
``lws`` (learnable weight scaling)
    The ce cell's classifier kept frozen (weights and bias); one scale ``s_c`` per class, starting
    at 1, learned with class-balanced sampling: ``logits_c = s_c (w_c . x + b_c)`` (official
    ``TauNormClassifier``: ``x = fc(x); x *= scales``).
``tau_norm`` (τ-normalisation)
    No training: ``logits_c = (w_c / ||w_c||^τ) . x``, the bias dropped (official ``tau_norm.py``:
    ``pnorm`` and a dot product without bias). τ is given, or (default, ``tau: fit``) chosen from
    ``TAU_GRID`` = 0, 0.1, ..., 2 (the official ``np.linspace(0, 2, 21)``) by the balanced accuracy
    of the validation images; ties go to the smaller τ.

Training of ``crt`` and ``lws`` (defaults of the official ``cls_crt.yaml`` / ``cls_lws.yaml``):
SGD with momentum 0.9, weight decay 5e-4, learning rate 0.2 annealed per epoch by a cosine to 0,
batches of 512, 10 epochs (``crt``) or 5 (``lws``). The epoch kept is the one with the best
balanced accuracy on the validation images (the official code keeps the best validation accuracy,
measured there on a class-balanced validation set; ties: the earlier epoch). Same seed, same
data, CPU: identical results (the new layer is drawn after ``torch.manual_seed(seed)``, epoch
``e``'s sample order from ``SeedSequence([seed, e])``).

Outputs: ``predictions.csv`` (validation and test rows, softmax probabilities of the new
classifier, ``pred`` = argmax; averaged over the flip views when the ce cell used ``tta: flips``)
and ``run.json`` (the base cell's, with the method, the base cell and a ``second_stage`` block), the
files a trained cell has, so evaluation, aggregation and the paired tests treat the cell like any.
Single-label tasks only (binary as its 2-class softmax).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .data.tasks import get_task
from .io import read_json, write_csv, write_json
from .methods import get_method, split_params
from .methods.tables import STAGE2_DEFAULTS, STAGE2_KINDS, STAGE2_PARAMS

__all__ = [
    "TAU_GRID",
    "ScaledClassifier",
    "balanced_accuracy",
    "class_balanced_epoch",
    "resolve_stage2_params",
    "run_decouple",
    "tau_normalize",
    "train_classifier",
]

#: the τ values ``tau_norm`` tries with ``tau: fit`` (the official ``np.linspace(0, 2, 21)``).
TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))


# ----------------------------------------------------------------------------- the parts


def tau_normalize(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """``w_c / ||w_c||_2 ** tau`` for every row ``w_c`` of the ``(K, D)`` classifier weight."""
    return weight / weight.norm(p=2, dim=1, keepdim=True).pow(tau)


class ScaledClassifier(nn.Module):
    """LWS: a frozen linear classifier times one learnable scale per class (initialised to 1)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        for p in self.linear.parameters():
            p.requires_grad_(False)
        self.scales = nn.Parameter(torch.ones(linear.out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * self.scales


def class_balanced_epoch(
    labels: np.ndarray, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of one class-balanced epoch: ``n_max`` draws of every class, shuffled.

    Class ``c``'s ``n_max`` draws cycle through its images in a fresh random order (each image
    ⌊n_max/n_c⌋ or ⌈n_max/n_c⌉ times). A class without a training image raises ``ValueError``.
    """
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes)
    empty = np.flatnonzero(counts == 0).tolist()
    if empty:
        raise ValueError(
            f"class-balanced sampling needs every class in training; no image of class(es) {empty}"
        )
    n_max = int(counts.max())
    parts = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        reps = -(-n_max // len(members))
        cycle = np.concatenate([rng.permutation(members) for _ in range(reps)])
        parts.append(cycle[:n_max])
    return rng.permutation(np.concatenate(parts))


def balanced_accuracy(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's balanced accuracy)."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    recalls = [
        float((pred[labels == c] == c).mean()) for c in range(num_classes) if (labels == c).any()
    ]
    return float(np.mean(recalls)) if recalls else 0.0


def train_classifier(
    head: nn.Module,
    feats: torch.Tensor,
    labels: np.ndarray,
    val_feats: torch.Tensor,
    val_labels: np.ndarray,
    num_classes: int,
    seed: int,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    log=print,
) -> tuple[dict, list[dict]]:
    """Train ``head``'s trainable parameters on cached features with class-balanced sampling.

    SGD, cosine learning rate per epoch ``lr * (1 + cos(pi e / E)) / 2``; each epoch is
    ``max(1, ⌊N / batch_size⌋)`` batches of the class-balanced sequence (the official epoch length,
    N = ``len(labels)``). Returns the state of the epoch with the best validation balanced accuracy
    (ties: the earlier epoch) and the history.
    """
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    best, best_state, history = -1.0, None, []
    for epoch in range(epochs):
        epoch_lr = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        for g in opt.param_groups:
            g["lr"] = epoch_lr
        rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
        order = torch.as_tensor(class_balanced_epoch(labels, num_classes, rng))
        order = order[: max(1, len(labels) // batch_size) * batch_size]  # the official epoch_steps
        head.train()
        total, seen = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(head(feats[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        head.eval()
        with torch.no_grad():
            val_pred = head(val_feats).argmax(1).numpy()
        score = balanced_accuracy(val_labels, val_pred, num_classes)
        if not math.isfinite(total):
            raise FloatingPointError(
                f"second-stage training loss is {total} at epoch {epoch + 1} (lower its lr)"
            )
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": total / seen,
                "val_balanced_accuracy": score,
                "lr": epoch_lr,
            }
        )
        log(
            f"stage 2 epoch {epoch + 1}/{epochs} loss {total / seen:.4f} val balanced acc {score:.4f}"
        )
        if score > best:
            best = score
            best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
    return best_state, history


def resolve_stage2_params(method_name: str, params: dict | None) -> dict:
    """The second stage's parameters with their defaults; unknown names and bad values raise one
    ``ValueError`` naming the parameter."""
    step = get_method(method_name).stage2
    if step is None:
        raise ValueError(f"method {method_name!r} has no second stage (crt, lws, tau_norm do)")
    _, _, given = split_params(method_name, params or {})
    resolved = dict(STAGE2_DEFAULTS[step])
    for key, value in given.items():
        if value is not None:
            try:
                resolved[key] = STAGE2_PARAMS[step][key].check(value)
            except ValueError as exc:
                raise ValueError(f"parameter {key!r} of method {method_name!r}: {exc}") from None
    return resolved


# ----------------------------------------------------------------------------- the job


@torch.no_grad()
def _features(model, images: torch.Tensor, settings, device, view=(False, False)) -> torch.Tensor:
    """Head inputs of every image (evaluation mode, no augmentation; one flip view), on the CPU."""
    from .train import autocast, to_input

    model.eval()
    out = []
    for start in range(0, len(images), settings.eval_batch_size):
        batch = images[start : start + settings.eval_batch_size]
        batch = batch.flip(2) if view[0] else batch
        batch = batch.flip(1) if view[1] else batch
        with autocast(device, settings):
            out.append(model.features(to_input(batch, settings, device)).float().cpu())
    return torch.cat(out)


def run_decouple(
    method_name: str,
    base_dir: str | Path,
    cache_dir: str | Path,
    split_path: str | Path,
    seed: int,
    out_dir: str | Path,
    params: dict | None = None,
    threads: int | None = None,
    log=print,
) -> dict:
    """Run second stage ``method_name`` on the base cell in ``base_dir``; write the cell's
    ``predictions.csv`` and ``run.json`` into ``out_dir``. Returns the ``run.json`` content."""
    from .models import create_model
    from .train import (
        TTA_VIEWS,
        Settings,
        Split,
        data_fingerprint,
        load_split,
        predictions_frame,
        resolve_device,
        split_rows,
        threads_used,
    )

    method = get_method(method_name)
    resolved = resolve_stage2_params(method_name, params)
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    base_run = read_json(base_dir / "run.json")
    if base_run.get("method") != method.base:
        raise ValueError(
            f"{base_dir / 'run.json'}: {method_name!r} needs a {method.base!r} cell, "
            f"this is a {base_run.get('method')!r} cell"
        )
    kind, classes = base_run["kind"], list(base_run["classes"])
    if kind not in STAGE2_KINDS[method.stage2]:
        raise ValueError(f"method {method_name!r} has no meaning for {kind} tasks")
    task = get_task(base_run["task"])
    K = len(classes)
    settings = Settings.from_dict({**base_run["settings"], "method_params": {}})
    if threads:
        settings.threads = threads
    torch.set_num_threads(threads_used(settings))
    device = resolve_device(settings.device)
    if settings.deterministic and device.type == "cpu":
        torch.use_deterministic_algorithms(True)

    images, index = load_split(cache_dir, split_path)
    data = data_fingerprint(cache_dir, split_path)
    if data != base_run.get("data"):
        raise ValueError(
            f"{cache_dir} and {split_path} are not the data the base cell {base_dir} was trained on "
            "(cache or split content differs); rerun the base cell"
        )
    splits = {
        name: Split(images, index, rows, kind, task.classes)
        for name, rows in split_rows(index).items()
    }

    model = create_model(
        base_run["model"], K, head="linear", pretrained=False, drop_rate=settings.drop_rate
    )
    state = torch.load(base_dir / "best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model = model.to(device)
    linear = model.head
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"{base_dir}: the base cell's classifier is not linear")
    linear = linear.cpu()

    train_labels = splits["train"].labels.numpy()
    val_labels = splits["val"].labels.numpy()
    views = TTA_VIEWS[settings.tta]
    feats = {"train": _features(model, splits["train"].images, settings, device)}
    val_views = [_features(model, splits["val"].images, settings, device, v) for v in views]
    test_views = [_features(model, splits["test"].images, settings, device, v) for v in views]
    log(f"features of {len(train_labels)} training images: {tuple(feats['train'].shape)}")

    block: dict = {
        "step": method.stage2,
        "params": dict(resolved),
        "features": "cached once, eval mode, no augmentation",
    }
    if method.stage2 == "tau_norm":
        weight = linear.weight.detach()

        def head_for(tau):
            w = tau_normalize(weight, tau)
            return lambda x: x @ w.t()

        if resolved["tau"] == "fit":
            scores = [
                balanced_accuracy(val_labels, head_for(t)(val_views[0]).argmax(1).numpy(), K)
                for t in TAU_GRID
            ]
            best = max(scores)
            tau = next(t for t, s in zip(TAU_GRID, scores) if s >= best - 1e-12)
            block.update(tau_fitted=True, tau_grid=list(TAU_GRID), val_balanced_accuracy=scores)
        else:
            tau = float(resolved["tau"])
            block["tau_fitted"] = False
        block["tau"] = tau
        head = head_for(tau)
    else:
        torch.manual_seed(seed)
        if method.stage2 == "crt":
            module: nn.Module = nn.Linear(linear.in_features, K)
        else:
            module = ScaledClassifier(linear)
        best_state, history = train_classifier(
            module,
            feats["train"],
            train_labels,
            val_views[0],
            val_labels,
            K,
            seed,
            epochs=resolved["epochs"],
            lr=resolved["lr"],
            momentum=resolved["momentum"],
            weight_decay=resolved["weight_decay"],
            batch_size=resolved["batch_size"],
            log=log,
        )
        module.load_state_dict(best_state)
        module.eval()
        best_epoch = max(
            range(len(history)), key=lambda i: (history[i]["val_balanced_accuracy"], -i)
        )
        block.update(history=history, best_epoch=best_epoch + 1)
        if method.stage2 == "lws":
            block["scales"] = module.scales.detach().tolist()

        def head(x):
            with torch.no_grad():
                return module(x)

    frames = []
    for name, views_feats in (("val", val_views), ("test", test_views)):
        probs = sum(torch.softmax(head(f), 1) for f in views_feats) / len(views_feats)
        sp = splits[name]
        frames.append(
            predictions_frame(
                name, sp.image_id, sp.group, sp.labels.numpy(), probs.numpy(), classes
            )
        )
    run = {k: v for k, v in base_run.items() if k not in ("timings", "identity_hash")}
    run.update(
        {
            "method": method_name,
            "method_info": method.__dict__,
            "base_cell": str(base_dir),
            "second_stage": block,
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(
        out_dir / "predictions.csv", pd.concat(frames, ignore_index=True), float_format="%.6g"
    )
    write_json(out_dir / "run.json", run)
    return run
