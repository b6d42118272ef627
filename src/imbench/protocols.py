"""Training protocols (SPEC §6): named sets of training settings shared by an experiment's cells.

An experiment picks one by name and may override any field (``protocol_overrides`` in the config).
The resolved settings of every cell are written to its ``run.json``.

Two settings say how a cell trains, beside the hyper-parameters, and every protocol states them:

* ``precision``: ``bf16`` (bf16 autocast of the forward pass on CUDA; losses in fp32) or ``fp32``.
  ``lmf`` is ``fp32``, as the official LMF code (no autocast): its LDAM term takes margins of at
  most 0.5 off raw logits, and bf16 rounds a logit between 16 and 32 to a multiple of 0.125. ``demo`` and ``standard`` are ``bf16``
  (``protocol_overrides: {precision: fp32}`` turns it off; ``{precision: bf16}`` is the documented
  override for a faster lmf run). The CPU always trains in fp32; ``run.json`` records the precision
  actually used.
* ``budget``: ``epochs`` (every protocol's default: ``epochs`` passes over the method's own epoch,
  so ros/rus train on their resampled set, as the papers do) or ``steps`` (every epoch takes the
  optimiser steps of a plain shuffled epoch, so every method gets ce's number of steps).
  ``run.json`` records ``optimizer_steps``.
"""

from __future__ import annotations

import dataclasses

from .settings import Settings

PROTOCOLS: dict[str, dict] = {
    # The embedded demo: CPU, tiny model, 32 px, a few epochs. The whole default grid runs in
    # minutes on 2 cores.
    "demo": dict(
        epochs=6,
        batch_size=64,
        optimizer="adamw",
        lr=3e-3,
        weight_decay=1e-4,
        scheduler="cosine",
        warmup_epochs=0,
        image_size=32,
        normalize="imagenet",
        augment="flip",
        pretrained=False,
        threads=1,
        device="auto",
        precision="bf16",
        budget="epochs",
    ),
    # LMF paper, faithful (arXiv 2212.12741 and its official code): resize to 224×224 without crop,
    # no normalisation, no augmentation; Adam lr 1e-4, wd 5e-4; StepLR ×0.1 every 30 epochs;
    # 100 epochs; batch 32; keep the epoch with the best validation macro-F1; fp32 (no autocast).
    "lmf": dict(
        epochs=100,
        batch_size=32,
        optimizer="adam",
        lr=1e-4,
        weight_decay=5e-4,
        scheduler="step",
        step_size=30,
        step_gamma=0.1,
        image_size=224,
        normalize="none",
        augment="none",
        pretrained=True,
        precision="fp32",
        budget="epochs",
    ),
    # A modern default for real data: ImageNet normalisation, flips, AdamW + cosine with warm-up.
    "standard": dict(
        epochs=30,
        batch_size=64,
        optimizer="adamw",
        lr=3e-4,
        weight_decay=0.05,
        scheduler="cosine",
        warmup_epochs=2,
        image_size=224,
        normalize="imagenet",
        augment="flip",
        pretrained=True,
        precision="bf16",
        budget="epochs",
    ),
}


#: Settings an experiment cannot override through ``protocol_overrides``, with where they belong.
NOT_OVERRIDABLE: dict[str, str] = {
    "method_params": "method parameters are set per method under the top-level key 'method_params'",
}


def resolve(protocol: str, overrides: dict | None = None) -> Settings:
    """``Settings`` of a protocol with ``overrides`` applied.

    Every value is checked against the declarations of the training settings
    (:data:`imbench.settings.SETTING_RULES`); unknown names, wrong types and values out of range
    raise ``ValueError`` naming the setting.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known protocols: {sorted(PROTOCOLS)}")
    for key in overrides or {}:
        if key in NOT_OVERRIDABLE:
            raise ValueError(f"setting {key} cannot be overridden: {NOT_OVERRIDABLE[key]}")
    return Settings.from_dict({**PROTOCOLS[protocol], **(overrides or {})})


def resolved_dict(protocol: str, overrides: dict | None = None) -> dict:
    return dataclasses.asdict(resolve(protocol, overrides))
