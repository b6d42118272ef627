"""LaTeX tables of the seed summaries (``summary.csv``), for papers and reports.

:func:`latex_pivot` writes a ``tabular`` of methods × models with ``$mean\\,[low, high]$`` cells (test split:
the mean over seeds and its 95 % interval, as in the Markdown pivots),
the best mean of each column in bold. It needs ``\\usepackage{booktabs}`` and, when significance marks
are used, ``\\usepackage{amssymb}`` (for ▲/▼ as ``\\blacktriangle``/``\\blacktriangledown``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Metrics where a smaller value is better (the best of a column is its minimum).
LOWER_IS_BETTER = frozenset({"ece", "log_loss", "brier"})

_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}

#: Marks of :func:`imbench.aggregate.significance_marks` in LaTeX (math mode, superscript).
_MARKS = {"▲": r"$^{\blacktriangle}$", "▼": r"$^{\blacktriangledown}$"}


def escape(text) -> str:
    """Escape LaTeX's special characters in plain text (``ldam_drw`` → ``ldam\\_drw``)."""
    return "".join(_ESCAPES.get(ch, ch) for ch in str(text))


def latex_mark(mark: str) -> str:
    """A significance mark in LaTeX: ▲/▼ as superscript triangles, anything else escaped."""
    mark = str(mark).strip()
    if not mark:
        return ""
    return "".join(_MARKS.get(ch, escape(ch)) for ch in mark)


def _interval(row) -> tuple[float, float] | None:
    """The seeds-and-test-set interval of a summary row where it exists, else the interval over seeds."""
    for lo, hi in (("low_total", "high_total"), ("low", "high")):
        if lo in row and not pd.isna(row[lo]) and not pd.isna(row[hi]):
            return float(row[lo]), float(row[hi])
    return None


def _cell(mean: float, interval: tuple[float, float] | None, digits: int, bold: bool) -> str:
    f = f"{{:.{digits}f}}".format
    num = f"\\mathbf{{{f(mean)}}}" if bold else f(mean)
    return f"${num}$" if interval is None else f"${num}\\,[{f(interval[0])}, {f(interval[1])}]$"


def latex_pivot(
    summary: pd.DataFrame,
    task: str,
    metric: str,
    methods: list[str],
    models: list[str],
    marks: dict | None = None,
    digits: int = 3,
    higher_is_better: bool | None = None,
) -> str:
    """Methods × models LaTeX ``tabular`` (booktabs) of ``metric`` on the test split of ``task``.

    Cells are ``$mean\\,[low, high]$`` over seeds (``$mean$`` without an interval, ``--`` when missing); the
    best mean of every column is bold (ties all bold; the minimum for :data:`LOWER_IS_BETTER` metrics
    unless ``higher_is_better`` says otherwise). ``marks`` maps ``(model, method)`` to a mark appended
    to the cell (e.g. from ``aggregate.significance_marks``: ``" ▲"``/``" ▼"``).
    """
    if higher_is_better is None:
        higher_is_better = metric not in LOWER_IS_BETTER
    sub = summary[
        (summary["task"] == task) & (summary["metric"] == metric) & (summary["split"] == "test")
    ]
    best = {}
    for model in models:
        values = sub.loc[sub["model"] == model, "mean"].dropna()
        best[model] = (
            (values.max() if higher_is_better else values.min()) if len(values) else np.nan
        )
    lines = [
        r"\begin{tabular}{l" + "c" * len(models) + "}",
        r"\toprule",
        "Method & " + " & ".join(escape(m) for m in models) + r" \\",
        r"\midrule",
    ]
    for method in methods:
        cells = []
        for model in models:
            row = sub[(sub["model"] == model) & (sub["method"] == method)]
            if row.empty or pd.isna(row["mean"].iloc[0]):
                cells.append("--")
                continue
            r = row.iloc[0]
            mean = float(r["mean"])
            text = _cell(mean, _interval(r), digits, bool(np.isclose(mean, best[model])))
            cells.append(text + latex_mark((marks or {}).get((model, method), "")))
        lines.append(escape(method) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
