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
import sys
from pathlib import Path

from .methods.api import (  # noqa: F401  (the plug-in API, re-exported)
    NAME,
    ORIGIN,
    PLUGIN_LOSSES,
    PluginError,
    _loading,
    _unregister,
    register_method,
)
from .methods.registry import METHODS
from .params import Param

__all__ = ["Param", "PluginError", "load_plugins", "plugin_file", "register_method"]

#: Resolved path -> {"path": as given, "sha256": ..., "methods": [...]} of every loaded plug-in.
LOADED: dict[str, dict] = {}


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
    for name in [m for m in METHODS if m not in before]:
        _unregister(name)
    sys.modules.pop(module_name, None)


def plugin_file(method: str) -> str | None:
    """The plug-in file (as given in ``plugins``) that registered ``method``; ``None`` for built-ins."""
    return ORIGIN.get(method)
