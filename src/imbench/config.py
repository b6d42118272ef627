"""Checks of a pipeline configuration, and the grid it defines.

Both ways of planning an experiment, the workflow (``snakemake``, ``snakemake -n``) and
``imbench plan``, run :func:`validate_config` before anything else:

0. :func:`prepare_config`: the plug-in files of ``plugins`` are loaded, then the group words of
   ``methods`` (``all``, ``variants``; :data:`imbench.methods.METHOD_GROUPS`) are replaced by the
   methods they stand for, in place, so that every later step sees the list of method names;
1. :func:`check_schema`: the JSON schema ``workflow/schemas/config.schema.yaml`` (types, required
   keys, known task names, split and cache options, ...). Names that a registry of the package
   holds are not listed in the schema: a ``x-registry: <registry>`` keyword checks them against
   the registry (:data:`REGISTRIES`), so a new method is known to the schema once it is registered;
2. :func:`check_config`: what needs the package's registries. Model names known to timm or
   torchvision; methods that have a meaning for each task kind; every protocol setting in
   ``protocol_overrides`` and every per-model ``model_image_size`` against the declarations of the
   training settings (:data:`imbench.settings.SETTING_RULES`: type from the ``Settings``
   annotation, range and allowed values); every method parameter in ``method_params`` against the
   method registry's declarations (:data:`imbench.methods.tables.LOSS_PARAMS`, ``SAMPLER_PARAMS``,
   ``POSTHOC_PARAMS``), per task kind and number of classes where the declaration depends on them;
   split fractions that sum to 1; an experiment name that is a plain folder name;
3. :func:`config_warnings`: settings that are valid but have no effect (parameters of a method
   that is not in the grid).

Every error is one :class:`ConfigError` line naming the key (``protocol_overrides.epochs``,
``method_params.focal.gamma``) and the expected value. A new training setting or method parameter
is checked as soon as it is declared; nothing here lists them again.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from .data.imbalance import ImbalanceError, base_task, imbalance_settings, task_ratio
from .data.tasks import TASKS, get_task
from .methods import (
    METHOD_GROUPS,
    METHODS,
    declared_params,
    expand_methods,
    get_method,
    method_kinds,
    resolve_params,
)
from .methods.tables import check_loss_params
from .params import show
from .protocols import NOT_OVERRIDABLE, PROTOCOLS, resolve
from .settings import setting_params

#: The configuration schema, in the repository next to the package (src/imbench -> workflow/schemas).
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

#: An experiment name is one plain path component: results/<experiment>/ stays inside results/.
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
EXPERIMENT_EXPECTED = (
    "a plain folder name (letters, digits, '_', '.', '-'; not starting with '.' or '-')"
)

#: Tolerance of the check that the split fractions sum to 1.
FRACTION_SUM_TOL = 1e-9


class ConfigError(ValueError):
    pass


def _error(key: str, detail: str) -> ConfigError:
    return ConfigError(f"config key '{key}': {detail}")


# ----------------------------------------------------------------------------- schema


def check_schema(config: dict, schema_path: str | Path | None = None) -> None:
    """Validate ``config`` against the JSON schema; the first problem is one ``ConfigError`` line.

    ``integer`` keys take whole numbers only (``2.0`` is refused, as for the declared settings).

    Defaults are not filled here (the workflow fills them with ``snakemake.utils.validate``).
    """
    import jsonschema

    prepare_config(config)
    schema = schema_with_plugins(schema_path)
    error = jsonschema.exceptions.best_match(
        _strict_validator(jsonschema)(schema).iter_errors(config)
    )
    if error is None:
        return
    alternative = ""
    if error.validator == "anyOf":  # a name or another form (a task or its variant): name the names
        enum = [e for e in error.context if e.validator == "enum"]
        if enum:
            alternative = f" (or {error.schema['x-or']})" if "x-or" in error.schema else ""
            error = enum[0]
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    detail = error.message
    if error.validator == "enum":
        detail = (
            f"{error.instance!r} is not allowed; allowed values: {error.validator_value}"
            + alternative
        )
    elif error.validator == "x-registry":
        detail = error.message
    elif error.validator == "additionalProperties":
        detail = f"{error.message}; allowed keys: {sorted(error.schema.get('properties', {}))}"
    elif error.validator == "pattern":
        detail = f"expected a match of {error.validator_value}, got {show(error.instance)}"
    # A schema may say in words what it expects (custom keyword ``x-expected``, ignored by validators).
    for candidate in (error, error.parent):
        if (
            candidate is not None
            and isinstance(candidate.schema, dict)
            and "x-expected" in candidate.schema
        ):
            detail = f"expected {candidate.schema['x-expected']}, got {show(candidate.instance)}"
            break
    raise _error(key, detail)


def _strict_validator(jsonschema):
    """Draft 2020-12 with ``integer`` meaning a whole number written as one (JSON Schema also counts
    ``2.0`` as an integer, but a seed or a count of ``2.0`` would reach file names and command lines
    as ``2.0``) and ``number`` meaning a finite one (``.nan`` passes every bound)."""
    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many(
        {
            "integer": lambda _, value: isinstance(value, int) and not isinstance(value, bool),
            "number": lambda _, value: (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            ),
        }
    )
    return jsonschema.validators.extend(
        base, {"x-registry": _registry_keyword}, type_checker=checker
    )


#: Registries the schema's ``x-registry`` keyword checks names against: registry -> the names it
#: holds now (plug-ins loaded). The schema states which registry a key's values come from; the
#: names themselves are never copied into it.
REGISTRIES = {
    "methods": lambda: list(METHODS),
    "tasks": lambda: sorted(TASKS),
}


def _registry_keyword(validator, registry, instance, schema):
    """The schema keyword ``x-registry: <name>``: a string must be a name of that registry."""
    import jsonschema

    if registry not in REGISTRIES:
        yield jsonschema.ValidationError(f"schema error: unknown registry {registry!r}")
        return
    known = REGISTRIES[registry]()
    if isinstance(instance, str) and instance not in known:
        yield jsonschema.ValidationError(f"{instance!r} is not allowed; allowed values: {known}")


def load_config_plugins(config: dict) -> list[dict]:
    """Load the plug-in files of ``config["plugins"]`` (:mod:`imbench.plugins`) before the checks,
    which then know their methods; a bad plug-in is one ``ConfigError`` line naming the file."""
    from .plugins import PluginError, load_plugins

    try:
        return load_plugins(config.get("plugins"))
    except PluginError as exc:
        raise _error("plugins", str(exc)) from None


def prepare_config(config: dict) -> dict:
    """Load the plug-ins, then replace the group words of ``config["methods"]`` in place.

    ``methods: all`` (or a list with ``all`` and/or ``variants`` among method names) becomes the
    list of registered method names (:func:`imbench.methods.expand_methods`): a configuration need
    not be edited when a method is added. Calling it again changes nothing. A method listed twice
    is one ``ConfigError`` naming it. Returns ``config``.
    """
    load_config_plugins(config)
    methods = config.get("methods")
    if isinstance(methods, str) and methods in METHOD_GROUPS:
        methods = [methods]
    if isinstance(methods, list) and any(
        isinstance(m, str) and m in METHOD_GROUPS for m in methods
    ):
        try:
            config["methods"] = expand_methods(methods)
        except ValueError as exc:
            raise _error("methods", str(exc)) from None
    return config


def load_schema(schema_path: str | Path | None = None) -> dict:
    """The configuration schema (``workflow/schemas/config.schema.yaml`` unless given)."""
    import yaml

    path = Path(schema_path) if schema_path is not None else SCHEMA_PATH
    with open(path) as fh:
        return yaml.safe_load(fh)


def schema_with_plugins(schema_path: str | Path | None = None) -> dict:
    """The configuration schema, task and ``download`` dataset names filled in from the registries
    (:data:`imbench.data.tasks.TASKS`, :func:`imbench.data.registry.dataset_names`). Method names
    are checked against the method registry, plug-ins included (``x-registry``)."""
    schema = load_schema(schema_path)
    _registry_names(schema)
    return schema


# ----------------------------------------------------------------------------- loading


def merge_config(base: dict, override: dict) -> dict:
    """``override`` merged into a copy of ``base`` as Snakemake merges config files: dictionaries
    merge recursively, every other value (lists included) replaces the base's."""
    out = dict(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict):
            prior = out.get(key)
            out[key] = merge_config(prior if isinstance(prior, dict) else {}, value)
        else:
            out[key] = value
    return out


def load_config(configfiles, base: str | Path | None = "config.yaml") -> dict:
    """The configuration Snakemake would see with ``--configfile <configfiles...>``.

    ``base`` is the Snakefile's ``configfile:`` (``config.yaml``); it is skipped when ``None`` or
    when the file does not exist. Each file must hold a mapping. The plug-ins are loaded and the
    group words of ``methods`` expanded (:func:`prepare_config`).
    """
    config: dict = {}
    import yaml

    paths = ([Path(base)] if base is not None and Path(base).is_file() else []) + [
        Path(p) for p in configfiles
    ]
    for path in paths:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(
                f"{path}: expected a mapping of configuration keys, got {type(data).__name__}"
            )
        config = merge_config(config, data)
    return prepare_config(config)


def _registry_names(schema: dict) -> None:
    """Fill the schema's task and download dataset names in from the registries."""
    from .data.registry import dataset_names

    props = schema.get("properties", {})
    if "tasks" in props:  # a registered task (the first form of anyOf) or its imbalance variant
        props["tasks"]["items"]["anyOf"][0] = {"enum": list(TASKS)}
    if "download" in props:
        props["download"]["properties"] = {d: {"type": "object"} for d in dataset_names()}
        props["download"]["additionalProperties"] = False


# ----------------------------------------------------------------------------- package checks


def check_config(config: dict) -> list[tuple[str, str, str]]:
    """Validate ``config``; return the planned (task, method, note) skips for methods without meaning.

    Raises ``ConfigError`` with one line naming the key and the expected value.
    """
    prepare_config(config)
    if "experiment" in config:
        _check_experiment(config["experiment"])
    for t in config["tasks"]:
        try:
            base = base_task(t)
        except ImbalanceError as exc:
            raise _error("tasks", str(exc)) from None
        if base not in TASKS:
            raise _error("tasks", f"unknown task {t!r}; allowed: {sorted(TASKS)}")
    _check_imbalance(config)
    for m in config["methods"]:
        if m not in METHODS:
            raise _error("methods", f"unknown method {m!r}; allowed: {list(METHODS)}")
    from .model_names import parse_model_name

    for name in config["models"]:
        try:
            parse_model_name(name)
        except ValueError as exc:
            raise _error("models", str(exc)) from None
    if config["protocol"] not in PROTOCOLS:
        raise _error(
            "protocol", f"unknown protocol {config['protocol']!r}; allowed: {sorted(PROTOCOLS)}"
        )
    _check_protocol_overrides(config)
    _check_model_image_size(config)
    _check_split(config.get("split"))
    _check_method_params(config)
    _check_explain(config)
    for m in config["methods"]:
        base = get_method(m).base
        if base and base not in config["methods"]:
            raise _error(
                "methods",
                f"{m!r} reuses the predictions of {base!r}, which must be in 'methods' too",
            )
        if get_method(m).stage2 and int((config.get("split") or {}).get("cv_folds") or 0):
            raise _error(
                "methods",
                f"{m!r} is a second stage on one trained network per cell; it does not combine "
                "with split.cv_folds (cells that are ensembles of fold models)",
            )
    from .compare import check_evaluation

    try:
        check_evaluation(config.get("evaluation"), [get_task(t).kind for t in config["tasks"]])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from .grid import skips

    return skips(config)


def _check_imbalance(config: dict) -> None:
    """The ``imbalance`` section and the task variants: ratios ≥ 1, single-label tasks only, no
    cross-validation (:mod:`imbench.data.imbalance`)."""
    try:
        ratios = imbalance_settings(config)["ratio"]
    except ImbalanceError as exc:
        key, _, detail = str(exc).partition(": ")
        raise _error(key, detail) from None
    variants = [t for t in config["tasks"] if task_ratio(t) is not None]
    if not ratios and not variants:
        return
    where = "imbalance" if ratios else "tasks"
    for t in config["tasks"]:
        if get_task(t).kind == "multilabel" and (ratios or task_ratio(t) is not None):
            raise _error(
                where,
                f"task {t!r} is multi-label; the imbalance axis subsamples single-label tasks only",
            )
    if int((config.get("split") or {}).get("cv_folds", 0) or 0):
        raise _error(
            where, "the imbalance axis cannot be combined with split.cv_folds (a single split only)"
        )


def _check_experiment(name) -> None:
    if not isinstance(name, str) or not EXPERIMENT_NAME.fullmatch(name):
        raise _error("experiment", f"expected {EXPERIMENT_EXPECTED}, got {show(name)}")


def _check_protocol_overrides(config: dict) -> None:
    overrides = config.get("protocol_overrides")
    if overrides is None:
        return
    if not isinstance(overrides, dict):
        raise _error(
            "protocol_overrides", f"expected a mapping of setting → value, got {show(overrides)}"
        )
    params = setting_params()
    for key, value in overrides.items():
        where = f"protocol_overrides.{key}"
        if key in NOT_OVERRIDABLE:
            raise _error(where, NOT_OVERRIDABLE[key])
        if key not in params:
            known = sorted(k for k in params if k not in NOT_OVERRIDABLE)
            raise _error(where, f"unknown training setting {key!r}; known: {known}")
        try:
            params[key].check(value)
        except ValueError as exc:
            raise _error(where, str(exc)) from None
    try:  # the protocol with its overrides as a whole
        resolve(config["protocol"], overrides)
    except (ValueError, TypeError) as exc:
        raise _error("protocol_overrides", str(exc)) from None


def _check_model_image_size(config: dict) -> None:
    sizes = config.get("model_image_size") or {}
    image_size = setting_params()["image_size"]
    for name, size in sizes.items():
        if name not in config["models"]:
            raise _error(
                "model_image_size", f"{name!r} is not one of the models {config['models']}"
            )
        try:
            image_size.check(size)
        except ValueError as exc:
            raise _error(f"model_image_size.{name}", str(exc)) from None


def _check_split(split) -> None:
    fractions = (split or {}).get("fractions") if isinstance(split, dict) else None
    if fractions is None:
        return
    expected = "3 fractions (train, validation, test), each in (0, 1), that sum to 1"
    if (
        not isinstance(fractions, (list, tuple))
        or len(fractions) != 3
        or not all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1 for f in fractions
        )
    ):
        raise _error("split.fractions", f"expected {expected}, got {show(fractions)}")
    total = float(sum(fractions))
    if abs(total - 1.0) > FRACTION_SUM_TOL:
        raise _error(
            "split.fractions", f"expected {expected}, got {list(fractions)} (sum {total:.12g})"
        )


def _check_explain(config: dict) -> None:
    wanted = (config.get("explain") or {}).get("gradcam_method")
    if wanted is None:
        return
    trained = [m for m in config["methods"] if get_method(m).trains]
    if wanted not in trained:
        raise _error(
            "explain.gradcam_method",
            f"expected one of the trained methods of the grid {trained}, got {show(wanted)}",
        )


def _check_method_params(config: dict) -> None:
    method_params = config.get("method_params") or {}
    if not isinstance(method_params, dict):
        raise _error(
            "method_params", f"expected a mapping of method → parameters, got {show(method_params)}"
        )
    for m, params in method_params.items():
        if m not in METHODS:
            raise _error("method_params", f"unknown method {m!r}; allowed: {list(METHODS)}")
        if params is None:
            continue
        if not isinstance(params, dict):
            raise _error(
                f"method_params.{m}", f"expected a mapping of parameter → value, got {show(params)}"
            )
        declared = declared_params(m)
        # The tasks of the grid where the method runs: a declaration may depend on their kind and
        # number of classes (focal's alpha).
        tasks = [get_task(t) for t in config["tasks"] if get_task(t).kind in method_kinds(m)]
        for key, value in params.items():
            where = f"method_params.{m}.{key}"
            if key not in declared:
                raise _error(
                    where,
                    f"method {m!r} has no parameter {key!r}; its parameters: {sorted(declared)}",
                )
            param = declared[key][1]
            try:
                param.check(value)
                for task in tasks:
                    refined = param.for_kind(task.kind)
                    try:
                        refined.check(value, n_classes=task.num_classes)
                    except ValueError as exc:
                        raise ValueError(f"{exc} (for {task.kind} task {task.name!r})") from None
            except ValueError as exc:
                raise _error(where, str(exc)) from None
        loss_params = {k: v for k, v in params.items() if declared[k][0] == "loss"}
        try:
            check_loss_params(get_method(m).loss, loss_params)
            for t in config["tasks"]:
                for model in config["models"]:
                    resolve_params(m, params, t, model)
        except ValueError as exc:
            raise _error(f"method_params.{m}", str(exc)) from None


# ----------------------------------------------------------------------------- warnings


def config_warnings(config: dict) -> list[str]:
    """Valid settings that have no effect, one line each (``method_params`` of a method not in the grid)."""
    out = []
    for m in config.get("method_params") or {}:
        if m not in config.get("methods", []):
            out.append(
                f"config key 'method_params.{m}': method {m!r} is not in 'methods' "
                f"{list(config.get('methods', []))}; its parameters are not used"
            )
    return out


def validate_config(
    config: dict, schema_path: str | Path | None = None
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Schema, package checks and warnings: ``(skips, warnings)``; ``ConfigError`` on the first problem.

    Without ``schema_path``, the repository's schema is used; a package installed without the
    repository has none, and then only the required keys are checked before :func:`check_config`.
    """
    if schema_path is not None or SCHEMA_PATH.is_file():
        check_schema(config, schema_path)
    else:
        for key in ("experiment", "tasks", "models", "methods", "seeds", "protocol"):
            if key not in config:
                raise _error("(top level)", f"{key!r} is a required property")
    return check_config(config), config_warnings(config)
