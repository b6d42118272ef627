"""Model names, backbones, heads, input sizes and the pretrained-weights cache (no network)."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from imbench import models
from imbench.models import (
    Classifier,
    CosineClassifier,
    MissingWeightsError,
    TorchvisionBackbone,
    create_model,
    input_size,
    is_model,
    parse_model_name,
    prefetch_weights,
    weights_available,
)

# Every model of the paper experiments (SPEC §5), in the names the experiment files use.
PAPER_MODELS = [
    "efficientnet_v2_s.torchvision",
    "resnet50.tv2_in1k",
    "densenet121.tv_in1k",  # LMF
    "inception_v3",
    "mobilenetv2_100",
    "resnet50",  # BBFL
    "resnet101",
    "seresnext101_32x4d",  # Dong
    "le2020_resnet50",
    "vgg16",
    "mobilenetv1_100",
    "efficientnet_b1",  # Le et al.
]
LARGE = {"vgg16", "seresnext101_32x4d", "resnet101"}  # > 40 M parameters: slow to build on 2 cores


def _input(name: str) -> torch.Tensor:
    side = 80 if "inception" in name else 64  # Inception-v3 needs ≥ 75 px
    return torch.rand(2, 3, side, side)


@pytest.fixture(autouse=True)
def _few_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Empty Hugging Face and torch hub caches, downloads switched off."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def _fake_hf_file(cache, repo: str, filename: str = "model.safetensors", payload: bytes = b"x"):
    """A file laid out as huggingface_hub caches it (refs/main → snapshots/<commit>/<file>)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (snap / filename).write_bytes(payload)
    return snap / filename


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    PAPER_MODELS
    + [
        "resnet50.torchvision_imagenet1k_v1",
        "le2020_resnet50.tv_in1k",
        "le2020_densenet121.torchvision",
        "test_resnet",
        "tv_resnet50",
    ],
)
def test_is_model_accepts_every_form(name):
    assert is_model(name)


@pytest.mark.parametrize(
    "name, reason",
    [
        (
            "efficientnet_v2_s",
            "not a timm model name",
        ),  # torchvision-only architecture without the tag
        ("resnet50.no_such_tag", "no pretrained tag 'no_such_tag'"),
        ("nonexistent.torchvision", "not a torchvision classification model"),
        ("resnet50.torchvision_imagenet9k", "has no weights 'imagenet9k'"),
        ("vit_b_16.torchvision", "not supported as a backbone"),
        ("le2020_nonexistent", "is not a model name"),
        ("le2020_le2020_resnet50", "cannot be nested"),
        ("", "non-empty"),
    ],
)
def test_unknown_names_are_refused_with_the_reason(name, reason):
    assert not is_model(name)
    with pytest.raises(ValueError, match=reason):
        parse_model_name(name)
    with pytest.raises(ValueError, match=reason):
        create_model(name, 3)


def test_parsed_forms():
    tv = parse_model_name("efficientnet_v2_s.torchvision")
    assert (tv.source, tv.arch, tv.weights) == ("torchvision", "efficientnet_v2_s", "IMAGENET1K_V1")
    assert (
        parse_model_name("resnet50.torchvision").weights == "IMAGENET1K_V2"
    )  # torchvision's DEFAULT
    assert parse_model_name("resnet50.torchvision_IMAGENET1K_V1").weights == "IMAGENET1K_V1"
    le = parse_model_name("le2020_resnet50.tv_in1k")
    assert (le.source, le.inner.source, le.inner.arch) == ("le2020", "timm", "resnet50.tv_in1k")
    # The architecture stays before the first "." (paper tables and the LMF α/β table match on it).
    assert models.base_name("efficientnet_v2_s.torchvision") == "efficientnet_v2_s"
    assert models.base_name("resnet50.tv2_in1k") == "resnet50"


def test_input_sizes():
    assert input_size("inception_v3") == 299
    assert input_size("inception_v3.torchvision") == 299
    assert input_size("resnet50") == 224
    assert input_size("resnet50.tv2_in1k") == 224  # trained at 176 px, evaluated at 224 px
    assert input_size("densenet121.tv_in1k") == 224
    assert input_size("efficientnet_v2_s.torchvision") == 384  # torchvision's evaluation crop
    assert input_size("efficientnet_b1") == 240
    assert input_size("le2020_resnet50") == 224
    assert input_size("test_resnet") == 160


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in PAPER_MODELS]
)
def test_every_paper_model_builds_and_runs(name):
    torch.manual_seed(0)
    model = create_model(name, 5, pretrained=False)
    model.train()
    x = _input(name)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        feats = model.features(x)
    assert feats.ndim == 2 and feats.shape[0] == 2
    assert isinstance(model.head, nn.Linear) and model.head.in_features == feats.shape[1]


@pytest.mark.parametrize(
    "name, width",
    [
        ("efficientnet_v2_s.torchvision", 1280),
        ("resnet50.torchvision", 2048),
        ("densenet121.torchvision", 1024),
        ("inception_v3.torchvision", 2048),
        ("mobilenet_v2.torchvision", 1280),
    ],
)
def test_torchvision_backbone_gives_pooled_features_and_our_head(name, width):
    model = create_model(name, 4, head="cosine")
    assert isinstance(model.backbone, TorchvisionBackbone)
    assert isinstance(model.head, CosineClassifier)
    assert model.backbone.num_features == width
    children = [n for n, _ in model.backbone.named_children()]
    assert "global_pool" in children or name.startswith(
        ("densenet", "mobilenet_v2")
    )  # functional pooling there
    assert not any(isinstance(m, nn.Linear) and m.out_features == 1000 for m in model.modules())
    model.eval()
    x = _input(name)
    with torch.no_grad():
        assert model.features(x).shape == (2, width)
        out = model(x)
    assert out.shape == (2, 4) and out.abs().max() <= 1 + 1e-5


def test_torchvision_model_rebuilt_without_weights_loads_its_state():
    """A trained cell is reloaded with pretrained=False (explain.py): same modules, same function."""
    torch.manual_seed(0)
    a = create_model("inception_v3.torchvision", 3).eval()
    b = create_model("inception_v3.torchvision", 3).eval()
    b.load_state_dict(a.state_dict())
    x = _input("inception_v3")
    with torch.no_grad():
        assert torch.allclose(a(x), b(x))
    # train()/eval() reach the wrapped torchvision module itself
    a.train()
    assert a.backbone._model.training
    a.eval()
    assert not a.backbone._model.training


def test_le2020_head_shape():
    model = create_model("le2020_resnet50", 7)
    assert isinstance(model, Classifier)
    dropout, fc1, relu = model.neck
    assert isinstance(dropout, nn.Dropout) and dropout.p == models.LE2020_DROPOUT
    assert (fc1.in_features, fc1.out_features) == (2048, models.LE2020_HIDDEN)
    assert isinstance(relu, nn.ReLU)
    assert (model.head.in_features, model.head.out_features) == (models.LE2020_HIDDEN, 7)
    model.eval()
    x = _input("resnet50")
    with torch.no_grad():
        assert model.features(x).shape == (2, models.LE2020_HIDDEN)
        assert (model.features(x) >= 0).all()  # after the ReLU
        assert model(x).shape == (2, 7)
    # drop_rate replaces the neck's dropout; the cosine head sits on the hidden layer
    m2 = create_model("le2020_resnet50", 2, head="cosine", drop_rate=0.3)
    assert (
        m2.neck[0].p == 0.3
        and isinstance(m2.head, CosineClassifier)
        and m2.head.weight.shape == (2, 512)
    )


def test_timm_vgg_uses_its_pre_logits_width():
    model = create_model("vgg11", 3)  # same family as vgg16, faster to build
    assert model.head.in_features == 4096


def test_existing_api_unchanged():
    model = create_model("test_resnet", 7, head="linear", pretrained=False, drop_rate=0.1)
    assert isinstance(model.backbone, nn.Module) and model.neck is None
    x = torch.rand(3, 3, 32, 32)
    assert model(x).shape == (3, 7)
    assert model.features(x).shape == (3, model.backbone.num_features)
    with pytest.raises(ValueError, match="unknown head 'mlp'"):
        create_model("test_resnet", 7, head="mlp")


# ----------------------------------------------------------------------------- weights cache


@pytest.mark.parametrize(
    "name", ["resnet50.tv2_in1k", "efficientnet_v2_s.torchvision", "le2020_resnet50"]
)
def test_offline_missing_weights_raise_one_clear_error(empty_caches, name):
    assert not weights_available(name)
    with pytest.raises(MissingWeightsError) as info:
        create_model(name, 3, pretrained=True)
    msg = str(info.value)
    assert name in msg and "HF_HUB_OFFLINE=1" in msg
    assert f"imbench weights --models {name}" in msg
    assert "snakemake --cores 1 prefetch_weights --configfile" in msg
    assert str(empty_caches) in msg  # names the cache it looked in
    assert "\n" not in msg


def test_weights_found_in_fake_caches(empty_caches):
    assert not weights_available("resnet50.tv2_in1k")
    _fake_hf_file(empty_caches / "hf" / "hub", "timm/resnet50.tv2_in1k")
    assert weights_available("resnet50.tv2_in1k")
    assert not weights_available("resnet50")  # another tag, another repo
    # torchvision weights: the file of the weights URL in $TORCH_HOME/hub/checkpoints
    ckpt = empty_caches / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "efficientnet_v2_s-dd5fe13b.pth").write_bytes(b"x")
    assert weights_available("efficientnet_v2_s.torchvision")
    assert not weights_available("resnet50.torchvision")


def test_cached_timm_weights_load_offline(empty_caches, monkeypatch):
    """With the file in the cache, pretrained=True loads it without any network access."""
    import huggingface_hub.constants
    import safetensors.torch

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    torch.manual_seed(1)
    reference = timm.create_model("test_resnet.r160_in1k")
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    path = _fake_hf_file(empty_caches / "hf" / "hub", "timm/test_resnet.r160_in1k")
    safetensors.torch.save_file(state, str(path))
    model = create_model("test_resnet", 3, pretrained=True)
    conv = next(k for k in state if k.endswith("weight") and state[k].ndim == 4)
    assert torch.equal(model.backbone.state_dict()[conv], state[conv])


def test_failed_download_is_reported_as_missing_weights(empty_caches, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def no_network(*args, **kwargs):
        raise ConnectionError("name resolution failed")

    monkeypatch.setattr(models.timm, "create_model", no_network)
    with pytest.raises(
        MissingWeightsError,
        match=r"the download failed \(ConnectionError: name resolution failed\)",
    ):
        create_model("resnet50.tv2_in1k", 3, pretrained=True)
    # Without pretrained weights nothing is downloaded, and a real error is not disguised.
    with pytest.raises(ConnectionError):
        create_model("resnet50.tv2_in1k", 3, pretrained=False)


def test_prefetch_reports_cached_and_failed(empty_caches, capsys):
    _fake_hf_file(empty_caches / "hf" / "hub", "timm/resnet50.tv2_in1k")
    with pytest.raises(
        MissingWeightsError,
        match=r"could not fetch the pretrained weights of \['densenet121.tv_in1k'\]",
    ):
        prefetch_weights(["resnet50.tv2_in1k", "densenet121.tv_in1k"])
    out = capsys.readouterr().out
    assert "resnet50.tv2_in1k: cached" in out and "densenet121.tv_in1k: FAILED" in out


def test_weights_cli_check(empty_caches, capsys):
    _fake_hf_file(empty_caches / "hf" / "hub", "timm/resnet50.tv2_in1k")
    assert models.main(["--models", "resnet50.tv2_in1k", "--check"]) == 0
    assert models.main(["--models", "resnet50.tv2_in1k", "densenet121.tv_in1k", "--check"]) == 1
    out = capsys.readouterr().out
    assert "densenet121.tv_in1k: MISSING" in out
    assert models.main(["--models", "no_such_model"]) == 2
    assert models.main(["--models", "densenet121.tv_in1k"]) == 1  # offline: prefetch fails cleanly
    assert "HF_HUB_OFFLINE=1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- model families


def test_every_name_form_has_one_family():
    from imbench.models import FAMILIES, family, pretrained_weights_id

    assert set(FAMILIES) == {"timm", "torchvision", "le2020"}
    for name, source in (
        ("test_resnet", "timm"),
        ("resnet50.tv2_in1k", "timm"),
        ("efficientnet_v2_s.torchvision", "torchvision"),
        ("le2020_resnet50.tv_in1k", "le2020"),
    ):
        spec = parse_model_name(name)
        assert family(spec).source == source == spec.source
    assert parse_model_name("le2020_resnet50.tv_in1k").backbone.name == "resnet50.tv_in1k"
    assert pretrained_weights_id("efficientnet_v2_s.torchvision") == (
        "torchvision:efficientnet_v2_s.IMAGENET1K_V1"
    )
    assert pretrained_weights_id("le2020_resnet50.tv_in1k") == "timm:resnet50.tv_in1k"


def test_a_new_family_is_one_entry(monkeypatch):
    from imbench import models
    from imbench.models import FAMILIES, ModelFamily, ModelSpec, _WeightsFile

    class Pool(torch.nn.Module):
        num_features = 3

        def forward(self, x):
            return x.mean(dim=(2, 3))

    monkeypatch.setitem(
        FAMILIES,
        "pool",
        ModelFamily(
            "pool",
            "pool_<n>",
            backbone=lambda spec, pretrained, drop_rate, label: Pool(),
            weights_file=lambda spec: _WeightsFile("none"),
            input_size=lambda spec: 40,
        ),
    )
    monkeypatch.setattr(models, "parse_model_name", lambda name: ModelSpec(name, "pool", name))
    model = models.create_model("pool_a", 4, head="cosine")
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 4)
    assert models.input_size("pool_a") == 40
    assert models.weights_location("pool_a") == "no published pretrained weights"
