"""LaTeX pivots: string checks only (no LaTeX compiler needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imbench.latex import escape, latex_mark, latex_pivot


def summary():
    rows = [
        # task, model, method, split, metric, mean, sd, n
        ("ham10000", "resnet50.tv2_in1k", "ce", "test", "macro_f1", 0.512, 0.020, 3),
        ("ham10000", "resnet50.tv2_in1k", "ldam_drw", "test", "macro_f1", 0.6004, 0.0151, 3),
        (
            "ham10000",
            "resnet50.tv2_in1k",
            "ldam_drw",
            "val",
            "macro_f1",
            0.9,
            0.0,
            3,
        ),  # other split: ignored
        ("ham10000", "densenet121", "ce", "test", "macro_f1", 0.700, np.nan, 1),
        ("ham10000", "densenet121", "ldam_drw", "test", "macro_f1", 0.650, 0.010, 3),
        ("ham10000", "resnet50.tv2_in1k", "ce", "test", "ece", 0.050, 0.010, 3),
        ("ham10000", "resnet50.tv2_in1k", "ldam_drw", "test", "ece", 0.090, 0.010, 3),
        ("isic2019", "densenet121", "ce", "test", "macro_f1", 0.99, 0.0, 3),  # other task: ignored
    ]
    df = pd.DataFrame(
        rows, columns=["task", "model", "method", "split", "metric", "mean", "sd", "n"]
    )
    # interval over seeds: mean ± 2 sd here (any numbers do for layout checks); none with one seed
    df["low"] = np.where(df["n"] > 1, df["mean"] - 2 * df["sd"], np.nan)
    df["high"] = np.where(df["n"] > 1, df["mean"] + 2 * df["sd"], np.nan)
    # the seeds-and-test-set interval of one row takes precedence over its seed interval
    df["low_total"] = np.nan
    df["high_total"] = np.nan
    first = (df.method == "ldam_drw") & (df.model == "densenet121")
    df.loc[first, ["low_total", "high_total"]] = [0.6, 0.7]
    return df


def test_escape():
    assert escape("ldam_drw") == r"ldam\_drw"
    assert (
        escape("a&b 50% $x #1 {y} ~ ^")
        == r"a\&b 50\% \$x \#1 \{y\} \textasciitilde{} \textasciicircum{}"
    )
    assert escape("back\\slash") == r"back\textbackslash{}slash"


def test_latex_pivot_layout_values_and_bold():
    tex = latex_pivot(
        summary(),
        "ham10000",
        "macro_f1",
        ["ce", "ldam_drw", "focal"],
        ["resnet50.tv2_in1k", "densenet121"],
    )
    lines = tex.strip().splitlines()
    assert (
        lines[0] == r"\begin{tabular}{lcc}" and lines[1] == r"\toprule" and lines[3] == r"\midrule"
    )
    assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
    assert lines[2] == r"Method & resnet50.tv2\_in1k & densenet121 \\"
    assert lines[4] == r"ce & $0.512\,[0.472, 0.552]$ & $\mathbf{0.700}$ \\"
    assert lines[5] == r"ldam\_drw & $\mathbf{0.600}\,[0.570, 0.631]$ & $0.650\,[0.600, 0.700]$ \\"
    assert lines[6] == r"focal & -- & -- \\"
    assert "0.9" not in tex and "0.99" not in tex
    assert "_" not in tex.replace(r"\_", "")  # every underscore escaped


def test_lower_is_better_metric_bolds_the_minimum_and_ties_are_all_bold():
    tex = latex_pivot(summary(), "ham10000", "ece", ["ce", "ldam_drw"], ["resnet50.tv2_in1k"])
    assert (
        r"ce & $\mathbf{0.050}\,[0.030, 0.070]$ \\" in tex
        and r"ldam\_drw & $0.090\,[0.070, 0.110]$ \\" in tex
    )
    tex = latex_pivot(
        summary(),
        "ham10000",
        "ece",
        ["ce", "ldam_drw"],
        ["resnet50.tv2_in1k"],
        higher_is_better=True,
    )
    assert r"$\mathbf{0.090}\,[0.070, 0.110]$" in tex
    s = summary()
    s.loc[(s.model == "densenet121") & (s.method == "ldam_drw"), "mean"] = 0.700
    tex = latex_pivot(s, "ham10000", "macro_f1", ["ce", "ldam_drw"], ["densenet121"], digits=2)
    assert tex.count(r"\mathbf{0.70") == 2


def test_significance_marks_become_latex():
    marks = {("resnet50.tv2_in1k", "ldam_drw"): " ▲", ("densenet121", "ldam_drw"): " ▼"}
    tex = latex_pivot(
        summary(),
        "ham10000",
        "macro_f1",
        ["ce", "ldam_drw"],
        ["resnet50.tv2_in1k", "densenet121"],
        marks=marks,
    )
    assert r"$\mathbf{0.600}\,[0.570, 0.631]$$^{\blacktriangle}$" in tex
    assert r"$0.650\,[0.600, 0.700]$$^{\blacktriangledown}$" in tex
    assert "▲" not in tex and "▼" not in tex
    assert latex_mark("") == "" and latex_mark(" *") == "*" and latex_mark("_") == r"\_"


def test_empty_task_gives_a_table_of_dashes():
    tex = latex_pivot(summary(), "odir_eye", "macro_f1", ["ce"], ["resnet50"])
    assert r"ce & -- \\" in tex and tex.startswith(r"\begin{tabular}{lc}")
