"""Parameter tables of the methods' parts, without torch.

The configuration checks read them while Snakemake plans a grid, and that must not import torch;
``losses.py`` and ``samplers.py`` use the same objects.
"""

from __future__ import annotations

KINDS: tuple[str, ...] = ("multiclass", "binary", "multilabel")
_SINGLE = ("multiclass", "binary")

#: Loss id -> its parameters with their documented defaults.  ``None`` for the
#: focal ``alpha`` means "no α" for softmax focal and the torchvision default
#: α = 0.25 for sigmoid (multi-label) focal; the resolved value is recorded.
LOSS_DEFAULTS: dict[str, dict[str, object]] = {
    "ce": {},
    "cost_sensitive": {},
    "bwcce": {},
    "focal": {"gamma": 2.0, "alpha": None},
    "ldam": {"max_m": 0.5, "s": 30.0},
    "ldam_drw": {"max_m": 0.5, "s": 30.0, "beta": 0.9999, "drw_start": 0.8},
    "lmf": {"alpha": 1.0, "beta": 1.0, "gamma": 1.5, "max_m": 0.5, "s": 30.0},
    "cw_focal": {"gamma": 2.0},
    "logit_adjustment": {"tau": 1.0},
    "cb_focal": {"beta": 0.9999, "gamma": 1.0},
    # The LMF paper's Focal and LDAM baselines as its official code builds them (Adnan-Sadi/LMFLOSS
    # train.py): both take the LDAM margins m_c = max_m (n_min/n_c)^(1/4) as class weights.
    "focal_lmf": {"gamma": 1.5, "max_m": 0.5},
    "ldam_lmf": {"max_m": 0.5, "s": 30.0},
}

#: Loss id -> the task kinds where the loss has a meaning.
LOSS_KINDS: dict[str, tuple[str, ...]] = {
    "ce": KINDS,
    "cost_sensitive": KINDS,
    "bwcce": _SINGLE,
    "focal": KINDS,
    "ldam": _SINGLE,
    "ldam_drw": _SINGLE,
    "lmf": _SINGLE,
    "cw_focal": KINDS,
    "logit_adjustment": _SINGLE,
    "cb_focal": KINDS,
    "focal_lmf": _SINGLE,
    "ldam_lmf": _SINGLE,
}

#: Loss id -> which per-class weights it applies (the ``class_weights`` of its module and of
#: ``run.json``): ``none``; ``balanced`` = N/(K n_c); ``bwcce`` = (1 - n_c/N)/(K - 1);
#: ``margins`` = the LDAM margins; ``cb`` = class-balanced (1-β)/(1-β^n_c); ``cb_drw`` = none, then
#: class-balanced from the DRW epoch; ``pos_weight`` = n_neg/n_pos per label (multi-label);
#: ``alpha`` = a per-class α given in the method's parameters. ``focal`` is ``none`` unless its
#: ``alpha`` is set (multi-label focal: torchvision's scalar α, recorded as ``alpha``).
LOSS_CLASS_WEIGHTS: dict[str, str] = {
    "ce": "none",
    "cost_sensitive": "balanced",
    "bwcce": "bwcce",
    "focal": "none",
    "ldam": "none",
    "ldam_drw": "cb_drw",
    "lmf": "margins",
    "cw_focal": "balanced",
    "logit_adjustment": "none",
    "cb_focal": "cb",
    "focal_lmf": "margins",
    "ldam_lmf": "margins",
}

#: The (α, β) of LMF = α·LDAM + β·Focal that gave the best results in the LMF
#: paper (arXiv 2212.12741 v2, Table 6), keyed by (imbench task, model).
LMF_PAPER_ALPHA_BETA: dict[tuple[str, str], tuple[float, float]] = {
    ("odir_eye", "efficientnet_v2_s"): (1.0, 0.6),
    ("odir_eye", "resnet50"): (1.0, 0.5),
    ("odir_eye", "densenet121"): (1.0, 1.1),
    ("ham10000", "efficientnet_v2_s"): (1.0, 2.0),
    ("ham10000", "resnet50"): (0.5, 1.0),
    ("ham10000", "densenet121"): (1.0, 1.3),
    ("isic2019", "efficientnet_v2_s"): (1.0, 0.5),
    ("isic2019", "resnet50"): (1.0, 0.5),
    ("isic2019", "densenet121"): (1.0, 2.0),
}

#: sampler id -> its parameters and their defaults (``None`` passed for a parameter = its default).
SAMPLER_DEFAULTS: dict[str, dict[str, object]] = {
    "shuffle": {},
    "ros": {"redraw": False},
    "rus": {"redraw": False},
    "batch_balanced": {},
}
