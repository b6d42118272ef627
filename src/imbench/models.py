"""Models: a backbone (pooled features) + the classifier head a method asks for.

Model names (the ``models`` list of a configuration; every form matches ``[A-Za-z0-9_.]+``, so a
name is also a safe folder name under ``results/``):

``<timm name>``
    Any timm model, optionally with a pretrained tag: ``resnet50``, ``resnet50.tv2_in1k``,
    ``densenet121.tv_in1k``, ``inception_v3``. This is the default for everything. Note that timm
    already carries most torchvision weights under its own names (``resnet50.tv_in1k`` = torchvision
    ``IMAGENET1K_V1``, ``resnet50.tv2_in1k`` = ``IMAGENET1K_V2``, ``densenet121.tv_in1k``,
    ``vgg16.tv_in1k``, ``inception_v3.tv_in1k``).
``<torchvision architecture>.torchvision`` / ``<architecture>.torchvision_<WEIGHTS>``
    A torchvision classification model, for architectures timm does not have with the weights a
    paper used: ``efficientnet_v2_s.torchvision`` (the LMF paper's EfficientNetV2-S,
    ``IMAGENET1K_V1``). The bare tag takes torchvision's ``DEFAULT`` weights;
    ``resnet50.torchvision_imagenet1k_v1`` names one weights enum member (case-insensitive). The
    final ImageNet ``Linear`` is removed (any dropout before it is kept, as in the papers' code that
    swapped only that layer) and our head takes its place. The architecture is written first and
    the source as the tag, like timm's ``arch.tag``: code that matches paper models by the part
    before the first ``.`` (the LMF α/β table, paper-vs-ours) works unchanged. A prefix such as
    ``tv:`` is not used because ``:`` is not allowed by the configuration schema and is awkward
    in file paths, and timm already owns ``tv_*`` names (``tv_resnet50`` is a timm alias).
``le2020_<model name>``
    Le et al. 2020's modified network: the backbone's global-average-pooled features, then
    dropout (``LE2020_DROPOUT`` = 0.5) and two fully connected layers, ``Linear(D, 512)`` + ReLU
    and the classifier (the method's head). ``le2020_resnet50`` is their ResNet-50;
    ``le2020_resnet50.tv_in1k`` the same on torchvision's original ImageNet weights. The paper
    states the layer types, not the width or the dropout rate: 512 (``LE2020_HIDDEN``) and 0.5 are
    our choices. ``drop_rate > 0`` replaces the 0.5. ``Classifier.features`` returns the 512-d
    hidden layer (the penultimate features).

Each form is one :class:`ModelFamily` of :data:`FAMILIES`: its backbone builder, where its weights
are published and cached, how they are fetched, its native input size, and (``le2020_``) the
layers it adds. Code that needs one of these asks the family of the parsed name; nothing else
branches on the source.

Heads (from the method, SPEC §4):

- ``linear``: ``nn.Linear`` on the pooled features (what every paper uses, LMF included).
- ``cosine``: cosine-similarity classifier (LDAM's ``NormedLinear``): logits are
  cos(feature, w_c) ∈ [−1, 1]; LDAM's scale ``s`` (30) lives in the loss. Without it, ``s``-scaled
  raw logits make LDAM diverge (LDAM-DRW issue #20), which is why ``ldam``/``ldam_drw`` use it.

Pretrained weights come from the local caches: the Hugging Face hub cache for timm
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) and the torch hub
cache for torchvision and for the few timm weights served by URL (``$TORCH_HOME/hub/checkpoints``,
else ``~/.cache/torch/hub/checkpoints``). :func:`prefetch_weights` (``imbench weights --models
...``) fills them on a machine with internet access. When weights are missing and cannot be
downloaded (``HF_HUB_OFFLINE=1``, or the download fails), :func:`create_model` raises one
:class:`MissingWeightsError` naming the weights, the cache and the pre-fetch command.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .model_names import (  # noqa: F401  (re-exported)
    _TV_UNSUPPORTED,
    LE2020_PREFIX,
    REGISTERED_FAMILIES,
    TORCHVISION_TAG,
    ModelFamily,
    ModelSpec,
    _torchvision_archs,
    _tv_weights_enum,
    base_name,
    is_model,
    parse_model_name,
)

LE2020_HIDDEN = 512
LE2020_DROPOUT = 0.5
DEFAULT_INPUT_SIZE = 224
HEADS = ("linear", "cosine")

PREFETCH_HINT = (
    "pre-fetch them on a machine with internet access: `imbench weights --models {names}` "
    "(or `snakemake --cores 1 prefetch_weights --configfile <experiment>.yaml` for every model "
    "of an experiment), then copy the cache here or point HF_HOME/TORCH_HOME at it; or train "
    "without them (protocol_overrides: {{pretrained: false}})"
)

__all__ = [
    "Classifier",
    "CosineClassifier",
    "MissingWeightsError",
    "ModelSpec",
    "TorchvisionBackbone",
    "base_name",
    "create_model",
    "input_size",
    "is_model",
    "parse_model_name",
    "prefetch_weights",
    "weights_available",
    "weights_location",
    "main",
]


class MissingWeightsError(RuntimeError):
    """Pretrained weights are not in the local cache and cannot be downloaded."""


# ----------------------------------------------------------------------------- modules


class CosineClassifier(nn.Module):
    """logits_c = <x/|x|, w_c/|w_c|>; no bias."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.uniform_(self.weight, -1 / math.sqrt(in_features), 1 / math.sqrt(in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


class Classifier(nn.Module):
    """``backbone`` (pooled features), an optional ``neck`` (Le et al.'s dropout + FC + ReLU), ``head``.

    ``features(x)`` is the input of the head: the pooled backbone features, or the neck's output.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, neck: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.backbone_frozen = False

    def freeze_backbone(self) -> Classifier:
        """Linear probe (setting ``linear_probe``): the backbone's parameters get no gradient (so no
        optimiser step or weight decay changes them) and the backbone stays in eval mode under
        ``train()`` (its batch-norm statistics and dropout stay fixed); the neck and head train."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()
        return self

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)
        return x if self.neck is None else self.neck(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TorchvisionBackbone(nn.Module):
    """A torchvision classifier without its final ImageNet layer, shaped like a timm backbone.

    The model's sub-modules are registered here under their own names, except the global pooling
    (``avgpool`` → ``global_pool``) and the classifier block (``fc``/``classifier``/``heads`` →
    ``head``), the names timm uses. Code that walks a timm backbone's children up to its pooling
    (Grad-CAM's target layer) therefore works on it too. ``forward`` runs the torchvision model.
    """

    _RENAME = {"avgpool": "global_pool", "fc": "head", "classifier": "head", "heads": "head"}

    def __init__(self, model: nn.Module, num_features: int, drop_rate: float = 0.0):
        super().__init__()
        own = [n for n, _ in model.named_parameters(recurse=False)] + [
            n for n, _ in model.named_buffers(recurse=False)
        ]
        if own:
            raise ValueError(
                f"torchvision model {type(model).__name__} keeps tensors outside its sub-modules "
                f"({own}); use its timm version"
            )
        for name, child in model.named_children():
            if child is not None:
                self.add_module(self._RENAME.get(name, name), child)
        object.__setattr__(
            self, "_model", model
        )  # not registered: its sub-modules are registered above
        self.drop = nn.Dropout(drop_rate)
        self.num_features = num_features

    def train(self, mode: bool = True):
        super().train(mode)
        self._model.training = mode  # the root module is not a registered child
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self._model(x))


# ----------------------------------------------------------------------------- names
# Parsing and checking names needs neither torch nor timm for the usual names: it lives in
# model_names.py (imported at planning time) and is re-exported here.


def input_size(name: str) -> int:
    """The model's native input size in pixels (square side).

    torchvision: the crop size of its weights' evaluation transform (``efficientnet_v2_s`` 384,
    ``inception_v3`` 299). timm: the pretrained config's ``input_size`` (299 for ``inception_v3``),
    or its ``test_input_size`` where weights were trained at a reduced resolution below 224 px
    (torchvision's V2 recipe: ``resnet50.tv2_in1k`` trains at 176 px, evaluates at 224 px).
    224 where there is no pretrained config.
    """
    spec = parse_model_name(name).backbone
    return family(spec).input_size(spec)


def _torchvision_input_size(spec: ModelSpec) -> int:
    transforms = _tv_weights_enum(spec.arch)[spec.weights].transforms
    crop = getattr(transforms, "keywords", {}).get("crop_size")
    return int(crop) if crop else DEFAULT_INPUT_SIZE


def _timm_input_size(spec: ModelSpec) -> int:
    cfg = _timm_cfg(spec.arch)
    if cfg is None or not cfg.input_size:
        return DEFAULT_INPUT_SIZE
    size = int(cfg.input_size[-1])
    if size < DEFAULT_INPUT_SIZE and cfg.test_input_size:
        size = int(cfg.test_input_size[-1])
    return size


def _timm_cfg(name: str):
    try:
        return timm.models.get_pretrained_cfg(name)
    except RuntimeError:
        return None


# ----------------------------------------------------------------------------- weights and caches


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline() -> bool:
    """True when downloads are switched off (``HF_HUB_OFFLINE=1``; read at call time)."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE"))


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment names it now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def torch_checkpoints_dir() -> Path:
    """torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``), where torchvision caches."""
    return Path(torch.hub.get_dir()).expanduser() / "checkpoints"


@dataclass(frozen=True)
class _WeightsFile:
    kind: str  # hf | url | none
    repo: str = ""  # hf: repo id; url: the URL
    filenames: tuple[str, ...] = ()  # hf: candidate file names (the first cached one is used)
    revision: str | None = None


def _weights_file(spec: ModelSpec) -> _WeightsFile:
    spec = spec.backbone
    return family(spec).weights_file(spec)


def _torchvision_weights_file(spec: ModelSpec) -> _WeightsFile:
    return _WeightsFile("url", _tv_weights_enum(spec.arch)[spec.weights].url)


def _timm_weights_file(spec: ModelSpec) -> _WeightsFile:
    cfg = _timm_cfg(spec.arch)
    if cfg is None:
        return _WeightsFile("none")
    # timm's own order (timm.models._builder._resolve_pretrained_source): the HF hub when the
    # config names a hub id, else the URL (torch hub cache).
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = (
            (cfg.hf_hub_filename,)
            if cfg.hf_hub_filename
            else ("model.safetensors", "pytorch_model.bin")
        )
        return _WeightsFile("hf", repo, names, revision or None)
    if cfg.url:
        return _WeightsFile("url", cfg.url)
    return _WeightsFile("none")


def _url_cache_path(url: str) -> Path:
    return torch_checkpoints_dir() / os.path.basename(urlparse(url).path)


def weights_location(name: str) -> str:
    """Where the pretrained weights of ``name`` come from and are cached, in words."""
    wf = _weights_file(parse_model_name(name))
    if wf.kind == "hf":
        return f"Hugging Face Hub {wf.repo} ({' or '.join(wf.filenames)}) in the cache {hf_cache_dir()}"
    if wf.kind == "url":
        return f"{wf.repo} in the cache {torch_checkpoints_dir()}"
    return "no published pretrained weights"


def weights_available(name: str) -> bool:
    """True when the pretrained weights of ``name`` are in the local cache (nothing is downloaded)."""
    wf = _weights_file(parse_model_name(name))
    if wf.kind == "hf":
        from huggingface_hub import try_to_load_from_cache

        cache = hf_cache_dir()
        return any(
            isinstance(
                try_to_load_from_cache(wf.repo, f, cache_dir=cache, revision=wf.revision), str
            )
            for f in wf.filenames
        )
    if wf.kind == "url":
        return _url_cache_path(wf.repo).is_file()
    return False


def _missing(name: str, reason: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"pretrained weights of model {name!r} ({weights_location(name)}) are not cached "
        f"and {reason}; " + PREFETCH_HINT.format(names=name)
    )


def _with_weights(name: str, build):
    """Run ``build()`` (which loads pretrained weights), turning a missing/undownloadable file into
    one :class:`MissingWeightsError`. Errors when the weights were cached are not masked."""
    spec = parse_model_name(name)
    if _weights_file(spec).kind == "none":
        raise MissingWeightsError(
            f"model {name!r} has no published pretrained weights; train it with "
            f"protocol_overrides: {{pretrained: false}}"
        )
    if weights_available(name):
        return build()
    if offline():
        raise _missing(name, "downloads are switched off (HF_HUB_OFFLINE=1)")
    try:
        return build()
    except MissingWeightsError:
        raise
    except (
        Exception
    ) as exc:  # network errors come in many types (requests, urllib, huggingface_hub)
        raise _missing(
            name,
            f"the download failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
        ) from exc


def prefetch_weights(names, log=print) -> dict[str, str]:
    """Download the pretrained weights of ``names`` into the local caches; return name → status.

    Already cached weights are not downloaded again. Every failure is collected and raised at the end
    as one :class:`MissingWeightsError` listing the models.
    """
    status, failed = {}, []
    for name in dict.fromkeys(names):
        spec = parse_model_name(name)
        wf = _weights_file(spec)
        if wf.kind == "none":
            status[name] = "no published weights"
        elif weights_available(name):
            status[name] = "cached"
        else:
            try:
                _with_weights(name, lambda spec=spec: _download(spec))
                status[name] = "downloaded"
            except MissingWeightsError as exc:
                failed.append(name)
                status[name] = f"failed: {exc}"
        log(
            f"{name}: {status[name] if not status[name].startswith('failed') else 'FAILED'} "
            f"({weights_location(name)})"
        )
    if failed:
        raise MissingWeightsError(
            f"could not fetch the pretrained weights of {failed}: "
            + "; ".join(status[n] for n in failed)
        )
    return status


def _download(spec: ModelSpec) -> None:
    spec = spec.backbone
    family(spec).download(spec)


def _torchvision_download(spec: ModelSpec) -> None:
    _tv_weights_enum(spec.arch)[spec.weights].get_state_dict(progress=True)


def _timm_download(spec: ModelSpec) -> None:
    # Build once with pretrained=True, so the files fetched are exactly the ones timm reads.
    timm.create_model(spec.arch, pretrained=True, num_classes=0, cache_dir=hf_cache_dir())


# ----------------------------------------------------------------------------- building


def _timm_backbone(spec: ModelSpec, pretrained: bool, drop_rate: float, label: str) -> nn.Module:
    def build():
        return timm.create_model(
            spec.arch,
            pretrained=pretrained,
            num_classes=0,
            drop_rate=drop_rate,
            cache_dir=hf_cache_dir(),
        )

    return _with_weights(label, build) if pretrained else build()


def _torchvision_backbone(
    spec: ModelSpec, pretrained: bool, drop_rate: float, label: str
) -> TorchvisionBackbone:
    from torchvision.models import get_model

    kwargs = {}
    if spec.arch in ("inception_v3", "googlenet"):
        # No auxiliary classifier; transform_input as torchvision sets it for the pretrained weights,
        # also without them, so a model rebuilt with pretrained=False computes the same function.
        kwargs = {"aux_logits": False, "transform_input": True, "init_weights": not pretrained}

    def build():
        weights = _tv_weights_enum(spec.arch)[spec.weights] if pretrained else None
        return get_model(spec.arch, weights=weights, **kwargs)

    model = _with_weights(label, build) if pretrained else build()
    last = None
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == 1000:
            last = (mod_name, module)
    if last is None:
        raise ValueError(
            f"model {spec.name!r}: no final Linear layer to replace (not supported; use a timm model)"
        )
    parent_name, _, attr = last[0].rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, nn.Identity())
    return TorchvisionBackbone(model, last[1].in_features, drop_rate)


def _backbone(spec: ModelSpec, pretrained: bool, drop_rate: float, label: str) -> nn.Module:
    """The backbone of ``spec``; ``label`` is the model name the user gave (named in errors)."""
    return family(spec).backbone(spec, pretrained, drop_rate, label)


def _feature_width(backbone: nn.Module) -> int:
    """Width of the backbone's output. timm models whose pre-logits layer differs from the last
    feature map (VGG's 4096-d ConvMlp) report it as ``head_hidden_size``."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def create_model(
    name: str,
    num_classes: int,
    head: str = "linear",
    pretrained: bool = False,
    drop_rate: float = 0.0,
    freeze_backbone: bool = False,
) -> Classifier:
    """Build model ``name`` (any form of the module docstring) with a fresh ``head`` for ``num_classes``.

    ``freeze_backbone``: a linear probe (:meth:`Classifier.freeze_backbone`).

    ``pretrained``: ImageNet weights from the local cache (downloaded into it when allowed);
    missing weights that cannot be fetched raise :class:`MissingWeightsError`. ``drop_rate``:
    dropout before the classifier (timm's ``drop_rate``; for ``le2020_*`` it replaces the neck's 0.5).
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected 'linear' or 'cosine'")
    spec = parse_model_name(name)
    fam = family(spec)
    neck = None
    if fam.neck is not None:  # a family that wraps another: its backbone, then the neck
        backbone = _backbone(spec.inner, pretrained, 0.0, name)
        neck, n_feat = fam.neck(_feature_width(backbone), drop_rate)
    else:
        backbone = _backbone(spec, pretrained, drop_rate, name)
        n_feat = _feature_width(backbone)
    layer: nn.Module = (
        nn.Linear(n_feat, num_classes)
        if head == "linear"
        else CosineClassifier(n_feat, num_classes)
    )
    model = Classifier(backbone, layer, neck)
    return model.freeze_backbone() if freeze_backbone else model


def _le2020_neck(width: int, drop_rate: float) -> tuple[nn.Module, int]:
    """Le et al. 2020's layers after the pooled features: dropout, ``Linear(width, 512)``, ReLU."""
    p = drop_rate if drop_rate > 0 else LE2020_DROPOUT
    neck = nn.Sequential(nn.Dropout(p), nn.Linear(width, LE2020_HIDDEN), nn.ReLU(inplace=True))
    return neck, LE2020_HIDDEN


# ----------------------------------------------------------------------------- model families


def _torchvision_weights_id(spec: ModelSpec) -> str:
    return f"torchvision:{spec.arch}.{spec.weights}"


def _timm_weights_id(spec: ModelSpec) -> str:
    cfg = _timm_cfg(spec.arch)
    return (
        f"timm:{cfg.architecture}.{cfg.tag}" if cfg is not None and cfg.tag else f"timm:{spec.arch}"
    )


#: ``ModelSpec.source`` -> its family. A new family is one entry here, and its name form in
#: :func:`imbench.model_names.parse_model_name` (which runs at planning time, without torch); a
#: plug-in registers its own with ``imbench.register_model_family`` (docs/extending.md).
FAMILIES: dict[str, ModelFamily] = {
    f.source: f
    for f in (
        ModelFamily(
            "timm",
            "<timm name>[.<pretrained tag>]",
            backbone=_timm_backbone,
            weights_file=_timm_weights_file,
            download=_timm_download,
            input_size=_timm_input_size,
            weights_id=_timm_weights_id,
        ),
        ModelFamily(
            "torchvision",
            f"<torchvision architecture>.{TORCHVISION_TAG}[_<WEIGHTS>]",
            backbone=_torchvision_backbone,
            weights_file=_torchvision_weights_file,
            download=_torchvision_download,
            input_size=_torchvision_input_size,
            weights_id=_torchvision_weights_id,
        ),
        ModelFamily("le2020", f"{LE2020_PREFIX}<model name>", neck=_le2020_neck),
    )
}


def family(spec: ModelSpec) -> ModelFamily:
    """The :class:`ModelFamily` of a parsed model name: a package family of :data:`FAMILIES`, or
    one registered by a plug-in (:func:`imbench.model_names.register_model_family`) with its unset
    parts filled in (:func:`_completed`)."""
    fam = FAMILIES.get(spec.source)
    return fam if fam is not None else _completed(REGISTERED_FAMILIES[spec.source])


def _completed(fam: ModelFamily) -> ModelFamily:
    """A registered family with defaults for what it leaves unset: no published weights (so
    ``pretrained`` raises :class:`MissingWeightsError` through :func:`_with_weights`), a native
    input size of :data:`DEFAULT_INPUT_SIZE`, weights named ``<source>:<model name>``."""
    build = fam.backbone

    def backbone(spec, pretrained, drop_rate, label):
        if pretrained:
            return _with_weights(label, lambda: build(spec, pretrained, drop_rate, label))
        return build(spec, pretrained, drop_rate, label)

    def no_download(spec):
        raise MissingWeightsError(f"model {spec.name!r} has no published pretrained weights")

    return dataclasses.replace(
        fam,
        backbone=backbone,
        weights_file=fam.weights_file or (lambda spec: _WeightsFile("none")),
        download=fam.download or no_download,
        input_size=fam.input_size or (lambda spec: DEFAULT_INPUT_SIZE),
        weights_id=fam.weights_id or (lambda spec: f"{fam.source}:{spec.arch}"),
    )


def pretrained_weights_id(name: str) -> str:
    """The pretrained weights of model ``name`` as ``run.json`` names them:
    ``torchvision:<arch>.<WEIGHTS>`` or ``timm:<arch>.<tag>`` (timm's default tag resolved); a
    wrapping family (``le2020_``) names its backbone's weights."""
    spec = parse_model_name(name).backbone
    return family(spec).weights_id(spec)


# ----------------------------------------------------------------------------- CLI


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imbench weights",
        description="Pre-fetch the pretrained weights of models into the local caches (Hugging Face hub "
        "cache for timm, torch hub cache for torchvision), or check that they are there.",
    )
    p.add_argument("--models", nargs="+", default=[], help="model names (any form imbench accepts)")
    p.add_argument(
        "--configfile",
        nargs="+",
        type=Path,
        default=[],
        help="take the models from these configuration files (merged over config.yaml as "
        "Snakemake's --configfile does)",
    )
    p.add_argument(
        "--base",
        type=Path,
        default=Path("config.yaml"),
        help="base configuration for --configfile (default: ./config.yaml when present)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="only report what is cached; exit 1 if anything is missing",
    )
    from .plugins import add_plugin_arguments

    add_plugin_arguments(p)  # plug-ins' model families
    return p


def main(argv: list[str] | None = None) -> int:
    """``imbench weights --models NAME... [--check]`` / ``--configfile experiments/x.yaml``."""
    args = get_args_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    from .plugins import PluginError, load_job_plugins

    try:
        load_job_plugins(args.plugins, args.plugin_sha256)
    except PluginError as exc:
        print(f"imbench weights: error: {exc}", file=sys.stderr)
        return 2
    names = list(args.models)
    if args.configfile:
        from .config import load_config

        names += list(load_config(args.configfile, base=args.base)["models"])
    if not names:
        print("imbench weights: error: give --models or --configfile", file=sys.stderr)
        return 2
    bad = [n for n in names if not is_model(n)]
    if bad:
        print(f"imbench weights: error: {parse_error(bad[0])}", file=sys.stderr)
        return 2
    if args.check:
        missing = []
        for n in dict.fromkeys(names):
            ok = weights_available(n)
            print(f"{n}: {'cached' if ok else 'MISSING'} ({weights_location(n)})")
            if not ok and _weights_file(parse_model_name(n)).kind != "none":
                missing.append(n)
        return 1 if missing else 0
    try:
        prefetch_weights(names)
    except MissingWeightsError as exc:
        print(f"imbench weights: error: {exc}", file=sys.stderr)
        return 1
    return 0


def parse_error(name: str) -> str:
    try:
        parse_model_name(name)
    except ValueError as exc:
        return str(exc)
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
