"""The paper experiment files (experiments/*.yaml) and `imbench plan`."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import timm
import yaml

from imbench import models, plan
from imbench.config import check_config
from imbench.data.registry import DATASETS
from imbench.data.tasks import TASKS
from imbench.methods import METHODS, get_method, method_kinds
from imbench.models import is_model

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
NAMES = ["lmf", "bbfl", "dong", "le2020", "all", "ratio_sweep", "backbones", "ratio_demo"]
#: Small grids on the embedded data that CI runs end to end (fewer seeds than a paper grid).
DEMOS = {"ratio_demo"}
# The tasks of experiments/all.yaml: those of every dataset the registry puts in that grid.
ALL_GRID = {task.name for spec in DATASETS.values() if spec.in_all_grid for task in spec.tasks}
REAL_TASKS = [t for t in TASKS if t in ALL_GRID]
# Grids on the embedded synthetic data that CI runs end to end (not paper grids: 2 seeds).
EMBEDDED = ["longtail_demo"]


@pytest.fixture(scope="module")
def schema():
    with open(ROOT / "workflow" / "schemas" / "config.schema.yaml") as fh:
        return yaml.safe_load(fh)


def load(name: str) -> dict:
    with open(EXPERIMENTS / f"{name}.yaml") as fh:
        return yaml.safe_load(fh)


def merged(name: str) -> dict:
    """What Snakemake sees with --configfile experiments/<name>.yaml (merged over config.yaml)."""
    return plan.load_config([EXPERIMENTS / f"{name}.yaml"], base=ROOT / "config.yaml")


@pytest.fixture
def models_checked_by_imbench(monkeypatch):
    """check_config validated model names with timm.is_model; imbench.models.is_model also knows the
    torchvision and le2020 forms. Until config.py calls it, timm.is_model is widened for this test
    (a no-op once config.py validates with imbench.models.is_model)."""
    real = timm.is_model
    busy = []

    def widened(name):
        if busy:  # imbench.models.is_model asks timm itself
            return real(name)
        busy.append(True)
        try:
            return real(name) or is_model(name)
        finally:
            busy.pop()

    monkeypatch.setattr(timm, "is_model", widened)


def test_every_experiment_file_is_there():
    assert sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")) == sorted(NAMES + EMBEDDED)


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_experiment_is_valid(name, schema):
    cfg = load(name)
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(cfg))
    assert not list(validator.iter_errors(merged(name)))
    assert cfg["experiment"] == name and cfg["tasks"] == ["synthetic"]
    assert check_config(merged(name)) == []


@pytest.mark.parametrize("name", NAMES)
def test_experiment_is_complete_and_valid(name, schema):
    cfg = load(name)
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(cfg)
    ]
    assert not errors, errors  # complete on its own (every required key) and schema-valid
    assert not list(validator.iter_errors(merged(name)))
    assert cfg["experiment"] == name
    assert len(cfg["seeds"]) >= (2 if name in DEMOS else 3)
    for key in ("protocol_overrides", "method_params", "split"):
        assert key in cfg, f"{name}.yaml should state {key}"
    bad = [m for m in cfg["models"] if not is_model(m)]
    assert not bad, [models.parse_error(m) for m in bad]


@pytest.mark.parametrize("name", NAMES)
def test_experiment_passes_check_config(name, models_checked_by_imbench):
    cfg = merged(name)
    skips = check_config(cfg)
    if name == "all":  # single-label-only methods on the multi-label odir task
        assert {(t, m) for t, m, _ in skips} == {
            ("odir", m) for m in METHODS if "multilabel" not in method_kinds(m)
        }
        assert {"ldam", "bwcce", "vs_loss", "la_posthoc"} <= {m for _, m, _ in skips}
    else:
        assert skips == []


def test_backbones_grid_at_native_input_sizes():
    cfg = load("backbones")
    assert [models.base_name(m) for m in cfg["models"]] == [
        "convnext_tiny",
        "vit_small_patch16_224",
        "swin_tiny_patch4_window7_224",
        "efficientnet_b0",
    ]
    assert cfg["model_image_size"] == {m: models.input_size(m) for m in cfg["models"]}
    assert cfg["protocol_overrides"]["linear_probe"] is False


def test_ratio_sweep_grid():
    cfg = load("ratio_sweep")
    assert cfg["tasks"] == ["ham10000", "isic2019"]
    assert cfg["imbalance"]["ratio"] == [10, 50, 100, 200]
    assert load("backbones")["methods"] == cfg["methods"]
    from imbench.data.imbalance import expand_tasks

    assert expand_tasks(cfg["tasks"], cfg) == [
        f"{t}@rho{r}" for t in cfg["tasks"] for r in cfg["imbalance"]["ratio"]
    ]


def test_lmf_grid():
    cfg = load("lmf")
    assert cfg["protocol"] == "lmf"
    assert cfg["tasks"] == ["ham10000", "isic2019", "odir_eye"]
    assert cfg["models"] == [
        "efficientnet_v2_s.torchvision",
        "resnet50.tv2_in1k",
        "densenet121.tv_in1k",
    ]
    # the paper's CCE, Focal, LDAM, BWCCE, LMF as its official code builds them
    assert cfg["methods"] == ["ce", "focal_lmf", "ldam_lmf", "bwcce", "lmf"]
    heads = {m: get_method(m).head for m in cfg["methods"]}
    assert set(heads.values()) == {"linear"}  # lmf and its LDAM baseline share the head
    assert cfg["method_params"]["lmf"] == {"alpha": "paper", "beta": "paper"}
    assert models.parse_model_name(cfg["models"][0]).weights == "IMAGENET1K_V1"
    # The paper's α/β are found for every cell (Table 6).
    from imbench.methods import resolve_params

    got = {
        (t, models.base_name(m)): resolve_params("lmf", cfg["method_params"]["lmf"], t, m)
        for t in cfg["tasks"]
        for m in cfg["models"]
    }
    assert got[("ham10000", "efficientnet_v2_s")] == {"alpha": 1.0, "beta": 2.0}
    assert got[("ham10000", "resnet50")] == {"alpha": 0.5, "beta": 1.0}
    assert got[("isic2019", "densenet121")] == {"alpha": 1.0, "beta": 2.0}


def test_bbfl_assumptions_are_commented():
    text = (EXPERIMENTS / "bbfl.yaml").read_text()
    cfg = load("bbfl")
    assert cfg["models"] == ["inception_v3", "mobilenetv2_100", "resnet50"]
    assert cfg["methods"] == [
        "ce",
        "ros",
        "rus",
        "cost_sensitive",
        "thresholding",
        "focal",
        "batch_balanced",
        "bbfl",
    ]
    assert set(cfg["tasks"]) == {"ham10000_mel", "odir_glaucoma", "ham10000"}
    # every training setting is an explicit, commented assumption
    lines = {line.split(":")[0].strip(): line for line in text.splitlines() if ":" in line}
    for key in cfg["protocol_overrides"]:
        assert "#" in lines[key], f"bbfl.yaml: protocol_overrides.{key} has no comment"
    assert text.count("ASSUMPTION") >= 10


def test_dong_and_le2020_say_what_they_measure():
    dong = load("dong")
    assert dong["tasks"] == ["odir"] and dong["methods"] == ["ce", "focal"]
    assert dong["models"] == ["resnet50", "resnet101", "seresnext101_32x4d"]
    text = (EXPERIMENTS / "dong.yaml").read_text()
    assert "mean_f2" in text and "ODIR challenge score" in text
    le = load("le2020")
    assert le["tasks"] == ["ham10000"] and le["methods"] == [
        "ce",
        "cost_sensitive",
        "focal",
        "cw_focal",
    ]
    assert le["models"][0].startswith("le2020_resnet50")
    text = (EXPERIMENTS / "le2020.yaml").read_text()
    assert "5-fold" in text and "test-time augmentation" in text
    assert le["split"]["cv_folds"] == 5 and le["protocol_overrides"]["tta"] == "flips"
    assert "top3_accuracy" in text


def test_dong_marks_its_assumptions_and_posthoc_describes_it_as_it_is():
    from imbench.methods import posthoc

    text = (EXPERIMENTS / "dong.yaml").read_text()
    odir_line = next(line for line in text.splitlines() if line.strip().startswith("- odir"))
    assert "ASSUMPTION" in odir_line  # ODIR-5K as Dong's data set is our assumption
    header = text.split("experiment:")[0]
    assert "ASSUMPTION: that ODIR-5K" in " ".join(header.replace("#", " ").split())
    # no module says that the dong experiment fits thresholds when it runs no thresholding cell
    assert "thresholding" not in load("dong")["methods"]
    doc = " ".join(posthoc.__doc__.split())
    assert "experiment sets" not in doc and "runs no thresholding" in doc


def test_all_is_the_union():
    cfg = load("all")
    assert sorted(cfg["tasks"]) == sorted(REAL_TASKS)
    # every registered method, without listing them: a new method needs no edit of all.yaml
    assert cfg["methods"] == ["all", "variants"]
    assert sorted(merged("all")["methods"]) == sorted(METHODS)
    # the paper experiments' models (the presets ratio_sweep, backbones and ratio_demo are not papers)
    union = {m for name in ("lmf", "bbfl", "dong", "le2020") for m in load(name)["models"]}
    assert union <= set(cfg["models"])


# ----------------------------------------------------------------------------- plan


def test_config_merges_like_snakemake(tmp_path):
    base = tmp_path / "config.yaml"
    base.write_text(
        yaml.safe_dump(
            {
                "experiment": "default",
                "tasks": ["synthetic"],
                "seeds": [0, 1, 2],
                "method_params": {"focal": {"gamma": 1.0}},
                "synthetic": {"n_images": 500, "seed": 3},
            }
        )
    )
    exp = tmp_path / "x.yaml"
    exp.write_text(
        yaml.safe_dump(
            {
                "experiment": "x",
                "seeds": [7],
                "method_params": {"ldam": {"s": 10}},
                "synthetic": {"n_images": 900},
            }
        )
    )
    cfg = plan.load_config([exp], base=base)
    assert cfg["experiment"] == "x"
    assert cfg["seeds"] == [7]  # lists replace
    assert cfg["tasks"] == ["synthetic"]  # untouched keys stay
    assert cfg["method_params"] == {"focal": {"gamma": 1.0}, "ldam": {"s": 10}}  # dicts merge
    assert cfg["synthetic"] == {"n_images": 900, "seed": 3}
    assert plan.load_config([exp], base=tmp_path / "absent.yaml")["seeds"] == [7]


SMALL = {
    "experiment": "small",
    "tasks": ["odir_glaucoma", "odir"],
    "models": ["resnet50", "test_resnet"],
    "methods": ["ce", "ros", "rus", "ldam", "thresholding"],
    "seeds": [0, 1, 2],
    "protocol": "demo",
    "protocol_overrides": {"epochs": 4, "batch_size": 64, "image_size": 448},
    "split": {"seed": 0, "fractions": [0.6, 0.2, 0.2]},
}


def test_plan_numbers_on_a_small_grid():
    p = plan.make_plan(SMALL, {"test_resnet": 4000})
    # odir_glaucoma: 5 methods × 2 models × 3 seeds = 30; odir (multi-label): ldam skipped → 4 × 2 × 3 = 24
    assert p.n_cells == 54
    assert p.n_posthoc == 2 * 2 * 3  # thresholding on both tasks
    assert p.n_trained == 42
    assert p.skipped == [
        ("odir", "ldam", "method 'ldam' has no meaning for multilabel task 'odir'; skipped")
    ]
    rows = {(r.task, r.model, r.method): r for r in p.rows}
    # odir_glaucoma: 2,873 N + 284 G eyes; 60 % for training → 1,724 + 170 = 1,894
    ce = rows[("odir_glaucoma", "resnet50", "ce")]
    assert (ce.n_train, ce.samples_per_epoch, ce.train_images) == (1894, 1894, 1894 * 4)
    assert rows[("odir_glaucoma", "resnet50", "ros")].samples_per_epoch == 2 * 1724  # K · n_max
    assert rows[("odir_glaucoma", "resnet50", "rus")].samples_per_epoch == 2 * 170  # K · n_min
    assert rows[("odir_glaucoma", "resnet50", "thresholding")].train_images == 0
    # budget: steps gives every method ce's epoch
    steps = {
        (r.task, r.method): r
        for r in plan.make_plan(
            {**SMALL, "protocol_overrides": {**SMALL["protocol_overrides"], "budget": "steps"}},
            {"test_resnet": 4000},
        ).rows
    }
    assert {steps[("odir_glaucoma", m)].samples_per_epoch for m in ("ce", "ros", "rus")} == {1894}
    # validation 20 % of 3,157 = 631 every epoch, plus validation and test once at the end
    assert ce.eval_images == 631 * 4 + 631 + 631
    # throughput: the table's 1,218 images/s at 224 px scaled to 448 px; test_resnet as given
    assert p.throughput["resnet50"][0] == pytest.approx(1218.0 / 4)
    assert p.throughput["test_resnet"] == (4000.0, "given")
    assert ce.gpu_hours == pytest.approx((1894 * 4 / 304.5 + 3786 / (3 * 304.5)) / 3600)
    expected = sum(r.gpu_hours * 3 for r in p.rows if r.trains)
    assert p.gpu_hours == pytest.approx(expected) and p.gpu_hours > 0
    # odir: 3,499 patients by sampling class; ROS tops up to 8 × the largest class (N: 1,139 × 0.6 → 683)
    assert rows[("odir", "test_resnet", "ros")].samples_per_epoch == 8 * round(1139 * 0.6)


def test_plan_cli(tmp_path, capsys):
    exp = tmp_path / "small.yaml"
    exp.write_text(yaml.safe_dump(SMALL))
    assert (
        plan.main(
            ["--configfile", str(exp), "--no-base", "--images-per-second", '{"test_resnet": 4000}']
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "cells: 54 (42 trained + 12 post-hoc)" in out
    assert "skipped: method 'ldam' has no meaning for multilabel task 'odir'" in out
    assert "GPU-hours (estimate)" in out and "estimates" in out.lower()
    assert plan.main(["--configfile", str(exp), "--no-base", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_cells"] == 54 and data["unknown_models"] == ["test_resnet"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SMALL, "models": ["no_such_model"]}))
    assert plan.main(["--configfile", str(bad), "--no-base"]) == 2
    assert "no_such_model" in capsys.readouterr().err


def test_plan_reads_measured_throughput(tmp_path):
    for i, (device, ips) in enumerate([("cuda", 900.0), ("cuda", 1100.0), ("cpu", 20.0)]):
        cell = tmp_path / f"c{i}"
        cell.mkdir()
        (cell / "run.json").write_text(
            json.dumps(
                {
                    "model": "resnet50",
                    "hardware": {"device": device},
                    "timings": {"train_images_per_second": ips},
                }
            )
        )
    assert plan.measured_throughput(tmp_path) == {"resnet50": 1000.0}  # median of the GPU runs


@pytest.mark.parametrize("name", NAMES)
def test_plan_runs_on_every_experiment(name):
    p = plan.make_plan(merged(name))
    assert p.n_cells > 0
    if name not in DEMOS:  # the embedded demos train a tiny model on the CPU (no GPU estimate)
        assert p.gpu_hours > 0 and not p.unknown_models


def test_plan_counts_fold_models_and_per_model_sizes():
    base = plan.make_plan(SMALL, {"test_resnet": 4000})
    cv = {
        **SMALL,
        "split": {**SMALL["split"], "cv_folds": 4},
        "protocol_overrides": {**SMALL["protocol_overrides"], "tta": "flips"},
        "model_image_size": {"resnet50": 224},
    }
    p = plan.make_plan(cv, {"test_resnet": 4000})
    assert p.folds == 4 and p.n_cells == base.n_cells
    assert p.image_sizes == {"resnet50": 224, "test_resnet": 448}
    assert p.throughput["resnet50"][0] == pytest.approx(
        1218.0
    )  # the table's rate at 224 px, unscaled
    ce = {(r.task, r.model, r.method): r for r in p.rows}[("odir_glaucoma", "test_resnet", "ce")]
    # pool = 60 % train (1,894) + 20 % val (631) = 2,525; each fold model trains on 3/4 of it
    fold_train, fold_val = round(1894 * (2525 * 3 / 4 / 1894)), round(2525 / 4)
    assert ce.samples_per_epoch == fold_train
    assert ce.train_images == fold_train * 4 * 4  # 4 epochs × 4 fold models
    # per fold: validation every epoch, then validation and test once with 4 TTA views
    assert ce.eval_images == (fold_val * 4 + (fold_val + 631) * 4) * 4
    out = plan.format_plan(p)
    assert "ensemble of 4 fold models" in out and "resnet50 224 px" in out
