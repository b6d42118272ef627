"""User plug-ins: methods defined in the user's own Python files, without editing the package.

A plug-in is a Python file named in the configuration (``plugins: [my_losses.py]``, paths relative
to the working directory). It registers methods through :func:`register_method`, the public
registration function (also ``imbench.register_method``)::

    import torch.nn.functional as F
    from torch import nn
    import imbench

    @imbench.register_method(
        "label_smoothing",
        params={"smoothing": imbench.Param("float", 0.1, lo=0.0, hi=1.0, hi_open=True)},
        kinds=("multiclass", "binary"),
        source="Szegedy et al. 2016",
        summary="cross-entropy against labels smoothed towards the uniform distribution",
    )
    def label_smoothing(class_counts, kind, smoothing):
        class Loss(nn.Module):
            def forward(self, logits, targets):
                return F.cross_entropy(logits, targets, label_smoothing=smoothing)
        return Loss()

The decorated function builds the loss of one cell; it is called as
``factory(class_counts, kind, **params)`` with the training count of each class (a NumPy array),
the task kind and every declared parameter, checked against its declaration and with ``null``
replaced by the default. The new method then takes part in everything a built-in loss method does:
the configuration's ``methods`` and ``method_params`` (checked at planning against the declared
parameters and task kinds), ``imbench plan``, training, evaluation and the tables.

Plug-ins are loaded while the workflow plans (``workflow/rules/common.smk``, ``imbench plan``)
and again inside each job that builds a method (``imbench train --plugins ...``). A plug-in that
does not import, registers a name that exists already, or declares bad parameters stops with one
:class:`PluginError` line naming the file and the problem. ``run.json`` records each loaded
plug-in's path and SHA-256 (``plugins``), and the workflow makes the plug-in file that defines a
method an input of that method's training jobs, so an edited plug-in retrains its cells.

This module imports nothing heavy: it runs while Snakemake plans.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path

from .kinds import KINDS
from .params import Param

# The method registry is imported inside the functions: the modules of ``imbench.methods.builtin``
# register their methods through this module while ``imbench.methods`` is being imported, and
# importing that package here would make this module's names unavailable to them when
# ``imbench.plugins`` is the first module imported.

__all__ = ["Param", "PluginError", "load_plugins", "plugin_file", "register_method"]

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Loss id of a plug-in method -> the function that builds its loss (read by ``losses.make_loss``).
PLUGIN_LOSSES: dict[str, Callable] = {}
#: Method name -> the plug-in file (resolved path) that registered it.
ORIGIN: dict[str, str] = {}
#: Resolved path -> {"path": as given, "sha256": ..., "methods": [...]} of every loaded plug-in.
LOADED: dict[str, dict] = {}

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
    from .methods import METHODS, Method
    from .methods import register_method as _register
    from .methods.tables import (
        LOSS_CLASS_WEIGHTS,
        LOSS_DEFAULTS,
        LOSS_KINDS,
        LOSS_PARAMS,
        SAMPLER_PARAMS,
    )

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
    from .methods import METHODS
    from .methods.tables import LOSS_CLASS_WEIGHTS, LOSS_DEFAULTS, LOSS_KINDS, LOSS_PARAMS

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


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_plugins(paths) -> list[dict]:
    """Load the plug-in files ``paths`` (relative to the working directory) in order.

    Returns ``[{"path": <as given>, "sha256": <of the file's bytes>}, ...]`` (what ``run.json``
    records). Loading a file again is a no-op while its content is unchanged; a changed file
    replaces the methods it registered before. A file that is missing, fails to import (any
    exception, syntax errors included) or registers a bad or existing method raises one
    :class:`PluginError` line naming the file; the methods it registered before failing are removed.
    """
    from .methods import METHODS

    if paths is None:
        return []
    if isinstance(paths, (str, Path)) or not isinstance(paths, (list, tuple)):
        raise PluginError(
            f"config key 'plugins': expected a list of Python file paths, got {paths!r}"
        )
    out = []
    for given in paths:
        if not isinstance(given, (str, Path)) or not str(given).strip():
            raise PluginError(f"config key 'plugins': expected a Python file path, got {given!r}")
        path = Path(given)
        if path.is_dir():
            raise PluginError(f"plug-in {given}: is a folder, not a Python file")
        if not path.is_file():
            raise PluginError(
                f"plug-in {given}: no such file (paths are relative to the working directory "
                f"{Path.cwd()})"
            )
        try:
            sha = file_sha256(path)
        except OSError as exc:
            raise PluginError(f"plug-in {given}: cannot read it: {exc.strerror or exc}") from None
        key = str(path.resolve())
        previous = LOADED.get(key)
        if previous is not None and previous["sha256"] == sha:
            out.append({"path": str(given), "sha256": sha})
            continue
        if previous is not None:
            for name in previous["methods"]:
                _unregister(name)
            del LOADED[key]
        before = set(METHODS)
        module_name = f"imbench_plugin_{sha[:16]}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"plug-in {given}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        _loading.append(str(given))
        try:
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except PluginError:
            _rollback(before, module_name)
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure of user code is reported in one line
            _rollback(before, module_name)
            if isinstance(exc, KeyboardInterrupt):
                raise
            where = ""
            tb = exc.__traceback__
            while tb is not None:
                if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
                    where = f" (line {tb.tb_lineno})"
                tb = tb.tb_next
            if isinstance(exc, SyntaxError) and exc.lineno:
                where = f" (line {exc.lineno})"
            text = str(exc.msg if isinstance(exc, SyntaxError) else exc)
            raise PluginError(
                f"plug-in {given}: failed to import{where}: {type(exc).__name__}: {text}"
            ) from None
        finally:
            _loading.pop()
        added = [m for m in METHODS if m not in before]
        LOADED[key] = {"path": str(given), "sha256": sha, "methods": added}
        out.append({"path": str(given), "sha256": sha})
    return out


def _rollback(before: set, module_name: str) -> None:
    from .methods import METHODS

    for name in [m for m in METHODS if m not in before]:
        _unregister(name)
    sys.modules.pop(module_name, None)


def plugin_file(method: str) -> str | None:
    """The plug-in file (as given in ``plugins``) that registered ``method``; ``None`` for built-ins."""
    return ORIGIN.get(method)
