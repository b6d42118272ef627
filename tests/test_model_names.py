"""Model names checked against the stored timm/torchvision name lists: same answers as the libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imbench import model_names, models
from imbench.model_names import parse_model_name

ROOT = Path(__file__).resolve().parents[1]


def _experiment_models() -> list[str]:
    names = []
    for path in [ROOT / "config.yaml", *sorted((ROOT / "experiments").glob("*.yaml"))]:
        names += yaml.safe_load(path.read_text()).get("models", [])
    return list(dict.fromkeys(names))


NAMES = _experiment_models() + [
    "resnet50.torchvision",
    "resnet50.torchvision_imagenet1k_v1",
    "resnet50.torchvision_IMAGENET1K_V2",
    "densenet121.torchvision",
    "le2020_resnet50.tv_in1k",
    "le2020_densenet121.torchvision",
    "test_resnet",
    "resnet50.a1_in1k",
    "convnext_tiny.fb_in22k",
    "resnet50.",
]
# Names timm accepts that are not in the stored lists: they go through timm itself.
NOT_STORED = [
    "tv_resnet50"
]  # a deprecated alias (is_model() accepts it, list_models() leaves it out)
BAD = [
    "efficientnet_v2_s",
    "resnet50.no_such_tag",
    "nonexistent.torchvision",
    "resnet50.torchvision_imagenet9k",
    "vit_b_16.torchvision",
    "squeezenet1_0.torchvision",
    "le2020_nonexistent",
    "le2020_le2020_resnet50",
    "le2020_resnet50.no_such_tag",
    "",
    "nonexistent",
    "nonexistent.tag",
]


def _without_stored_lists(monkeypatch):
    monkeypatch.setattr(model_names, "_stored_timm", lambda: None)
    monkeypatch.setattr(model_names, "_stored_torchvision", lambda: None)


def test_stored_lists_match_the_installed_libraries():
    stored = json.loads(model_names.NAME_LISTS.read_text())
    now = model_names.name_lists()
    assert stored["timm"]["version"] == now["timm"]["version"], (
        "rewrite with `python -m imbench.model_names`"
    )
    assert stored["torchvision"]["version"] == now["torchvision"]["version"], (
        "rewrite with `python -m imbench.model_names`"
    )
    assert stored == json.loads(json.dumps(now))
    # The stored lists are in use (they describe the installed versions).
    assert model_names._stored_timm() is not None
    assert model_names._stored_torchvision() is not None


def test_stored_timm_names_are_what_timm_accepts():
    import timm

    stored_models, stored_tagged = model_names._stored_timm()
    assert stored_models == set(timm.list_models())
    assert all(timm.is_model(n) for n in stored_models)
    for name in stored_tagged:  # every tagged name has a pretrained config (the tag check passes)
        assert timm.models.get_pretrained_cfg(name) is not None, name
    assert set(timm.list_pretrained()) <= stored_tagged


def _from_stored_lists(name: str):
    name = name.removeprefix(model_names.LE2020_PREFIX)
    arch, _, tag = name.partition(".")
    return model_names._stored_spec(name, arch, tag)


@pytest.mark.parametrize("name", NAMES + NOT_STORED)
def test_stored_lists_give_the_libraries_answer(name, monkeypatch):
    assert (_from_stored_lists(name) is None) == (name in NOT_STORED)
    fast = parse_model_name(name)
    _without_stored_lists(monkeypatch)
    assert parse_model_name(name) == fast


@pytest.mark.parametrize("name", BAD)
def test_unknown_names_keep_the_libraries_messages(name, monkeypatch):
    with pytest.raises(ValueError) as fast:
        parse_model_name(name)
    _without_stored_lists(monkeypatch)
    with pytest.raises(ValueError) as slow:
        parse_model_name(name)
    assert str(fast.value) == str(slow.value)


def test_other_library_versions_fall_back_to_the_libraries(monkeypatch):
    monkeypatch.setattr(model_names, "_installed_version", lambda dist: "0.0.0")
    assert model_names._stored_timm.__wrapped__() is None
    assert model_names._stored_torchvision.__wrapped__() is None


def test_models_reexports_the_names_module():
    for attr in (
        "ModelSpec",
        "parse_model_name",
        "is_model",
        "base_name",
        "TORCHVISION_TAG",
        "LE2020_PREFIX",
    ):
        assert getattr(models, attr) is getattr(model_names, attr)


def test_known_names_need_neither_timm_nor_torch():
    code = (
        "import sys; from imbench.model_names import parse_model_name\n"
        f"for n in {NAMES!r}: parse_model_name(n)\n"
        "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
