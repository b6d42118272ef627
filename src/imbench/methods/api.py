"""The public registration API of methods: :func:`register_method` (``imbench.register_method``).

A method whose training loss is built by one function is registered with its parameters, task
kinds, source and summary in one decorator call. The package's own one-module methods
(:mod:`imbench.methods.builtin`) and users' plug-in files (:mod:`imbench.plugins`, which loads
them) use the same call; docs/plugins.md describes it. The module imports nothing heavy and none
of the modules that import it (``imbench.methods``, ``imbench.plugins``): it runs while Snakemake
plans.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..kinds import KINDS
from ..params import Param
from .registry import METHODS, Method
from .registry import register_method as _register
from .tables import LOSS_CLASS_WEIGHTS, LOSS_DEFAULTS, LOSS_KINDS, LOSS_PARAMS, SAMPLER_PARAMS

__all__ = ["PLUGIN_LOSSES", "Param", "PluginError", "register_method"]

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Loss id of a plug-in method -> the function that builds its loss (read by ``losses.make_loss``).
PLUGIN_LOSSES: dict[str, Callable] = {}
#: Method name -> the plug-in file (resolved path) that registered it.
ORIGIN: dict[str, str] = {}

_loading: list[str] = []  # the file being executed, while load_plugins runs it


class PluginError(ValueError):
    """A plug-in that cannot be used; the message names the file and the problem."""


def register_method(
    name: str,
    *,
    params: dict[str, Param] | None = None,
    kinds: tuple[str, ...] = KINDS,
    source: str = "",
    summary: str = "",
    family: str = "loss",
    sampler: str = "shuffle",
    head: str = "linear",
    class_weights: str = "none",
) -> Callable:
    """Register a method whose training loss is built by the decorated function.

    Args:
        name: the method's name in the configuration (a letter, then letters, digits or ``_``);
            it must not be the name of a method or loss already registered.
        params: the loss's parameters, each a :class:`imbench.Param` (type, range, default); the
            planning checks and the job check the configuration's ``method_params`` against them.
        kinds: the task kinds where the loss has a meaning (``multiclass``, ``binary``,
            ``multilabel``); cells of other kinds are skipped at planning, as for built-in methods.
        source, summary: where the method comes from and what it does (recorded in ``run.json``).
        family: the method's family in the tables (default ``loss``).
        sampler: a built-in batch sampler (``shuffle``, ``ros``, ``rus``, ``batch_balanced``).
        head: the classifier head, ``linear`` or ``cosine``.
        class_weights: what ``run.json`` records as the per-class weights the loss applies.

    The decorated function is called as ``factory(class_counts, kind, **params)`` and returns a
    ``torch.nn.Module`` called as ``loss(logits, targets)``: ``logits`` of shape (B, K); targets
    int64 class indices, or a 0/1 float matrix for multi-label tasks. The function is returned
    unchanged. Raises :class:`PluginError` (naming the plug-in file) on a bad declaration.
    """

    def decorate(factory: Callable) -> Callable:
        try:
            _add(
                name, factory, params, kinds, source, summary, family, sampler, head, class_weights
            )
        except ValueError as exc:
            where = f"plug-in {_loading[-1]}: " if _loading else ""
            raise PluginError(f"{where}{exc}") from None
        return factory

    return decorate


def _add(
    name, factory, params, kinds, source, summary, family, sampler, head, class_weights
) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(
            f"method name {name!r}: expected a letter followed by letters, digits or '_'"
        )
    if name in METHODS or name in LOSS_PARAMS:
        origin = ORIGIN.get(name)
        raise ValueError(
            f"method {name!r} exists already ({'in plug-in ' + origin if origin else 'in imbench'}); "
            "choose another name"
        )
    if not callable(factory):
        raise ValueError(
            f"method {name!r}: register_method decorates the function that builds the loss"
        )
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise ValueError(
            f"method {name!r}: params must be a dict of name -> imbench.Param, got {type(params).__name__}"
        )
    for key, p in params.items():
        if not isinstance(key, str) or not PARAM_NAME.fullmatch(key):
            raise ValueError(f"method {name!r}: parameter name {key!r} is not a Python identifier")
        if not isinstance(p, Param):
            raise ValueError(
                f"method {name!r}: parameter {key!r} must be an imbench.Param, got {type(p).__name__}"
            )
        try:
            p.check(p.default)
        except ValueError as exc:
            raise ValueError(
                f"method {name!r}: the default of parameter {key!r} does not fit its declaration: "
                f"{exc}"
            ) from None
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if not kinds or bad:
        raise ValueError(
            f"method {name!r}: kinds must be one or more of {list(KINDS)}, got {list(kinds)}"
        )
    if sampler not in SAMPLER_PARAMS:
        raise ValueError(
            f"method {name!r}: unknown sampler {sampler!r}; allowed: {list(SAMPLER_PARAMS)}"
        )
    for key in params:
        if key in SAMPLER_PARAMS[sampler]:
            raise ValueError(
                f"method {name!r}: parameter {key!r} is also a parameter of sampler {sampler!r}"
            )
    for field, value in (
        ("source", source),
        ("summary", summary),
        ("family", family),
        ("class_weights", class_weights),
    ):
        if not isinstance(value, str):
            raise ValueError(f"method {name!r}: {field} must be text, got {type(value).__name__}")
    method = Method(name, family, name, sampler=sampler, head=head, source=source, summary=summary)
    _register(method)  # checks the head
    LOSS_PARAMS[name] = dict(params)
    LOSS_DEFAULTS[name] = {key: p.default for key, p in params.items()}
    LOSS_KINDS[name] = kinds
    LOSS_CLASS_WEIGHTS[name] = class_weights
    PLUGIN_LOSSES[name] = factory
    if _loading:
        ORIGIN[name] = _loading[-1]


def _unregister(name: str) -> None:
    for table in (
        METHODS,
        LOSS_PARAMS,
        LOSS_DEFAULTS,
        LOSS_KINDS,
        LOSS_CLASS_WEIGHTS,
        PLUGIN_LOSSES,
        ORIGIN,
    ):
        table.pop(name, None)
