"""The shipped paper numbers and the paper-vs-ours table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imbench import paper


def lmf_value(dataset, model, method, metric) -> float:
    df = paper.lmf_paper()
    row = df[
        (df.dataset == dataset)
        & (df.model == model)
        & (df.method == method)
        & (df.metric == metric)
    ]
    assert len(row) == 1
    return float(row["value"].iloc[0])


# typed from METHODS.md (appendix: LMF arXiv 2212.12741 v2, Tables 2-4)
@pytest.mark.parametrize(
    "dataset,model,method,metric,value",
    [
        ("ODIR-5K", "EfficientNetV2", "CCE", "Acc", 67.64),
        ("ODIR-5K", "EfficientNetV2", "LMF", "Macro-F1", 62.94),
        ("HAM-10K", "EfficientNetV2", "LMF", "Rec", 83.27),
        ("ISIC-2019", "EfficientNetV2", "Focal", "Prec", 71.62),
        ("HAM-10K", "ResNet-50", "Focal", "Rec", 82.74),
        ("ISIC-2019", "ResNet-50", "LDAM", "Macro-F1", 75.64),
        ("ODIR-5K", "ResNet-50", "BWCCE", "Acc", 62.77),
        ("ODIR-5K", "DenseNet-121", "BWCCE", "Prec", 66.71),
        ("HAM-10K", "DenseNet-121", "CCE", "Macro-F1", 79.51),
        ("ISIC-2019", "DenseNet-121", "LMF", "Rec", 72.39),
    ],
)
def test_lmf_csv_matches_the_published_tables(dataset, model, method, metric, value):
    assert lmf_value(dataset, model, method, metric) == pytest.approx(value, abs=1e-9)


def test_lmf_csv_shape_sources_and_names():
    df = paper.lmf_paper()
    assert (
        len(df) == 3 * 3 * 5 * 4
        and not df.duplicated(["dataset", "model", "method", "metric"]).any()
    )
    assert "Covid-19" not in set(df.dataset)
    assert set(df.split) == {"test"} and set(df.unit) == {"%"}
    assert df["value"].between(0, 100).all()
    table = {"EfficientNetV2": 2, "ResNet-50": 3, "DenseNet-121": 4}
    assert (
        df["source"] == df["model"].map(lambda m: f"LMF arXiv 2212.12741 v2 Table {table[m]}")
    ).all()
    assert set(df.task) == {"odir_eye", "ham10000", "isic2019"}
    assert set(df.model_key) == {"efficientnet_v2_s", "resnet50", "densenet121"}
    assert set(df.method_key) == {
        "ce",
        "focal_lmf",
        "ldam_lmf",
        "bwcce",
        "lmf",
    }  # the exact reproductions
    assert set(df.metric_key) == {"accuracy", "macro_precision", "macro_recall", "macro_f1"}
    # METHODS.md's mean macro-F1 over the three architectures (ISIC, LMF: 78.03)
    isic = df[(df.dataset == "ISIC-2019") & (df.method == "LMF") & (df.metric == "Macro-F1")]
    assert round(isic["value"].mean(), 2) == 78.03


def test_lmf_names_are_imbench_names():
    from imbench.methods import list_methods
    from imbench.metrics import metric_names

    assert {m for ours in paper.METHODS.values() for m in ours} <= set(list_methods())
    assert set(paper.METRICS.values()) <= set(metric_names("multiclass"))


@pytest.mark.parametrize(
    "ours,key",
    [
        ("resnet50", "resnet50"),
        ("resnet50.tv2_in1k", "resnet50"),
        ("densenet121.tv_in1k", "densenet121"),
        ("efficientnet_v2_s", "efficientnet_v2_s"),
        ("tf_efficientnetv2_s.in1k", "efficientnet_v2_s"),
        ("test_resnet", "test_resnet"),
    ],
)
def test_model_base(ours, key):
    assert paper.model_base(ours) == key


def summary_rows(rows):
    return pd.DataFrame(
        [
            {
                "task": t,
                "model": m,
                "method": meth,
                "split": split,
                "metric": metric,
                "mean": mean,
                "sd": sd,
                "n": n,
                "min": mean,
                "max": mean,
            }
            for t, m, meth, split, metric, mean, sd, n in rows
        ]
    )


def test_paper_vs_ours_differences():
    summary = summary_rows(
        [
            ("ham10000", "resnet50.tv2_in1k", "lmf", "test", "macro_f1", 0.8000, 0.0100, 3),
            (
                "ham10000",
                "resnet50.tv2_in1k",
                "lmf",
                "val",
                "macro_f1",
                0.9900,
                0.0100,
                3,
            ),  # not the test split
            ("ham10000", "resnet50.tv2_in1k", "ce", "test", "accuracy", 0.9000, np.nan, 1),
            (
                "ham10000",
                "resnet50.tv2_in1k",
                "ros",
                "test",
                "accuracy",
                0.9000,
                0.0,
                3,
            ),  # not in the paper
            (
                "ham10000",
                "resnet50.tv2_in1k",
                "ce",
                "test",
                "balanced_accuracy",
                0.5,
                0.0,
                3,
            ),  # metric not in the paper
            ("isic2019", "densenet121", "bwcce", "test", "macro_recall", 0.7000, 0.0200, 5),
            (
                "synthetic",
                "resnet50",
                "ce",
                "test",
                "accuracy",
                0.9,
                0.0,
                3,
            ),  # task not in the paper
        ]
    )
    df = paper.paper_vs_ours(summary)
    assert list(df.columns) == paper.COLUMNS
    got = {(r.task, r.model, r.method, r.metric): r for r in df.itertuples()}
    assert set(got) == {
        ("ham10000", "resnet50.tv2_in1k", "lmf", "macro_f1"),
        ("ham10000", "resnet50.tv2_in1k", "ce", "accuracy"),
        ("isic2019", "densenet121", "bwcce", "macro_recall"),
    }
    r = got[("ham10000", "resnet50.tv2_in1k", "lmf", "macro_f1")]
    assert (
        r.paper == 82.43 and r.ours_mean == pytest.approx(80.0) and r.ours_sd == pytest.approx(1.0)
    )
    assert r.diff == pytest.approx(80.0 - 82.43) and r.n == 3 and r.source.endswith("Table 3")
    r = got[("ham10000", "resnet50.tv2_in1k", "ce", "accuracy")]
    assert r.diff == pytest.approx(90.0 - 87.82) and np.isnan(r.ours_sd)
    r = got[("isic2019", "densenet121", "bwcce", "macro_recall")]
    assert r.diff == pytest.approx(70.0 - 72.89) and r.source.endswith("Table 4")

    md = paper.paper_vs_ours_markdown(df)
    assert (
        "| ham10000 | resnet50.tv2_in1k | lmf | macro_f1 | 82.43 | 80.00 ± 1.00 | 3 | -2.43 |" in md
    )
    assert "| ham10000 | resnet50.tv2_in1k | ce | accuracy | 87.82 | 90.00 | 1 | +2.18 |" in md
    assert (df.departures == "unknown (no run.json)").all()


def faithful_run(method="ldam", **changes):
    """A run.json as the LMF protocol records it, matching the paper's setting in every respect."""
    run = {
        "settings": {
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
        },
        "resolved": {
            "precision": "fp32",
            "split_grouped": False,
            "budget": "epochs",
            "head": "linear",
            "class_weights": "margins",
        },
        "method_info": {"head": "linear"},
    }
    for key, value in changes.items():
        (run["resolved"] if key in run["resolved"] else run["settings"])[key] = value
    return run


def test_departures_are_derived_from_run_json_and_follow_a_changed_setting():
    summary = summary_rows(
        [("ham10000", "resnet50.tv2_in1k", "ldam", "test", "macro_f1", 0.8, 0.01, 1)]
    )
    key = ("ham10000", "resnet50.tv2_in1k", "ldam")
    same = paper.paper_vs_ours(summary, {key: [faithful_run()]})
    assert same.departures.tolist() == ["none"]
    for change, text in [
        ({"precision": "bf16"}, "precision: bf16 (paper: fp32)"),
        ({"split_grouped": True}, "split: grouped by lesion/patient (paper: image-level"),
        ({"head": "cosine"}, "head: cosine (paper: linear)"),
        ({"class_weights": "none"}, "class_weights: none (paper: margins)"),
        ({"epochs": 30}, "epochs: 30 (paper: 100)"),
    ]:
        df = paper.paper_vs_ours(summary, {key: [faithful_run(**change)]})
        assert text in df.departures.iloc[0], (change, df.departures.iloc[0])
        assert ";" not in df.departures.iloc[0]  # the one changed setting, nothing else
    two = paper.paper_vs_ours(summary, {key: [faithful_run(), faithful_run(epochs=50)]})
    assert (
        "epochs: 100, 50 (paper: 100)" in two.departures.iloc[0]
        and "runs: 2 seeds" in two.departures.iloc[0]
    )
    missing = faithful_run()
    del missing["resolved"]["precision"]
    assert (
        "precision: not recorded"
        in paper.paper_vs_ours(summary, {key: [missing]}).departures.iloc[0]
    )
    # the paper's LDAM is compared with both our LDAMs: the exact one (ldam_lmf) and the cosine-head one
    both = summary_rows(
        [
            ("ham10000", "resnet50.tv2_in1k", m, "test", "macro_f1", 0.8, 0.01, 1)
            for m in ("ldam", "ldam_lmf")
        ]
    )
    df = paper.paper_vs_ours(
        both,
        {
            key: [faithful_run(head="cosine", class_weights="none")],
            ("ham10000", "resnet50.tv2_in1k", "ldam_lmf"): [faithful_run()],
        },
    )
    assert dict(zip(df.method, df.departures)) == {
        "ldam_lmf": "none",
        "ldam": "head: cosine (paper: linear); class_weights: none (paper: margins)",
    }
    md = paper.paper_vs_ours_markdown(
        paper.paper_vs_ours(summary, {key: [faithful_run(precision="bf16")]})
    )
    assert "| precision: bf16 (paper: fp32) |" in md


def test_paper_vs_ours_without_a_match_is_an_empty_table():
    summary = summary_rows([("synthetic", "test_resnet", "ce", "test", "macro_f1", 0.4, 0.03, 3)])
    for s in (summary, summary.iloc[:0], summary.assign(split="val")):
        df = paper.paper_vs_ours(s)
        assert df.empty and list(df.columns) == paper.COLUMNS
    md = paper.paper_vs_ours_markdown(paper.paper_vs_ours(summary))
    assert md.startswith("| task | model |") and "No test result" in md


def test_bbfl_numbers_are_context_only():
    df = paper.bbfl_paper()
    assert df["context_only"].all()
    assert set(df.dataset) == {"RNFLD", "Glaucoma"}
    value = df.set_index(["dataset", "method", "metric"])["value"]
    assert value[("RNFLD", "BBFL", "Accuracy")] == 93.0
    assert value[("RNFLD", "Thresholding", "AUC")] == 0.962
    assert value[("Glaucoma", "RUS", "Mean F1")] == 66.5
    assert value[("Glaucoma", "Cost-sensitive", "Mean F1")] == 67.8  # published as "67.8.8%"
    md = paper.bbfl_context_markdown()
    assert "context" in md.lower() and "never" in md
    assert "| BBFL | 93.0% | 84.7% | 0.971 |" in md
    assert "| Cost-sensitive | 78.3% | 67.8% (a) |" in md and '"67.8.8%"' in md


def test_lmf_csv_matches_every_number_of_the_methods_doc():
    """Every value against the appendix of METHODS.md, where the shared docs are present."""
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "shared" / "docs" / "METHODS.md"
    if not doc.exists():
        pytest.skip(f"{doc} not available")
    text = doc.read_text()
    df = paper.lmf_paper().set_index(["dataset", "model", "method", "metric"])["value"]
    checked = 0
    for table, model in (("2", "EfficientNetV2"), ("3", "ResNet-50"), ("4", "DenseNet-121")):
        block = text.split(f"Table {table}, {model}")[1].split("\n\n")[1]
        for line in block.splitlines()[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] == "Covid-19":
                continue
            for method, cell in zip(("CCE", "Focal", "LDAM", "BWCCE", "LMF"), cells[1:]):
                for metric, v in zip(("Acc", "Prec", "Rec", "Macro-F1"), cell.split("/")):
                    assert df[(cells[0], model, method, metric)] == float(v)
                    checked += 1
    assert checked == len(df) == 180


def test_table5_per_class_rows():
    df = paper.lmf_paper_per_class()
    assert len(df) == 23 * 5 and set(df.task) == {"odir_eye", "ham10000", "isic2019"}
    row = df[(df.dataset == "HAM-10K") & (df["class"] == "DF") & (df.method == "LMF")].iloc[0]
    assert row["value"] == 80.00 and row["train_n"] == 81
    per_class = pd.DataFrame(
        [
            {
                "task": "ham10000",
                "model": "efficientnet_v2_s.torchvision",
                "method": m,
                "seed": s,
                "class": "df",
                "train_count": 70,
                "f1": f,
                "precision": 0,
                "recall": 0,
                "support": 10,
            }
            for m, s, f in (("lmf", 0, 0.70), ("lmf", 1, 0.80), ("ldam", 0, 0.5), ("rus", 0, 0.1))
        ]
    )
    out = paper.paper_vs_ours_per_class(per_class)
    got = {(r["method"], r["class"]): r for _, r in out.iterrows()}
    assert set(got) == {("lmf", "DF"), ("ldam", "DF")}
    r = got[("lmf", "DF")]
    assert (
        r["paper"] == 80.0
        and r["ours_mean"] == pytest.approx(75.0)
        and r["diff"] == pytest.approx(-5.0)
    )
    assert (
        r["n"] == 2 and got[("ldam", "DF")]["paper"] == 81.25
    )  # the paper's LDAM, compared with our ldam too
    md = paper.paper_vs_ours_per_class_markdown(out)
    assert (
        "| ham10000 | efficientnet_v2_s.torchvision | lmf | DF | 81 / 70 | 80.00 | 75.00 ± 7.07 | 2 | -5.00 |"
        in md
    )
    assert paper.paper_vs_ours_per_class(per_class.assign(task="synthetic")).empty
