"""Aggregate an experiment's cells into tables and figures.

Inputs: the cells' ``metrics.json`` (and, next to each, ``predictions.csv`` and ``history.csv``).
Outputs (``results/<experiment>/``):

tables/
    ``metrics_long.csv``   one row per cell × split × metric (the source of truth);
    ``summary.csv``        per (task, model, method, split, metric): mean, sd (ddof = 1), n, min, max
                           over seeds, ``low``/``high`` (Student-t interval over seeds) and, for the tested
                           metrics of the test split, ``low_total``/``high_total`` (seeds and test groups);
    ``per_class.csv``      per cell × class: training count, precision, recall, F1, support (test);
    ``bootstrap.csv``      per cell: group-bootstrap 95 % interval of the test metrics;
    ``paired_vs_ce.csv``   every method vs ``ce``: one test per (task, model, method, tested metric) over
                           all seeds, counting seed and test-set variance (difference, 95 % interval,
                           p-value, Holm-adjusted within the (task, model, metric) family);
                           see :mod:`imbench.compare` and docs/statistics.md;
    ``ranking.csv``/``.md`` average ranks over blocks, Friedman's test (cross-task ranking);
    ``<task>.md``          Markdown pivots (methods × models, mean [95 % interval] over seeds of the test
                           metrics) and the effects against ``ce``;
    ``<task>.tex``         the same pivots as LaTeX (booktabs) tables;
    ``paper_vs_ours.csv``  the LMF paper's published test metrics beside ours for matching cells (+ ``.md``,
                           which also prints BBFL's published numbers as context only).
figures/
    ``<task>_heatmap.png``, ``<task>_methods.png``, ``<task>_per_class_recall.png``,
    ``<task>_training_curves.png``, ``<task>_confusion.png``, ``critical_difference.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .compare import KEYS, LOWER_IS_BETTER
from .data.imbalance import parse_variant, task_ratio, with_ratio_column
from .io import atomic_path, read_csv, read_json, write_csv, write_text
from .metrics import SHOT_GROUPS, SHOT_THRESHOLDS, shot_recalls
from .stats import summarise_seeds


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
                rows.append(
                    {
                        "experiment": experiment,
                        **{k: c[k] for k in KEYS},
                        "split": split,
                        "metric": metric,
                        "value": np.nan if value is None else value,
                    }
                )
    return pd.DataFrame(rows)


def per_class_table(cells: list[dict]) -> pd.DataFrame:
    rows = []
    for c in cells:
        counts = c["train_class_counts"]
        for j, pc in enumerate(c["test"]["per_class"]):
            rows.append(
                {
                    **{k: c[k] for k in KEYS},
                    "class": pc["class"],
                    "train_count": counts[j],
                    **{k: pc[k] for k in ("precision", "recall", "f1", "support")},
                }
            )
    return pd.DataFrame(rows)


#: The metric names of the many/medium/few-shot recalls in ``summary.csv`` (test split).
SHOT_METRICS = {g: f"{g}_shot_recall" for g in SHOT_GROUPS}


def shots_table(cells: list[dict], thresholds=SHOT_THRESHOLDS) -> pd.DataFrame:
    """Per cell: test recall averaged over its many-, medium- and few-shot classes (by the cell's
    own training counts, so a subsampled task variant has its own groups), the number of classes
    in each group (:func:`imbench.metrics.shot_recalls`), ``ratio`` (asked for: the task variant's)
    and ``achieved_ratio`` (of the cell's training counts; a class never grows, so it can differ)."""
    rows = []
    for c in cells:
        rec = [pc["recall"] for pc in c["test"]["per_class"]]
        rows.append(
            {
                **{k: c[k] for k in KEYS},
                **shot_recalls(c["train_class_counts"], rec, thresholds),
                "low": float(thresholds[0]),
                "high": float(thresholds[1]),
                "achieved_ratio": achieved_ratio(c["train_class_counts"]),
            }
        )
    cols = [*KEYS, *SHOT_GROUPS, *(f"n_{g}" for g in SHOT_GROUPS), "low", "high", "achieved_ratio"]
    return with_ratio_column(pd.DataFrame(rows, columns=cols))


def achieved_ratio(counts) -> float:
    """n_max / n_min of the classes present in a cell's training split (NaN without two classes)."""
    nz = [n for n in counts if n > 0]
    return float(max(nz) / min(nz)) if len(nz) >= 2 else float("nan")


def shots_long(shots: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """The shot recalls as rows of the long table's form (split ``test``, metric ``<group>_shot_recall``)."""
    rows = []
    for _, r in shots.iterrows():
        for g in SHOT_GROUPS:
            rows.append(
                {
                    "experiment": experiment,
                    **{k: r[k] for k in KEYS},
                    "split": "test",
                    "metric": SHOT_METRICS[g],
                    "value": r[g],
                }
            )
    return pd.DataFrame(rows, columns=["experiment", *KEYS, "split", "metric", "value"])


def shots_markdown(
    task: str, summary: pd.DataFrame, shots: pd.DataFrame, methods: list[str], models: list[str]
) -> str:
    """``## Recall by training-set size``: per model, methods × many/medium/few (test recall averaged
    over the classes of each group; mean [95 % interval over seeds])."""
    sub = shots[shots.task == task]
    if sub.empty:
        return ""
    low, high = sub["low"].iloc[0], sub["high"].iloc[0]
    if high < 1:
        rule = f"fractions {low:g} and {high:g} of the largest class's training count"
    else:
        rule = f"> {high:g} training images many, < {low:g} few, the rest medium"
    n = {g: int(sub[f"n_{g}"].max()) for g in SHOT_GROUPS}
    parts = [
        "## Recall by training-set size (many / medium / few shots)",
        "",
        f"Test recall averaged over the classes of each group ({rule}; classes per group: "
        + ", ".join(f"{g} {n[g]}" for g in SHOT_GROUPS)
        + "); mean [95 % interval] over seeds; – where a group has no class.",
        "",
    ]
    for model in models:
        if len(models) > 1:
            parts += [f"### {model}", ""]
        parts += ["| method | many | medium | few |", "|---|---|---|---|"]
        for meth in methods:
            cells = []
            for g in SHOT_GROUPS:
                row = summary[
                    (summary.task == task)
                    & (summary.model == model)
                    & (summary.method == meth)
                    & (summary.metric == SHOT_METRICS[g])
                ]
                cells.append(interval_text(row.iloc[0]) if len(row) else "n/a")
            if all(c == "n/a" for c in cells):
                continue
            parts.append(f"| {meth} | " + " | ".join(cells) + " |")
        parts.append("")
    return "\n".join(parts)


def bootstrap_table(cells: list[dict]) -> pd.DataFrame:
    rows = []
    for c in cells:
        for metric, b in c.get("bootstrap", {}).items():
            rows.append(
                {
                    **{k: c[k] for k in KEYS},
                    "metric": metric,
                    "estimate": b["estimate"],
                    "low": b["low"],
                    "high": b["high"],
                    "n_boot": b["n_boot"],
                }
            )
    return pd.DataFrame(rows)


def interval_text(row, digits: int = 3) -> str:
    """``mean [low, high]`` of a summary row: the seeds-and-test-set interval where it exists, else the
    interval over seeds, else the mean alone."""
    mean = row["mean"]
    if pd.isna(mean):
        return "–"
    for lo, hi in (("low_total", "high_total"), ("low", "high")):
        if lo in row and not pd.isna(row[lo]) and not pd.isna(row[hi]):
            return f"{mean:.{digits}f} [{row[lo]:.{digits}f}, {row[hi]:.{digits}f}]"
    return f"{mean:.{digits}f}"


def markdown_pivot(
    summary: pd.DataFrame,
    task: str,
    metric: str,
    methods: list[str],
    models: list[str],
    marks: dict | None = None,
) -> str:
    """Methods × models table of ``metric`` (test, mean [95 % interval] over seeds); best mean per column
    bold (the minimum for smaller-is-better metrics)."""
    sub = summary[(summary.task == task) & (summary.metric == metric) & (summary.split == "test")]
    lines = ["| method | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    pick = (lambda s: s.min()) if metric in LOWER_IS_BETTER else (lambda s: s.max())
    best = {m: pick(sub[sub.model == m]["mean"]) for m in models}
    for meth in methods:
        cells = []
        for model in models:
            row = sub[(sub.model == model) & (sub.method == meth)]
            if row.empty:
                cells.append("n/a")
                continue
            r = row.iloc[0]
            text = interval_text(r) + (marks or {}).get((model, meth), "")
            cells.append(f"**{text}**" if np.isclose(r["mean"], best[model]) else text)
        lines.append(f"| {meth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def significance_marks(paired: pd.DataFrame, task: str, metric: str, alpha: float = 0.05) -> dict:
    """``▲``/``▼`` where the method's test against ``ce`` on ``metric`` (all seeds together) has a
    Holm-adjusted p < ``alpha`` within its (task, model, metric) family."""
    marks = {}
    sub = paired[(paired.task == task) & (paired.metric == metric)]
    for r in sub.itertuples(index=False):
        if pd.notna(r.p_holm) and r.p_holm < alpha:
            marks[(r.model, r.method)] = " ▲" if r.diff > 0 else " ▼"
    return marks


def _p_text(p) -> str:
    if pd.isna(p):
        return "–"
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def effects_markdown(
    paired: pd.DataFrame, task: str, metric: str, methods: list[str], models: list[str]
) -> str:
    """Effect of each method against ``ce`` on ``metric``: difference of means, 95 % interval, p, Holm p."""
    sub = paired[(paired.task == task) & (paired.metric == metric)]
    if sub.empty:
        return ""
    lines = [
        "| model | method | − ce | 95 % interval | p | Holm p | seeds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    order = {m: i for i, m in enumerate(methods)}
    sub = sub.assign(
        _m=sub.model.map({m: i for i, m in enumerate(models)}), _o=sub.method.map(order)
    )
    for r in sub.sort_values(["_m", "_o"]).itertuples(index=False):
        iv = "–" if pd.isna(r.low) else f"[{r.low:+.3f}, {r.high:+.3f}]"
        diff = "–" if pd.isna(r.diff) else f"{r.diff:+.3f}"
        lines.append(
            f"| {r.model} | {r.method} | {diff} | {iv} | {_p_text(r.p_value)} | {_p_text(r.p_holm)} | "
            f"{r.n_seeds} |"
        )
    return "\n".join(lines)


def task_markdown(
    task: str,
    summary: pd.DataFrame,
    paired: pd.DataFrame,
    spec: dict,
    methods: list[str],
    models: list[str],
    n_seeds: int,
    alpha: float = 0.05,
    n_boot: int | None = None,
    steps: pd.DataFrame | None = None,
) -> str:
    headline = spec["headline"]
    marks = significance_marks(paired, task, headline, alpha)
    fam = paired[(paired.task == task) & (paired.metric == headline)]["family_size"]
    fam_text = f"{int(fam.max())} comparisons" if len(fam) else "the methods compared"
    parts = [
        f"# {task}",
        "",
        f"Test set; mean [95 % interval] over {n_seeds} seed(s); the best mean of each column is in bold. "
        f"Intervals of the tested metrics ({', '.join(spec['tested'])}) count training (seed) and test-set "
        f"variance (seeds × {n_boot} group-bootstrap replicates of the test lesions/patients, Student t with "
        "Welch–Satterthwaite degrees of freedom); the other metrics' intervals count seed variance only "
        "(Student t over seeds). "
        f"▲/▼: better/worse than `ce` on {headline}, one test over all seeds, Holm-adjusted p < {alpha} "
        f"within the family of the methods compared with `ce` for this task, model and metric ({fam_text}). "
        "n/a: the method has no meaning for this kind of task and was skipped at planning. "
        "Design: docs/statistics.md.",
        "",
    ]
    for metric in dict.fromkeys([headline, *spec["metrics"]]):
        if not ((summary.task == task) & (summary.metric == metric)).any():
            continue
        parts += [
            f"## {metric}" + (" (headline)" if metric == headline else ""),
            "",
            markdown_pivot(
                summary, task, metric, methods, models, marks if metric == headline else None
            ),
            "",
        ]
    for metric in spec["tested"]:
        eff = effects_markdown(paired, task, metric, methods, models)
        if eff:
            parts += [
                f"## Effect on {metric} against ce",
                "",
                f"Difference of the means over seeds (method − ce), its 95 % interval and two-sided p "
                f"(seed and test-set variance), Holm-adjusted within the {metric} family of this task "
                "and model.",
                "",
                eff,
                "",
            ]
    if steps is not None and not steps.empty:
        sub = steps[steps.task == task]
        if not sub.empty:
            piv = sub.pivot_table(
                index="method", columns="model", values="optimizer_steps", aggfunc="mean"
            )
            piv = piv.reindex(
                index=[m for m in methods if m in piv.index],
                columns=[m for m in models if m in piv.columns],
            )
            parts += [
                "## Optimiser steps",
                "",
                "Optimiser steps each cell took (mean over seeds; post-hoc "
                "methods take the steps of the cell they derive from).",
                "",
                "| method | " + " | ".join(piv.columns) + " |",
                "|---|" + "---:|" * len(piv.columns),
            ]
            for meth, row in piv.iterrows():
                parts.append(
                    f"| {meth} | "
                    + " | ".join("–" if pd.isna(v) else f"{v:.0f}" for v in row)
                    + " |"
                )
            parts.append("")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- figures


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")


def make_figures(
    task: str,
    long: pd.DataFrame,
    per_class: pd.DataFrame,
    cells: list[dict],
    headline: str,
    methods: list[str],
    models: list[str],
    fig_dir: Path,
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    written = []
    test = long[(long.task == task) & (long.split == "test") & (long.metric == headline)]

    # 1. heat-map: method × model, headline mean over seeds
    pivot = (
        test.groupby(["method", "model"])["value"]
        .mean()
        .unstack("model")
        .reindex(index=methods, columns=models)
    )
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
    sns.pointplot(
        data=test,
        y="method",
        x="value",
        hue="model",
        order=methods,
        errorbar="sd",
        linestyle="none",
        dodge=0.4 if several else False,
        markers="D",
        ax=ax,
    )
    sns.stripplot(
        data=test,
        y="method",
        x="value",
        hue="model",
        order=methods,
        dodge=several,
        alpha=0.45,
        size=4,
        ax=ax,
        legend=False,
    )
    ax.set_xlabel(f"test {headline}")
    ax.set_title(f"{task}: every seed (dots) and mean ± sd (diamonds)")
    written.append(fig_dir / f"{task}_methods.png")
    _savefig(fig, written[-1])
    plt.close(fig)

    # 3. the long-tail picture: per-class recall against training frequency
    pc = per_class[per_class.task == task]
    agg = pc.groupby(["model", "method", "class"], as_index=False).agg(
        recall=("recall", "mean"), train_count=("train_count", "mean")
    )
    fig, axes = plt.subplots(
        1, len(models), figsize=(6.5 * len(models), 4.6), squeeze=False, sharey=True
    )
    palette = dict(zip(methods, sns.color_palette("tab20", len(methods))))
    for ax, model in zip(axes[0], models):
        for meth in methods:
            d = agg[(agg.model == model) & (agg.method == meth)].sort_values("train_count")
            if d.empty:
                continue
            ax.plot(
                d.train_count,
                d.recall,
                marker="o",
                label=meth,
                color=palette[meth],
                lw=2.2 if meth == "ce" else 1.2,
                ls="-" if meth == "ce" else "--",
            )
        ax.set_xscale("log")
        ax.minorticks_off()  # only the grid's ratios are labelled
        ax.set_xlabel("training images of the class (log scale)")
        ax.set_title(f"{task} / {model}", pad=28)
        for _, r in agg[(agg.model == model)].drop_duplicates("class").iterrows():
            ax.annotate(
                r["class"],
                (r["train_count"], 1.03),
                xycoords=("data", "axes fraction"),
                ha="left",
                va="bottom",
                rotation=40,
                fontsize=8,
                annotation_clip=False,
            )
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
            d = read_csv(h)
            missing = [
                col for col in ("epoch", "train_loss", "val_macro_f1") if col not in d.columns
            ]
            if missing:
                raise ValueError(f"{h}: expected column(s) {missing} of a training history")
            d["method"], d["model"], d["seed"] = c["method"], c["model"], c["seed"]
            hist.append(d)
    if hist:
        hist = pd.concat(hist)
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
        sns.lineplot(
            data=hist,
            x="epoch",
            y="train_loss",
            hue="method",
            style="model",
            errorbar=None,
            ax=axes[0],
            palette=palette,
            legend=False,
        )
        axes[0].set_yscale("log")
        axes[0].set_title("training loss (each method's own loss)")
        sns.lineplot(
            data=hist,
            x="epoch",
            y="val_macro_f1",
            hue="method",
            style="model",
            errorbar=None,
            ax=axes[1],
            palette=palette,
        )
        axes[1].set_title("validation macro-F1")
        axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
        fig.suptitle(f"{task}: training curves (mean over seeds)")
        written.append(fig_dir / f"{task}_training_curves.png")
        _savefig(fig, written[-1])
        plt.close(fig)

    # 5. confusion matrices (row-normalised, summed over seeds), first model
    single = [
        c for c in cells if c["task"] == task and c["test"].get("confusion_matrix") is not None
    ]
    if single:
        model = models[0]
        n = len(methods)
        cols = min(5, n)
        rows_ = int(np.ceil(n / cols))
        classes = single[0]["classes"]
        fig, axes = plt.subplots(rows_, cols, figsize=(2.9 * cols, 2.9 * rows_), squeeze=False)
        for ax, meth in zip(axes.flat, methods):
            cms = [
                np.array(c["test"]["confusion_matrix"])
                for c in single
                if c["method"] == meth and c["model"] == model
            ]
            if not cms:
                ax.axis("off")
                continue
            cm = np.sum(cms, axis=0).astype(float)
            cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
            sns.heatmap(
                cm,
                vmin=0,
                vmax=1,
                cmap="Blues",
                cbar=False,
                square=True,
                ax=ax,
                xticklabels=classes,
                yticklabels=classes,
            )
            ax.set_title(meth, fontsize=10)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle(
            f"{task} / {model}: test confusion matrices, rows = true class, normalised per row"
        )
        fig.tight_layout()
        written.append(fig_dir / f"{task}_confusion.png")
        _savefig(fig, written[-1])
        plt.close(fig)
    return written


def shots_figure(
    task: str, shots: pd.DataFrame, methods: list[str], models: list[str], path: Path
) -> None:
    """Bars: test recall of the many/medium/few-shot classes per method (mean over seeds; one panel
    per model)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = shots[shots.task == task]
    fig, axes = plt.subplots(
        1, len(models), figsize=(max(5.0, 0.5 * len(methods) + 2) * len(models), 3.8), squeeze=False
    )
    width = 0.8 / len(SHOT_GROUPS)
    for ax, model in zip(axes[0], models):
        part = sub[sub.model == model].groupby("method")[list(SHOT_GROUPS)].mean()
        part = part.reindex([m for m in methods if m in part.index])
        x = np.arange(len(part))
        for i, g in enumerate(SHOT_GROUPS):
            ax.bar(x + (i - 1) * width, part[g].to_numpy(), width, label=g)
        ax.set_xticks(x, part.index, rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("test recall")
        ax.set_title(f"{task} / {model}")
    axes[0][-1].legend(title="classes", fontsize=8)
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)


#: The figure of the headline metric against the imbalance ratio (grids with task variants only).
RATIO_FIGURE = "ratio_sweep.png"


def ratio_figure(
    long: pd.DataFrame, specs: dict, methods: list[str], models: list[str], path: Path
) -> None:
    """The headline test metric against the imbalance ratio ρ, one line per method (mean over seeds,
    error bars: standard deviation over seeds), one panel per base task and model (log ρ axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for task, spec in specs.items():
        base, ratio = parse_variant(task)
        if ratio is None:
            continue
        sel = long[(long.task == task) & (long.split == "test") & (long.metric == spec["headline"])]
        for _, r in sel.iterrows():
            rows.append({"base": base, "ratio": ratio, "headline": spec["headline"], **r})
    df = pd.DataFrame(rows)
    panels = [(b, m) for b in dict.fromkeys(df["base"]) for m in models]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.8), squeeze=False)
    for ax, (base, model) in zip(axes[0], panels):
        part = df[(df.base == base) & (df.model == model)]
        for meth in methods:
            m = part[part.method == meth].groupby("ratio")["value"].agg(["mean", "std"])
            if m.empty:
                continue
            ax.errorbar(
                m.index, m["mean"], yerr=m["std"].fillna(0), marker="o", capsize=3, label=meth
            )
        ax.set_xscale("log")
        ax.minorticks_off()  # only the grid's ratios are labelled
        ax.set_xticks(
            sorted(part["ratio"].unique()), [f"{r:g}" for r in sorted(part["ratio"].unique())]
        )
        ax.set_xlabel("imbalance ratio ρ = n_max / n_min (training)")
        ax.set_ylabel(f"test {part['headline'].iloc[0] if len(part) else ''}")
        ax.set_title(f"{base} / {model}")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)


def figure_names(task: str) -> list[str]:
    """The figures aggregation writes for ``task`` (no confusion matrices for multi-label tasks)."""
    from .data.tasks import get_task

    names = ["heatmap", "methods", "per_class_recall", "training_curves", "shots"]
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


def cell_runs(cells: list[dict]) -> dict[tuple, list[dict]]:
    """Each (task, model, method)'s ``run.json`` contents, one per seed (cells without one are left out)."""
    from .io import read_json

    out: dict[tuple, list[dict]] = {}
    for c in cells:
        path = Path(c["dir"]) / "run.json"
        if path.exists():
            out.setdefault((c["task"], c["model"], c["method"]), []).append(read_json(path))
    return out


def optimizer_steps(cells: list[dict]) -> pd.DataFrame:
    """Optimiser steps of each cell, from its ``run.json`` (empty when no cell records them)."""
    from .io import read_json

    rows = []
    for c in cells:
        run_path = Path(c["dir"]) / "run.json"
        if not run_path.exists():
            continue
        steps = read_json(run_path).get("optimizer_steps")
        if steps is not None:
            rows.append({**{k: c[k] for k in KEYS}, "optimizer_steps": steps})
    return pd.DataFrame(rows, columns=[*KEYS, "optimizer_steps"])


def aggregate(
    experiment: str,
    results: str | Path,
    metrics_paths,
    n_boot: int = 1000,
    boot_seed: int = 0,
    table_metrics: list[str] | None = None,
    methods: list[str] | None = None,
    models: list[str] | None = None,
    evaluation: dict | None = None,
    alpha: float = 0.05,
) -> None:
    """Write the experiment's tables and figures (module docstring).

    ``evaluation`` is the config's ``evaluation`` section (headline, tested and table metrics, per
    task kind: :func:`imbench.compare.resolve_evaluation`); ``table_metrics`` overrides the pivots'
    metrics for every kind.
    """
    from .compare import (
        add_intervals,
        cd_figure,
        cell_replicates,
        check_evaluation,
        load_test_predictions,
        paired_table,
        ranking,
        ranking_markdown,
        resolve_evaluation,
    )

    results = Path(results)
    table_dir, fig_dir = results / "tables", results / "figures"
    table_dir.mkdir(parents=True, exist_ok=True)
    fig_dir.mkdir(parents=True, exist_ok=True)
    cells = load_cells(metrics_paths)
    methods = methods or list(dict.fromkeys(c["method"] for c in cells))
    models = models or list(dict.fromkeys(c["model"] for c in cells))
    evaluation = dict(evaluation or {})
    if table_metrics:
        evaluation["metrics"] = table_metrics
    kinds = {c["task"]: c["kind"] for c in cells}
    check_evaluation(evaluation, kinds.values())
    specs = {task: resolve_evaluation(evaluation, kind) for task, kind in kinds.items()}

    long = long_table(cells, experiment)
    per_class = per_class_table(cells)
    reps = cell_replicates(
        cells, load_test_predictions(cells), specs, n_boot=n_boot, seed=boot_seed
    )
    paired = paired_table(reps, alpha=alpha)
    # The many/medium/few-shot recalls join the summary as test-split metrics (after the others).
    shots = shots_table(cells, tuple(evaluation.get("shot_thresholds") or SHOT_THRESHOLDS))
    long_shots = pd.concat([long, shots_long(shots, experiment)], ignore_index=True)
    summary = add_intervals(
        summarise_seeds(long_shots, ["task", "model", "method", "split", "metric"]),
        long_shots,
        reps,
        alpha=alpha,
    )
    write_csv(table_dir / "metrics_long.csv", long)
    write_csv(table_dir / "summary.csv", with_ratio_column(summary))
    write_csv(table_dir / "per_class.csv", per_class)
    write_csv(table_dir / "bootstrap.csv", bootstrap_table(cells))
    write_csv(table_dir / "paired_vs_ce.csv", with_ratio_column(paired))
    write_csv(table_dir / "shots.csv", shots)

    rank = ranking(long, specs, methods, alpha=alpha)
    write_csv(table_dir / "ranking.csv", rank["table"])
    write_text(table_dir / "ranking.md", ranking_markdown(rank, experiment, alpha))
    cd_figure(rank, fig_dir / "critical_difference.png", alpha=alpha)

    # The LMF paper's published test numbers beside ours, where a cell matches (real tasks only);
    # BBFL's numbers come from private data and are shown as context, never compared.
    from .latex import latex_pivot
    from .paper import (
        bbfl_context_markdown,
        paper_vs_ours,
        paper_vs_ours_markdown,
        paper_vs_ours_per_class,
        paper_vs_ours_per_class_markdown,
    )

    pvo = paper_vs_ours(summary, cell_runs(cells))
    pvo_class = paper_vs_ours_per_class(per_class)
    write_csv(table_dir / "paper_vs_ours.csv", pvo)
    write_csv(table_dir / "paper_vs_ours_per_class.csv", pvo_class)
    write_text(
        table_dir / "paper_vs_ours.md",
        "# Published (LMF paper) vs ours\n\n"
        + paper_vs_ours_markdown(pvo)
        + "\n\n"
        + paper_vs_ours_per_class_markdown(pvo_class)
        + "\n\n"
        + bbfl_context_markdown()
        + "\n",
    )

    steps = optimizer_steps(cells)
    for task, spec in specs.items():
        n_seeds = len({c["seed"] for c in cells if c["task"] == task})
        headline = spec["headline"]
        md = task_markdown(
            task,
            summary,
            paired,
            spec,
            methods,
            models,
            n_seeds,
            alpha=alpha,
            n_boot=n_boot,
            steps=steps,
        )
        md += "\n" + shots_markdown(task, summary, shots, methods, models)
        write_text(table_dir / f"{task}.md", md + "\n")
        marks = significance_marks(paired, task, headline, alpha)
        tex = [
            f"% {task}: test set, mean [95 % interval] over {n_seeds} seed(s) (seeds and test groups for "
            f"{', '.join(spec['tested'])}; seeds only otherwise); marks: Holm p < {alpha} against ce on "
            f"{headline}; needs \\usepackage{{booktabs,amssymb}}"
        ]
        for metric in dict.fromkeys([headline, *spec["metrics"]]):
            if ((summary.task == task) & (summary.metric == metric)).any():
                tex += [
                    f"% {metric}",
                    latex_pivot(
                        summary,
                        task,
                        metric,
                        methods,
                        models,
                        marks if metric == headline else None,
                    ),
                    "",
                ]
        write_text(table_dir / f"{task}.tex", "\n".join(tex))
        make_figures(task, long, per_class, cells, headline, methods, models, fig_dir)
        shots_figure(task, shots, methods, models, fig_dir / f"{task}_shots.png")
    if any(task_ratio(t) is not None for t in specs):
        ratio_figure(long, specs, methods, models, fig_dir / RATIO_FIGURE)
    print(f"aggregated {len(cells)} cells into {table_dir} and {fig_dir}", flush=True)
