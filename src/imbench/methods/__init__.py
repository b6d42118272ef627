"""The method registry: how each imbalance method is assembled from parts.

A method is a combination of
- a training **loss** (``losses.py``),
- a batch **sampler** (``samplers.py``; ``shuffle`` = the plain one),
- a classifier **head** (``linear`` or ``cosine``),
- optionally a **mixing** step of every training batch (``mixing.py``: ``mixup``, ``remix``),
- optionally a **post-hoc** decision rule fitted on validation predictions of another cell
  (``posthoc.py``), in which case the method trains nothing and reuses that cell,
- or a **second stage** (``stage2``: decoupling, Kang et al. 2020, ``imbench.decouple``) that
  reuses another cell's trained network and re-fits only its classifier, in its own job.

A **paper variant** (``variant_of`` set) is a baseline exactly as one paper's code builds it, where
that differs from our method of the same name: ``focal_lmf`` and ``ldam_lmf`` are the LMF paper's
Focal and LDAM baselines. They are used by that paper's experiment and are not in the default grid
(``list_methods(variants=False)``).

Adding a method is one ``register_method`` call here (plus its loss/sampler if new) and a test.
A user's own loss method is added from outside the package by a plug-in file
(:mod:`imbench.plugins`, ``imbench.register_method``; docs/plugins.md).

Public API::

    build_loss(name, class_counts, kind="multiclass", n_samples=None, **params) -> nn.Module
    build_sampler(name, labels, batch_size, seed, num_epochs=None, **params) -> batch sampler
    fit_posthoc(name, val_probs, val_labels, train_counts, kind, **params) -> DecisionRule
"""

from __future__ import annotations

from ..params import Param
from .registry import (  # noqa: F401  (the registry's public names)
    METHOD_GROUPS,
    METHODS,
    Method,
    expand_methods,
    get_method,
    list_methods,
    register_method,
)

# The parameter tables of the parts live in a torch-free module: the configuration checks read
# them while the workflow plans, and losses.py and samplers.py import torch.
from .tables import (
    KINDS,  # noqa: F401
    LMF_PAPER_ALPHA_BETA,
    LOSS_DEFAULTS,
    LOSS_KINDS,
    LOSS_PARAMS,  # noqa: F401
    MIXING_DEFAULTS,
    MIXING_KINDS,
    MIXING_PARAMS,
    POSTHOC_DEFAULTS,
    POSTHOC_KINDS,
    POSTHOC_PARAMS,
    SAMPLER_DEFAULTS,
    SAMPLER_PARAMS,
    STAGE2_DEFAULTS,
    STAGE2_KINDS,
    STAGE2_PARAMS,
)

for _m in (
    Method("ce", "baseline", "ce", source="all", summary="cross-entropy (BCE for multi-label)"),
    Method(
        "ros",
        "data",
        "ce",
        sampler="ros",
        source="BBFL",
        summary="random over-sampling to the majority count (imbalanced-learn 'auto') + CE",
    ),
    Method(
        "rus",
        "data",
        "ce",
        sampler="rus",
        source="BBFL",
        summary="random under-sampling to the minority count (imbalanced-learn 'auto') + CE",
    ),
    Method(
        "cost_sensitive",
        "loss",
        "cost_sensitive",
        source="BBFL, Le et al.",
        summary="CE weighted by N/(K n_c), weighted mean",
    ),
    Method(
        "bwcce",
        "loss",
        "bwcce",
        source="LMF",
        summary="CE weighted by (1 - n_c/N)/(K - 1), weighted mean",
    ),
    Method(
        "thresholding",
        "post-hoc",
        "ce",
        posthoc="thresholding",
        base="ce",
        source="BBFL",
        summary="post-hoc decision rule on the ce cell's predictions, fitted on validation",
    ),
    Method("focal", "loss", "focal", source="all", summary="softmax focal loss, gamma 2, mean"),
    Method(
        "batch_balanced",
        "data",
        "ce",
        sampler="batch_balanced",
        source="BBFL",
        summary="every batch holds floor(B/K) samples of each class + CE",
    ),
    Method(
        "bbfl",
        "hybrid",
        "focal",
        sampler="batch_balanced",
        source="BBFL",
        summary="batch-balanced sampler + focal loss (gamma 2)",
    ),
    Method(
        "ldam",
        "loss",
        "ldam",
        head="cosine",
        source="Cao et al. 2019",
        summary="LDAM margins on the target logit, s = 30, cosine head",
    ),
    Method(
        "ldam_drw",
        "loss+schedule",
        "ldam_drw",
        head="cosine",
        source="Cao et al. 2019",
        summary="LDAM + deferred re-weighting (class-balanced weights from 80 % of epochs)",
    ),
    Method(
        "lmf",
        "hybrid",
        "lmf",
        source="LMF",
        summary="alpha * LDAM(weights = margins) + beta * focal(alpha_t = margins, gamma 1.5)",
    ),
    Method(
        "cw_focal",
        "hybrid",
        "cw_focal",
        source="Le et al. 2020",
        summary="focal loss with class-balanced alpha_t = N/(K n_c)",
    ),
    Method(
        "logit_adjustment",
        "loss",
        "logit_adjustment",
        source="Menon et al. 2021",
        summary="CE on z + tau log(pi) (balanced softmax at tau = 1); raw logits at test time",
    ),
    Method(
        "cb_focal",
        "loss",
        "cb_focal",
        source="Cui et al. 2019",
        summary="class-balanced sigmoid focal loss, beta 0.9999, gamma 1",
    ),
    Method(
        "balanced_softmax",
        "loss",
        "balanced_softmax",
        source="Ren et al. 2020",
        summary="Balanced Softmax: CE on z + log(n_c) in training; plain softmax at test time",
    ),
    Method(
        "cb_ce",
        "loss",
        "cb_ce",
        source="Cui et al. 2019",
        summary="class-balanced softmax CE, weights (1 - beta)/(1 - beta^n_c) summing to K, beta 0.9999, mean",
    ),
    Method(
        "la_posthoc",
        "post-hoc",
        "ce",
        posthoc="la_posthoc",
        base="ce",
        source="Menon et al. 2021",
        summary="post-hoc logit adjustment of the ce cell: argmax(log p - tau log pi), tau = 1",
    ),
    Method(
        "vs_loss",
        "loss",
        "vs_loss",
        source="Kini et al. 2021",
        summary="VS loss: CE on (n_c/n_max)^gamma z_c + tau log(pi_c), gamma 0.3, tau 1; raw logits at test time",
    ),
    Method(
        "drs",
        "data+schedule",
        "ce",
        sampler="drs",
        source="Cao et al. 2019",
        summary="deferred re-sampling: plain shuffled epochs, class-balanced re-sampling from 80 % of epochs + CE",
    ),
    Method(
        "crt",
        "two-stage",
        "ce",
        base="ce",
        stage2="crt",
        source="Kang et al. 2020",
        summary="classifier re-training: the ce cell's frozen features, a new linear classifier trained with class-balanced sampling",
    ),
    Method(
        "tau_norm",
        "two-stage",
        "ce",
        base="ce",
        stage2="tau_norm",
        source="Kang et al. 2020",
        summary="tau-normalised classifier of the ce cell: w_c / ||w_c||^tau, no bias, tau chosen on validation",
    ),
    Method(
        "lws",
        "two-stage",
        "ce",
        base="ce",
        stage2="lws",
        source="Kang et al. 2020",
        summary="learnable weight scaling: per-class scales of the ce cell's frozen classifier, class-balanced sampling",
    ),
    Method(
        "mixup",
        "data",
        "ce",
        mixing="mixup",
        source="Zhang et al. 2018",
        summary="mixup: inputs mixed with lambda ~ Beta(1, 1), loss lambda CE(y_i) + (1 - lambda) CE(y_j)",
    ),
    Method(
        "remix",
        "data",
        "ce",
        mixing="remix",
        source="Chou et al. 2020",
        summary="remix: mixup inputs, the label moved to the minority class (count ratio >= 3, majority share < 0.5)",
    ),
    Method(
        "lade",
        "loss",
        "lade",
        source="Hong et al. 2021",
        summary="LADE: CE on z + log(pi) + 0.1 x the LADE regulariser (remine lambda 0.1); raw logits at test time (uniform target prior)",
    ),
    Method(
        "focal_lmf",
        "loss",
        "focal_lmf",
        variant_of="focal",
        source="LMF (official code)",
        summary="the LMF code's Focal baseline: softmax focal, gamma 1.5, alpha_t = the LDAM margins",
    ),
    Method(
        "ldam_lmf",
        "loss",
        "ldam_lmf",
        variant_of="ldam",
        source="LMF (official code)",
        summary="the LMF code's LDAM baseline: linear head, the margins also the class weights",
    ),
):
    register_method(_m)


def method_kinds(name: str) -> tuple[str, ...]:
    """Task kinds where ``name`` has a meaning: its loss's kinds, and for a post-hoc method those of
    its rule too (``la_posthoc`` reuses ``ce``, which has a multi-label form, but is itself defined
    for single-label tasks only)."""
    m = get_method(name)
    kinds = LOSS_KINDS[m.loss]
    if m.posthoc:
        kinds = tuple(k for k in kinds if k in POSTHOC_KINDS[m.posthoc])
    if m.stage2:
        kinds = tuple(k for k in kinds if k in STAGE2_KINDS[m.stage2])
    if m.mixing:
        kinds = tuple(k for k in kinds if k in MIXING_KINDS[m.mixing])
    return tuple(kinds)


def declared_params(name: str) -> dict[str, tuple[str, Param]]:
    """Every parameter of method ``name``: name -> (part, declaration), part being ``loss``,
    ``sampler`` or ``posthoc``. A post-hoc method takes only its rule's parameters (it trains nothing).

    This is the one list the configuration checks read (type, range, default: ``tables.py``).
    """
    m = get_method(name)
    if m.posthoc:
        return {k: ("posthoc", p) for k, p in POSTHOC_PARAMS.get(m.posthoc, {}).items()}
    if m.stage2:  # the second stage's parameters travel in the post-training slot
        return {k: ("posthoc", p) for k, p in STAGE2_PARAMS[m.stage2].items()}
    out = {k: ("loss", p) for k, p in LOSS_PARAMS.get(m.loss, {}).items()}
    for k, p in SAMPLER_PARAMS.get(m.sampler, {}).items():
        out.setdefault(k, ("sampler", p))
    for k, p in MIXING_PARAMS.get(m.mixing, {}).items():
        out.setdefault(k, ("mixing", p))
    return out


def default_params(name: str) -> dict:
    """Every parameter of method ``name`` with its default (loss, sampler and post-hoc parts)."""
    m = get_method(name)
    if m.stage2:
        return dict(STAGE2_DEFAULTS[m.stage2])
    params = dict(LOSS_DEFAULTS.get(m.loss, {}))
    params.update(SAMPLER_DEFAULTS.get(m.sampler, {}))
    params.update(MIXING_DEFAULTS.get(m.mixing, {}))
    if m.posthoc:
        params.update(POSTHOC_DEFAULTS.get(m.posthoc, {}))
    return params


def split_params(name: str, params: dict | None) -> tuple[dict, dict, dict]:
    """Split user parameters of method ``name`` into (loss, sampler, post-hoc) parameters.

    Unknown names raise one ``ValueError`` listing the method's parameters. A mixing method's own
    parameters (``alpha``, ...) are in none of the three: :func:`build_mixer` takes them.
    """
    declared = declared_params(name)
    out: tuple[dict, dict, dict] = ({}, {}, {})
    for key, value in (params or {}).items():
        if key not in declared:
            raise ValueError(
                f"method {name!r} has no parameter {key!r}; its parameters: {sorted(declared)}"
            )
        if declared[key][0] == "mixing":
            continue
        out[("loss", "sampler", "posthoc").index(declared[key][0])][key] = value
    return out


def build_loss(
    name: str, class_counts, kind: str = "multiclass", n_samples: int | None = None, **params
):
    """The training loss of method ``name`` (a ``torch.nn.Module`` called as ``loss(logits, targets)``)."""
    from .losses import make_loss

    m = get_method(name)
    loss_params, _, _ = split_params(name, params)
    return make_loss(m.loss, class_counts, kind=kind, n_samples=n_samples, **loss_params)


def build_sampler(
    name: str, labels, batch_size: int, seed: int, num_epochs: int | None = None, **params
):
    """The batch sampler of method ``name`` (``shuffle`` for methods that do not resample).

    ``num_epochs`` is the training length; a deferred sampler (``drs``) needs it to place its switch.
    """
    from .samplers import make_batch_sampler

    m = get_method(name)
    _, sampler_params, _ = split_params(name, params)
    return make_batch_sampler(
        m.sampler, labels, batch_size, seed, num_epochs=num_epochs, **sampler_params
    )


def build_mixer(name: str, class_counts, kind: str, seed: int, **params):
    """The mixing step of method ``name`` (:class:`imbench.methods.mixing.Mixer`), or ``None``
    for a method that does not mix."""
    m = get_method(name)
    if not m.mixing:
        return None
    from .mixing import Mixer

    declared = declared_params(name)
    own = {k: v for k, v in (params or {}).items() if declared.get(k, ("",))[0] == "mixing"}
    split_params(name, params)  # unknown names raise here
    return Mixer(m.mixing, class_counts, kind, seed, **own)


def fit_posthoc(
    name: str, val_probs, val_labels, train_counts, kind: str, n_train: int | None = None, **params
):
    """Fit the post-hoc decision rule of method ``name`` on validation predictions only."""
    from .posthoc import fit_rule

    m = get_method(name)
    if not m.posthoc:
        raise ValueError(f"method {name!r} is not a post-hoc method")
    _, _, posthoc_params = split_params(name, params)
    return fit_rule(
        m.posthoc, val_probs, val_labels, train_counts, kind, n_train=n_train, **posthoc_params
    )


PAPER = "paper"


def resolve_params(name: str, params: dict | None, task: str, model: str) -> dict:
    """Method parameters of one cell, with ``"paper"`` values looked up for that (task, model).

    Only LMF has per-(task, model) published values: ``{alpha: paper, beta: paper}`` takes the
    α/β of the LMF paper's Table 6 (``LMF_PAPER_ALPHA_BETA``). The model is matched by its name
    before any ``.tag`` (``resnet50.tv2_in1k`` → ``resnet50``). A cell the paper did not run raises
    ``ValueError`` naming the task and model.
    """
    params = dict(params or {})
    wanted = [k for k, v in params.items() if v == PAPER]
    if not wanted:
        return params
    if name != "lmf" or not set(wanted) <= {"alpha", "beta"}:
        raise ValueError(
            f"method {name!r}: only lmf's alpha and beta can be 'paper' (got {wanted})"
        )
    key = (task, model.split(".")[0])
    if key not in LMF_PAPER_ALPHA_BETA:
        raise ValueError(
            f"method 'lmf': the LMF paper gives no alpha/beta for task {task!r} and model "
            f"{model!r}; it covers {sorted(LMF_PAPER_ALPHA_BETA)}"
        )
    alpha, beta = LMF_PAPER_ALPHA_BETA[key]
    params.update({k: {"alpha": alpha, "beta": beta}[k] for k in wanted})
    return params


# The methods defined one per module in ``methods/builtin/`` (registered through the plug-in API;
# imported last, once every name above exists).
from . import builtin  # noqa: E402, F401
