"""Published numbers shipped as facts, and our results beside them.

``resources/lmf_paper.csv``
    The LMF paper's test-set metrics (arXiv 2212.12741 v2, Tables 2–4, in %), one row per
    dataset × model × method × metric, in the paper's own names, with the table each came from.
    The Covid-19 rows are left out: no imbench task uses that dataset.
``resources/bbfl_paper.csv``
    The BBFL paper's published numbers (abstract). Its datasets are private, so they are context
    only: :func:`bbfl_context_markdown` prints them, nothing compares them with our results.

The paper's names map to ours with :data:`TASKS`, :data:`MODELS`, :data:`METHODS` and :data:`METRICS`.
Our model names may carry a timm pretrained tag (``resnet50.tv2_in1k``); a model matches a paper model
by its base name before the first ``.`` (``timm`` spellings of EfficientNetV2-S are accepted too).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

TASKS = {"ODIR-5K": "odir_eye", "HAM-10K": "ham10000", "ISIC-2019": "isic2019"}
MODELS = {
    "EfficientNetV2": "efficientnet_v2_s",
    "ResNet-50": "resnet50",
    "DenseNet-121": "densenet121",
}
#: Paper method → our methods compared with it: the exact reproduction first (``focal_lmf``/``ldam_lmf``
#: build the LMF code's Focal and LDAM baselines), then our standard variant, whose departures
#: (class weights, head) the departures column lists.
METHODS = {
    "CCE": ("ce",),
    "Focal": ("focal_lmf", "focal"),
    "LDAM": ("ldam_lmf", "ldam"),
    "BWCCE": ("bwcce",),
    "LMF": ("lmf",),
}
METRICS = {
    "Acc": "accuracy",
    "Prec": "macro_precision",
    "Rec": "macro_recall",
    "Macro-F1": "macro_f1",
}
#: Other spellings of a paper model's base name (timm's names for EfficientNetV2-S).
MODEL_ALIASES = {
    "efficientnetv2_s": "efficientnet_v2_s",
    "tf_efficientnetv2_s": "efficientnet_v2_s",
}

COLUMNS = [
    "task",
    "model",
    "method",
    "metric",
    "paper",
    "ours_mean",
    "ours_sd",
    "n",
    "diff",
    "source",
    "departures",
]

#: The LMF paper's training setting (official code Adnan-Sadi/LMFLOSS, config.ini and train.py; see
#: docs/methods.md), in the terms :func:`resolved_setting` reads from a cell's ``run.json``.
LMF_SETTING = {
    "split": "image-level (stratified, not grouped)",
    "precision": "fp32",
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 5e-4,
    "scheduler": "step",
    "step_size": 30,
    "step_gamma": 0.1,
    "epochs": 100,
    "batch_size": 32,
    "image_size": 224,
    "augment": "none",
    "normalize": "none",
    "pretrained": True,
    "budget": "epochs",
}
#: Per method: the head and class weights of the LMF code's losses (all on a plain linear head; the
#: LDAM margins double as class weights for LDAM, as focal α, and inside LMF).
LMF_METHOD_SETTING = {
    "ce": {"head": "linear", "class_weights": "none"},
    "focal": {"head": "linear", "class_weights": "margins"},
    "ldam": {"head": "linear", "class_weights": "margins"},
    "focal_lmf": {"head": "linear", "class_weights": "margins"},
    "ldam_lmf": {"head": "linear", "class_weights": "margins"},
    "bwcce": {"head": "linear", "class_weights": "bwcce"},
    "lmf": {"head": "linear", "class_weights": "margins"},
}


def _first(run: dict, key: str):
    """``key`` from a run.json: its ``resolved`` block, the top level, then the protocol settings."""
    for where in (run.get("resolved") or {}, run, run.get("settings") or {}):
        if isinstance(where, dict) and key in where:
            return where[key]
    return None


def resolved_setting(run: dict) -> dict:
    """The settings a paper comparison checks, as recorded in a cell's ``run.json`` (None: not recorded)."""
    out = {k: _first(run, k) for k in LMF_SETTING if k not in ("split",)}
    grouped = _first(run, "split_grouped")
    if grouped is None and isinstance(run.get("split"), dict):
        grouped = run["split"].get("grouped")
    out["split"] = (
        None
        if grouped is None
        else ("grouped by lesion/patient" if grouped else "image-level (stratified, not grouped)")
    )
    info = run.get("method_info") or {}
    out["head"] = _first(run, "head") or info.get("head")
    out["class_weights"] = _first(run, "class_weights")
    return out


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
    return a == b


def departures(runs: list[dict], method: str) -> str:
    """Every way the cells ``runs`` (one per seed) depart from the LMF paper's setting for ``method``.

    ``key: ours (paper: theirs)`` items joined by ``; ``, derived from the recorded settings; a setting
    the run.json does not record is listed as ``key: not recorded``; several seeds with different
    values list all of them.
    """
    paper = {**LMF_SETTING, **LMF_METHOD_SETTING.get(method, {})}
    seen = [resolved_setting(r) for r in runs]
    items = []
    for key, theirs in paper.items():
        values = list(dict.fromkeys(repr(s.get(key)) for s in seen))
        ours = [s.get(key) for s in seen]
        if all(v is None for v in ours):
            items.append(f"{key}: not recorded")
        elif not all(_same(v, theirs) for v in ours):
            shown = ", ".join(v.strip("'") for v in values)
            items.append(f"{key}: {shown} (paper: {theirs})")
    if len(runs) > 1:
        items.append(f"runs: {len(runs)} seeds (paper: one run)")
    return "; ".join(items) if items else "none"


def _read(name: str, **kwargs) -> pd.DataFrame:
    with resources.files("imbench").joinpath("resources", name).open() as fh:
        return pd.read_csv(fh, **kwargs)


def model_base(name: str) -> str:
    """Our model name reduced to the paper's key: tag dropped, known aliases resolved."""
    base = str(name).split(".")[0]
    return MODEL_ALIASES.get(base, base)


def lmf_paper() -> pd.DataFrame:
    """The LMF paper's facts with our names added (``task``, ``model_key``, ``method_key``, ``metric_key``)."""
    df = _read("lmf_paper.csv")
    for col, mapping in (
        ("dataset", TASKS),
        ("model", MODELS),
        ("method", METHODS),
        ("metric", METRICS),
    ):
        unknown = sorted(set(df[col]) - set(mapping))
        if unknown:
            raise ValueError(f"lmf_paper.csv: {col} value(s) {unknown} have no imbench name")
    return df.assign(
        task=df["dataset"].map(TASKS),
        model_key=df["model"].map(MODELS),
        method_key=df["method"].map(lambda m: METHODS[m][0]),
        metric_key=df["metric"].map(METRICS),
    )


def paper_vs_ours(
    summary: pd.DataFrame, runs: dict[tuple, list[dict]] | None = None
) -> pd.DataFrame:
    """Our test results (mean ± sd over seeds, in %) beside the LMF paper's, with ours − paper.

    ``summary`` is ``summary.csv`` (task, model, method, split, metric, mean, sd, n, …; fractions in
    [0, 1]). One row per matching (task, our model, method, metric) of the test split, in the paper's
    order; ``model`` is our full model name. No match → an empty table with :data:`COLUMNS`.
    ``runs`` maps (task, model, method) to the cells' ``run.json`` contents; ``departures`` lists how
    they depart from the paper's setting (:func:`departures`; "unknown" without ``runs``).
    """
    paper = lmf_paper()
    # every method of ours compared with the paper's (the exact reproduction and our standard one)
    paper = paper.assign(method_key=paper["method"].map(METHODS)).explode(
        "method_key", ignore_index=True
    )
    test = summary[summary["split"] == "test"].copy()
    if test.empty:
        return pd.DataFrame(columns=COLUMNS)
    test["model_key"] = test["model"].map(model_base)
    merged = paper.merge(
        test,
        left_on=["task", "model_key", "method_key", "metric_key"],
        right_on=["task", "model_key", "method", "metric"],
        suffixes=("_paper", ""),
    )
    if merged.empty:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.DataFrame(
        {
            "task": merged["task"],
            "model": merged["model"],
            "method": merged["method"],
            "metric": merged["metric"],
            "paper": merged["value"].astype(float),
            "ours_mean": 100 * merged["mean"].astype(float),
            "ours_sd": 100 * merged["sd"].astype(float),
            "n": merged["n"],
            "source": merged["source"],
        }
    )
    out["diff"] = out["ours_mean"] - out["paper"]
    out["departures"] = [
        departures(runs[key], key[2]) if runs and runs.get(key) else "unknown (no run.json)"
        for key in zip(out["task"], out["model"], out["method"])
    ]
    return out[COLUMNS].reset_index(drop=True)


def _num(x, digits: int = 2) -> str:
    return "–" if pd.isna(x) else f"{x:.{digits}f}"


def paper_vs_ours_markdown(df: pd.DataFrame) -> str:
    """Markdown table of :func:`paper_vs_ours` (values in %, ours as mean ± sd over seeds)."""
    head = [
        "| task | model | method | metric | paper (%) | ours (%, mean ± sd) | seeds | ours − paper | departures |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    if df.empty:
        return "\n".join(
            [
                *head,
                "",
                "No test result of this experiment matches a task/model/method/metric of "
                "the LMF paper (Tables 2–4).",
            ]
        )
    lines = list(head)
    for r in df.itertuples(index=False):
        ours = _num(r.ours_mean) + ("" if pd.isna(r.ours_sd) else f" ± {r.ours_sd:.2f}")
        diff = "–" if pd.isna(r.diff) else f"{r.diff:+.2f}"
        dep = getattr(r, "departures", "unknown")
        lines.append(
            f"| {r.task} | {r.model} | {r.method} | {r.metric} | {_num(r.paper)} | {ours} | {r.n} | {diff} "
            f"| {dep} |"
        )
    sources = ", ".join(dict.fromkeys(df["source"]))
    lines += [
        "",
        f"Paper values: {sources} (test set). Ours: test set, mean ± sd (ddof = 1) over seeds. "
        "Differences are in percentage points. Departures: every setting of our cells (read from "
        "their run.json) that differs from the paper's official code (Adnan-Sadi/LMFLOSS: image-level "
        "split, fp32, Adam 1e-4, weight decay 5e-4, StepLR, 100 epochs, batch 32, 224 px, no "
        "augmentation or normalisation, ImageNet weights, linear heads, LDAM margins as class weights "
        "and focal α); a row without departures compares like with like.",
    ]
    return "\n".join(lines)


PER_CLASS_COLUMNS = [
    "task",
    "model",
    "method",
    "class",
    "paper_train_n",
    "ours_train_n",
    "paper",
    "ours_mean",
    "ours_sd",
    "n",
    "diff",
    "source",
]


def lmf_paper_per_class() -> pd.DataFrame:
    """The LMF paper's Table 5 (per-class test F1 in %, EfficientNetV2), with our task and method names."""
    df = _read("lmf_paper_per_class.csv")
    return df.assign(
        task=df["dataset"].map(TASKS),
        model_key=df["model"].map(MODELS),
        method_key=df["method"].map(METHODS),
        class_key=df["class"].str.lower(),
    )


def paper_vs_ours_per_class(per_class: pd.DataFrame) -> pd.DataFrame:
    """Our per-class test F1 (mean ± sd over seeds, in %) beside the paper's Table 5.

    ``per_class`` is ``per_class.csv`` (task, model, method, seed, class, train_count, f1, …). Classes
    match by name, ignoring case; the paper's Focal and LDAM rows are compared with both of our
    variants, as in :func:`paper_vs_ours`. No match → an empty table with :data:`PER_CLASS_COLUMNS`.
    """
    if per_class.empty:
        return pd.DataFrame(columns=PER_CLASS_COLUMNS)
    paper = lmf_paper_per_class().explode("method_key", ignore_index=True)
    ours = per_class.assign(
        model_key=per_class["model"].map(model_base),
        class_key=per_class["class"].astype(str).str.lower(),
    )
    agg = ours.groupby(["task", "model", "model_key", "method", "class_key"], as_index=False).agg(
        ours_mean=("f1", "mean"),
        ours_sd=("f1", "std"),
        n=("f1", "count"),
        ours_train_n=("train_count", "mean"),
    )
    merged = paper.merge(
        agg,
        left_on=["task", "model_key", "method_key", "class_key"],
        right_on=["task", "model_key", "method", "class_key"],
        suffixes=("_paper", ""),
    )
    if merged.empty:
        return pd.DataFrame(columns=PER_CLASS_COLUMNS)
    out = pd.DataFrame(
        {
            "task": merged["task"],
            "model": merged["model"],
            "method": merged["method"],
            "class": merged["class"],
            "paper_train_n": merged["train_n"],
            "ours_train_n": merged["ours_train_n"],
            "paper": merged["value"].astype(float),
            "ours_mean": 100 * merged["ours_mean"].astype(float),
            "ours_sd": 100 * merged["ours_sd"].astype(float),
            "n": merged["n"],
            "source": merged["source"],
        }
    )
    out["diff"] = out["ours_mean"] - out["paper"]
    return out[PER_CLASS_COLUMNS].reset_index(drop=True)


def paper_vs_ours_per_class_markdown(df: pd.DataFrame) -> str:
    head = [
        "## Per-class F1 (the paper's Table 5, EfficientNetV2)",
        "",
        "| task | model | method | class | training images (paper / ours) | paper (%) | ours (%, mean ± sd) "
        "| seeds | ours − paper |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    if df.empty:
        return "\n".join(
            [*head, "", "No per-class test result of this experiment matches the paper's Table 5."]
        )
    lines = list(head)
    for r in df.rename(columns={"class": "class_name"}).itertuples(index=False):
        ours = _num(r.ours_mean) + ("" if pd.isna(r.ours_sd) else f" ± {r.ours_sd:.2f}")
        diff = "–" if pd.isna(r.diff) else f"{r.diff:+.2f}"
        lines.append(
            f"| {r.task} | {r.model} | {r.method} | {r.class_name} | {r.paper_train_n} / "
            f"{r.ours_train_n:.0f} | {_num(r.paper)} | {ours} | {r.n} | {diff} |"
        )
    lines += [
        "",
        "Training images differ where our grouped split differs from the paper's image-level one; "
        "the departures of each method are listed in the table above.",
    ]
    return "\n".join(lines)


def bbfl_paper() -> pd.DataFrame:
    """The BBFL paper's published numbers (context only: private data, never compared)."""
    return _read("bbfl_paper.csv")


def bbfl_context_markdown() -> str:
    """The BBFL numbers as Markdown "context" tables, one per dataset (methods × metrics, as published)."""
    df = _read(
        "bbfl_paper.csv", dtype=str, keep_default_na=False
    )  # values printed exactly as published
    parts = [
        "## Context: the BBFL paper's published numbers",
        "",
        "Private datasets: shown as published, for context only; not comparable with, and never "
        "compared with, the results of this benchmark.",
        "",
    ]
    notes = []
    for (dataset, kind, model), g in df.groupby(["dataset", "kind", "model"], sort=False):
        metrics = list(dict.fromkeys(g["metric"]))
        parts += [
            f"{dataset} ({kind}), {model}:",
            "",
            "| method | " + " | ".join(metrics) + " |",
            "|---|" + "---:|" * len(metrics),
        ]
        for method, m in g.groupby("method", sort=False):
            cells = []
            for metric in metrics:
                row = m[m.metric == metric]
                if row.empty:
                    cells.append("–")
                    continue
                r = row.iloc[0]
                text = f"{r['value']}{r['unit']}"
                if r["note"]:
                    notes.append(r["note"])
                    text += f" ({chr(ord('a') + len(notes) - 1)})"
                cells.append(text)
            parts.append(f"| {method} | " + " | ".join(cells) + " |")
        parts.append("")
    parts += [f"({chr(ord('a') + i)}) {note}." for i, note in enumerate(notes)]
    parts += ["", f"Source: {', '.join(dict.fromkeys(df['source']))}."]
    return "\n".join(parts).rstrip() + "\n"
