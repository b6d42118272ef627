"""Aggregate an experiment's cells into tables and figures.

Inputs: the cells' ``metrics.json`` (and, next to each, ``predictions.csv`` and ``history.csv``).
Outputs (``results/<experiment>/``):

tables/
    ``metrics_long.csv``   one row per cell × split × metric (the source of truth);
    ``summary.csv``        per (task, model, method, split, metric): mean, sd (ddof = 1), n, min, max
                           over seeds;
    ``per_class.csv``      per cell × class: training count, precision, recall, F1, support (test);
    ``bootstrap.csv``      per cell: group-bootstrap 95 % interval of the test metrics;
    ``paired_vs_ce.csv``   every method vs ``ce`` on the same task/model/seed/test set: paired
                           group bootstrap of the headline metric (difference, 95 % interval, p-value,
                           Holm-adjusted p-value over all comparisons of the experiment);
    ``<task>.md``          Markdown pivots (methods × models, mean ± sd over seeds of the test metrics);
    ``<task>.tex``         the same pivots as LaTeX (booktabs) tables;
    ``paper_vs_ours.csv``  the LMF paper's published test metrics beside ours for matching cells (+ ``.md``,
                           which also prints BBFL's published numbers as context only).
figures/
    ``<task>_heatmap.png``, ``<task>_methods.png``, ``<task>_per_class_recall.png``,
    ``<task>_training_curves.png``, ``<task>_confusion.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .io import atomic_path, read_json, write_csv, write_text
from .stats import holm, paired_bootstrap, summarise_seeds

KEYS = ["task", "model", "method", "seed"]
#: Metrics shown in each task's Markdown tables (besides the headline), per task kind.
TABLE_METRICS = {
    "multiclass": ["macro_f1", "accuracy", "balanced_accuracy", "macro_auc"],
    "binary": ["f1", "auprc", "auc", "balanced_accuracy", "sensitivity", "specificity"],
    "multilabel": ["odir_score", "macro_f1", "mean_f2", "macro_auc", "map"],
}


def load_cells(metrics_paths) -> list[dict]:
    cells = []
    for p in metrics_paths:
        m = read_json(p)
        m["dir"] = str(Path(p).parent)
        cells.append(m)
    if not cells:
        raise ValueError("aggregate: no metrics.json given")
    return cells


def long_table(cells: list[dict], experiment: str) -> pd.DataFrame:
    rows = []
    for c in cells:
        for split in ("val", "test"):
            for metric, value in c[split]["scalars"].items():
                rows.append({"experiment": experiment, **{k: c[k] for k in KEYS}, "split": split,
                             "metric": metric, "value": np.nan if value is None else value})
    return pd.DataFrame(rows)


def per_class_table(cells: list[dict]) -> pd.DataFrame:
    rows = []
    for c in cells:
        counts = c["train_class_counts"]
        for j, pc in enumerate(c["test"]["per_class"]):
            rows.append({**{k: c[k] for k in KEYS}, "class": pc["class"], "train_count": counts[j],
                         **{k: pc[k] for k in ("precision", "recall", "f1", "support")}})
    return pd.DataFrame(rows)


def bootstrap_table(cells: list[dict]) -> pd.DataFrame:
    rows = []
    for c in cells:
        for metric, b in c.get("bootstrap", {}).items():
            rows.append({**{k: c[k] for k in KEYS}, "metric": metric, "estimate": b["estimate"],
                         "low": b["low"], "high": b["high"], "n_boot": b["n_boot"]})
    return pd.DataFrame(rows)


def paired_table(cells: list[dict], n_boot: int = 1000, seed: int = 0, baseline: str = "ce") -> pd.DataFrame:
    """Paired group bootstrap of each method's headline metric against ``baseline``."""
    from .evaluate import read_predictions
    from .metrics import scalar_fn

    by_key = {tuple(c[k] for k in KEYS): c for c in cells}
    preds: dict[str, dict] = {}

    def test_preds(c):
        if c["dir"] not in preds:
            preds[c["dir"]] = read_predictions(Path(c["dir"]) / "predictions.csv", c["classes"],
                                               multilabel=c["kind"] == "multilabel")["test"]
        return preds[c["dir"]]

    rows = []
    for c in cells:
        if c["method"] == baseline:
            continue
        base = by_key.get((c["task"], c["model"], baseline, c["seed"]))
        if base is None:
            continue
        a, b = test_preds(c), test_preds(base)
        if not np.array_equal(a["image_id"], b["image_id"]):
            raise ValueError(f"aggregate: {c['dir']} and {base['dir']} were not tested on the same images")
        metric = c["headline"]
        r = paired_bootstrap(scalar_fn(c["kind"], metric), (a["label"], a["probs"], a["pred"]),
                             (b["label"], b["probs"], b["pred"]), a["group"], n_boot=n_boot, seed=seed)
        rows.append({**{k: c[k] for k in KEYS}, "baseline": baseline, "metric": metric, "diff": r["diff"],
                     "low": r["low"], "high": r["high"], "p_value": r["p_value"], "n_boot": r["n_boot"]})
    df = pd.DataFrame(rows, columns=[*KEYS, "baseline", "metric", "diff", "low", "high", "p_value", "n_boot"])
    df["p_holm"] = holm(df["p_value"].tolist()) if len(df) else []
    return df


def _fmt(mean, sd, digits=3) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" if pd.isna(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def markdown_pivot(summary: pd.DataFrame, task: str, metric: str, methods: list[str], models: list[str],
                   marks: dict | None = None) -> str:
    """Methods × models table of ``metric`` (test, mean ± sd over seeds); best mean per column bold."""
    sub = summary[(summary.task == task) & (summary.metric == metric) & (summary.split == "test")]
    lines = ["| method | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    best = {m: sub[sub.model == m]["mean"].max() for m in models}
    for meth in methods:
        cells = []
        for model in models:
            row = sub[(sub.model == model) & (sub.method == meth)]
            if row.empty:
                cells.append("n/a")
                continue
            r = row.iloc[0]
            text = _fmt(r["mean"], r["sd"]) + (marks or {}).get((model, meth), "")
            cells.append(f"**{text}**" if np.isclose(r["mean"], best[model]) else text)
        lines.append(f"| {meth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def significance_marks(paired: pd.DataFrame, task: str, alpha: float = 0.05) -> dict:
    """``▲``/``▼`` when every seed's Holm-adjusted paired test vs ce is significant in one direction."""
    marks = {}
    sub = paired[paired.task == task]
    for (model, method), g in sub.groupby(["model", "method"]):
        sig = g["p_holm"] < alpha
        if len(g) and sig.all() and (g["diff"] > 0).all():
            marks[(model, method)] = " ▲"
        elif len(g) and sig.all() and (g["diff"] < 0).all():
            marks[(model, method)] = " ▼"
    return marks


def task_markdown(task: str, summary: pd.DataFrame, paired: pd.DataFrame, headline: str, metrics: list[str],
                  methods: list[str], models: list[str], n_seeds: int) -> str:
    marks = significance_marks(paired, task)
    parts = [f"# {task}", "",
             f"Test set; mean ± sd over {n_seeds} seed(s) (sd with ddof = 1); the best mean of each column "
             "is in bold. ▲/▼: better/worse than `ce` in a paired group bootstrap on every seed, "
             "Holm-adjusted p < 0.05 over all comparisons of the experiment. n/a: the method has no meaning "
             "for this kind of task and was skipped at planning.", ""]
    for metric in dict.fromkeys([headline, *metrics]):
        if not ((summary.task == task) & (summary.metric == metric)).any():
            continue
        parts += [f"## {metric}" + (" (headline)" if metric == headline else ""), "",
                  markdown_pivot(summary, task, metric, methods, models, marks if metric == headline else None), ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- figures


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")


def make_figures(task: str, long: pd.DataFrame, per_class: pd.DataFrame, cells: list[dict], headline: str,
                 methods: list[str], models: list[str], fig_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    written = []
    test = long[(long.task == task) & (long.split == "test") & (long.metric == headline)]

    # 1. heat-map: method × model, headline mean over seeds
    pivot = test.groupby(["method", "model"])["value"].mean().unstack("model").reindex(index=methods, columns=models)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(models), 0.9 + 0.45 * len(methods)))
    sns.heatmap(pivot, annot=True, fmt=".3f", cmap="viridis", cbar_kws={"label": headline}, ax=ax)
    ax.set_title(f"{task}: test {headline} (mean over seeds)")
    ax.set_xlabel("model")
    ax.set_ylabel("method")
    written.append(fig_dir / f"{task}_heatmap.png")
    _savefig(fig, written[-1])
    plt.close(fig)

    # 2. per-method points: each seed, and mean ± sd
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.42 * len(methods)))
    several = len(models) > 1  # seaborn cannot dodge a single hue level
    sns.pointplot(data=test, y="method", x="value", hue="model", order=methods, errorbar="sd",
                  linestyle="none", dodge=0.4 if several else False, markers="D", ax=ax)
    sns.stripplot(data=test, y="method", x="value", hue="model", order=methods, dodge=several, alpha=0.45,
                  size=4, ax=ax, legend=False)
    ax.set_xlabel(f"test {headline}")
    ax.set_title(f"{task}: every seed (dots) and mean ± sd (diamonds)")
    written.append(fig_dir / f"{task}_methods.png")
    _savefig(fig, written[-1])
    plt.close(fig)

    # 3. the long-tail picture: per-class recall against training frequency
    pc = per_class[per_class.task == task]
    agg = pc.groupby(["model", "method", "class"], as_index=False).agg(recall=("recall", "mean"),
                                                                       train_count=("train_count", "mean"))
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.6), squeeze=False, sharey=True)
    palette = dict(zip(methods, sns.color_palette("tab20", len(methods))))
    for ax, model in zip(axes[0], models):
        for meth in methods:
            d = agg[(agg.model == model) & (agg.method == meth)].sort_values("train_count")
            if d.empty:
                continue
            ax.plot(d.train_count, d.recall, marker="o", label=meth, color=palette[meth],
                    lw=2.2 if meth == "ce" else 1.2, ls="-" if meth == "ce" else "--")
        ax.set_xscale("log")
        ax.set_xlabel("training images of the class (log scale)")
        ax.set_title(f"{task} / {model}", pad=28)
        for _, r in agg[(agg.model == model)].drop_duplicates("class").iterrows():
            ax.annotate(r["class"], (r["train_count"], 1.03), xycoords=("data", "axes fraction"), ha="left",
                        va="bottom", rotation=40, fontsize=8, annotation_clip=False)
    axes[0][0].set_ylabel("test recall (mean over seeds)")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    written.append(fig_dir / f"{task}_per_class_recall.png")
    _savefig(fig, written[-1])
    plt.close(fig)

    # 4. training curves (validation macro-F1 per epoch, mean over seeds)
    hist = []
    for c in cells:
        h = Path(c["dir"]) / "history.csv"
        if c["task"] == task and h.exists():
            d = pd.read_csv(h)
            d["method"], d["model"], d["seed"] = c["method"], c["model"], c["seed"]
            hist.append(d)
    if hist:
        hist = pd.concat(hist)
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
        sns.lineplot(data=hist, x="epoch", y="train_loss", hue="method", style="model", errorbar=None,
                     ax=axes[0], palette=palette, legend=False)
        axes[0].set_yscale("log")
        axes[0].set_title("training loss (each method's own loss)")
        sns.lineplot(data=hist, x="epoch", y="val_macro_f1", hue="method", style="model", errorbar=None,
                     ax=axes[1], palette=palette)
        axes[1].set_title("validation macro-F1")
        axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
        fig.suptitle(f"{task}: training curves (mean over seeds)")
        written.append(fig_dir / f"{task}_training_curves.png")
        _savefig(fig, written[-1])
        plt.close(fig)

    # 5. confusion matrices (row-normalised, summed over seeds), first model
    single = [c for c in cells if c["task"] == task and c["test"].get("confusion_matrix") is not None]
    if single:
        model = models[0]
        n = len(methods)
        cols = min(5, n)
        rows_ = int(np.ceil(n / cols))
        classes = single[0]["classes"]
        fig, axes = plt.subplots(rows_, cols, figsize=(2.9 * cols, 2.9 * rows_), squeeze=False)
        for ax, meth in zip(axes.flat, methods):
            cms = [np.array(c["test"]["confusion_matrix"]) for c in single if c["method"] == meth and c["model"] == model]
            if not cms:
                ax.axis("off")
                continue
            cm = np.sum(cms, axis=0).astype(float)
            cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
            sns.heatmap(cm, vmin=0, vmax=1, cmap="Blues", cbar=False, square=True, ax=ax,
                        xticklabels=classes, yticklabels=classes)
            ax.set_title(meth, fontsize=10)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle(f"{task} / {model}: test confusion matrices, rows = true class, normalised per row")
        fig.tight_layout()
        written.append(fig_dir / f"{task}_confusion.png")
        _savefig(fig, written[-1])
        plt.close(fig)
    return written


def figure_names(task: str) -> list[str]:
    """The figures aggregation writes for ``task`` (no confusion matrices for multi-label tasks)."""
    from .data.tasks import get_task

    names = ["heatmap", "methods", "per_class_recall", "training_curves"]
    if get_task(task).kind != "multilabel":
        names.append("confusion")
    return [f"{task}_{n}.png" for n in names]


#: The figures ``imbench.explain`` draws per task. Kept here with :func:`explain_figure_names`
#: (and re-exported by ``imbench.explain``) so that planning can name them without importing torch.
EXPLAIN_FIGURES = ("tsne", "gradcam")


def explain_figure_names(task: str, what=EXPLAIN_FIGURES) -> list[str]:
    """File names ``imbench.explain`` writes for ``task`` (``imbench.explain.figure_names``)."""
    return [f"{task}_{w}.png" for w in what]


# ----------------------------------------------------------------------------- entry point


def aggregate(experiment: str, results: str | Path, metrics_paths, n_boot: int = 1000, boot_seed: int = 0,
              table_metrics: list[str] | None = None, methods: list[str] | None = None,
              models: list[str] | None = None) -> None:
    results = Path(results)
    table_dir, fig_dir = results / "tables", results / "figures"
    table_dir.mkdir(parents=True, exist_ok=True)
    fig_dir.mkdir(parents=True, exist_ok=True)
    cells = load_cells(metrics_paths)
    methods = methods or list(dict.fromkeys(c["method"] for c in cells))
    models = models or list(dict.fromkeys(c["model"] for c in cells))

    long = long_table(cells, experiment)
    summary = summarise_seeds(long, ["task", "model", "method", "split", "metric"])
    per_class = per_class_table(cells)
    paired = paired_table(cells, n_boot=n_boot, seed=boot_seed)
    write_csv(table_dir / "metrics_long.csv", long)
    write_csv(table_dir / "summary.csv", summary)
    write_csv(table_dir / "per_class.csv", per_class)
    write_csv(table_dir / "bootstrap.csv", bootstrap_table(cells))
    write_csv(table_dir / "paired_vs_ce.csv", paired)

    # The LMF paper's published test numbers beside ours, where a cell matches (real tasks only);
    # BBFL's numbers come from private data and are shown as context, never compared.
    from .latex import latex_pivot
    from .paper import bbfl_context_markdown, paper_vs_ours, paper_vs_ours_markdown

    pvo = paper_vs_ours(summary)
    write_csv(table_dir / "paper_vs_ours.csv", pvo)
    write_text(table_dir / "paper_vs_ours.md", "# Published (LMF paper) vs ours\n\n" + paper_vs_ours_markdown(pvo)
               + "\n\n" + bbfl_context_markdown() + "\n")

    for task in dict.fromkeys(c["task"] for c in cells):
        first = next(c for c in cells if c["task"] == task)
        n_seeds = len({c["seed"] for c in cells if c["task"] == task})
        metrics = table_metrics or TABLE_METRICS[first["kind"]]
        md = task_markdown(task, summary, paired, first["headline"], metrics, methods, models, n_seeds)
        write_text(table_dir / f"{task}.md", md + "\n")
        marks = significance_marks(paired, task)
        tex = [f"% {task}: test set, mean ± sd over {n_seeds} seed(s); needs \\usepackage{{booktabs,amssymb}}"]
        for metric in dict.fromkeys([first["headline"], *metrics]):
            if ((summary.task == task) & (summary.metric == metric)).any():
                tex += [f"% {metric}", latex_pivot(summary, task, metric, methods, models,
                                                   marks if metric == first["headline"] else None), ""]
        write_text(table_dir / f"{task}.tex", "\n".join(tex))
        make_figures(task, long, per_class, cells, first["headline"], methods, models, fig_dir)
    print(f"aggregated {len(cells)} cells into {table_dir} and {fig_dir}", flush=True)
