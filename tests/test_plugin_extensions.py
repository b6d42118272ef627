"""Plug-ins that add a dataset (examples/plugins/my_dataset.py) or a model family
(examples/plugins/my_model.py): registered through ``imbench.register_dataset`` and
``imbench.register_model_family``, accepted by the configuration checks and ``imbench plan``, loaded
by the jobs that need them, one line for a bad one; and a grid of them through Snakemake."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import saved_registries
from test_pipeline import smk

import imbench
from imbench import model_names, plugins
from imbench.cli import main as cli_main
from imbench.config import ConfigError, validate_config
from imbench.data import registry

ROOT = Path(__file__).resolve().parents[1]
DATASET = "examples/plugins/my_dataset.py"
MODEL = "examples/plugins/my_model.py"
LOSS = "examples/plugins/my_loss.py"
TINY = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())


@pytest.fixture(autouse=True)
def clean_registries(monkeypatch):
    """Every test starts and ends with the package's own registries, in the repository's root
    (where the example plug-ins' paths start)."""
    monkeypatch.chdir(ROOT)
    with saved_registries():
        yield


def _config(**changes) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg.update(changes)
    return cfg


def _stripes_config(**changes) -> dict:
    return _config(
        plugins=[DATASET, MODEL],
        tasks=["stripes"],
        models=["tinycnn_w8", "test_resnet"],
        methods=["ce", "focal"],
        protocol_overrides={"epochs": 1, "image_size": 24, "pretrained": False},
        **changes,
    )


def test_the_public_api_is_exported_lazily():
    assert imbench.register_dataset is plugins.register_dataset
    assert imbench.register_model_family is plugins.register_model_family
    assert imbench.DatasetSpec is registry.DatasetSpec and imbench.Task is registry.Task
    assert imbench.ModelFamily is model_names.ModelFamily
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        imbench.nothing  # noqa: B018


def test_planning_accepts_the_plugin_dataset_and_model_family():
    cfg = _stripes_config()
    skips, warnings = validate_config(cfg)
    assert skips == [] and warnings == []
    task = registry.get_task("stripes")
    assert task.dataset == "stripes" and task.classes == ("horizontal", "vertical", "diagonal")
    assert registry.get_task("stripes@rho4").name == "stripes"
    counts, _, source = task.counts(cfg)
    assert counts == {"horizontal": 160, "vertical": 48, "diagonal": 16}
    assert "stripes" in registry.dataset_names()
    assert registry.datasets_using("source") == ["stripes"]  # download.stripes.source
    spec = model_names.parse_model_name("tinycnn_w8")
    assert (spec.source, spec.arch) == ("tinycnn", "tinycnn_w8")
    assert model_names.parse_model_name("le2020_tinycnn_w8").inner.source == "tinycnn"
    # each job gets the files of what it uses, and only those
    assert plugins.plugins_for(task="stripes", models=["tinycnn_w8"], method="ce") == [
        DATASET,
        MODEL,
    ]
    assert plugins.plugins_for(task="stripes@rho4", models=["test_resnet"]) == [DATASET]
    assert plugins.plugins_for(task="synthetic", models=["le2020_tinycnn_w8"]) == [MODEL]
    assert plugins.plugins_for(task="synthetic", models=["test_resnet"], method="ce") == []
    assert plugins.plugins_for(dataset="stripes") == [DATASET]


def test_without_the_plugins_the_names_are_unknown():
    with pytest.raises(ConfigError, match=r"^config key 'tasks(\.0)?': .*'stripes'"):
        validate_config(_config(tasks=["stripes"]))
    with pytest.raises(ConfigError, match=r"^config key 'models': unknown model 'tinycnn_w8'"):
        validate_config(_config(models=["tinycnn_w8"]))


def test_imbench_plan_plans_the_plugin_grid(tmp_path, capsys):
    from imbench.plan import main as plan_main

    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(_stripes_config()))
    assert plan_main(["--configfile", str(path), "--no-base"]) == 0
    out = capsys.readouterr().out
    assert "stripes" in out and "tinycnn_w8" in out


def test_the_plugin_model_family_builds_and_refuses_pretrained_weights():
    from imbench.models import (
        MissingWeightsError,
        create_model,
        input_size,
        pretrained_weights_id,
        weights_location,
    )

    plugins.load_plugins([MODEL])
    x = torch.zeros(2, 3, 24, 24)
    model = create_model("tinycnn_w8", 3)
    assert model(x).shape == (2, 3) and model.features(x).shape == (2, 32)
    assert create_model("tinycnn_w4", 5, head="cosine")(x).shape == (2, 5)
    wrapped = create_model("le2020_tinycnn_w8", 3)
    assert wrapped.features(x).shape == (2, 512)
    assert input_size("tinycnn_w8") == 32
    assert pretrained_weights_id("tinycnn_w8") == "tinycnn:tinycnn_w8"
    assert weights_location("tinycnn_w8") == "no published pretrained weights"
    with pytest.raises(MissingWeightsError, match=r"'tinycnn_w8' has no published pretrained"):
        create_model("tinycnn_w8", 3, pretrained=True)


def test_download_and_index_load_the_dataset_plugin(tmp_path, capsys):
    raw = tmp_path / "raw"
    # without the plug-in the dataset is not a choice of imbench download
    with pytest.raises(SystemExit):
        cli_main(["download", "stripes", "--out", str(raw)])
    assert "invalid choice: 'stripes'" in capsys.readouterr().err
    sha = plugins.file_sha256(ROOT / DATASET)
    args = ["--plugins", DATASET, "--plugin-sha256", sha]
    assert cli_main(["download", "stripes", "--out", str(raw), *args]) == 0
    assert sorted(p.name for p in raw.iterdir()) == ["diagonal", "horizontal", "vertical"]
    index = tmp_path / "index.csv"
    argv = ["index", "--task", "stripes", "--raw", str(raw), "--out", str(index)]
    assert cli_main([*argv, *args]) == 0
    table = pd.read_csv(index)
    assert table.label_name.value_counts().to_dict() == {
        "horizontal": 160,
        "vertical": 48,
        "diagonal": 16,
    }
    # a plug-in file edited after planning stops the job with one line
    capsys.readouterr()
    assert cli_main([*argv, "--plugins", DATASET, "--plugin-sha256", "0" * 64]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"plug-in {DATASET} changed since the workflow planned" in err[0]


def test_the_dataset_recipe_copies_a_folder_of_images(tmp_path):
    plugins.load_plugins([DATASET])
    src = tmp_path / "mine"
    for c in ("horizontal", "vertical", "diagonal"):
        (src / c).mkdir(parents=True)
        _png(src / c / "a.png")
    out = tmp_path / "raw"
    rc = cli_main(["download", "stripes", "--out", str(out), "--source", str(src)])
    assert rc == 0 and (out / "vertical" / "a.png").is_file()
    (src / "vertical" / "a.png").unlink()
    (src / "vertical").rmdir()
    assert (
        cli_main(["download", "stripes", "--out", str(tmp_path / "r2"), "--source", str(src)]) == 2
    )
    assert not (tmp_path / "r2").exists()


def _png(path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), (120, 30, 30)).save(path)


BAD_DATASET = """
import imbench
from imbench.data import registry

spec = registry.get_dataset("ham10000")
imbench.register_dataset(spec)
"""
BAD_TASK = """
import imbench

imbench.register_dataset(imbench.DatasetSpec(
    name="mine", title="mine", prepare=lambda *a, **k: None, licence="", homepage="", source="",
    tasks=(imbench.Task(name="synthetic", dataset="mine", kind="multiclass", classes=("a", "b"),
                        group_key="g", build=lambda root: None),),
))
"""
GOOD_THEN_FAILING = """
import imbench

imbench.register_dataset(imbench.DatasetSpec(
    name="mine", title="mine", prepare=lambda *a, **k: None, licence="", homepage="", source="",
    tasks=(imbench.Task(name="mine", dataset="mine", kind="multiclass", classes=("a", "b"),
                        group_key="g", build=lambda root: None),),
))
imbench.register_model_family(imbench.ModelFamily(
    source="mynet", pattern="mynet_<n>", names=r"mynet_\\d+", backbone=lambda *a: None))
raise RuntimeError("boom")
"""
FAMILY_HIDES_TIMM = """
import imbench

imbench.register_model_family(imbench.ModelFamily(
    source="mine", pattern="resnet<depth>", names=r"resnet\\d+", backbone=lambda *a: None))
"""
FAMILY_TAKES_BUILTIN_SOURCE = """
import imbench

imbench.register_model_family(imbench.ModelFamily(
    source="timm", pattern="x_<n>", names=r"x_\\d+", backbone=lambda *a: None))
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        (BAD_DATASET, r"dataset 'ham10000' exists already"),
        (BAD_TASK, r"task 'synthetic' exists already"),
        (
            FAMILY_HIDES_TIMM,
            r"model family 'mine': names '.*' matches the existing model name 'resnet",
        ),
        (FAMILY_TAKES_BUILTIN_SOURCE, r"model family 'timm' exists in imbench"),
        (GOOD_THEN_FAILING, r"failed to import \(line 11\): RuntimeError: boom"),
    ],
)
def test_a_bad_plugin_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, text, expected):
    path = tmp_path / "bad.py"
    path.write_text(text)
    before = (set(registry.DATASETS), set(registry.TASKS), set(model_names.REGISTERED_FAMILIES))
    with pytest.raises(ConfigError) as info:
        validate_config(_config(plugins=[str(path)]))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"config key 'plugins': plug-in {path}: ")
    assert re.search(expected, message), message
    after = (set(registry.DATASETS), set(registry.TASKS), set(model_names.REGISTERED_FAMILIES))
    assert after == before
    assert not plugins.DATASET_ORIGIN and not plugins.FAMILY_ORIGIN


def test_a_changed_plugin_replaces_what_it_registered(tmp_path):
    path = tmp_path / "fam.py"
    text = FAMILY_TAKES_BUILTIN_SOURCE.replace('source="timm"', 'source="mine"')
    path.write_text(text)
    plugins.load_plugins([str(path)])
    assert model_names.parse_model_name("x_3").source == "mine"
    path.write_text(text.replace("x_", "y_"))
    plugins.load_plugins([str(path)])
    assert model_names.parse_model_name("y_3").source == "mine"
    assert not model_names.is_model("x_3")


def _grid(work: Path) -> None:
    shutil.copy(ROOT / "config.yaml", work / "config.yaml")
    (work / "examples" / "plugins").mkdir(parents=True)
    for f in (DATASET, MODEL, LOSS):
        shutil.copy(ROOT / f, work / f)
    cfg = {
        "experiment": "ext",
        "plugins": [DATASET, MODEL, LOSS],
        "tasks": ["stripes"],
        "models": ["tinycnn_w8"],
        "methods": ["ce", "poly1"],
        "seeds": [0],
        "protocol": "demo",
        "protocol_overrides": {
            "epochs": 1,
            "image_size": 24,
            "batch_size": 32,
            "pretrained": False,
        },
        "explain": {"enabled": True, "figures": ["gradcam"], "per_class": 1},
        "evaluation": {"n_boot": 20},
    }
    (work / "ext.yaml").write_text(yaml.safe_dump(cfg))


def test_snakemake_passes_the_plugins_to_the_jobs_that_need_them(tmp_path):
    """Every job that reads the plug-in dataset (download, index, train, explain) or builds the
    plug-in model (train, explain, weights) loads its file, with the hash it had at planning."""
    _grid(tmp_path)
    plan = smk(tmp_path, "-n", "-p", "--configfile", "ext.yaml")
    sha = {f: plugins.file_sha256(ROOT / f) for f in (DATASET, MODEL, LOSS)}
    lines = plan.stdout.splitlines()
    for command, files in (
        ("imbench download stripes", [DATASET]),
        ("imbench index", [DATASET]),
        ("imbench explain", [DATASET, MODEL]),
        ("--method ce", [DATASET, MODEL]),
        ("--method poly1", [DATASET, MODEL, LOSS]),
    ):
        line = next(x for x in lines if command in x)
        words = f"--plugins {' '.join(files)} --plugin-sha256 {' '.join(sha[f] for f in files)}"
        assert words in line, line
    weights = smk(tmp_path, "-n", "-p", "prefetch_weights", "--configfile", "ext.yaml")
    assert f"imbench weights --models tinycnn_w8 --plugins {MODEL}" in weights.stdout
    # a task variant's subsampling and a second stage on a plug-in model load them too
    cfg = yaml.safe_load((tmp_path / "ext.yaml").read_text())
    cfg.update(methods=["ce", "crt"], imbalance={"ratio": [4]})
    (tmp_path / "ext.yaml").write_text(yaml.safe_dump(cfg))
    lines = smk(tmp_path, "-n", "-p", "--configfile", "ext.yaml").stdout.splitlines()
    for command, files in (
        ("imbench imbalance", [DATASET]),
        ("imbench decouple", [DATASET, MODEL]),
    ):
        line = next(x for x in lines if command in x)
        assert f"--plugins {' '.join(files)} --plugin-sha256" in line, line


@pytest.mark.slow
def test_snakemake_runs_a_grid_of_the_plugin_dataset_model_and_loss(tmp_path):
    _grid(tmp_path)
    smk(tmp_path, "--cores", "2", "--configfile", "ext.yaml")
    summary = pd.read_csv(tmp_path / "results" / "ext" / "tables" / "summary.csv")
    assert set(summary.task) == {"stripes"} and set(summary.method) == {"ce", "poly1"}
    assert (tmp_path / "results" / "ext" / "figures" / "stripes_gradcam.png").is_file()


FAILING_PARTS = """
import imbench


def build(root):
    if "columns" in str(root):
        import pandas as pd

        return pd.DataFrame({"image_id": ["a"], "path": ["a.png"]})
    return {}["no such key"]


def backbone(spec, pretrained, drop_rate, label):
    raise RuntimeError("no GPU kernel for this layer")


imbench.register_dataset(imbench.DatasetSpec(
    name="mine", title="mine", prepare=lambda out, opts, base_urls: 1 / 0, licence="",
    homepage="", source="", tasks=(imbench.Task(name="mine", dataset="mine", kind="binary",
    classes=("rest", "x"), group_key="g", build=build),),
))
imbench.register_model_family(imbench.ModelFamily(
    source="mynet", pattern="mynet_<n>", names=r"mynet_\\d+", backbone=backbone))
"""


def test_a_failing_plugin_function_is_one_line_naming_the_file(tmp_path, capsys):
    from imbench.models import create_model

    path = tmp_path / "parts.py"
    path.write_text(FAILING_PARTS)
    args = ["--plugins", str(path)]
    for raw, expected in (
        ("raw", "task 'mine': build failed: KeyError: 'no such key'"),
        ("columns", "task 'mine': build returned DataFrame without the index column(s) ['label'"),
    ):
        (tmp_path / raw).mkdir()
        argv = [
            "index",
            "--task",
            "mine",
            "--raw",
            str(tmp_path / raw),
            "--out",
            str(tmp_path / "x.csv"),
            *args,
        ]
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"imbench index: error: plug-in {path}: ")
        assert expected in err[0]
    assert cli_main(["download", "mine", "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"imbench download mine: error: plug-in {path}: dataset 'mine': prepare failed: "
        "ZeroDivisionError: division by zero"
    ]
    with pytest.raises(plugins.PluginError, match=r"model family 'mynet': backbone failed: "):
        create_model("mynet_3", 2)


def test_the_download_section_of_a_plugin_dataset_is_checked():
    from imbench.data.download import cli_args

    cfg = _stripes_config(download={"stripes": {"source": "/data/mine"}})
    assert validate_config(cfg) == ([], [])
    assert cli_args("stripes", cfg["download"]["stripes"]) == ["--source", "/data/mine"]
    # the workflow checks each download section while it plans (download.smk, cli_args)
    with pytest.raises(ValueError, match=r"sauce"):
        cli_args("stripes", {"sauce": "/data/mine"})
