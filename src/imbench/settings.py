"""Training settings of one cell: a protocol with the experiment's overrides.

Kept apart from ``train.py`` so that code which only checks or resolves settings (the workflow's
configuration checks at planning time, ``protocols.py``) does not import torch. ``imbench.train``
re-exports :class:`Settings`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .params import Param

__all__ = ["SETTING_RULES", "Settings", "setting_params"]


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
    augment: str = "flip"  # none | flip | standard (imbench.augment)
    pretrained: bool = False
    drop_rate: float = 0.0
    eval_batch_size: int = 256
    # CPU threads of PyTorch's operators: an integer, or auto = PyTorch's own default for the
    # process (as a plain script gets it; imbench.train.threads_used). The workflow's rules pass
    # their Snakemake threads instead (1 for a training job).
    threads: int | str = "auto"
    device: str = "auto"  # auto | cpu | cuda
    # CPU only: torch.use_deterministic_algorithms; auto = the measured faster choice per device
    # (imbench.train.AUTO_DETERMINISTIC). run.json's resolved block records the value used.
    deterministic: bool | str = "auto"
    # Memory layout of the model and its input batches: channels_last | contiguous (NCHW) | auto
    # (the measured faster one per device: imbench.train.AUTO_MEMORY_FORMAT).
    memory_format: str = "auto"
    # bf16: bf16 autocast of the forward pass on CUDA (losses in fp32); fp32: full fp32. The CPU
    # always trains in fp32; run.json records the precision used.
    precision: str = "bf16"  # bf16 | fp32
    # How long training is: "epochs" = `epochs` passes over the method's epoch (its sampler's
    # samples: a resampled set for ros/rus); "steps" = every epoch has exactly the optimiser steps
    # of the plain (shuffle) epoch, so every method gets ce's number of steps.
    budget: str = "epochs"  # epochs | steps
    compile: bool = False  # torch.compile the model
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    early_stopping: int = (
        0  # stop after this many epochs without a better validation macro-F1; 0 = off
    )
    tta: str = "none"  # test-time augmentation of the final predictions: none | flips (mean over 4 flip views)
    # linear probe: the backbone is frozen (no gradient, kept in eval mode, so its batch-norm
    # statistics and dropout do not change either); only the classifier (and le2020's neck) trains.
    linear_probe: bool = False
    # Minimum minutes between two checkpoint writes (and always after the last epoch); 0 = after
    # every epoch. Not part of a checkpoint's identity: it changes when, not what, is computed.
    checkpoint_every_min: float = 10.0
    method_params: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        """Settings from a mapping; every value is checked against :data:`SETTING_RULES` (one
        ``ValueError`` naming the setting and what it expects)."""
        params = setting_params()
        unknown = sorted(set(d) - set(params))
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(params)}")
        values = {}
        for name, value in d.items():
            try:
                values[name] = params[name].check(value)
            except ValueError as exc:
                raise ValueError(f"setting {name}: {exc}") from None
        return cls(**values)


#: Range and allowed values of each training setting; its type is the field's annotation above
#: (``int``, ``float``, ``bool``, ``str``, optionally ``| None``) and its default the field's default.
#: A setting without an entry here is still checked against its annotated type. Keyword arguments
#: of :class:`imbench.params.Param`.
SETTING_RULES: dict[str, dict] = {
    "epochs": dict(lo=1),
    "batch_size": dict(lo=1),
    "optimizer": dict(choices=("adamw", "adam", "sgd")),
    "lr": dict(lo=0.0, lo_open=True),
    "weight_decay": dict(lo=0.0),
    "momentum": dict(lo=0.0, hi=1.0, hi_open=True),
    "scheduler": dict(choices=("cosine", "step", "none")),
    "warmup_epochs": dict(lo=0),
    "step_size": dict(lo=1),
    "step_gamma": dict(lo=0.0, hi=1.0, lo_open=True),
    "image_size": dict(lo=8),
    "normalize": dict(choices=("imagenet", "none")),
    "augment": dict(choices=("none", "flip", "standard")),
    "drop_rate": dict(lo=0.0, hi=1.0, hi_open=True),
    "eval_batch_size": dict(lo=1),
    "threads": dict(lo=1, choices=("auto",)),
    "device": dict(choices=("auto", "cpu", "cuda")),
    "deterministic": dict(choices=("auto",)),
    "memory_format": dict(choices=("auto", "channels_last", "contiguous")),
    "precision": dict(choices=("bf16", "fp32")),
    "budget": dict(choices=("epochs", "steps")),
    "grad_clip": dict(lo=0.0),
    "early_stopping": dict(lo=0),
    "tta": dict(choices=("none", "flips")),
    "checkpoint_every_min": dict(lo=0.0),
}

_ANNOTATION_TYPES = {"int": "int", "float": "float", "bool": "bool", "str": "str", "dict": "dict"}


def setting_params() -> dict[str, Param]:
    """Every training setting's declaration: type from its annotation, default from the field,
    range and choices from :data:`SETTING_RULES`."""
    out = {}
    for f in dataclasses.fields(Settings):
        annotation = str(f.type).strip()
        if annotation.startswith("Optional[") and annotation.endswith("]"):
            annotation = annotation[len("Optional[") : -1] + " | None"
        names = [t.strip() for t in annotation.split("|")]
        nullable = "None" in names
        unsupported = [t for t in names if t != "None" and t.split("[")[0] not in _ANNOTATION_TYPES]
        if unsupported:
            raise TypeError(
                f"setting {f.name}: annotation {f.type!r} is not one of {sorted(_ANNOTATION_TYPES)} "
                f"(optionally '| None')"
            )
        types = tuple(_ANNOTATION_TYPES[t.split("[")[0]] for t in names if t != "None")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = Param(
            types[0] if len(types) == 1 else types,
            default,
            nullable=nullable,
            **SETTING_RULES.get(f.name, {}),
        )
    return out
