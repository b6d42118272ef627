"""The grid of an experiment: its cells, the skip rule and each model's image size.

One definition, read by the workflow (``workflow/rules/common.smk``: the jobs it plans), by the
configuration checks (:func:`imbench.config.check_config`: the skips it reports) and by
``imbench plan`` (:mod:`imbench.plan`: the cells it prices):

- a **cell** is one (task, model, method, seed) of ``tasks × models × methods × seeds``, in that
  nesting order, where each task of an ``imbalance.ratio`` grid stands for its variants
  ``<task>@rho<ratio>``;
- a method whose task kinds (:func:`imbench.methods.method_kinds`) do not include a task's kind
  has no meaning there: its cells of that task are **skipped**, with one note per (task, method);
- a model's **image size** is ``model_image_size[model]`` when given, else the protocol's
  ``image_size`` (after ``protocol_overrides``).

``config`` is a checked configuration whose ``methods`` are expanded
(:func:`imbench.config.prepare_config`). The module imports nothing heavy: it runs while Snakemake
plans.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["cells", "image_size", "image_sizes", "skip_note", "skips", "tasks"]


def tasks(config: dict) -> list[str]:
    """The grid's task names: each configured task, or its variants ``<task>@rho<ratio>`` at every
    ratio of ``imbalance.ratio`` (:func:`imbench.data.imbalance.expand_tasks`; idempotent)."""
    if not config.get("imbalance"):
        return list(config["tasks"])
    from .data.imbalance import expand_tasks

    return expand_tasks(config["tasks"], config)


def skip_note(task: str, method: str, kind: str) -> str:
    """The message of a skipped (task, method)."""
    return f"method {method!r} has no meaning for {kind} task {task!r}; skipped"


def skips(config: dict) -> list[tuple[str, str, str]]:
    """(task, method, note) of every method without a meaning for a task's kind, in grid order."""
    from .data.tasks import get_task
    from .methods import method_kinds

    out = []
    for task in tasks(config):
        kind = get_task(task).kind
        for method in config["methods"]:
            if kind not in method_kinds(method):
                out.append((task, method, skip_note(task, method, kind)))
    return out


def cells(config: dict, skipped: set | None = None) -> Iterator[tuple[str, str, str, int]]:
    """Every (task, model, method, seed) of the grid, minus the skipped (task, method) pairs.

    ``skipped``: the (task, method) pairs to leave out when already known (the workflow computes
    them once while it plans); by default :func:`skips`.
    """
    if skipped is None:
        skipped = {(t, m) for t, m, _ in skips(config)}
    for task in tasks(config):
        for model in config["models"]:
            for method in config["methods"]:
                if (task, method) in skipped:
                    continue
                for seed in config["seeds"]:
                    yield task, model, method, seed


def image_sizes(config: dict) -> dict[str, int]:
    """Model -> input size in pixels, for every model of the grid (see the module docstring)."""
    return {model: image_size(config, model) for model in config["models"]}


def image_size(config: dict, model: str, protocol_size: int | None = None) -> int:
    """The input size of ``model``: ``model_image_size[model]``, else the protocol's ``image_size``
    (``protocol_size`` when the caller has resolved it already)."""
    sizes = config.get("model_image_size") or {}
    if model in sizes:
        return int(sizes[model])
    if protocol_size is None:
        from .protocols import resolve

        protocol_size = resolve(config["protocol"], config.get("protocol_overrides")).image_size
    return int(protocol_size)
