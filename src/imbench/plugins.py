"""User plug-ins: methods, datasets and model families defined in the user's own Python files.

A plug-in is a Python file named in the configuration (``plugins: [my_losses.py]``, paths relative
to the working directory). It registers what it adds through the public registration functions,
which the package's own modules use too (docs/extending.md walks through each):

- :func:`register_method` (``imbench.register_method``): a method whose training loss is built by
  the decorated function (docs/plugins.md);
- :func:`register_dataset` (``imbench.register_dataset``): a :class:`~imbench.data.registry.DatasetSpec`
  with its tasks; its recipe (``prepare``) fills ``resources/raw/<dataset>/`` in the workflow's
  ``download`` job and each task's ``build`` indexes that folder;
- :func:`register_model_family` (``imbench.register_model_family``): a
  :class:`~imbench.model_names.ModelFamily` whose names match its ``names`` regular expression.

For example::

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
and again inside each job that needs what they registered: the workflow passes ``--plugins FILE
--plugin-sha256 HASH`` (:func:`plugins_for`, :func:`add_plugin_arguments`) to the training job of
a plug-in method, and to every job that reads a plug-in dataset's tasks (``imbench download``,
``index``, ``imbalance``, ``train``, ``decouple``, ``explain``) or builds a plug-in family's model
(``train``, ``decouple``, ``explain``, ``weights``). A plug-in that does not import, registers a
name that exists already, or declares something bad stops with one :class:`PluginError` line
naming the file and the problem; what it registered before failing is removed again.
``run.json`` records each loaded plug-in's path and SHA-256 (``plugins``), and the workflow makes
the plug-in files a job loads inputs of that job, so an edited plug-in reruns the jobs that use it.

This module imports nothing heavy: it runs while Snakemake plans.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from .data import registry as _datasets
from .data.registry import DatasetSpec, Option, Task, published  # noqa: F401  (plug-in API)
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
from .model_names import REGISTERED_FAMILIES, ModelFamily, unregister_model_family
from .model_names import register_model_family as _register_family
from .params import Param

__all__ = [
    "DatasetSpec",
    "ModelFamily",
    "Option",
    "Param",
    "PluginError",
    "Task",
    "add_plugin_arguments",
    "load_job_plugins",
    "load_plugins",
    "plugin_args",
    "plugin_file",
    "preload_job_plugins",
    "plugins_for",
    "published",
    "register_dataset",
    "register_method",
    "register_model_family",
]

#: Resolved path -> {"path": as given, "sha256": ..., "methods": [...], "datasets": [...],
#: "families": [...]} of every loaded plug-in.
LOADED: dict[str, dict] = {}
#: Dataset name / model family source -> the plug-in file (as given) that registered it.
DATASET_ORIGIN: dict[str, str] = {}
FAMILY_ORIGIN: dict[str, str] = {}


def _plugin_error(exc: Exception) -> PluginError:
    where = f"plug-in {_loading[-1]}: " if _loading else ""
    return PluginError(f"{where}{exc}")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register a dataset and its tasks (``imbench.register_dataset``; docs/extending.md).

    ``spec`` is a :class:`~imbench.data.registry.DatasetSpec` as a dataset module of the package
    declares it: ``prepare(out, opts, base_urls, **options)`` fills the raw folder ``out``
    (``imbench download <dataset>``, the workflow's ``download`` job), and each
    :class:`~imbench.data.registry.Task` has a ``build(root)`` that returns the task's index
    (``image_id, path, label, label_name, group``, paths relative to ``root``) and a ``counts``
    function (:func:`~imbench.data.registry.published`) that planning reads. A name that exists
    already (a dataset or a task), a task of another dataset or a bad kind is one
    :class:`PluginError` line naming the plug-in file. Returns ``spec``.
    """
    _datasets._ensure()  # the package's datasets first: a plug-in cannot shadow one
    try:
        if not isinstance(spec, DatasetSpec):
            raise ValueError(
                f"register_dataset expects an imbench.DatasetSpec, got {type(spec).__name__}"
            )
        if spec.name in _datasets.DATASETS:
            raise ValueError(f"dataset {spec.name!r} exists already; choose another name")
        if not spec.tasks:
            raise ValueError(f"dataset {spec.name!r}: declares no tasks")
        for task in spec.tasks:
            if not isinstance(task, Task):
                raise ValueError(
                    f"dataset {spec.name!r}: tasks must be imbench.Task, got {type(task).__name__}"
                )
            if task.name in _datasets.TASKS:
                raise ValueError(f"task {task.name!r} exists already; choose another name")
            if not callable(task.build) or (task.counts is not None and not callable(task.counts)):
                raise ValueError(f"task {task.name!r}: build and counts must be functions")
            if len(task.classes) < 2:
                raise ValueError(f"task {task.name!r}: needs at least two classes")
        if not callable(spec.prepare):
            raise ValueError(f"dataset {spec.name!r}: prepare must be a function")
        if _loading:
            spec = _guarded_dataset(spec, _loading[-1])
        _datasets.register_dataset(spec)
    except ValueError as exc:
        raise _plugin_error(exc) from None
    if _loading:
        DATASET_ORIGIN[spec.name] = _loading[-1]
    return spec


#: The columns of a task's index (:mod:`imbench.data.tasks`); a plug-in's ``build`` must return them.
INDEX_COLUMNS = ("image_id", "path", "label", "label_name", "group")


def _guarded(fn, what: str, origin: str):
    """``fn`` of a plug-in, with any failure turned into one :class:`PluginError` line naming the
    file (a :class:`~imbench.data.errors.DatasetError` or ``OSError`` is already one line naming
    what is wrong and passes unchanged)."""
    from .data.errors import DatasetError

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (DatasetError, OSError, PluginError):
            raise
        except Exception as exc:  # noqa: BLE001 - user code: one line naming the file
            raise PluginError(
                f"plug-in {origin}: {what} failed: {type(exc).__name__}: {exc}"
            ) from None

    return call


def _guarded_dataset(spec: DatasetSpec, origin: str) -> DatasetSpec:
    """``spec`` with its recipe, its tasks' builders and counts guarded (:func:`_guarded`), and each
    builder's result checked for the index columns."""
    import dataclasses

    def checked_build(task: Task):
        build = _guarded(task.build, f"task {task.name!r}: build", origin)

        def run(*args, **kwargs):
            built = build(*args, **kwargs)
            index = built[0] if isinstance(built, tuple) else built
            columns = list(getattr(index, "columns", []))
            missing = [c for c in INDEX_COLUMNS if c not in columns]
            if missing:
                raise PluginError(
                    f"plug-in {origin}: task {task.name!r}: build returned "
                    f"{type(index).__name__} without the index column(s) {missing}; expected a "
                    f"pandas DataFrame with {list(INDEX_COLUMNS)}"
                )
            return built

        return run

    tasks = tuple(
        dataclasses.replace(
            t,
            build=checked_build(t),
            counts=_guarded(t.counts, f"task {t.name!r}: counts", origin) if t.counts else None,
        )
        for t in spec.tasks
    )
    prepare = _guarded(spec.prepare, f"dataset {spec.name!r}: prepare", origin)
    return dataclasses.replace(spec, prepare=prepare, tasks=tasks)


def register_model_family(family: ModelFamily) -> ModelFamily:
    """Register a model family (``imbench.register_model_family``; docs/extending.md): its names
    (``family.names``, a regular expression) become model names of the configuration, built by
    ``family.backbone``. A bad declaration is one :class:`PluginError` line naming the plug-in
    file. Returns ``family``."""
    try:
        if _loading and isinstance(family, ModelFamily) and callable(family.backbone):
            import dataclasses

            what = f"model family {family.source!r}"
            family = dataclasses.replace(
                family,
                **{
                    f: _guarded(getattr(family, f), f"{what}: {f}", _loading[-1])
                    for f in ("backbone", "weights_file", "download", "input_size", "weights_id")
                    if callable(getattr(family, f))
                },
            )
        _register_family(family)
    except ValueError as exc:
        raise _plugin_error(exc) from None
    if _loading:
        FAMILY_ORIGIN[family.source] = _loading[-1]
    return family


def _unregister_dataset(name: str) -> None:
    spec = _datasets.DATASETS.pop(name, None)
    for task in spec.tasks if spec is not None else ():
        _datasets.TASKS.pop(task.name, None)
    DATASET_ORIGIN.pop(name, None)


def _unregister_family(source: str) -> None:
    unregister_model_family(source)
    FAMILY_ORIGIN.pop(source, None)


def _snapshot() -> tuple[set, set, set]:
    return set(METHODS), set(_datasets.DATASETS), set(REGISTERED_FAMILIES)


def _added(before: tuple[set, set, set]) -> dict[str, list[str]]:
    methods, datasets, families = before
    return {
        "methods": [m for m in METHODS if m not in methods],
        "datasets": [d for d in _datasets.DATASETS if d not in datasets],
        "families": [f for f in REGISTERED_FAMILIES if f not in families],
    }


def _remove(added: dict[str, list[str]]) -> None:
    for name in added.get("methods", ()):
        _unregister(name)
    for name in added.get("datasets", ()):
        _unregister_dataset(name)
    for name in added.get("families", ()):
        _unregister_family(name)


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
            _remove(previous)
            del LOADED[key]
        _datasets._ensure()  # so that the snapshot holds the package's datasets
        before = _snapshot()
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
        LOADED[key] = {"path": str(given), "sha256": sha, **_added(before)}
        out.append({"path": str(given), "sha256": sha})
    return out


def _rollback(before: tuple[set, set, set], module_name: str) -> None:
    _remove(_added(before))
    sys.modules.pop(module_name, None)


def plugin_file(method: str) -> str | None:
    """The plug-in file (as given in ``plugins``) that registered ``method``; ``None`` for built-ins."""
    return ORIGIN.get(method)


def plugins_for(
    *,
    method: str | None = None,
    task: str | None = None,
    dataset: str | None = None,
    models=(),
) -> list[str]:
    """The plug-in files (as given, in loading order, each once) a job needs: the file that
    registered ``method``, the dataset of ``task`` (a variant ``<task>@rho<ratio>`` is its base
    task) or ``dataset``, and the family of each of ``models``. ``[]`` when everything is the
    package's own."""
    files = []
    if method is not None:
        files.append(ORIGIN.get(method))
    if task is not None:
        dataset = _datasets.get_task(task).dataset if dataset is None else dataset
        files.append(DATASET_ORIGIN.get(dataset))
    elif dataset is not None:
        files.append(DATASET_ORIGIN.get(dataset))
    if models:
        from .model_names import parse_model_name

        for name in [models] if isinstance(models, str) else models:
            spec = parse_model_name(name)
            while spec is not None:  # le2020_<plug-in model>: the inner family's file
                files.append(FAMILY_ORIGIN.get(spec.source))
                spec = spec.inner
    wanted = {f for f in files if f}
    order = [p["path"] for p in LOADED.values()]
    return [p for p in order if p in wanted] + sorted(wanted - set(order))


def sha256_of_loaded(path: str) -> str:
    """The SHA-256 a plug-in file (as given) had when it was loaded."""
    return next(p["sha256"] for p in LOADED.values() if p["path"] == path)


def add_plugin_arguments(parser) -> None:
    """``--plugins FILE...`` and ``--plugin-sha256 HASH...`` of a command whose job may need
    plug-ins (:func:`load_job_plugins` loads them)."""
    parser.add_argument(
        "--plugins",
        nargs="+",
        default=[],
        help="plug-in files to load first (docs/plugins.md)",
    )
    parser.add_argument(
        "--plugin-sha256",
        nargs="+",
        default=[],
        help="the SHA-256 each plug-in file had when the workflow planned; a file changed "
        "since then stops the job",
    )


def load_job_plugins(paths, planned_sha256=()) -> list[dict]:
    """Load a job's plug-in files; one that changed since planning (its SHA-256 differs from the
    planned one) stops the job with one :class:`PluginError` line. Returns what
    :func:`load_plugins` returns."""
    plugins = load_plugins([str(p) for p in paths])
    for loaded, planned in zip(plugins, planned_sha256):
        if loaded["sha256"] != planned:
            raise PluginError(
                f"plug-in {loaded['path']} changed since the workflow planned this job "
                f"(SHA-256 {loaded['sha256'][:12]}…, planned {planned[:12]}…); plan again"
            )
    return plugins


def preload_job_plugins(argv) -> list[dict]:
    """Load the ``--plugins`` of a command line before its parser is built (a command whose
    choices come from the registries, ``imbench download``, then knows the plug-ins' datasets)."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    add_plugin_arguments(parser)
    known, _ = parser.parse_known_args(list(argv or []))
    return load_job_plugins(known.plugins, known.plugin_sha256)


def plugin_args(files) -> str:
    """The command-line words ``--plugins FILE... --plugin-sha256 HASH...`` (shell-quoted) of the
    loaded plug-in ``files``; ``""`` for none (a job of the package's own parts alone)."""
    import shlex

    if not files:
        return ""
    shas = [sha256_of_loaded(f) for f in files]
    return f"--plugins {' '.join(shlex.quote(f) for f in files)} --plugin-sha256 {' '.join(shas)}"
