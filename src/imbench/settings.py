"""Training settings of one cell: a protocol with the experiment's overrides.

Kept apart from ``train.py`` so that code which only checks or resolves settings (the workflow's
configuration checks at planning time, ``protocols.py``) does not import torch. ``imbench.train``
re-exports :class:`Settings`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["Settings"]


@dataclass
class Settings:
    """Training hyper-parameters of one cell (a protocol with the experiment's overrides)."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    scheduler: str = "cosine"  # cosine | step | none
    warmup_epochs: int = 0
    step_size: int = 30  # step only
    step_gamma: float = 0.1  # step only
    image_size: int = 32
    normalize: str = "imagenet"  # imagenet | none
    augment: str = "flip"  # none | flip
    pretrained: bool = False
    drop_rate: float = 0.0
    eval_batch_size: int = 256
    threads: int = 1
    device: str = "auto"  # auto | cpu | cuda
    deterministic: bool = True  # CPU only: torch.use_deterministic_algorithms
    # bf16: bf16 autocast of the forward pass on CUDA (losses in fp32); fp32: full fp32. The CPU
    # always trains in fp32; run.json records the precision used.
    precision: str = "bf16"  # bf16 | fp32
    # How long training is: "epochs" = `epochs` passes over the method's epoch (its sampler's
    # samples: a resampled set for ros/rus); "steps" = every epoch has exactly the optimiser steps
    # of the plain (shuffle) epoch, so every method gets ce's number of steps.
    budget: str = "epochs"  # epochs | steps
    compile: bool = False  # torch.compile the model
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    early_stopping: int = 0  # stop after this many epochs without a better validation macro-F1; 0 = off
    tta: str = "none"  # test-time augmentation of the final predictions: none | flips (mean over 4 flip views)
    method_params: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "Settings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        s = cls(**d)
        _check_choice("optimizer", s.optimizer, ("adamw", "adam", "sgd"))
        _check_choice("scheduler", s.scheduler, ("cosine", "step", "none"))
        _check_choice("normalize", s.normalize, ("imagenet", "none"))
        _check_choice("augment", s.augment, ("none", "flip"))
        _check_choice("device", s.device, ("auto", "cpu", "cuda"))
        _check_choice("precision", s.precision, ("bf16", "fp32"))
        _check_choice("budget", s.budget, ("epochs", "steps"))
        _check_choice("tta", s.tta, ("none", "flips"))
        if s.grad_clip < 0 or s.early_stopping < 0:
            raise ValueError("settings grad_clip and early_stopping must be ≥ 0")
        for name in ("epochs", "batch_size", "image_size", "eval_batch_size", "threads"):
            if int(getattr(s, name)) < 1:
                raise ValueError(f"setting {name} must be ≥ 1, got {getattr(s, name)}")
        return s


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"setting {name}={value!r} is not one of {list(allowed)}")
