# Configuration checks, the grid, and the input functions every stage uses.

import json
import os
import sys

from snakemake.utils import validate

# Jobs call the `imbench` CLI: make the environment running Snakemake (the project's virtual
# environment) come first on PATH, so jobs find it without an activated shell.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def _config_error(message):
    # One line naming the key and what was expected, before any job runs.
    raise WorkflowError(f"invalid configuration: {message}")


def _validate_config():
    # The schema, then the package's checks of every setting and method parameter (imbench.config).
    from imbench.config import ConfigError, check_config, check_schema, config_warnings

    schema_path = os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
    try:
        # Loads the plug-ins (config key 'plugins') and expands `methods: all` in place first.
        check_schema(config, schema_path)
        # Fill the schema's defaults (split, cache, synthetic, evaluation, ...).
        validate(config, schema=schema_path)
        skips = check_config(config)
    except ConfigError as exc:
        _config_error(str(exc))
    for warning in config_warnings(config):
        print(f"imbench: warning: {warning}", file=sys.stderr)
    return skips


def _expand_imbalance():
    # The imbalance axis: each task runs as its variants <task>@rho<ratio> (imbench.data.imbalance).
    from imbench.data.imbalance import ImbalanceError, expand_tasks

    try:
        config["tasks"] = expand_tasks(config["tasks"], config)
    except ImbalanceError as exc:
        key, _, detail = str(exc).partition(": ")
        _config_error(f"config key '{key}': {detail}")


if config.get("imbalance"):
    _expand_imbalance()
SKIPPED = _validate_config()
for _task, _method, _note in SKIPPED:
    print(f"imbench: {_note}", file=sys.stderr)

from imbench import grid
from imbench.aggregate import figure_names
from imbench.data.tasks import get_task
from imbench.methods import get_method, resolve_params
from imbench.protocols import resolved_dict

EXP = config["experiment"]
SETTINGS = resolved_dict(config["protocol"], config.get("protocol_overrides"))
IMAGE_SIZE = SETTINGS["image_size"]
CACHE_MODE = config["cache"]["mode"]
# Cross-validation (split.cv_folds = K ≥ 2): every trained cell is the ensemble of K fold models,
# trained in <cell>/fold<k>/ and combined by the `ensemble` rule.
FOLDS = int(config["split"].get("cv_folds", 0) or 0)
# split.grouped: false = the papers' image-level split, in its own file beside the grouped one.
GROUPED = bool(config["split"].get("grouped", True))
if not GROUPED:
    print(
        "imbench: warning: split.grouped is false: images of one lesion/patient can be in training "
        "and test (leakage; test scores are optimistic)",
        file=sys.stderr,
    )
# A shared resource's path names every setting that shapes it, so experiments with different
# split settings never write (or, on failure, delete) each other's split: seed, the three
# fractions, grouping and the number of cross-validation folds.
SPLIT_FRACTIONS = "_".join(f"{float(f):g}" for f in config["split"]["fractions"])
SPLIT_CSV = (
    f"resources/prepared/{{task}}/split_seed{config['split']['seed']}_frac{SPLIT_FRACTIONS}"
    + ("" if GROUPED else "_ungrouped")
    + (f"_cv{FOLDS}" if FOLDS else "")
    + ".csv"
)
IMBALANCE_SEED = int((config.get("imbalance") or {}).get("seed", 0))


def split_csv(wildcards):
    """The split file of a cell's task; for a variant <task>@rho<ratio>, the base task's split with
    its training images subsampled (rule imbalance_split)."""
    from imbench.data.imbalance import parse_variant, ratio_text

    base, ratio = parse_variant(wildcards.task)
    path = SPLIT_CSV.format(task=base)
    if ratio is None:
        return path
    return f"{path[: -len('.csv')]}@rho{ratio_text(ratio)}_seed{IMBALANCE_SEED}.csv"


_SKIP = {(t, m) for t, m, _ in SKIPPED}
TRAINED = [m for m in config["methods"] if get_method(m).trains]
POSTHOC = [m for m in config["methods"] if get_method(m).posthoc]
# Second-stage (decoupling) methods: their own job on the base cell's saved network.
DECOUPLED = [m for m in config["methods"] if get_method(m).stage2]


def _alternatives(values):
    import re

    return "|".join(re.escape(str(v)) for v in values)


wildcard_constraints:
    experiment=_alternatives([EXP]),
    task=_alternatives(
        list(dict.fromkeys([*config["tasks"], *(get_task(t).name for t in config["tasks"])]))
    ),
    model=_alternatives(config["models"]),
    seed=r"\d+",
    size=r"\d+",
    mode="squash|crop",


def split_fractions(wildcards):
    """The fractions of a split file's name (0.7_0.15_0.15) as command-line words."""
    return wildcards.fractions.replace("_", " ")


def release_stale_locks():
    """Remove Snakemake's directory locks when no Snakemake process is running here any more.

    A run killed hard (SIGKILL, a lost login node, power) cannot remove the locks it holds in
    .snakemake/locks, and the next run would stop with "Directory cannot be locked" until the user
    ran `snakemake --unlock`. Every main Snakemake process of this workflow holds a shared flock on
    .snakemake/imbench.running for its whole life (the kernel releases it when the process dies,
    however it ends). A starting process that can take that lock exclusively is alone, so any lock
    left is stale and removed, with one line saying so. Locks of a live run are never touched; on a
    file system without flock nothing is removed (`snakemake --unlock` as usual). Returns the open
    descriptor, which must stay open (module global below)."""
    import fcntl
    import glob

    if not workflow.is_main_process:
        return None
    try:
        os.makedirs(".snakemake", exist_ok=True)
        fd = os.open(os.path.join(".snakemake", "imbench.running"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another run of this workflow is alive here: its locks are real
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd
    except OSError:  # no flock on this file system: cannot tell
        return fd
    stale = glob.glob(os.path.join(".snakemake", "locks", "*.lock"))
    for path in stale:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    if stale:
        print(
            f"imbench: removed {len(stale)} stale Snakemake lock(s) of a run that was killed",
            file=sys.stderr,
        )
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


_RUNNING = release_stale_locks()


def raw_dir(wildcards):
    """The raw folder of the task's dataset (the embedded synthetic one is generated)."""
    return f"resources/raw/{get_task(wildcards.task).dataset}"


def image_size(model):
    """The model's input size: model_image_size[model], else the protocol's image_size."""
    return grid.image_size(config, model, IMAGE_SIZE)


def cache_dir(task, model):
    # a task variant <task>@rho<ratio> shares its base task's cache
    from imbench.data.imbalance import base_task

    return f"resources/cache/{base_task(task)}/{image_size(model)}px-{CACHE_MODE}"


def train_images(wildcards):
    return f"{cache_dir(wildcards.task, wildcards.model)}/images.npy"


def cell_dir(task, model, method, seed):
    return f"results/{EXP}/{task}/{model}/{method}/seed{seed}"


def cells():
    """Every (task, model, method, seed) of the grid, minus methods without meaning for a task
    (imbench.grid: the definition `imbench plan` and the configuration checks read too)."""
    return grid.cells(config, _SKIP)


def all_metrics():
    return [f"{cell_dir(*c)}/metrics.json" for c in cells()]


def cell_files(name, trained_only=False):
    """``name`` (predictions.csv, history.csv, ...) of every cell; with ``trained_only``, of the
    cells of trained methods only (post-hoc cells have no history)."""
    return [f"{cell_dir(*c)}/{name}" for c in cells() if not trained_only or c[2] in TRAINED]


def all_cell_files():
    """Every result file of every cell: metrics.json, predictions.csv, run.json, and for trained
    cells history.csv and best.pt (of every fold model with cross-validation).

    They are inputs of `all` because Snakemake re-creates a missing file only when a job that has
    to run needs it, or it is a target: a deleted metrics.json, history or weight file that only
    the (up-to-date) aggregation reads would otherwise give "Nothing to be done" and tables that
    keep the deleted cell's numbers."""
    folds = [f"fold{k}/" for k in range(FOLDS)] if FOLDS else [""]
    out = []
    for c in cells():
        d = cell_dir(*c)
        out += [f"{d}/metrics.json", f"{d}/predictions.csv", f"{d}/run.json"]
        if c[2] in TRAINED:
            out.append(f"{d}/history.csv")
            out += [f"{d}/{f}best.pt" for f in folds]
    return out


def train_cache_fingerprint(wildcards):
    """cache.json of the cell's cache: a training job that finds the cache not matching it removes
    it, and the next run rebuilds the cache before training again."""
    return f"{cache_dir(wildcards.task, wildcards.model)}/cache.json"


def aggregate_outputs():
    out = [f"results/{EXP}/tables/{name}" for name in TABLES]
    out += [
        f"results/{EXP}/tables/paper_vs_ours.md",
        f"results/{EXP}/tables/ranking.md",
        f"results/{EXP}/figures/critical_difference.png",
    ]
    out += [f"results/{EXP}/tables/{t}.{ext}" for t in config["tasks"] for ext in ("md", "tex")]
    out += [f"results/{EXP}/figures/{f}" for t in config["tasks"] for f in figure_names(t)]
    out += [f"results/{EXP}/figures/{f}" for f in ratio_figure_names()]
    out += [f"results/{EXP}/figures/{f}" for t in config["tasks"] for f in explain_figures(t)]
    return out


def ratio_figure_names():
    """The figure of the headline metric against the imbalance ratio, when the grid has variants."""
    from imbench.aggregate import RATIO_FIGURE
    from imbench.data.imbalance import task_ratio

    return [RATIO_FIGURE] if any(task_ratio(t) is not None for t in config["tasks"]) else []


TABLES = [
    "metrics_long.csv",
    "summary.csv",
    "shots.csv",
    "per_class.csv",
    "bootstrap.csv",
    "paired_vs_ce.csv",
    "paper_vs_ours.csv",
    "paper_vs_ours_per_class.csv",
    "ranking.csv",
]
EXPLAIN = config.get("explain", {})


def explain_figures(task):
    """t-SNE / Grad-CAM figure names of a task ([] when switched off or nothing trains)."""
    from imbench.aggregate import explain_figure_names as explain_names

    if not EXPLAIN.get("enabled", True) or not TRAINED:
        return []
    return explain_names(task, tuple(EXPLAIN.get("figures", ["tsne", "gradcam"])))


def explain_cells(wildcards):
    """The seed-0 cells of the first model for every trained method of the task (best.pt + run.json);
    with cross-validation, their fold-0 models."""
    seed = config["seeds"][0]
    model = config["models"][0]
    return [
        os.path.join(cell_dir(wildcards.task, model, m, seed), *(["fold0"] if FOLDS else []), name)
        for m in TRAINED
        if (wildcards.task, m) not in _SKIP
        for name in ("run.json", "best.pt")
    ]


def explain_args(wildcards, input):
    cells = sorted({os.path.dirname(p) for p in input.cells})
    opts = [
        "--cells",
        *cells,
        "--figures",
        *EXPLAIN.get("figures", ["tsne", "gradcam"]),
        "--max-points",
        str(EXPLAIN.get("max_points", 1000)),
        "--per-class",
        str(EXPLAIN.get("per_class", 2)),
        "--seed",
        str(EXPLAIN.get("seed", 0)),
        "--device",
        EXPLAIN.get("device", "cpu"),
    ]
    if EXPLAIN.get("gradcam_method"):
        opts += ["--gradcam-method", EXPLAIN["gradcam_method"]]
    from imbench.plugins import plugin_args, plugins_for

    plugins = plugin_args(plugins_for(task=wildcards.task, models=[config["models"][0]]))
    return " ".join(opts) + (f" {plugins}" if plugins else "")


def train_settings(wildcards):
    """Resolved training settings of one cell, as JSON (tracked by the params rerun trigger)."""
    settings = dict(SETTINGS)
    settings["image_size"] = image_size(wildcards.model)
    params = (config.get("method_params") or {}).get(wildcards.method, {})
    settings["method_params"] = resolve_params(
        wildcards.method, params, wildcards.task, wildcards.model
    )
    return json.dumps(settings, sort_keys=True)


def _job_plugins(wildcards):
    """The plug-in files a job loads (imbench.plugins.plugins_for): the one that registered the
    job's method, its task's dataset (or its dataset) and its model's family; none for a job of
    the package's own parts only."""
    from imbench.plugins import plugins_for

    model = getattr(wildcards, "model", None)
    return plugins_for(
        method=getattr(wildcards, "method", None),
        task=getattr(wildcards, "task", None),
        dataset=getattr(wildcards, "dataset", None),
        models=[model] if model else (),
    )


def job_plugin(wildcards):
    """The plug-in files of a job, as its inputs: an edited plug-in reruns the jobs that load it
    (training cells of its method, dataset, or model family; that dataset's data stages)."""
    return _job_plugins(wildcards)


def job_plugin_args(wildcards):
    """``--plugins <files> --plugin-sha256 <hashes>`` of a job (a params value: a changed content
    reruns the job even when the file's time stamp does not say so); "" for none."""
    from imbench.plugins import plugin_args

    return plugin_args(_job_plugins(wildcards))


def models_plugin_args():
    """``--plugins ...`` of every model family plug-in of the grid (`imbench weights`)."""
    from imbench.plugins import plugin_args, plugins_for

    return plugin_args(plugins_for(models=config["models"]))


def posthoc_params(wildcards):
    return json.dumps((config.get("method_params") or {}).get(wildcards.method, {}), sort_keys=True)


def base_cell(wildcards):
    base = get_method(wildcards.method).base
    return cell_dir(wildcards.task, wildcards.model, base, wildcards.seed)


def aggregate_settings(wildcards):
    ev = config.get("evaluation", {})
    spec = {
        k: ev[k]
        for k in ("headline", "tested", "metrics", "shot_thresholds")
        if ev.get(k) is not None
    }
    return json.dumps(
        {
            "n_boot": ev.get("n_boot", 1000),
            "boot_seed": ev.get("boot_seed", 0),
            "alpha": ev.get("alpha", 0.05),
            "evaluation": spec,
            "methods": config["methods"],
            "models": config["models"],
        },
        sort_keys=True,
    )


def results_dir(wildcards, output):
    """results/<experiment>, derived from the aggregate rule's first table."""
    return os.path.dirname(os.path.dirname(output.tables[0]))


def report_figure(task, name):
    """A figure registered for the report, with its caption and the task as category."""
    kind = name[len(task) + 1 : -4]
    return report(
        f"results/{EXP}/figures/{name}",
        caption=f"../report/{kind}.rst",
        category=task,
        subcategory="figures",
        labels={"task": task, "figure": kind},
    )


def second_lesion_fraction(wildcards):
    """Only the multi-label variant draws second lesions; `synthetic` stays one lesion per image."""
    if wildcards.dataset == "synthetic_ml":
        return config["synthetic"]["second_lesion_fraction"]
    return 0.0


def download_args(dataset):
    """The options of `imbench download <dataset>`, shell-quoted, from config["download"][dataset]."""
    import shlex

    from imbench.data.download import cli_args

    cfg = (config.get("download") or {}).get(dataset) or {}
    return " ".join(shlex.quote(a) for a in cli_args(dataset, cfg))


def figures_dir(wildcards, output):
    return os.path.dirname(output.figures[0])
