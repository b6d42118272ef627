"""User plug-ins: a method defined in the user's own file, checked at planning, trained by the CLI."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import saved_registries

from imbench import plugins
from imbench.cli import main as cli_main
from imbench.config import ConfigError, validate_config
from imbench.methods import METHODS, build_loss, declared_params, method_kinds, tables

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())

LABEL_SMOOTHING = """
import torch.nn.functional as F
from torch import nn

import imbench


@imbench.register_method(
    "label_smoothing",
    params={"smoothing": imbench.Param("float", 0.1, lo=0.0, hi=1.0, hi_open=True, nullable=True,
                                       doc="share of the target mass spread over all classes")},
    kinds=("multiclass", "binary"),
    source="Szegedy et al. 2016",
    summary="cross-entropy against labels smoothed towards the uniform distribution",
)
def label_smoothing(class_counts, kind, smoothing):
    class LabelSmoothingCE(nn.Module):
        def forward(self, logits, targets):
            return F.cross_entropy(logits, targets, label_smoothing=smoothing)

    return LabelSmoothingCE()
"""


@pytest.fixture(autouse=True)
def clean_registry():
    """Every test starts and ends with the package's own registry (plug-ins change global tables)."""
    with saved_registries():
        yield


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _config(**changes) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg.update(changes)
    return cfg


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return path.name


def test_planning_accepts_a_plugin_method_and_checks_its_parameters(in_tmp):
    name = _write(in_tmp / "my_losses.py", LABEL_SMOOTHING)
    cfg = _config(
        plugins=[name],
        methods=["ce", "label_smoothing"],
        method_params={"label_smoothing": {"smoothing": 0.2}},
    )
    skips, warnings = validate_config(cfg)
    assert skips == [] and warnings == []
    assert "label_smoothing" in METHODS and plugins.plugin_file("label_smoothing") == name
    assert method_kinds("label_smoothing") == ("multiclass", "binary")
    assert set(declared_params("label_smoothing")) == {"smoothing"}
    for bad, expected in (
        (1.0, r"expected a number in \[0, 1\) or null"),
        (-0.1, r"in \[0, 1\)"),
        ("0.2", r"got '0\.2' \(text"),
    ):
        cfg["method_params"] = {"label_smoothing": {"smoothing": bad}}
        with pytest.raises(
            ConfigError,
            match=r"^config key 'method_params\.label_smoothing\.smoothing': " + ".*" + expected,
        ):
            validate_config(cfg)
    cfg["method_params"] = {"label_smoothing": {"smothing": 0.1}}
    with pytest.raises(ConfigError, match=r"method 'label_smoothing' has no parameter 'smothing'"):
        validate_config(cfg)
    # without the plug-in, the method is unknown
    with pytest.raises(ConfigError, match=r"'label_smoothing' is not allowed"):
        plugins._unregister("label_smoothing")
        plugins.LOADED.clear()
        validate_config(_config(methods=["label_smoothing"]))


def test_the_plugin_loss_is_built_with_checked_parameters(in_tmp):
    plugins.load_plugins([_write(in_tmp / "my_losses.py", LABEL_SMOOTHING)])
    loss = build_loss("label_smoothing", [30, 10, 5], kind="multiclass", smoothing=None)
    assert (
        loss.params == {"smoothing": 0.1}
        and loss.loss_id == "label_smoothing"
        and loss.class_weights == "none"
    )
    logits, targets = torch.randn(8, 3), torch.randint(0, 3, (8,))
    expected = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=0.1)
    assert torch.allclose(loss(logits, targets), expected)
    with pytest.raises(
        ValueError, match=r"loss 'label_smoothing': parameter 'smoothing': expected .*got 1\.5"
    ):
        build_loss("label_smoothing", [30, 10, 5], smoothing=1.5)
    with pytest.raises(ValueError, match=r"has no meaning for multilabel tasks"):
        build_loss("label_smoothing", [3, 4], kind="multilabel", n_samples=10)


def test_a_plugin_function_that_fails_or_returns_no_module_names_the_loss(in_tmp):
    text = LABEL_SMOOTHING + (
        'imbench.register_method("returns_none")(lambda counts, kind: None)\n'
        'def boom(counts, kind):\n    raise KeyError("weights")\n'
        'imbench.register_method("raises")(boom)\n'
    )
    plugins.load_plugins([_write(in_tmp / "more.py", text)])
    with pytest.raises(
        ValueError,
        match=r"^loss 'returns_none': its plug-in function returned NoneType, not a "
        r"torch\.nn\.Module$",
    ):
        build_loss("returns_none", [3, 4, 5])
    with pytest.raises(
        ValueError, match=r"^loss 'raises': its plug-in function failed: KeyError: 'weights'$"
    ):
        build_loss("raises", [3, 4, 5])


def test_a_multilabel_task_skips_the_plugin_method(in_tmp):
    from imbench.data.tasks import TASKS

    multilabel = next(t for t, spec in TASKS.items() if spec.kind == "multilabel")
    cfg = _config(
        plugins=[_write(in_tmp / "my_losses.py", LABEL_SMOOTHING)],
        tasks=[multilabel],
        methods=["ce", "label_smoothing"],
    )
    skips, _ = validate_config(cfg)
    assert [(t, m) for t, m, _ in skips] == [(multilabel, "label_smoothing")]


def _train_cli(tiny, out, *extra, settings=None):
    settings = {
        "epochs": 2,
        "batch_size": 32,
        "image_size": 16,
        "lr": 3e-3,
        "threads": 1,
        **(settings or {}),
    }
    return cli_main(
        [
            "train",
            "--task",
            "synthetic",
            "--cache-dir",
            str(tiny["cache"]),
            "--split",
            str(tiny["split"]),
            "--model",
            "test_resnet",
            "--method",
            "label_smoothing",
            "--seed",
            "0",
            "--settings",
            json.dumps(settings),
            "--out-dir",
            str(out),
            *extra,
        ]
    )


def test_imbench_train_trains_a_plugin_cell_and_records_the_file(tiny_synthetic, in_tmp, capsys):
    name = _write(in_tmp / "my_losses.py", LABEL_SMOOTHING)
    sha = plugins.file_sha256(in_tmp / name)
    rc = _train_cli(
        tiny_synthetic,
        in_tmp / "cell",
        "--plugins",
        name,
        "--plugin-sha256",
        sha,
        settings={"method_params": {"smoothing": 0.3}},
    )
    assert rc == 0, capsys.readouterr().err
    run = json.loads((in_tmp / "cell" / "run.json").read_text())
    assert run["plugins"] == [{"path": name, "sha256": sha}]
    assert (
        run["method_info"]["name"] == "label_smoothing"
        and run["method_info"]["source"] == "Szegedy et al. 2016"
    )
    assert run["loss_params"] == {"smoothing": 0.3}
    probs = np.loadtxt(
        in_tmp / "cell" / "predictions.csv", delimiter=",", skiprows=1, usecols=range(4, 11)
    )
    assert probs.shape[1] == 7

    # The plug-in changed after planning: the job stops with one line, before training.
    (in_tmp / name).write_text(LABEL_SMOOTHING + "\n# edited\n")
    rc = _train_cli(tiny_synthetic, in_tmp / "cell2", "--plugins", name, "--plugin-sha256", sha)
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        rc == 2
        and len(err) == 1
        and re.match(rf"imbench train: error: plug-in {name} changed since", err[0])
    )
    assert not (in_tmp / "cell2" / "run.json").exists()


def test_a_job_without_the_plugin_names_the_unknown_method(tiny_synthetic, in_tmp, capsys):
    assert _train_cli(tiny_synthetic, in_tmp / "cell") == 2
    assert "unknown method 'label_smoothing'" in capsys.readouterr().err


BAD_PLUGINS = [
    (
        "import nonexistent_module_xyz\n",
        r"plug-in bad\.py: failed to import \(line 1\): ModuleNotFoundError: No module named 'nonexistent_module_xyz'",
    ),
    ("def f(:\n", r"plug-in bad\.py: failed to import \(line 1\): SyntaxError: "),
    (
        "x = 1 / 0\n",
        r"plug-in bad\.py: failed to import \(line 1\): ZeroDivisionError: division by zero",
    ),
    (
        LABEL_SMOOTHING.replace('"label_smoothing",', '"focal",'),
        r"plug-in bad\.py: method 'focal' exists already \(in imbench\); choose another name",
    ),
    (
        LABEL_SMOOTHING.replace('imbench.Param("float", 0.1,', 'imbench.Param("float", 1.5,'),
        r"plug-in bad\.py: method 'label_smoothing': the default of parameter 'smoothing' does not fit its "
        r"declaration: expected a number in \[0, 1\) or null",
    ),
    (
        LABEL_SMOOTHING.replace('imbench.Param("float", 0.1,', 'imbench.Param("real", 0.1,'),
        r"plug-in bad\.py: failed to import \(line \d+\): ValueError: parameter type 'real' is not one of",
    ),
    (
        LABEL_SMOOTHING
        + 'imbench.register_method("other", params={"p": 0.5})(lambda counts, kind, p: None)\n',
        r"plug-in bad\.py: method 'other': parameter 'p' must be an imbench\.Param, got float",
    ),
    (
        LABEL_SMOOTHING.replace('params={"smoothing"', 'params={"smoothing rate"'),
        r"parameter name 'smoothing rate' is not a Python identifier",
    ),
    (
        LABEL_SMOOTHING.replace('kinds=("multiclass", "binary")', 'kinds=("multi-class",)'),
        r"plug-in bad\.py: method 'label_smoothing': kinds must be one or more of \['multiclass', 'binary', "
        r"'multilabel'\], got \['multi-class'\]",
    ),
    (
        LABEL_SMOOTHING.replace('"label_smoothing",', '"label smoothing",'),
        r"plug-in bad\.py: method name 'label smoothing': expected a letter",
    ),
    (
        LABEL_SMOOTHING.replace("kinds=(", 'sampler="smote", kinds=('),
        r"plug-in bad\.py: method 'label_smoothing': unknown sampler 'smote'",
    ),
    (
        LABEL_SMOOTHING.replace("kinds=(", 'head="mlp", kinds=('),
        r"plug-in bad\.py: method 'label_smoothing': head 'mlp'",
    ),
]


@pytest.mark.parametrize("text, expected", BAD_PLUGINS)
def test_a_bad_plugin_stops_planning_with_one_line(in_tmp, text, expected):
    methods_before = list(METHODS)
    name = _write(in_tmp / "bad.py", text)
    with pytest.raises(ConfigError) as err:
        validate_config(_config(plugins=[name]))
    message = str(err.value)
    assert "\n" not in message and message.startswith("config key 'plugins': plug-in bad.py: "), (
        message
    )
    assert re.search(expected, message), message
    assert list(METHODS) == methods_before  # nothing half-registered


def test_missing_file_and_bad_key(in_tmp):
    with pytest.raises(
        ConfigError, match=r"^config key 'plugins': plug-in nowhere\.py: no such file"
    ):
        validate_config(_config(plugins=["nowhere.py"]))
    (in_tmp / "folder.py").mkdir()
    with pytest.raises(
        ConfigError, match=r"^config key 'plugins': plug-in folder\.py: is a folder"
    ):
        validate_config(_config(plugins=["folder.py"]))
    (in_tmp / "notes.txt").write_text("x = 1\n")
    with pytest.raises(
        ConfigError, match=r"^config key 'plugins': plug-in notes\.txt: not a Python file"
    ):
        validate_config(_config(plugins=["notes.txt"]))
    with pytest.raises(ConfigError, match=r"^config key 'plugins': .*expected a list"):
        validate_config(_config(plugins="my_losses.py"))


def test_two_files_registering_one_name(in_tmp):
    a = _write(in_tmp / "a.py", LABEL_SMOOTHING)
    b = _write(in_tmp / "b.py", LABEL_SMOOTHING + "\n# a copy\n")
    with pytest.raises(
        ConfigError,
        match=r"plug-in b\.py: method 'label_smoothing' exists already \(in plug-in "
        r"a\.py\)",
    ):
        validate_config(_config(plugins=[a, b]))


def test_a_failing_file_leaves_no_method_behind(in_tmp):
    name = _write(in_tmp / "half.py", LABEL_SMOOTHING + "\nraise RuntimeError('late failure')\n")
    with pytest.raises(
        plugins.PluginError,
        match=r"plug-in half\.py: failed to import \(line \d+\): "
        r"RuntimeError: late failure",
    ):
        plugins.load_plugins([name])
    assert "label_smoothing" not in METHODS and "label_smoothing" not in tables.LOSS_PARAMS
    # fixed: loads, and loading it again (every planning pass) is a no-op
    (in_tmp / name).write_text(LABEL_SMOOTHING)
    first = plugins.load_plugins([name])
    assert plugins.load_plugins([name]) == first
    # edited: its methods are replaced, not registered twice
    (in_tmp / name).write_text(LABEL_SMOOTHING.replace("0.1, lo=0.0", "0.05, lo=0.0"))
    plugins.load_plugins([name])
    assert tables.LOSS_DEFAULTS["label_smoothing"] == {"smoothing": 0.05}


def test_imbench_plan_loads_the_plugin(in_tmp, capsys):
    from imbench.plan import main as plan_main

    name = _write(in_tmp / "my_losses.py", LABEL_SMOOTHING)
    (in_tmp / "x.yaml").write_text(
        yaml.safe_dump(_config(plugins=[name], methods=["ce", "label_smoothing"]))
    )
    assert plan_main(["--configfile", "x.yaml", "--no-base", "--json"]) == 0
    out = capsys.readouterr().out
    assert "label_smoothing" in out


def test_snakemake_plans_the_plugin_method_and_retrains_on_change(tmp_path):
    """``snakemake -n`` loads the plug-in, makes it an input of its cells' training jobs only, and
    passes it (with its hash) to them; an edited plug-in replans those cells."""
    name = _write(tmp_path / "my_losses.py", LABEL_SMOOTHING)
    cfg = _config(
        plugins=[name],
        methods=["ce", "label_smoothing"],
        seeds=[0],
        method_params={"label_smoothing": {"smoothing": 0.2}},
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "-n",
        "-p",
        "--configfile",
        "config.yaml",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sha = plugins.file_sha256(tmp_path / name)
    commands = [line for line in proc.stdout.splitlines() if "imbench train" in line]
    assert len(commands) == 2
    plug = [c for c in commands if "--method label_smoothing" in c]
    assert len(plug) == 1 and f"--plugins {name} --plugin-sha256 {sha}" in plug[0]
    assert "--plugins" not in next(c for c in commands if "--method ce" in c)

    bad = _write(tmp_path / "my_losses.py", LABEL_SMOOTHING.replace('"label_smoothing",', '"ce",'))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    lines = [
        line for line in (proc.stdout + proc.stderr).splitlines() if "invalid configuration" in line
    ]
    assert proc.returncode != 0 and len(lines) == 1, proc.stdout + proc.stderr
    assert f"config key 'plugins': plug-in {bad}: method 'ce' exists already" in lines[0]


@pytest.mark.slow
def test_snakemake_trains_a_plugin_cell_and_retrains_it_when_the_file_changes(tmp_path):
    """One small target through Snakemake: the plug-in cell trains in its own job, records the file,
    and an edit of the plug-in (only) makes that cell's training job due again."""
    name = _write(tmp_path / "my_losses.py", LABEL_SMOOTHING)
    cfg = _config(
        plugins=[name],
        methods=["ce", "label_smoothing"],
        seeds=[0],
        method_params={"label_smoothing": {"smoothing": 0.2}},
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    base = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        "config.yaml",
    ]
    cells = "results/tiny/synthetic/test_resnet/{}/seed0/run.json"
    target = cells.format("label_smoothing")

    def smk(*args):
        proc = subprocess.run(
            [*base, *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    smk("--cores", "2", target, cells.format("ce"))
    run = json.loads((tmp_path / target).read_text())
    assert run["plugins"] == [{"path": name, "sha256": plugins.file_sha256(tmp_path / name)}]
    assert run["loss_params"] == {"smoothing": 0.2}
    assert "Nothing to be done" in smk("-n", target, cells.format("ce"))

    (tmp_path / name).write_text(
        LABEL_SMOOTHING.replace("summary=", "family='regularisation', summary=")
    )
    planned = smk("-n", "-p", target, cells.format("ce"))
    trains = [line for line in planned.splitlines() if "imbench train" in line]
    assert len(trains) == 1 and "--method label_smoothing" in trains[0], planned
