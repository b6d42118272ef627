"""Planning checks every setting: one line naming the key and the expected value, before any job.

The table below walks through bad configurations of every kind (protocol settings, method
parameters, per-model sizes, split fractions, experiment names); each is checked through the same
entry point the workflow and ``imbench plan`` use (:func:`imbench.config.validate_config`). A few go
through the real Snakefile (``snakemake -n``) in ``test_pipeline.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Optional

import pytest
import yaml

from imbench import plan
from imbench.config import ConfigError, check_config, config_warnings, validate_config
from imbench.methods import METHODS, declared_params, default_params, get_method
from imbench.methods.tables import (
    LOSS_PARAMS,
    MIXING_PARAMS,
    POSTHOC_PARAMS,
    SAMPLER_PARAMS,
    STAGE2_PARAMS,
)
from imbench.params import Param
from imbench.protocols import PROTOCOLS, resolve
from imbench.settings import SETTING_RULES, Settings, setting_params

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())


def _with(**changes) -> dict:
    """The tiny configuration with top-level keys replaced (``protocol_overrides`` merged)."""
    cfg = copy.deepcopy(TINY)
    for key, value in changes.items():
        if key == "protocol_overrides" and isinstance(value, dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def _over(**kw) -> dict:
    return _with(protocol_overrides=kw)


def _params(**kw) -> dict:
    return _with(method_params=kw)


# (configuration, the key the line must name, what the line must say about the expected value)
BAD = [
    # protocol settings: wrong types, text for numbers, bools for numbers, null, out of range
    (_over(epochs=2.5), "protocol_overrides.epochs", r"expected an integer ≥ 1, got 2\.5"),
    (_over(epochs=2.0), "protocol_overrides.epochs", r"expected an integer ≥ 1, got 2\.0"),
    (_over(epochs=0), "protocol_overrides.epochs", r"expected an integer ≥ 1, got 0"),
    (_over(epochs=None), "protocol_overrides.epochs", r"expected an integer ≥ 1, got null"),
    (_over(epochs=True), "protocol_overrides.epochs", r"expected an integer ≥ 1, got true"),
    (_over(epochs="10"), "protocol_overrides.epochs", r"expected an integer ≥ 1, got '10' \(text"),
    (_over(lr="fast"), "protocol_overrides.lr", r"expected a number > 0, got 'fast'"),
    (_over(lr=-1), "protocol_overrides.lr", r"expected a number > 0, got -1"),
    (_over(lr=0), "protocol_overrides.lr", r"expected a number > 0, got 0"),
    (
        _over(lr="1e-4"),
        "protocol_overrides.lr",
        r"got '1e-4' \(text: YAML reads 1e-4 as text; write 1\.0e-4\)",
    ),
    (_over(lr=float("inf")), "protocol_overrides.lr", r"expected a number > 0, got inf"),
    (_over(lr=float("nan")), "protocol_overrides.lr", r"expected a number > 0, got nan"),
    (
        _over(eval_batch_size="1e3"),
        "protocol_overrides.eval_batch_size",
        r"expected an integer ≥ 1, got '1e3' \(text: YAML reads 1e3 as text; write the whole number 1000\)",
    ),
    (_over(lr=False), "protocol_overrides.lr", r"expected a number > 0, got false"),
    (_over(batch_size="64"), "protocol_overrides.batch_size", r"expected an integer ≥ 1, got '64'"),
    (_over(batch_size=32.0), "protocol_overrides.batch_size", r"expected an integer ≥ 1"),
    (
        _over(image_size="big"),
        "protocol_overrides.image_size",
        r"expected an integer ≥ 8, got 'big'",
    ),
    (_over(image_size=4), "protocol_overrides.image_size", r"expected an integer ≥ 8, got 4"),
    (_over(weight_decay=-0.1), "protocol_overrides.weight_decay", r"expected a number ≥ 0"),
    (_over(momentum=1.5), "protocol_overrides.momentum", r"expected a number in \[0, 1\)"),
    (
        _over(optimizer="rmsprop"),
        "protocol_overrides.optimizer",
        r"expected one of 'adamw', 'adam', 'sgd'",
    ),
    (_over(optimizer=1), "protocol_overrides.optimizer", r"expected one of 'adamw'"),
    (
        _over(scheduler="cos"),
        "protocol_overrides.scheduler",
        r"expected one of 'cosine', 'step', 'none'",
    ),
    (_over(warmup_epochs=-1), "protocol_overrides.warmup_epochs", r"expected an integer ≥ 0"),
    (_over(step_size=0), "protocol_overrides.step_size", r"expected an integer ≥ 1"),
    (_over(step_gamma=0), "protocol_overrides.step_gamma", r"expected a number in \(0, 1\]"),
    (
        _over(pretrained="yes"),
        "protocol_overrides.pretrained",
        r"expected true or false, got 'yes'",
    ),
    (_over(pretrained=1), "protocol_overrides.pretrained", r"expected true or false, got 1"),
    (_over(drop_rate=1.0), "protocol_overrides.drop_rate", r"expected a number in \[0, 1\)"),
    (_over(eval_batch_size=0), "protocol_overrides.eval_batch_size", r"expected an integer ≥ 1"),
    (_over(threads=0), "protocol_overrides.threads", r"expected an integer ≥ 1"),
    (_over(device="gpu"), "protocol_overrides.device", r"expected one of 'auto', 'cpu', 'cuda'"),
    (
        _over(deterministic="no"),
        "protocol_overrides.deterministic",
        r"expected true, false or one of 'auto', got 'no'",
    ),
    (
        _over(memory_format="nhwc"),
        "protocol_overrides.memory_format",
        r"expected one of 'auto', 'channels_last', 'contiguous', got 'nhwc'",
    ),
    (
        _over(checkpoint_every_min=-1),
        "protocol_overrides.checkpoint_every_min",
        r"expected a number ≥ 0, got -1",
    ),
    (_over(precision="fp16"), "protocol_overrides.precision", r"expected one of 'bf16', 'fp32'"),
    (_over(budget="time"), "protocol_overrides.budget", r"expected one of 'epochs', 'steps'"),
    (_over(amp="off"), "protocol_overrides.amp", r"unknown training setting 'amp'"),
    (_over(compile=0), "protocol_overrides.compile", r"expected true or false, got 0"),
    (_over(grad_clip=-1.0), "protocol_overrides.grad_clip", r"expected a number ≥ 0"),
    (_over(early_stopping=1.5), "protocol_overrides.early_stopping", r"expected an integer ≥ 0"),
    (_over(tta="flip"), "protocol_overrides.tta", r"expected one of 'none', 'flips'"),
    (
        _over(epoch=3),
        "protocol_overrides.epoch",
        r"unknown training setting 'epoch'; known: \[.*'epochs'",
    ),
    (
        _over(method_params={"focal": {"gamma": 1}}),
        "protocol_overrides.method_params",
        r"top-level key 'method_params'",
    ),
    (_with(protocol_overrides=[1]), "protocol_overrides", r"not of type 'object'"),
    (_with(protocol="fast"), "protocol", r"'fast' is not allowed"),
    # method parameters: each against the registry's declaration, per task kind and class count
    (
        _params(focal={"gamma": -5}),
        "method_params.focal.gamma",
        r"expected a number ≥ 0 or null \(the default\), got -5",
    ),
    (
        _params(bbfl={"gamma": "high"}),
        "method_params.bbfl.gamma",
        r"expected a number ≥ 0.*got 'high'",
    ),
    (_params(focal={"gamma": True}), "method_params.focal.gamma", r"got true"),
    (
        _params(focal={"alpha": [1, 2]}),
        "method_params.focal.alpha",
        r"a list of 7 numbers ≥ 0 \(one per class\).*got \[1, 2\] \(for multiclass task 'synthetic'\)",
    ),
    (
        _params(focal={"alpha": 0.25}),
        "method_params.focal.alpha",
        r"a list of 7 numbers.*for multiclass task",
    ),
    (
        _params(focal={"alpha": [1, -1, 1, 1, 1, 1, 1]}),
        "method_params.focal.alpha",
        r"a list of .*numbers ≥ 0",
    ),
    (
        _with(tasks=["synthetic_ml"], methods=["ce"], method_params={"focal": {"alpha": 1.5}}),
        "method_params.focal.alpha",
        r"got 1\.5",
    ),
    (
        _with(
            tasks=["synthetic_ml"], methods=["focal"], method_params={"focal": {"alpha": [0.2] * 7}}
        ),
        "method_params.focal.alpha",
        r"expected a number in \[0, 1\], -1 or null.*for multilabel task 'synthetic_ml'",
    ),
    (_params(ldam={"s": 0}), "method_params.ldam.s", r"expected a number > 0"),
    (_params(ldam={"max_m": -0.5}), "method_params.ldam.max_m", r"expected a number > 0"),
    (
        _params(ldam_drw={"beta": 1.0}),
        "method_params.ldam_drw.beta",
        r"expected a number in \[0, 1\)",
    ),
    (
        _params(ldam_drw={"drw_start": 1.5}),
        "method_params.ldam_drw.drw_start",
        r"expected a number in \[0, 1\]",
    ),
    (
        _params(lmf={"alpha": -1}),
        "method_params.lmf.alpha",
        r"expected a number ≥ 0, 'paper' or null",
    ),
    (
        _params(lmf={"gamma": "paper"}),
        "method_params.lmf.gamma",
        r"expected a number ≥ 0 or null.*got 'paper'",
    ),
    (
        _params(lmf={"alpha": 0, "beta": 0}),
        "method_params.lmf",
        r"'alpha' and 'beta' .* are both 0",
    ),
    (_params(lmf={"beta": "paper"}), "method_params.lmf", r"no alpha/beta for task 'synthetic'"),
    (
        _params(cb_focal={"beta": 1}),
        "method_params.cb_focal.beta",
        r"expected a number in \[0, 1\)",
    ),
    (
        _params(logit_adjustment={"tau": float("inf")}),
        "method_params.logit_adjustment.tau",
        r"expected a finite number or null",
    ),
    (_params(cb_ce={"beta": 1.0}), "method_params.cb_ce.beta", r"expected a number in \[0, 1\)"),
    (
        _params(balanced_softmax={"tau": 1.0}),
        "method_params.balanced_softmax.tau",
        r"method 'balanced_softmax' has no parameter 'tau'; its parameters: \[\]",
    ),
    (
        _params(la_posthoc={"tau": -1}),
        "method_params.la_posthoc.tau",
        r"expected a number ≥ 0, 'fit' or null",
    ),
    (
        _params(la_posthoc={"tau": "auto"}),
        "method_params.la_posthoc.tau",
        r"expected a number ≥ 0, 'fit' or null",
    ),
    (
        _params(la_posthoc={"beta": 2.0}),
        "method_params.la_posthoc.beta",
        r"method 'la_posthoc' has no parameter 'beta'; its parameters: \['tau'\]",
    ),
    (
        _params(vs_loss={"gamma": -0.1}),
        "method_params.vs_loss.gamma",
        r"expected a number ≥ 0 or null",
    ),
    (
        _params(vs_loss={"tau": float("nan")}),
        "method_params.vs_loss.tau",
        r"expected a finite number or null",
    ),
    (
        _params(vs_loss={"beta": 0.9}),
        "method_params.vs_loss.beta",
        r"method 'vs_loss' has no parameter 'beta'; its parameters: \['gamma', 'tau'\]",
    ),
    (
        _params(drs={"drs_start": 1.2}),
        "method_params.drs.drs_start",
        r"expected a number in \[0, 1\]",
    ),
    (_params(drs={"beta": 1}), "method_params.drs.beta", r"expected a number in \[0, 1\)"),
    (
        _params(drs={"drw_start": 0.5}),
        "method_params.drs.drw_start",
        r"method 'drs' has no parameter 'drw_start'; its parameters: \['beta', 'drs_start'\]",
    ),
    (
        _params(ros={"redraw": "yes"}),
        "method_params.ros.redraw",
        r"expected true, false or null \(the default\), got 'yes'",
    ),
    (_params(ros={"redraw": 1}), "method_params.ros.redraw", r"expected true, false or null"),
    (
        _params(thresholding={"beta": 0}),
        "method_params.thresholding.beta",
        r"expected a number > 0",
    ),
    (
        _params(thresholding={"tau": "x"}),
        "method_params.thresholding.tau",
        r"expected a finite number",
    ),
    (
        _params(thresholding={"gamma": 2.0}),
        "method_params.thresholding.gamma",
        r"method 'thresholding' has no parameter 'gamma'; its parameters: \['beta', 'tau'\]",
    ),
    (
        _params(bbfl={"gama": 1}),
        "method_params.bbfl.gama",
        r"method 'bbfl' has no parameter 'gama'",
    ),
    (_params(focal=5), "method_params.focal", r"not of type 'object'"),
    (_params(smote={}), "method_params", r"unknown method 'smote'"),
    # per-model image sizes: the image_size declaration
    (
        _with(model_image_size={"test_resnet": "64"}),
        "model_image_size.test_resnet",
        r"not of type 'integer'",
    ),
    (
        _with(model_image_size={"test_resnet": True}),
        "model_image_size.test_resnet",
        r"not of type 'integer'",
    ),
    (
        _with(model_image_size={"test_resnet": 4}),
        "model_image_size.test_resnet",
        r"less than the minimum of 8",
    ),
    (
        _with(model_image_size={"resnet50": 224}),
        "model_image_size",
        r"'resnet50' is not one of the models",
    ),
    # split fractions: each in (0, 1), summing to 1
    (
        _with(split={"seed": 0, "fractions": [0.7, 0.1, 0.1]}),
        "split.fractions",
        r"expected 3 fractions .* that sum to 1, got \[0\.7, 0\.1, 0\.1\] \(sum 0\.9\)",
    ),
    (_with(split={"seed": 0, "fractions": [0.8, 0.2, 0.2]}), "split.fractions", r"\(sum 1\.2\)"),
    (
        _with(split={"seed": 0, "fractions": [0.7, 0.15, 0.15 + 1e-6]}),
        "split.fractions",
        r"sum to 1",
    ),
    (
        _with(split={"seed": 0, "fractions": [0.5, 0.5, 0.0]}),
        "split.fractions.2",
        r"0\.0 is less than or equal to the minimum of 0",
    ),
    (
        _with(split={"seed": 0, "fractions": [1.0, 0.5, 0.5]}),
        "split.fractions.0",
        r"1\.0 is greater than or equal to the maximum of 1",
    ),
    (_with(split={"seed": 0, "fractions": [0.5, 0.5]}), "split.fractions", r"too short"),
    (
        _with(split={"seed": 0, "fractions": [0.7, 0.15, "0.15"]}),
        "split.fractions.2",
        r"not of type 'number'",
    ),
    # the method whose cell Grad-CAM explains: a trained method of the grid
    (
        _with(explain={"gradcam_method": "focal"}),
        "explain.gradcam_method",
        r"expected one of the trained methods of the grid \['ce', 'ros', 'bbfl'\], got 'focal'",
    ),
    (
        _with(explain={"gradcam_method": "thresholding"}),
        "explain.gradcam_method",
        r"got 'thresholding'",
    ),
    # schema keys say what they expect
    (
        _with(split={"seed": 0, "cv_folds": 1}),
        "split.cv_folds",
        r"expected 0 \(one split\) or an integer ≥ 2 \(K folds\), got 1$",
    ),
    (_with(split={"seed": 0, "cv_folds": 2.5}), "split.cv_folds", r"got 2\.5$"),
    (_with(seeds=[0, -1]), "seeds.1", r"less than the minimum of 0"),
    (_with(seeds=[True]), "seeds.0", r"True is not of type 'integer'"),
    (_with(evaluation={"n_boot": 0}), "evaluation.n_boot", r"less than the minimum of 2"),
    # integer keys of the schema take whole numbers only: 0.0 would reach paths as "seed0.0"
    (_with(seeds=[0.0, 1]), "seeds.0", r"0\.0 is not of type 'integer'"),
    (_with(split={"seed": 1.0}), "split.seed", r"1\.0 is not of type 'integer'"),
    (_with(split={"seed": 0, "cv_folds": 5.0}), "split.cv_folds", r"got 5\.0$"),
    (
        _with(synthetic={"n_images": 300.0}),
        "synthetic.n_images",
        r"300\.0 is not of type 'integer'",
    ),
    (_with(evaluation={"n_boot": 50.0}), "evaluation.n_boot", r"50\.0 is not of type 'integer'"),
    (
        _with(model_image_size={"test_resnet": 16.0}),
        "model_image_size.test_resnet",
        r"not of type 'integer'",
    ),
    (_with(synthetic={"noise": float("nan")}), "synthetic.noise", r"nan is not of type 'number'"),
    (
        _with(synthetic={"second_lesion_fraction": float("inf")}),
        "synthetic.second_lesion_fraction",
        r"inf is not of type 'number'",
    ),
    (
        _with(split={"seed": 0, "fractions": [0.7, 0.15, float("nan")]}),
        "split.fractions.2",
        r"nan is not of type",
    ),
    (
        _with(cache={"mode": "pad"}),
        "cache.mode",
        r"'pad' is not allowed; allowed values: \['squash', 'crop'\]",
    ),
    # experiment names: one plain path component
    (_with(experiment="."), "experiment", r"expected a plain folder name .*, got '\.'"),
    (_with(experiment=".."), "experiment", r"got '\.\.'"),
    (_with(experiment=""), "experiment", r"got ''"),
    (_with(experiment="a/b"), "experiment", r"got 'a/b'"),
    (_with(experiment="../x"), "experiment", r"got '\.\./x'"),
    (_with(experiment="-n"), "experiment", r"got '-n'"),
    (_with(experiment="   "), "experiment", r"got '   '"),
    (_with(experiment="a b"), "experiment", r"got 'a b'"),
    (_with(experiment=".hidden"), "experiment", r"got '\.hidden'"),
    (_with(experiment="x\n"), "experiment", r"plain folder name"),
    (_with(experiment=None), "experiment", r"expected a plain folder name .*, got null$"),
    (_with(experiment=2024), "experiment", r"expected a plain folder name .*, got 2024$"),
]


def _id(case) -> str:
    cfg, key, _ = case
    return key + ":" + re.sub(r"\s+", "_", repr(_value_at(cfg, key)))[:30]


def _value_at(cfg, key):
    node = cfg
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit():
            node = node[int(part)]
        else:
            return node
    return node


@pytest.mark.parametrize("cfg, key, expected", BAD, ids=[_id(c) for c in BAD])
def test_bad_config_is_one_line_naming_the_key(cfg, key, expected):
    with pytest.raises(ConfigError) as err:
        validate_config(copy.deepcopy(cfg))
    message = str(err.value)
    assert "\n" not in message, message
    assert message.startswith(f"config key '{key}': "), message
    assert re.search(expected, message), message


GOOD = [
    _over(lr=1),  # an int where a float is expected
    _over(lr=1.0e-4, epochs=1, pretrained=True, tta="flips", precision="fp32", budget="steps"),
    _params(focal={"gamma": None, "alpha": None}),  # null = the default
    _params(focal={"alpha": [1, 2, 1, 1, 1, 1, 0.5]}),  # one weight per class of 'synthetic'
    _with(tasks=["synthetic_ml"], methods=["ce", "focal"], method_params={"focal": {"alpha": -1}}),
    _with(
        tasks=["ham10000"],
        models=["resnet50"],
        methods=["ce", "lmf"],
        method_params={"lmf": {"alpha": "paper", "beta": "paper"}},
    ),
    _params(ros={"redraw": True}, thresholding={"tau": -0.5, "beta": 2}, bbfl={"gamma": 0}),
    _with(split={"seed": 0, "fractions": [0.6, 0.2, 0.2]}),
    _with(split={"seed": 0, "fractions": [0.1, 0.2, 0.7]}),
    _with(split={"seed": 0, "fractions": [0.8, 0.1, 0.1]}),
    _with(experiment="lmf_2024.v2-b"),
    _with(model_image_size={"test_resnet": 24}),
    _with(explain={"gradcam_method": "bbfl"}),
    _with(synthetic={"noise": 0, "n_images": 400}),  # an int where a number is expected
]


@pytest.mark.parametrize("cfg", GOOD)
def test_good_configs_pass(cfg):
    validate_config(copy.deepcopy(cfg))


@pytest.mark.parametrize(
    "path",
    [ROOT / "config.yaml", *sorted((ROOT / "experiments").glob("*.yaml"))],
    ids=lambda p: p.name,
)
def test_shipped_configs_pass(path):
    cfg = plan.load_config([path], base=ROOT / "config.yaml")
    _, warnings = validate_config(cfg)
    assert warnings == [], warnings


def test_method_params_of_a_method_not_in_the_grid_warn():
    cfg = _with(methods=["ce"], method_params={"focal": {"gamma": 1.0}, "ce": {}})
    skips, warnings = validate_config(cfg)
    assert warnings == [
        "config key 'method_params.focal': method 'focal' is not in 'methods' ['ce']; "
        "its parameters are not used"
    ]
    # ... and their values are still checked
    with pytest.raises(ConfigError, match=r"config key 'method_params.focal.gamma': expected"):
        validate_config(_with(methods=["ce"], method_params={"focal": {"gamma": -1}}))
    assert config_warnings(_params(focal={"gamma": 1.0})) != []  # tiny's grid has no focal
    assert config_warnings(_params(bbfl={"gamma": 1.0})) == []


# ----------------------------------------------------------------------------- one declaration


def test_every_setting_is_declared():
    params = setting_params()
    assert set(params) == {f.name for f in dataclasses.fields(Settings)}
    assert set(SETTING_RULES) <= set(params), "a rule names no Settings field"
    defaults = Settings()
    for name, p in params.items():
        assert p.check(getattr(defaults, name)) == getattr(defaults, name), name
    for name in PROTOCOLS:
        resolve(name)  # every shipped protocol passes its own checks


def test_every_method_parameter_is_declared():
    for name in METHODS:
        declared = declared_params(name)
        assert {k: p.default for k, (_, p) in declared.items()} == {
            k: v for k, v in default_params(name).items() if k in declared
        }
        for _, p in declared.values():
            assert isinstance(p, Param)
            p.check(p.default)  # every default fits its own declaration
        m = get_method(name)
        if m.posthoc:
            expected = set(POSTHOC_PARAMS[m.posthoc])
        elif m.stage2:
            expected = set(STAGE2_PARAMS[m.stage2])
        else:
            expected = (
                set(LOSS_PARAMS[m.loss])
                | set(SAMPLER_PARAMS[m.sampler])
                | set(MIXING_PARAMS.get(m.mixing, {}))
            )
        assert set(declared) == expected


def test_checks_are_built_from_the_declarations(monkeypatch):
    """A changed or new declaration changes the planning check; nothing else lists the parameters."""
    assert validate_config(_params(bbfl={"gamma": 0.5}))
    monkeypatch.setitem(LOSS_PARAMS["focal"], "gamma", Param("float", 2.0, lo=1.0))
    with pytest.raises(
        ConfigError, match=r"'method_params.bbfl.gamma': expected a number ≥ 1, got 0\.5"
    ):
        validate_config(_params(bbfl={"gamma": 0.5}))
    monkeypatch.setitem(LOSS_PARAMS["focal"], "smoothing", Param("float", 0.0, lo=0.0, hi=1.0))
    validate_config(_params(bbfl={"smoothing": 0.1}))
    with pytest.raises(
        ConfigError, match=r"'method_params.bbfl.smoothing': expected a number in \[0, 1\]"
    ):
        validate_config(_params(bbfl={"smoothing": "a"}))
    monkeypatch.setitem(SETTING_RULES, "epochs", dict(lo=5))
    with pytest.raises(
        ConfigError, match=r"'protocol_overrides.epochs': expected an integer ≥ 5, got 2"
    ):
        validate_config(_over(epochs=2))


def test_new_setting_is_checked_by_its_annotation(monkeypatch):
    """A Settings field added without a rule is still checked against its annotated type."""
    fields = dataclasses.fields(Settings)

    @dataclasses.dataclass
    class Extended(Settings):
        time_limit: float | None = None
        mixed: str = "auto"
        patience: Optional[int] = None  # noqa: UP045

    monkeypatch.setattr("imbench.settings.Settings", Extended)
    params = setting_params()
    assert len(params) == len(fields) + 3
    assert params["patience"].check(None) is None and params["patience"].check(3) == 3
    with pytest.raises(ValueError, match=r"expected an integer or null \(the default\), got 2\.5"):
        params["patience"].check(2.5)
    assert params["time_limit"].check(None) is None and params["time_limit"].check(3) == 3.0
    with pytest.raises(ValueError, match=r"expected a finite number or null"):
        params["time_limit"].check("1h")
    with pytest.raises(ValueError, match=r"expected a string, got 16"):
        params["mixed"].check(16)
    monkeypatch.setitem(SETTING_RULES, "mixed", dict(choices=("auto", "bf16")))
    with pytest.raises(
        ConfigError, match=r"'protocol_overrides.mixed': expected one of 'auto', 'bf16'"
    ):
        validate_config(_over(mixed="fp8"))


def test_without_the_schema_file_required_keys_are_still_checked(monkeypatch, tmp_path):
    monkeypatch.setattr("imbench.config.SCHEMA_PATH", tmp_path / "absent.yaml")
    cfg = _with()
    del cfg["models"]
    with pytest.raises(
        ConfigError, match=r"^config key '\(top level\)': 'models' is a required property$"
    ):
        validate_config(cfg)
    with pytest.raises(
        ConfigError, match=r"^config key 'protocol_overrides.epochs': expected an integer"
    ):
        validate_config(_over(epochs=2.5))


def test_runtime_uses_the_same_checks():
    """`imbench train` builds its settings through the same declarations."""
    with pytest.raises(ValueError, match=r"setting epochs: expected an integer ≥ 1, got 2\.5"):
        Settings.from_dict({"epochs": 2.5})
    with pytest.raises(ValueError, match=r"setting batch_size: expected an integer ≥ 1, got '64'"):
        Settings.from_dict({"batch_size": "64"})
    assert Settings.from_dict({"lr": 1}).lr == 1.0 and isinstance(
        Settings.from_dict({"lr": 1}).lr, float
    )


def test_check_config_alone_checks_values():
    """Callers of check_config (without the schema) get the same value checks."""
    with pytest.raises(ConfigError, match=r"config key 'experiment': expected a plain folder name"):
        check_config(_with(experiment=".."))
    with pytest.raises(
        ConfigError, match=r"config key 'model_image_size.test_resnet': expected an integer ≥ 8"
    ):
        check_config(_with(model_image_size={"test_resnet": "64"}))


# ----------------------------------------------------------------------------- imbench plan


@pytest.mark.parametrize(
    "cfg, key",
    [
        (_over(epochs=2.5), "protocol_overrides.epochs"),
        (_params(focal={"gamma": -5}), "method_params.focal.gamma"),
        (_with(split={"seed": 0, "fractions": [0.7, 0.15, 0.05]}), "split.fractions"),
        (_with(experiment=".."), "experiment"),
        (_with(seeds="zero"), "seeds"),
    ],
)
def test_imbench_plan_stops_with_one_line(tmp_path, capsys, cfg, key):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert plan.main(["--configfile", str(path), "--no-base"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"imbench plan: error: invalid configuration: config key '{key}'"
    )


def test_imbench_plan_shows_the_warning(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_with(methods=["ce"], method_params={"focal": {"gamma": 1.0}})))
    assert plan.main(["--configfile", str(path), "--no-base"]) == 0
    assert (
        "warning: config key 'method_params.focal': method 'focal' is not in 'methods'"
        in capsys.readouterr().out
    )
    assert plan.main(["--configfile", str(path), "--no-base", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"][0].startswith(
        "config key 'method_params.focal'"
    )


# ----------------------------------------------------------------------------- documentation


def test_docs_list_every_declaration():
    """docs/configuration.md and docs/methods.md show each declaration as the checks read it."""
    from imbench.params import show
    from imbench.protocols import NOT_OVERRIDABLE

    config_doc = (ROOT / "docs" / "configuration.md").read_text()
    for name, p in setting_params().items():
        if name not in NOT_OVERRIDABLE:
            assert f"| `{name}` | {show(p.default)} | {p.expected()} |" in config_doc, name
    methods_doc = (ROOT / "docs" / "methods.md").read_text()
    for part, table in (
        ("loss", LOSS_PARAMS),
        ("sampler", SAMPLER_PARAMS),
        ("post-hoc rule", POSTHOC_PARAMS),
        ("second stage", STAGE2_PARAMS),
        ("mixing", MIXING_PARAMS),
    ):
        for owner, params in table.items():
            for key, p in params.items():
                assert (
                    f"| {part} `{owner}` | `{key}` | {show(p.default)} | {p.expected()} |"
                    in methods_doc
                ), key
                for kind, q in p.by_kind.items():
                    assert f"| | | {kind} tasks | {q.expected()} |" in methods_doc, (key, kind)


@pytest.mark.parametrize(
    "evaluation, key",
    [
        ({"headline": "macro_f2"}, "evaluation.headline"),
        ({"headline": "log_loss"}, "evaluation.headline"),
        ({"tested": ["auc"]}, "evaluation.tested"),
        ({"metrics": {"binary": ["f1"], "tabular": ["f1"]}}, "evaluation.metrics"),
    ],
)
def test_bad_evaluation_section_stops_planning(evaluation, key):
    cfg = _with(evaluation=evaluation)
    with pytest.raises(ConfigError) as err:
        validate_config(copy.deepcopy(cfg))
    assert str(err.value).startswith(f"config key '{key}"), str(err.value)
