"""Parameter declarations of the methods' parts (type, range, default), without torch.

Each parameter is one :class:`imbench.params.Param`: the configuration checks read them while
Snakemake plans a grid (and that must not import torch); ``losses.py``, ``samplers.py`` and
``posthoc.py`` check the values they are given through the same objects. A new parameter is
declared here once, and is then checked everywhere.
"""

from __future__ import annotations

from dataclasses import replace

from ..kinds import KINDS
from ..kinds import SINGLE_LABEL as _SINGLE
from ..params import Param

#: Loss id -> its parameters: type, range and default (the one declaration read by the
#: configuration checks at planning time and by ``losses.py`` when it builds a loss).  ``None``
#: given for a parameter means its default; for the focal ``alpha`` the default itself is
#: ``None``: "no α" for softmax focal and the torchvision default α = 0.25 for sigmoid
#: (multi-label) focal; the resolved value is recorded.
_GAMMA = Param("float", 2.0, lo=0.0, nullable=True, doc="focusing parameter γ of (1 - p_t)^γ")
_MAX_M = Param("float", 0.5, lo=0.0, lo_open=True, nullable=True, doc="largest LDAM margin")
_S = Param("float", 30.0, lo=0.0, lo_open=True, nullable=True, doc="LDAM logit scale")
_CB_BETA = Param(
    "float",
    0.9999,
    lo=0.0,
    hi=1.0,
    hi_open=True,
    nullable=True,
    doc="class-balanced weights' β of (1 - β)/(1 - β^n)",
)
_SOFTMAX_ALPHA = Param(
    "floats", None, lo=0.0, size="classes", nullable=True, doc="per-class α_t weights; null = no α"
)
LOSS_PARAMS: dict[str, dict[str, Param]] = {
    "ce": {},
    "cost_sensitive": {},
    "bwcce": {},
    "focal": {
        "gamma": _GAMMA,
        "alpha": Param(
            ("float", "floats"),
            None,
            lo=0.0,
            nullable=True,
            literals=(-1,),
            doc="focal α",
            by_kind={
                "multiclass": _SOFTMAX_ALPHA,
                "binary": _SOFTMAX_ALPHA,
                "multilabel": Param(
                    "float",
                    None,
                    lo=0.0,
                    hi=1.0,
                    literals=(-1,),
                    nullable=True,
                    doc="torchvision sigmoid focal α; -1 = no α; null = 0.25",
                ),
            },
        ),
    },
    "ldam": {"max_m": _MAX_M, "s": _S},
    "ldam_drw": {
        "max_m": _MAX_M,
        "s": _S,
        "beta": _CB_BETA,
        "drw_start": Param(
            "float",
            0.8,
            lo=0.0,
            hi=1.0,
            nullable=True,
            doc="share of the epochs before re-weighting starts",
        ),
    },
    "lmf": {
        "alpha": Param(
            "float", 1.0, lo=0.0, nullable=True, literals=("paper",), doc="weight of LDAM"
        ),
        "beta": Param(
            "float", 1.0, lo=0.0, nullable=True, literals=("paper",), doc="weight of focal"
        ),
        "gamma": replace(_GAMMA, default=1.5),
        "max_m": _MAX_M,
        "s": _S,
    },
    "cw_focal": {"gamma": _GAMMA},
    "logit_adjustment": {
        "tau": Param("float", 1.0, nullable=True, doc="scale τ of log π added to the logits")
    },
    "cb_focal": {"beta": _CB_BETA, "gamma": replace(_GAMMA, default=1.0)},
    # The LMF paper's Focal and LDAM baselines as its official code builds them (Adnan-Sadi/LMFLOSS
    # train.py): both take the LDAM margins m_c = max_m (n_min/n_c)^(1/4) as class weights.
    "focal_lmf": {"gamma": replace(_GAMMA, default=1.5), "max_m": _MAX_M},
    "ldam_lmf": {"max_m": _MAX_M, "s": _S},
    # Balanced Softmax (Ren et al. 2020) has no parameter: the shift is log n_c, as in its official
    # code (jiawei-ren/BalancedMetaSoftmax, loss/BalancedSoftmaxLoss.py).
    "balanced_softmax": {},
    "cb_ce": {"beta": _CB_BETA},
    # VS loss (Kini et al. 2021): the defaults of the official VSLoss (orparask/VS-Loss, class_imbalance/losses.py:
    # ``VSLoss(cls_num_list, gamma=0.3, tau=1.0)``).
    "vs_loss": {
        "gamma": Param(
            "float",
            0.3,
            lo=0.0,
            nullable=True,
            doc="exponent γ of the multiplicative scale Δ_c = (n_c/n_max)^γ",
        ),
        "tau": Param(
            "float", 1.0, nullable=True, doc="scale τ of the additive shift ι_c = τ log π_c"
        ),
    },
    # LADE (Hong et al. 2021): the official configs' weight of the LADE regulariser (0.1) and its
    # ``remine_lambda`` (0.1), hyperconnect/LADE config/*/lade.yaml.
    "lade": {
        "alpha": Param("float", 0.1, lo=0.0, nullable=True, doc="weight α of the LADE regulariser"),
        "remine_lambda": Param(
            "float", 0.1, lo=0.0, nullable=True, doc="λ of the ReMINE term λ T2²"
        ),
    },
}

#: Loss id -> its parameters with their defaults.
LOSS_DEFAULTS: dict[str, dict[str, object]] = {
    loss: {name: p.default for name, p in params.items()} for loss, params in LOSS_PARAMS.items()
}


def check_loss_params(loss_id: str, params: dict[str, object]) -> None:
    """Rules that tie a loss's parameters together (``params``: the parameters given, each already
    checked on its own; missing ones take their default). Raises ``ValueError``."""
    values = {
        **LOSS_DEFAULTS.get(loss_id, {}),
        **{k: v for k, v in params.items() if v is not None},
    }
    if loss_id == "lmf" and values["alpha"] == 0.0 and values["beta"] == 0.0:
        raise ValueError(
            "parameters 'alpha' and 'beta' of loss 'lmf' are both 0; at least one must be > 0"
        )


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
    "balanced_softmax": _SINGLE,
    "cb_ce": _SINGLE,
    "vs_loss": _SINGLE,
    "lade": _SINGLE,
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
    "balanced_softmax": "none",
    "cb_ce": "cb",
    "vs_loss": "none",
    "lade": "none",
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

#: sampler id -> its parameters (``None`` given for a parameter = its default).
SAMPLER_PARAMS: dict[str, dict[str, Param]] = {
    "shuffle": {},
    "ros": {
        "redraw": Param("bool", False, nullable=True, doc="draw a new resampled pool every epoch")
    },
    "rus": {
        "redraw": Param("bool", False, nullable=True, doc="draw a new resampled pool every epoch")
    },
    "batch_balanced": {},
    # Deferred re-sampling (Cao et al. 2019): the switch point is declared like ldam_drw's
    # drw_start, and the re-sampling draws by kaidic/LDAM-DRW's ImbalancedDatasetSampler weights.
    "drs": {
        "drs_start": Param(
            "float",
            0.8,
            lo=0.0,
            hi=1.0,
            nullable=True,
            doc="share of the epochs before class-balanced re-sampling starts",
        ),
        "beta": _CB_BETA,
    },
}
SAMPLER_DEFAULTS: dict[str, dict[str, object]] = {
    sampler: {name: p.default for name, p in params.items()}
    for sampler, params in SAMPLER_PARAMS.items()
}

#: post-hoc rule id -> its parameters (``None`` given for a parameter = its default).
POSTHOC_PARAMS: dict[str, dict[str, Param]] = {
    "thresholding": {
        "tau": Param("float", 1.0, nullable=True, doc="prior-correction exponent (multiclass)"),
        "beta": Param(
            "float",
            1.0,
            lo=0.0,
            lo_open=True,
            nullable=True,
            doc="β of the F-β the thresholds maximise",
        ),
    },
    "la_posthoc": {
        "tau": Param(
            "float",
            1.0,
            lo=0.0,
            nullable=True,
            literals=("fit",),
            doc="scale τ of the log π taken off the logits; 'fit' = chosen on validation",
        ),
    },
}

#: post-hoc rule id -> the task kinds where the rule has a meaning (a post-hoc method also needs
#: its base cell's kinds). Logit adjustment is defined for one softmax over the classes; it has
#: no multi-label form in Menon et al. 2021.
POSTHOC_KINDS: dict[str, tuple[str, ...]] = {
    "thresholding": KINDS,
    "la_posthoc": _SINGLE,
}
POSTHOC_DEFAULTS: dict[str, dict[str, object]] = {
    rule: {name: p.default for name, p in params.items()} for rule, params in POSTHOC_PARAMS.items()
}

#: Second-stage (decoupling) step id -> its parameters. A decoupled method (Kang et al. 2020)
#: reuses its base cell's trained network and re-fits only the classifier (``imbench.decouple``).
#: Defaults are those of the official code (facebookresearch/classifier-balancing,
#: ``config/ImageNet_LT/cls_crt.yaml`` and ``cls_lws.yaml``: SGD, lr 0.2, momentum 0.9, weight
#: decay 5e-4, batch 512, cosine schedule to 0; 10 epochs for cRT, 5 for LWS; ``tau_norm.py``:
#: τ over ``np.linspace(0, 2, 21)``).
_STAGE2_TRAINING = {
    "lr": Param("float", 0.2, lo=0.0, lo_open=True, nullable=True, doc="SGD learning rate"),
    "momentum": Param(
        "float", 0.9, lo=0.0, hi=1.0, hi_open=True, nullable=True, doc="SGD momentum"
    ),
    "weight_decay": Param("float", 5e-4, lo=0.0, nullable=True, doc="SGD weight decay"),
    "batch_size": Param("int", 512, lo=2, nullable=True, doc="class-balanced batch size"),
}
STAGE2_PARAMS: dict[str, dict[str, Param]] = {
    "crt": {
        "epochs": Param(
            "int", 10, lo=1, nullable=True, doc="epochs of classifier re-training (cached features)"
        ),
        **_STAGE2_TRAINING,
    },
    "lws": {
        "epochs": Param(
            "int", 5, lo=1, nullable=True, doc="epochs of learning the per-class scales"
        ),
        **_STAGE2_TRAINING,
    },
    "tau_norm": {
        "tau": Param(
            "float",
            "fit",
            lo=0.0,
            nullable=True,
            literals=("fit",),
            doc="exponent τ of w_c / ||w_c||^τ; 'fit' = chosen on validation",
        ),
    },
}
#: Second-stage step id -> the task kinds where it has a meaning: one softmax over the classes
#: (class-balanced sampling and the paper's classifiers are single-label constructions).
STAGE2_KINDS: dict[str, tuple[str, ...]] = {"crt": _SINGLE, "lws": _SINGLE, "tau_norm": _SINGLE}
STAGE2_DEFAULTS: dict[str, dict[str, object]] = {
    step: {name: p.default for name, p in params.items()} for step, params in STAGE2_PARAMS.items()
}

#: Mixing augmentation id -> its parameters (``imbench.methods.mixing``). ``α = 1``: the default of
#: the official mixup code (facebookresearch/mixup-cifar10, ``--alpha 1.``) and Remix's value;
#: ``κ = 3``, ``τ = 0.5``: Remix's (Chou et al. 2020).
_MIX_ALPHA = Param("float", 1.0, lo=0.0, nullable=True, doc="λ ~ Beta(α, α); 0 = no mixing")
MIXING_PARAMS: dict[str, dict[str, Param]] = {
    "mixup": {"alpha": _MIX_ALPHA},
    "remix": {
        "alpha": _MIX_ALPHA,
        "kappa": Param(
            "float", 3.0, lo=1.0, nullable=True, doc="count ratio n_i/n_j from which remix relabels"
        ),
        "tau": Param(
            "float",
            0.5,
            lo=0.0,
            hi=1.0,
            nullable=True,
            doc="remix gives the minority label when the majority image's mixing share λ is below τ",
        ),
    },
}
#: Mixing id -> the task kinds where it has a meaning (remix compares two images' class counts).
MIXING_KINDS: dict[str, tuple[str, ...]] = {"mixup": KINDS, "remix": _SINGLE}
MIXING_DEFAULTS: dict[str, dict[str, object]] = {
    mix: {name: p.default for name, p in params.items()} for mix, params in MIXING_PARAMS.items()
}
