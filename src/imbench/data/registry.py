"""The dataset and task registry: one :class:`DatasetSpec` per dataset, everything else derived.

A dataset is one module of :mod:`imbench.data` that defines, at top level, ``DATASET =
DatasetSpec(...)``: its name, download recipe (``prepare``), mirrors, the recipe's own options,
the tasks it provides (each with its parser, grouping column and published counts), licence and
homepage. The modules are found by reading the package's files (a module counts when a line starts
with ``DATASET = ``), so adding a dataset is adding its module; nothing else is edited. A user's
plug-in calls :func:`register_dataset` itself.

Derived from the registry:

- ``imbench download <dataset>``: its dataset choices, its options and the config keys of
  ``download.<dataset>`` (:func:`download_options`, :mod:`imbench.data.download`);
- the task registry (:data:`TASKS`, :func:`get_task`) and the configuration's allowed task and
  download names;
- planning's published counts (:meth:`Task.counts`, used by ``imbench.plan.task_counts``);
- the README's task and dataset tables (:func:`readme_tables`; ``python -m imbench.data.registry
  --write README.md`` rewrites them between their marks, and a test checks they are current).

A recipe is called as ``prepare(out, opts, base_urls, **options)`` with ``opts`` an
:class:`~imbench.data.staging.Options`, ``base_urls`` the mirrors (the spec's ``base_urls`` unless
the user gave some) and one keyword per :class:`Option` of the spec.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..kinds import KINDS

_KIND_WORDS = {"multiclass": "multi-class", "binary": "binary", "multilabel": "multi-label"}

#: (class → image count of the whole task, official split sizes or None, provenance)
Counts = tuple[dict[str, int], dict[str, int] | None, str]


def published(counts: dict[str, int], source: str, official: dict | None = None):
    """A :attr:`Task.counts` function returning fixed published counts (ignores the config)."""

    def counts_fn(config: dict | None = None) -> Counts:
        return dict(counts), (dict(official) if official else None), source

    return counts_fn


@dataclass(frozen=True)
class Task:
    """A labelled view of a dataset (SPEC §3): see :mod:`imbench.data.tasks`.

    ``counts(config)`` gives the published class counts planning uses (see :data:`Counts`);
    ``title``, ``kind_note``, ``classes_note`` and ``grouped_by`` are the words of the README's
    task table.
    """

    name: str
    dataset: str
    kind: str
    classes: tuple[str, ...]
    group_key: str
    build: Callable
    note: str = ""
    # The builder decodes its own source images (takes ``undecodable=`` and ``workers=``).
    checks_images: bool = False
    counts: Callable[[dict | None], Counts] | None = None
    title: str = ""
    kind_note: str = ""
    classes_note: str = ""
    grouped_by: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Option:
    """A recipe option: config key ``download.<dataset>.<name>`` and flag ``--<name with dashes>``.

    A ``bool`` option is a flag that is off by default. Several datasets may declare the same
    option (same type and default); the command line then has it once.
    """

    name: str
    default: object
    help: str
    type: type = str
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the pipeline knows about one real dataset (module notes)."""

    name: str
    title: str
    prepare: Callable
    tasks: tuple[Task, ...]
    licence: str
    homepage: str
    source: str  # where the download comes from, in words
    base_urls: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    grouping: str = ""  # the column that groups images in splits (or why there is none)
    citation: str = ""
    # Whether experiments/all.yaml (every benchmark task × every model × every method) runs this
    # dataset's tasks; a test checks that the file agrees. A new dataset joins that grid by setting
    # it and adding its tasks to the file (the grid's size changes with it).
    in_all_grid: bool = True
    extra: dict = field(default_factory=dict)


TASKS: dict[str, Task] = {}
DATASETS: dict[str, DatasetSpec] = {}
_DISCOVERED = False
_DATASET_LINE = re.compile(r"^DATASET\s*=", re.MULTILINE)


def register_task(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    if task.kind not in KINDS:
        raise ValueError(f"task {task.name!r}: kind {task.kind!r} is not one of {KINDS}")
    TASKS[task.name] = task
    return task


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Register ``spec`` and its tasks; a name already taken is an error."""
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} registered twice")
    for task in spec.tasks:
        if task.dataset != spec.name:
            raise ValueError(
                f"dataset {spec.name!r}: task {task.name!r} says dataset {task.dataset!r}"
            )
    for task in spec.tasks:
        register_task(task)
    DATASETS[spec.name] = spec
    return spec


def dataset_modules() -> list[str]:
    """The modules of :mod:`imbench.data` that define ``DATASET`` (sorted), found without importing."""
    here = Path(__file__).resolve().parent
    return sorted(
        p.stem
        for p in here.glob("*.py")
        if p.stem not in ("__init__", "registry") and _DATASET_LINE.search(p.read_text())
    )


def discover() -> None:
    """Register the package's datasets (once)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for stem in dataset_modules():
        module = importlib.import_module(f"{__package__}.{stem}")
        spec = getattr(module, "DATASET", None)
        if isinstance(spec, DatasetSpec) and spec.name not in DATASETS:
            register_dataset(spec)


def _ensure() -> None:
    """The task registry in full: the generated tasks of :mod:`imbench.data.tasks`, then the
    datasets' (importing that module registers both, in this order)."""
    importlib.import_module(f"{__package__}.tasks")
    discover()


def get_dataset(name: str) -> DatasetSpec:
    _ensure()
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}") from None


def dataset_names() -> list[str]:
    _ensure()
    return list(DATASETS)


def get_task(name: str) -> Task:
    """The task ``name``; a variant ``<task>@rho<ratio>`` (:mod:`imbench.data.imbalance`, which
    checks the ratio's form) is its base task: same dataset, kind and classes; only its training
    split differs."""
    _ensure()
    name = name.partition("@")[0]
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None


# --------------------------------------------------------------------------------- download options

#: Options of every dataset's download (config key → command-line flag in download.py).
COMMON_KEYS = (
    "downloads",
    "base_urls",
    "hashes",
    "retries",
    "timeout",
    "published_counts",
    "delete_archives",
)


def download_options() -> dict[str, Option]:
    """Every dataset's recipe options, by name (one entry per name; conflicting ones are an error)."""
    out: dict[str, Option] = {}
    for spec in (get_dataset(n) for n in dataset_names()):
        for opt in spec.options:
            known = out.get(opt.name)
            if known is not None and (known.type, known.default) != (opt.type, opt.default):
                raise ValueError(
                    f"dataset {spec.name!r}: option {opt.name!r} differs from another dataset's "
                    f"({opt.type.__name__} default {opt.default!r} vs {known.type.__name__} "
                    f"default {known.default!r})"
                )
            out.setdefault(opt.name, opt)
    return out


def datasets_using(option: str) -> list[str]:
    return [n for n in dataset_names() if any(o.name == option for o in DATASETS[n].options)]


# --------------------------------------------------------------------------------- documentation


def task_table(tasks: Sequence[Task] | None = None) -> str:
    """The README's task table (markdown), one row per registered task, in registration order."""
    _ensure()
    rows = [
        "| task | dataset | kind | classes | grouped by |",
        "|---|---|---|---|---|",
    ]
    for t in tasks if tasks is not None else TASKS.values():
        kind = _KIND_WORDS[t.kind] + (f" ({t.kind_note})" if t.kind_note else "")
        classes = f"{t.num_classes}" + (f" ({t.classes_note})" if t.classes_note else "")
        rows.append(
            f"| `{t.name}` | {t.title or t.dataset} | {kind} | {classes} | {t.grouped_by} |"
        )
    return "\n".join(rows) + "\n"


def dataset_table() -> str:
    """The datasets' sources and licences (markdown), one row per registered dataset."""
    rows = ["| dataset | source | licence | homepage |", "|---|---|---|---|"]
    for name in dataset_names():
        s = DATASETS[name]
        rows.append(f"| `{s.name}` | {s.source} | {s.licence} | <{s.homepage}> |")
    return "\n".join(rows) + "\n"


BEGIN_MARK = (
    "<!-- dataset tables: generated by `python -m imbench.data.registry --write README.md` -->"
)
END_MARK = "<!-- end of the generated dataset tables -->"


def readme_tables() -> str:
    """The README's generated block: the task table, then the datasets' sources and licences."""
    return (
        f"{BEGIN_MARK}\n\n{task_table()}\n"
        "Where each real dataset comes from, and its licence (see "
        "[docs/datasets.md](docs/datasets.md)):\n\n"
        f"{dataset_table()}\n{END_MARK}"
    )


def replace_tables(text: str, path: str = "README.md") -> str:
    """``text`` with its generated block (between the two marks) replaced by :func:`readme_tables`."""
    start, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if start < 0 or end < start:
        raise ValueError(f"{path}: lacks the marks {BEGIN_MARK!r} ... {END_MARK!r}")
    return text[:start] + readme_tables() + text[end + len(END_MARK) :]


def main(argv: list[str] | None = None) -> int:
    """Print the generated tables, or (``--write FILE``) rewrite them in place in ``FILE``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m imbench.data.registry", description=main.__doc__)
    p.add_argument("--write", metavar="FILE", help="rewrite the generated block of FILE")
    args = p.parse_args(argv)
    if args.write is None:
        print(readme_tables())
        return 0
    path = Path(args.write)
    text = path.read_text()
    new = replace_tables(text, str(path))
    if new != text:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new)
        tmp.replace(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    from imbench.data import registry  # the package's module (this file runs as __main__)

    raise SystemExit(registry.main())
