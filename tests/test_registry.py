"""Registries and configuration: names agree everywhere, parameters route and resolve."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imbench.config import ConfigError, check_config, schema_with_plugins
from imbench.data.registry import dataset_names
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
    # method names are not copied into the schema: x-registry checks them against the registry
    assert "enum" not in props["methods"]["items"]
    assert props["methods"]["items"]["x-registry"] == "methods"
    loaded = schema_with_plugins()["properties"]
    assert loaded["tasks"]["items"]["anyOf"][0]["enum"] == list(TASKS)
    assert sorted(loaded["download"]["properties"]) == sorted(dataset_names())
    assert sorted(props["protocol"]["enum"]) == sorted(PROTOCOLS)


def test_default_grid_is_a_registered_selection():
    # The default grid is a fixed selection (its run time is part of the README's promise); it runs
    # no paper variant (exact copies of one paper's baselines, run by that paper's experiment).
    cfg = dict(CONFIG)
    assert check_config(cfg) == []
    assert set(cfg["methods"]) <= set(list_methods(variants=False))
    # every other method runs in the embedded long-tail grid (experiments/longtail_demo.yaml)
    assert LONGTAIL["methods"] == ["all"]
    assert set(list_methods()) - set(list_methods(variants=False)) == {"focal_lmf", "ldam_lmf"}
    assert len(CONFIG["seeds"]) >= 2


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


# ----------------------------------------------------------------------------- one source of truth


def test_group_words_expand_in_registration_order():
    from imbench.methods import expand_methods

    variants = [m for m in METHODS if get_method(m).variant_of]
    assert expand_methods(["all"]) == list_methods(variants=False)
    assert expand_methods(["variants"]) == variants == ["focal_lmf", "ldam_lmf"]
    assert expand_methods(["all", "variants"]) == list_methods(variants=False) + variants
    assert expand_methods(["focal_lmf", "ce"]) == ["focal_lmf", "ce"]
    with pytest.raises(ValueError, match=r"method 'ce' is listed twice \(the group 'all'"):
        expand_methods(["ce", "all"])


def test_methods_all_in_a_config_is_expanded_once_in_place():
    from imbench.config import prepare_config, validate_config

    cfg = dict(CONFIG, methods="all")
    validate_config(cfg)
    assert cfg["methods"] == list_methods(variants=False)
    assert prepare_config(cfg)["methods"] == list_methods(variants=False)  # idempotent
    cfg = dict(CONFIG, methods=["variants", "ce"])
    validate_config(cfg)
    assert cfg["methods"] == ["focal_lmf", "ldam_lmf", "ce"]
    with pytest.raises(ConfigError, match=r"^config key 'methods': method 'ce' is listed twice"):
        validate_config(dict(CONFIG, methods=["all", "ce"]))


def test_unknown_method_name_is_one_line_from_the_registry():
    from imbench.config import validate_config

    with pytest.raises(ConfigError) as err:
        validate_config(dict(CONFIG, methods=["ce", "smote"]))
    msg = str(err.value)
    assert msg.startswith("config key 'methods.1': 'smote' is not allowed; allowed values: ['ce'")
    assert "\n" not in msg and all(m in msg for m in METHODS)


def test_no_method_takes_a_group_name():
    from imbench.methods import Method, register_method

    for word in ("all", "variants"):
        with pytest.raises(ValueError, match="stands for a group of methods"):
            register_method(Method(word, "loss", "ce"))
        assert word not in METHODS


def test_every_module_of_methods_builtin_is_imported():
    from imbench.methods import builtin

    folder = Path(builtin.__file__).parent
    found = sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_"))
    assert builtin.MODULES == found


def test_methods_doc_tables_are_in_step_with_the_registry(tmp_path):
    from imbench import docs

    text = docs.METHODS_DOC.read_text()
    assert docs.render(text) == text, "run `python -m imbench.docs`"
    for name in METHODS:
        assert f"| `{name}` |" in text
    # a stale copy is found and rewritten; missing markers are one line naming the file
    stale = tmp_path / "methods.md"
    stale.write_text(text.replace("| `ce` | baseline | `ce` |", "| `ce` | old | `ce` |"))
    assert docs.main(["--check", str(stale)]) == 1
    assert docs.main([str(stale)]) == 0 and stale.read_text() == text
    bare = tmp_path / "bare.md"
    bare.write_text("# Methods\n")
    with pytest.raises(ValueError, match=r"bare.md: expected one pair of lines"):
        docs.render(bare.read_text(), bare)
