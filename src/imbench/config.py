"""Checks of a pipeline configuration that a JSON schema cannot express, and the grid it defines.

The Snakefile validates the config against ``workflow/schemas/config.schema.yaml`` first (types,
required keys, known task and method names), then calls :func:`check_config` for what needs the
package: model names known to timm, methods that have a meaning for each task kind, protocol
overrides and method parameters that exist. Each problem is one line naming the key.
"""

from __future__ import annotations

from .data.tasks import TASKS, get_task
from .methods import METHODS, get_method, method_kinds, resolve_params, split_params
from .protocols import PROTOCOLS, resolve


class ConfigError(ValueError):
    pass


def check_config(config: dict) -> list[tuple[str, str, str]]:
    """Validate ``config``; return the planned (task, method, note) skips for methods without meaning.

    Raises ``ConfigError`` with one line naming the key and the allowed values.
    """
    for t in config["tasks"]:
        if t not in TASKS:
            raise ConfigError(f"config key 'tasks': unknown task {t!r}; allowed: {sorted(TASKS)}")
    for m in config["methods"]:
        if m not in METHODS:
            raise ConfigError(f"config key 'methods': unknown method {m!r}; allowed: {list(METHODS)}")
    from .model_names import parse_model_name

    for name in config["models"]:
        try:
            parse_model_name(name)
        except ValueError as exc:
            raise ConfigError(f"config key 'models': {exc}") from None
    for name in config.get("model_image_size") or {}:
        if name not in config["models"]:
            raise ConfigError(f"config key 'model_image_size': {name!r} is not one of the models {config['models']}")
    if config["protocol"] not in PROTOCOLS:
        raise ConfigError(f"config key 'protocol': unknown protocol {config['protocol']!r}; allowed: {sorted(PROTOCOLS)}")
    try:
        resolve(config["protocol"], config.get("protocol_overrides"))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"config key 'protocol_overrides': {exc}") from None
    for m, params in (config.get("method_params") or {}).items():
        if m not in METHODS:
            raise ConfigError(f"config key 'method_params': unknown method {m!r}; allowed: {list(METHODS)}")
        try:
            split_params(m, params)
            for t in config["tasks"]:
                for model in config["models"]:
                    resolve_params(m, params, t, model)
        except ValueError as exc:
            raise ConfigError(f"config key 'method_params.{m}': {exc}") from None
    for m in config["methods"]:
        base = get_method(m).base
        if base and base not in config["methods"]:
            raise ConfigError(f"config key 'methods': {m!r} reuses the predictions of {base!r}, "
                              f"which must be in 'methods' too")
    from .compare import check_evaluation

    try:
        check_evaluation(config.get("evaluation"), [get_task(t).kind for t in config["tasks"]])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    skips = []
    for t in config["tasks"]:
        kind = get_task(t).kind
        for m in config["methods"]:
            if kind not in method_kinds(m):
                skips.append((t, m, f"method {m!r} has no meaning for {kind} task {t!r}; skipped"))
    return skips
