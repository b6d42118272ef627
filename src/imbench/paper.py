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
MODELS = {"EfficientNetV2": "efficientnet_v2_s", "ResNet-50": "resnet50", "DenseNet-121": "densenet121"}
METHODS = {"CCE": "ce", "Focal": "focal", "LDAM": "ldam", "BWCCE": "bwcce", "LMF": "lmf"}
METRICS = {"Acc": "accuracy", "Prec": "macro_precision", "Rec": "macro_recall", "Macro-F1": "macro_f1"}
#: Other spellings of a paper model's base name (timm's names for EfficientNetV2-S).
MODEL_ALIASES = {"efficientnetv2_s": "efficientnet_v2_s", "tf_efficientnetv2_s": "efficientnet_v2_s"}

COLUMNS = ["task", "model", "method", "metric", "paper", "ours_mean", "ours_sd", "n", "diff", "source"]


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
    for col, mapping in (("dataset", TASKS), ("model", MODELS), ("method", METHODS), ("metric", METRICS)):
        unknown = sorted(set(df[col]) - set(mapping))
        if unknown:
            raise ValueError(f"lmf_paper.csv: {col} value(s) {unknown} have no imbench name")
    return df.assign(task=df["dataset"].map(TASKS), model_key=df["model"].map(MODELS),
                     method_key=df["method"].map(METHODS), metric_key=df["metric"].map(METRICS))


def paper_vs_ours(summary: pd.DataFrame) -> pd.DataFrame:
    """Our test results (mean ± sd over seeds, in %) beside the LMF paper's, with ours − paper.

    ``summary`` is ``summary.csv`` (task, model, method, split, metric, mean, sd, n, …; fractions in
    [0, 1]). One row per matching (task, our model, method, metric) of the test split, in the paper's
    order; ``model`` is our full model name. No match → an empty table with :data:`COLUMNS`.
    """
    paper = lmf_paper()
    test = summary[summary["split"] == "test"].copy()
    if test.empty:
        return pd.DataFrame(columns=COLUMNS)
    test["model_key"] = test["model"].map(model_base)
    merged = paper.merge(test, left_on=["task", "model_key", "method_key", "metric_key"],
                         right_on=["task", "model_key", "method", "metric"], suffixes=("_paper", ""))
    if merged.empty:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.DataFrame({
        "task": merged["task"], "model": merged["model"], "method": merged["method"], "metric": merged["metric"],
        "paper": merged["value"].astype(float), "ours_mean": 100 * merged["mean"].astype(float),
        "ours_sd": 100 * merged["sd"].astype(float), "n": merged["n"], "source": merged["source"],
    })
    out["diff"] = out["ours_mean"] - out["paper"]
    return out[COLUMNS].reset_index(drop=True)


def _num(x, digits: int = 2) -> str:
    return "–" if pd.isna(x) else f"{x:.{digits}f}"


def paper_vs_ours_markdown(df: pd.DataFrame) -> str:
    """Markdown table of :func:`paper_vs_ours` (values in %, ours as mean ± sd over seeds)."""
    head = ["| task | model | method | metric | paper (%) | ours (%, mean ± sd) | seeds | ours − paper |",
            "|---|---|---|---|---:|---:|---:|---:|"]
    if df.empty:
        return "\n".join([*head, "", "No test result of this experiment matches a task/model/method/metric of "
                                      "the LMF paper (Tables 2–4)."])
    lines = list(head)
    for r in df.itertuples(index=False):
        ours = _num(r.ours_mean) + ("" if pd.isna(r.ours_sd) else f" ± {r.ours_sd:.2f}")
        diff = "–" if pd.isna(r.diff) else f"{r.diff:+.2f}"
        lines.append(f"| {r.task} | {r.model} | {r.method} | {r.metric} | {_num(r.paper)} | {ours} | {r.n} | {diff} |")
    sources = ", ".join(dict.fromkeys(df["source"]))
    lines += ["", f"Paper values: {sources} (test set). Ours: test set, mean ± sd (ddof = 1) over seeds. "
                  "Differences are in percentage points."]
    return "\n".join(lines)


def bbfl_paper() -> pd.DataFrame:
    """The BBFL paper's published numbers (context only: private data, never compared)."""
    return _read("bbfl_paper.csv")


def bbfl_context_markdown() -> str:
    """The BBFL numbers as Markdown "context" tables, one per dataset (methods × metrics, as published)."""
    df = _read("bbfl_paper.csv", dtype=str, keep_default_na=False)  # values printed exactly as published
    parts = ["## Context: the BBFL paper's published numbers", "",
             "Private datasets: shown as published, for context only; not comparable with, and never "
             "compared with, the results of this benchmark.", ""]
    notes = []
    for (dataset, kind, model), g in df.groupby(["dataset", "kind", "model"], sort=False):
        metrics = list(dict.fromkeys(g["metric"]))
        parts += [f"{dataset} ({kind}), {model}:", "", "| method | " + " | ".join(metrics) + " |",
                  "|---|" + "---:|" * len(metrics)]
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
