"""``imbench plan``: what an experiment costs before it runs.

    imbench plan --configfile experiments/lmf.yaml [--images-per-second JSON] [--measured results/lmf]

Reads the configuration the way Snakemake's ``--configfile`` does (the files merged over
``config.yaml``: dictionaries merge key by key, everything else, lists included, is replaced),
checks it as the workflow does (:func:`imbench.config.validate_config`: a bad key, type or value is
one error line naming the key; settings without effect are listed as warnings) and prints

- the number of cells: trained + post-hoc, after skipping the methods that have no meaning for a
  task's kind (the grid and its skip rule of :mod:`imbench.grid`, which the workflow plans from);
- per task and method, the training images one cell sees: the training-split size (the task's
  published size × the train fraction of ``split.fractions``) × the method's epoch-size factor
  (``ros``: K·n_max/N, ``rus``: K·n_min/N, computed by the real samplers; 1 for every method
  under ``budget: steps``) × epochs;
- an estimated GPU-hour cost from training throughput per model: a small table of published
  benchmark numbers (:data:`THROUGHPUT`, with its provenance), scaled by pixel count to the
  experiment's image size, or the user's own measurements (``--images-per-second``, or
  ``--measured`` to read ``train_images_per_second`` from finished cells' ``run.json``).

These are ESTIMATES: published sizes before the pipeline's exclusions, throughput measured on another
GPU with large batches, validation counted at three times the training speed. Early stopping
(``early_stopping`` in the settings) can only make a cell cheaper than planned.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .config import load_config, merge_config  # noqa: F401  (the configuration as Snakemake merges it)

# ----------------------------------------------------------------------------- data set sizes


def task_counts(task: str, config: dict | None = None) -> tuple[dict[str, int], dict | None, str]:
    """(class → image count, official split sizes or None, provenance) of ``task`` (of its base
    task for a variant ``<task>@rho<ratio>``).

    The counts are declared with the task in its dataset's spec (:mod:`imbench.data.registry`):
    the published ones (DATASETS.md, verified on the real metadata files) before the pipeline's own
    exclusions. For the multi-label ``odir`` task the classes are the sampling classes (each
    patient's rarest positive label, as the samplers use them).
    """
    from .data.tasks import get_task

    t = get_task(task)
    if t.counts is None:
        raise ValueError(f"task {task!r} declares no published counts (Task.counts)")
    return t.counts(config or {})


def split_sizes(task: str, config: dict) -> tuple[dict[str, int], int, int]:
    """(training count per sampling class, validation size, test size) of ``task`` under ``config``.

    A task variant ``<task>@rho<ratio>`` has the base task's sizes with its training counts cut to the
    imbalance profile (:func:`imbench.data.imbalance.profile_targets`; groups ignored)."""
    from .data.imbalance import parse_variant, profile_targets

    counts, official, _ = task_counts(task, config)
    ratio = parse_variant(task)[1]
    total = sum(counts.values())
    if official:  # the task's own split: fractions do not apply
        f_train = official["train"] / total
        n_val, n_test = official["val"], official["test"]
    else:
        fr = (config.get("split") or {}).get("fractions", [0.70, 0.15, 0.15])
        s = float(sum(fr))
        f_train = fr[0] / s
        n_val, n_test = round(total * fr[1] / s), round(total * fr[2] / s)
    train = {c: max(1, round(k * f_train)) for c, k in counts.items()}
    if ratio is not None:
        train = dict(zip(train, (int(n) for n in profile_targets(list(train.values()), ratio))))
    return train, n_val, n_test


def samples_per_epoch(
    method: str, train_counts: dict[str, int], batch_size: int, params: dict | None = None
) -> int:
    """Samples one training epoch of ``method`` draws (its real batch sampler on these counts)."""
    from .methods import get_method, split_params
    from .methods.samplers import make_batch_sampler

    m = get_method(method)
    if not m.trains:
        return 0
    _, sampler_params, _ = split_params(method, params or {})
    labels = np.repeat(np.arange(len(train_counts)), list(train_counts.values()))
    return int(make_batch_sampler(m.sampler, labels, batch_size, 0, **sampler_params).num_samples)


# ----------------------------------------------------------------------------- throughput

#: Measured training throughput (images/s, forward + backward + optimizer step) of the paper
#: models, from timm's published benchmark ``results/benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv``
#: (huggingface/pytorch-image-models): one NVIDIA RTX 3090, PyTorch 1.12, CUDA 11.3, AMP,
#: channels-last, batch 128-512 (largest that fit). Key: our base architecture name →
#: (images/s, at this square size in px, note). A torchvision model uses the row of the same
#: architecture; ``le2020_<model>`` uses ``<model>``'s (the added 512-unit layer is negligible).
THROUGHPUT_SOURCE = (
    "timm benchmark-train-amp-nhwc-pt112-cu113-rtx3090.csv (RTX 3090, PyTorch 1.12, AMP, "
    "channels-last, batch 128-512)"
)
THROUGHPUT: dict[str, tuple[float, int, str]] = {
    "resnet50": (1218.0, 224, "resnet50"),
    "resnet101": (747.9, 224, "resnet101"),
    "seresnext101_32x4d": (479.0, 224, "seresnext101_32x4d"),
    "densenet121": (913.7, 224, "densenet121"),
    "inception_v3": (782.4, 299, "inception_v3"),
    "mobilenetv2_100": (2313.1, 224, "mobilenetv2_100"),
    "mobilenet_v2": (2313.1, 224, "mobilenetv2_100"),
    "vgg16": (546.1, 224, "vgg16"),
    "efficientnet_b1": (1325.9, 224, "efficientnet_b1"),
    "efficientnet_v2_s": (488.3, 300, "tf_efficientnetv2_s, the same architecture"),
    "mobilenetv1_100": (
        2313.1,
        224,
        "proxy: mobilenetv2_100 (mobilenetv1_100 is not in the table)",
    ),
    "resnet10t": (6318.6, 176, "resnet10t"),
    "convnext_tiny": (819.2, 224, "convnext_tiny"),
    "vit_small_patch16_224": (1057.9, 224, "vit_small_patch16_224"),
    "swin_tiny_patch4_window7_224": (648.7, 224, "swin_tiny_patch4_window7_224"),
    "efficientnet_b0": (1751.7, 224, "efficientnet_b0"),
}
#: Forward-only (validation, test) images per second relative to training: a forward pass is about a
#: third of forward + backward.
EVAL_SPEEDUP = 3.0


def throughput_key(model: str) -> str:
    """The :data:`THROUGHPUT` key of a model name: its architecture without tag, source or le2020_."""
    from .model_names import parse_model_name

    try:
        spec = parse_model_name(model).backbone
    except ValueError:
        return model.split(".")[0]
    return spec.arch.split(".")[0]


def images_per_second(
    model: str, image_size: int, user: dict | None = None
) -> tuple[float | None, str]:
    """(training images/s at ``image_size``, where the number comes from); ``None`` when unknown.

    ``user`` (model name or base architecture → images/s at the experiment's image size) wins over
    the table; table numbers are scaled by pixel count: ips · (size_ref / image_size)².
    """
    user = user or {}
    base = throughput_key(model)
    for key in (model, base, model.split(".")[0]):
        if key in user:
            return float(user[key]), "given"
    if base in THROUGHPUT:
        ips, ref, note = THROUGHPUT[base]
        scaled = ips * (ref / image_size) ** 2
        where = f"table: {note}, {ips:g}/s at {ref} px" + (
            f", scaled to {image_size} px" if ref != image_size else ""
        )
        return scaled, where
    return None, "unknown: pass --images-per-second"


def measured_throughput(results_dir: str | Path) -> dict[str, float]:
    """Median ``timings.train_images_per_second`` per model over the ``run.json`` files under
    ``results_dir`` (cells trained on a GPU only, when any are)."""
    per_model: dict[str, list[tuple[bool, float]]] = {}
    for path in Path(results_dir).rglob("run.json"):
        try:
            run = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        ips = (run.get("timings") or {}).get("train_images_per_second")
        if ips and run.get("model"):
            on_gpu = str((run.get("hardware") or {}).get("device", "")).startswith("cuda")
            per_model.setdefault(run["model"], []).append((on_gpu, float(ips)))
    out = {}
    for model, values in per_model.items():
        gpu = [v for g, v in values if g]
        out[model] = float(np.median(gpu or [v for _, v in values]))
    return out


# ----------------------------------------------------------------------------- the plan


@dataclass
class CellPlan:
    """One (task, model, method) of the grid, for all its seeds."""

    task: str
    model: str
    method: str
    seeds: int
    trains: bool
    n_train: int
    samples_per_epoch: int
    epochs: int
    train_images: int  # per seed
    eval_images: (
        int  # per seed: validation every epoch + validation and test predictions at the end
    )
    images_per_second: float | None
    gpu_hours: float | None  # per seed


@dataclass
class Plan:
    experiment: str
    protocol: str
    epochs: int
    batch_size: int
    image_size: int
    seeds: int
    tasks: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    rows: list[CellPlan] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    throughput: dict[str, tuple[float | None, str]] = field(default_factory=dict)
    task_sources: dict[str, str] = field(default_factory=dict)
    folds: int = 0  # cross-validation: every cell trains this many fold models
    image_sizes: dict[str, int] = field(default_factory=dict)  # per model
    warnings: list[str] = field(default_factory=list)  # valid settings without effect

    @property
    def n_trained(self) -> int:
        return sum(r.seeds for r in self.rows if r.trains)

    @property
    def n_posthoc(self) -> int:
        return sum(r.seeds for r in self.rows if not r.trains)

    @property
    def n_cells(self) -> int:
        return self.n_trained + self.n_posthoc

    @property
    def unknown_models(self) -> list[str]:
        return [m for m, (ips, _) in self.throughput.items() if ips is None]

    @property
    def gpu_hours(self) -> float:
        """Total estimated GPU-hours of the trained cells whose model throughput is known."""
        return float(
            sum(r.gpu_hours * r.seeds for r in self.rows if r.trains and r.gpu_hours is not None)
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            n_cells=self.n_cells,
            n_trained=self.n_trained,
            n_posthoc=self.n_posthoc,
            gpu_hours_total=self.gpu_hours,
            unknown_models=self.unknown_models,
        )
        return d


def make_plan(config: dict, user_ips: dict | None = None) -> Plan:
    """The plan of a (merged) configuration; see the module docstring."""
    from .config import validate_config
    from .grid import image_size, skips
    from .methods import get_method
    from .protocols import resolve

    # The workflow's checks, the same as `snakemake -n` runs: one line naming the key.
    _, warnings = validate_config(config)
    from .data.imbalance import expand_tasks

    config = {**config, "tasks": expand_tasks(config["tasks"], config)}  # the imbalance axis
    settings = resolve(config["protocol"], config.get("protocol_overrides"))
    seeds = len(config["seeds"])
    plan = Plan(
        str(config["experiment"]),
        str(config["protocol"]),
        settings.epochs,
        settings.batch_size,
        settings.image_size,
        seeds,
        list(config["tasks"]),
        list(config["models"]),
        list(config["methods"]),
    )
    plan.warnings = warnings
    plan.folds = int((config.get("split") or {}).get("cv_folds", 0) or 0)
    method_params = config.get("method_params") or {}
    skipped = skips(config)
    plan.skipped = skipped
    skipped_pairs = {(t, m) for t, m, _ in skipped}
    for model in config["models"]:
        plan.image_sizes[model] = image_size(config, model, settings.image_size)
        plan.throughput[model] = images_per_second(model, plan.image_sizes[model], user_ips)
    n_runs = max(1, plan.folds)  # trainings per cell
    tta_views = 4 if settings.tta == "flips" else 1
    for task in config["tasks"]:
        train_counts, n_val, n_test = split_sizes(task, config)
        if plan.folds:
            # Fold model k trains on the other K-1 folds of the pool (train + val) and validates on fold k.
            pool = sum(train_counts.values()) + n_val
            scale = pool * (plan.folds - 1) / plan.folds / max(1, sum(train_counts.values()))
            train_counts = {c: int(round(n * scale)) for c, n in train_counts.items()}
            n_val = int(round(pool / plan.folds))
        plan.task_sources[task] = task_counts(task, config)[2]
        n_train = sum(train_counts.values())
        for method in config["methods"]:
            if (task, method) in skipped_pairs:
                continue
            trains = get_method(method).trains
            spe = samples_per_epoch(
                method, train_counts, settings.batch_size, method_params.get(method)
            )
            if (
                trains and settings.budget == "steps"
            ):  # every method takes ce's steps: ⌈N/B⌉ batches
                spe = n_train
            train_images = spe * settings.epochs * n_runs if trains else 0
            eval_images = (
                (n_val * settings.epochs + (n_val + n_test) * tta_views) * n_runs if trains else 0
            )
            for model in config["models"]:
                ips = plan.throughput[model][0]
                hours = None
                if trains and ips:
                    hours = (train_images / ips + eval_images / (EVAL_SPEEDUP * ips)) / 3600.0
                elif not trains:
                    hours = 0.0
                plan.rows.append(
                    CellPlan(
                        task,
                        model,
                        method,
                        seeds,
                        trains,
                        n_train,
                        spe,
                        settings.epochs,
                        train_images,
                        eval_images,
                        ips,
                        hours,
                    )
                )
    return plan


# ----------------------------------------------------------------------------- report


def _table(header: list[str], rows: list[list], right: set[int]) -> list[str]:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = []
    for j, r in enumerate(cells):
        out.append(
            "  "
            + "  ".join(
                c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)
            ).rstrip()
        )
        if j == 0:
            out.append("  " + "  ".join("-" * w for w in widths))
    return out


def format_plan(plan: Plan) -> str:
    lines = [
        f"imbench plan: experiment {plan.experiment!r}, protocol {plan.protocol!r}: {plan.epochs} epochs, "
        f"batch {plan.batch_size}, {plan.image_size} px, {plan.seeds} seed(s)"
    ]
    tasks, models = plan.tasks, plan.models
    n_skip = len(plan.skipped) * len(models) * plan.seeds
    lines.append(
        f"cells: {plan.n_cells} ({plan.n_trained} trained + {plan.n_posthoc} post-hoc) = "
        f"{len(tasks)} task(s) × {len(models)} model(s) × {len(plan.methods)} method(s) × "
        f"{plan.seeds} seed(s) − {n_skip} skipped"
    )
    if plan.folds:
        lines.append(
            f"cross-validation: every trained cell is an ensemble of {plan.folds} fold models "
            f"({plan.n_trained * plan.folds} trainings); images below are per cell (all folds)"
        )
    other = {m: px for m, px in plan.image_sizes.items() if px != plan.image_size}
    if other:
        lines.append(
            "image size per model: "
            + ", ".join(f"{m} {px} px" for m, px in other.items())
            + f"; others {plan.image_size} px"
        )
    for _, _, note in plan.skipped:
        lines.append(f"  skipped: {note}")
    for warning in plan.warnings:
        lines.append(f"  warning: {warning}")
    lines.append("")
    lines.append("Training images per cell (any model; per seed):")
    rows, seen = [], set()
    for r in plan.rows:
        if (r.task, r.method) in seen:
            continue
        seen.add((r.task, r.method))
        if r.trains:
            factor = r.samples_per_epoch / r.n_train if r.n_train else 0.0
            rows.append(
                [
                    r.task,
                    r.method,
                    f"{r.n_train:,}",
                    f"{r.samples_per_epoch:,}",
                    f"{factor:.2f}",
                    r.epochs,
                    f"{r.train_images:,}",
                ]
            )
        else:
            rows.append([r.task, r.method, f"{r.n_train:,}", "post-hoc", "-", "-", "0"])
    lines += _table(
        ["task", "method", "n_train", "samples/epoch", "factor", "epochs", "images/cell"],
        rows,
        {2, 3, 4, 5, 6},
    )
    lines.append("")
    lines.append(
        f"Training throughput at {plan.image_size} px unless stated above (images/s; ESTIMATES unless given):"
    )
    lines += _table(
        ["model", "images/s", "source"],
        [
            [m, "?" if ips is None else f"{ips:,.0f}", src]
            for m, (ips, src) in plan.throughput.items()
        ],
        {1},
    )
    lines.append(f"  table: {THROUGHPUT_SOURCE}")
    lines.append("")
    lines.append("Estimated GPU-hours (training + validation every epoch; all seeds):")
    rows = []
    for task in tasks:
        for model in models:
            sel = [r for r in plan.rows if r.task == task and r.model == model]
            if not sel:
                continue
            hours = [r.gpu_hours for r in sel if r.trains]
            total = (
                None
                if any(h is None for h in hours)
                else sum(h * r.seeds for h, r in zip(hours, [r for r in sel if r.trains]))
            )
            rows.append(
                [task, model, sum(r.seeds for r in sel), "?" if total is None else f"{total:,.1f}"]
            )
    lines += _table(["task", "model", "cells", "GPU-h"], rows, {2, 3})
    lines.append("")
    unknown = plan.unknown_models
    lines.append(
        f"total: {plan.gpu_hours:,.1f} GPU-hours (estimate)"
        + (f", not counting {unknown} (throughput unknown)" if unknown else "")
    )
    lines.append(
        "These are estimates: published data set sizes before exclusions; table throughput is from an "
        "RTX 3090 with large batches, scaled by pixel count; validation at 3x training speed. Pass your "
        "own numbers with --images-per-second '{\"<model>\": <images/s>}' or --measured <results dir>."
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def _json_or_file(text: str) -> dict:
    path = Path(text)
    try:
        value = json.loads(path.read_text()) if path.is_file() else json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict) or not all(
        isinstance(v, (int, float)) and v > 0 for v in value.values()
    ):
        raise argparse.ArgumentTypeError(
            "expected a JSON object of model name → images per second (> 0)"
        )
    return value


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imbench plan",
        description="Cells, training images and estimated GPU-hours of an experiment.",
    )
    p.add_argument(
        "--configfile",
        nargs="+",
        type=Path,
        default=[],
        help="experiment file(s), merged over --base as Snakemake's --configfile does",
    )
    p.add_argument(
        "--base",
        type=Path,
        default=Path("config.yaml"),
        help="the Snakefile's config file (default: ./config.yaml, skipped when absent)",
    )
    p.add_argument("--no-base", action="store_true", help="do not merge over a base config")
    p.add_argument(
        "--images-per-second",
        type=_json_or_file,
        default=None,
        metavar="JSON",
        help="measured training images/s at the experiment's image size, per model name (or base "
        "architecture): a JSON object or a JSON file",
    )
    p.add_argument(
        "--measured",
        type=Path,
        default=None,
        metavar="DIR",
        help="take images/s from the run.json files of finished cells under DIR",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    """``imbench plan --configfile experiments/x.yaml [--images-per-second JSON] [--measured DIR] [--json]``."""
    from .config import ConfigError

    args = get_args_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        config = load_config(args.configfile, base=None if args.no_base else args.base)
        user = {}
        if args.measured is not None:
            user.update(measured_throughput(args.measured))
        user.update(args.images_per_second or {})
        plan = make_plan(config, user)
    except ConfigError as exc:
        print(f"imbench plan: error: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError, yaml.YAMLError) as exc:
        print(f"imbench plan: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(plan.to_dict(), indent=1, default=str) if args.json else format_plan(plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
