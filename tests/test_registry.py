"""Registries and configuration: names agree everywhere, parameters route and resolve."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imbench.config import ConfigError, check_config
from imbench.data.tasks import TASKS
from imbench.methods import (
    METHODS,
    build_loss,
    default_params,
    get_method,
    list_methods,
    method_kinds,
    resolve_params,
    split_params,
)
from imbench.protocols import PROTOCOLS

SCHEMA = yaml.safe_load(
    (
        Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
    ).read_text()
)
CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
LONGTAIL = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "experiments" / "longtail_demo.yaml").read_text()
)


def test_schema_names_match_registries():
    props = SCHEMA["properties"]
    assert props["methods"]["items"]["enum"] == list(METHODS)
    assert sorted(props["tasks"]["items"]["enum"]) == sorted(TASKS)
    assert sorted(props["protocol"]["enum"]) == sorted(PROTOCOLS)


def test_default_grid_runs_every_method():
    # Every method except the paper variants (exact copies of one paper's baselines, run by that
    # paper's experiment; their losses are the terms of `lmf`, which the default grid runs) runs
    # in the default grid or in the embedded long-tail grid (experiments/longtail_demo.yaml).
    methods = list_methods(variants=False)
    assert CONFIG["methods"] == [m for m in methods if m in CONFIG["methods"]]
    assert set(CONFIG["methods"]) | set(LONGTAIL["methods"]) == set(methods)
    assert set(list_methods()) - set(list_methods(variants=False)) == {"focal_lmf", "ldam_lmf"}
    assert len(CONFIG["seeds"]) >= 2
    assert check_config(dict(CONFIG)) == []


def test_paper_variants_keep_their_papers_heads():
    assert get_method("ldam").head == "cosine"  # Cao et al.'s NormedLinear
    assert get_method("ldam_lmf").head == "linear"  # the LMF code: plain linear head, as lmf
    assert get_method("lmf").head == get_method("ldam_lmf").head == get_method("focal_lmf").head
    assert (
        get_method("focal_lmf").variant_of == "focal"
        and get_method("ldam_lmf").variant_of == "ldam"
    )
    assert default_params("focal_lmf") == {"gamma": 1.5, "max_m": 0.5}


def test_unknown_method_is_loud():
    with pytest.raises(ValueError, match=r"unknown method 'smote'; known methods: \['ce'"):
        get_method("smote")


def test_params_route_to_the_right_part():
    assert split_params("bbfl", {"gamma": 1.0}) == ({"gamma": 1.0}, {}, {})
    assert split_params("ros", {"redraw": True}) == ({}, {"redraw": True}, {})
    assert set(default_params("ldam_drw")) == {"max_m", "s", "beta", "drw_start"}
    assert split_params("thresholding", {"tau": 0.5}) == ({}, {}, {"tau": 0.5})
    with pytest.raises(ValueError, match="method 'ros' has no parameter 'gamma'"):
        split_params("ros", {"gamma": 2})
    assert build_loss("bbfl", [10, 5, 2], gamma=1.0).params["gamma"] == 1.0


def test_lmf_paper_alpha_beta():
    # LMF Table 6: HAM10000 / ResNet-50 → α 0.5, β 1.0; ODIR / DenseNet-121 → α 1.0, β 1.1
    assert resolve_params(
        "lmf", {"alpha": "paper", "beta": "paper"}, "ham10000", "resnet50.tv2_in1k"
    ) == {"alpha": 0.5, "beta": 1.0}
    assert resolve_params("lmf", {"beta": "paper", "gamma": 2.0}, "odir_eye", "densenet121") == {
        "beta": 1.1,
        "gamma": 2.0,
    }
    assert resolve_params("lmf", {"alpha": 2.0}, "synthetic", "test_resnet") == {"alpha": 2.0}
    with pytest.raises(
        ValueError, match="gives no alpha/beta for task 'synthetic' and model 'test_resnet'"
    ):
        resolve_params("lmf", {"alpha": "paper"}, "synthetic", "test_resnet")
    with pytest.raises(ValueError, match="only lmf's alpha and beta"):
        resolve_params("focal", {"gamma": "paper"}, "ham10000", "resnet50")


def test_config_check_names_the_key():
    cfg = dict(CONFIG, method_params={"lmf": {"alpha": "paper"}})
    with pytest.raises(
        ConfigError, match=r"config key 'method_params.lmf': .*no alpha/beta for task 'synthetic'"
    ):
        check_config(cfg)
    with pytest.raises(ConfigError, match=r"config key 'protocol': unknown protocol 'fast'"):
        check_config(dict(CONFIG, protocol="fast"))


def test_balanced_softmax_cb_ce_and_la_posthoc():
    # the two losses are trained, single-label methods; la_posthoc reuses ce and trains nothing
    assert get_method("balanced_softmax").trains and get_method("cb_ce").trains
    la = get_method("la_posthoc")
    assert not la.trains and la.base == "ce" and la.posthoc == "la_posthoc"
    for name in ("balanced_softmax", "cb_ce", "la_posthoc"):
        assert method_kinds(name) == ("multiclass", "binary")
    assert default_params("balanced_softmax") == {}
    assert default_params("cb_ce") == {"beta": 0.9999}
    assert default_params("la_posthoc") == {"tau": 1.0}  # τ fixed at 1 unless `tau: fit`
    assert split_params("la_posthoc", {"tau": "fit"}) == ({}, {}, {"tau": "fit"})
    assert build_loss("cb_ce", [10, 5, 2], beta=0.99).params == {"beta": 0.99}
    # on a multi-label task all three are skipped at planning time with a message
    cfg = {**CONFIG, "tasks": ["synthetic", "synthetic_ml"]}
    skips = {(t, m) for t, m, _ in check_config(dict(cfg))}
    assert {("synthetic_ml", m) for m in ("balanced_softmax", "cb_ce", "la_posthoc")} <= skips
    assert ("synthetic_ml", "thresholding") not in skips


def test_vs_loss_and_drs():
    vs, drs = get_method("vs_loss"), get_method("drs")
    assert vs.trains and vs.loss == "vs_loss" and vs.sampler == "shuffle" and vs.head == "linear"
    assert drs.trains and drs.loss == "ce" and drs.sampler == "drs" and drs.head == "linear"
    assert method_kinds("vs_loss") == ("multiclass", "binary")
    assert method_kinds("drs") == (
        "multiclass",
        "binary",
        "multilabel",
    )  # re-samples by sampling class
    assert default_params("vs_loss") == {"gamma": 0.3, "tau": 1.0}  # official VSLoss defaults
    assert default_params("drs") == {"drs_start": 0.8, "beta": 0.9999}
    assert default_params("drs")["drs_start"] == default_params("ldam_drw")["drw_start"]
    assert split_params("drs", {"drs_start": 0.5}) == ({}, {"drs_start": 0.5}, {})
    assert build_loss("vs_loss", [10, 5, 2], gamma=0.1).params == {"gamma": 0.1, "tau": 1.0}
    # vs_loss is skipped on a multi-label task at planning time; drs runs there
    cfg = {**CONFIG, "tasks": ["synthetic", "synthetic_ml"]}
    skips = {(t, m) for t, m, _ in check_config(dict(cfg))}
    assert ("synthetic_ml", "vs_loss") in skips and ("synthetic_ml", "drs") not in skips
