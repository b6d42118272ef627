"""Model names: parsing and checking every form a configuration may use, without building a model.

The forms (``<timm name>``, ``<arch>.torchvision[_<WEIGHTS>]``, ``le2020_<model>``) are described
in the docstring of :mod:`imbench.models`, which re-exports everything here. A plug-in adds a form
with :func:`register_model_family` (``imbench.register_model_family``): its names, a regular
expression, are tried before the package's forms and may not match a name of theirs.

The workflow checks the configured model names while it plans, and importing timm or torchvision
(hence torch) costs seconds there. Names are therefore first looked up in lists stored with the
package (``resources/model_names.json``), written from the pinned timm and torchvision releases:
timm's architectures (``timm.list_models()``) and tagged names (``timm.list_models(include_tags=True)``),
torchvision's classification architectures with their weights. A name found there is accepted
without importing either library. Anything else (an unknown name, a deprecated timm alias, or an
installed timm/torchvision other than the version the lists were written for) goes through timm or
torchvision themselves, so answers and error messages are those of the libraries.
``tests/test_model_names.py`` compares the stored lists with the installed libraries; after a
version bump, rewrite them with ``python -m imbench.model_names``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TORCHVISION_TAG = "torchvision"
LE2020_PREFIX = "le2020_"

# torchvision families TorchvisionBackbone cannot wrap (see parse_model_name).
_TV_UNSUPPORTED = ("vit_", "squeezenet")

NAME_LISTS = Path(__file__).resolve().parent / "resources" / "model_names.json"

__all__ = [
    "LE2020_PREFIX",
    "REGISTERED_FAMILIES",
    "TORCHVISION_TAG",
    "ModelFamily",
    "ModelSpec",
    "base_name",
    "is_model",
    "parse_model_name",
]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name.

    ``source``: ``timm`` | ``torchvision`` | ``le2020`` | a registered family's. ``arch``: the timm name (with its tag) or
    the torchvision architecture. ``weights``: the torchvision weights enum member (``DEFAULT``
    resolved). ``inner``: for ``le2020``, the spec of the backbone.
    """

    name: str
    source: str
    arch: str
    weights: str | None = None
    inner: ModelSpec | None = None

    @property
    def backbone(self) -> ModelSpec:
        """The spec of the network that holds the pretrained weights: the inner model of a family
        that wraps another (``le2020``), else the spec itself."""
        return self.inner.backbone if self.inner is not None else self


@dataclass(frozen=True)
class ModelFamily:
    """Everything that depends on where a model comes from, for one family of model names.

    ``source``: the ``ModelSpec.source`` its names parse to (:func:`parse_model_name`;
    ``pattern`` says the name form in words). ``backbone(spec, pretrained, drop_rate, label)``
    builds the pooled-feature network (a ``torch.nn.Module`` with the attribute ``num_features``,
    the width of its output); ``weights_file(spec)`` says where its pretrained weights
    are published and cached (:func:`imbench.models.weights_location`,
    :func:`imbench.models.weights_available`); ``download(spec)`` fetches them into the cache;
    ``input_size(spec)`` is the native input size; ``weights_id(spec)`` names the weights in
    ``run.json``. A family that wraps another (``neck`` set) has its inner model's backbone,
    weights and input size, and adds ``neck(feature_width, drop_rate) -> (module, width)`` before
    the head.

    ``names``: a regular expression the whole model name matches, for a family registered with
    :func:`register_model_family` (a plug-in's); the package's own families (timm, torchvision,
    ``le2020_``) are parsed by :func:`parse_model_name` itself and leave it empty. A registered
    family may leave ``weights_file``, ``download``, ``input_size`` and ``weights_id`` unset: it
    then has no published weights (``pretrained: true`` stops its training job with one line),
    its native input size is 224 px and ``run.json`` names its weights ``<source>:<name>``.

    This module imports nothing heavy, so a family is declared (and its names checked) while the
    workflow plans; the functions it holds import torch when they run.
    """

    source: str
    pattern: str
    backbone: Callable | None = None
    weights_file: Callable | None = None
    download: Callable | None = None
    input_size: Callable | None = None
    weights_id: Callable | None = None
    neck: Callable | None = None
    names: str = ""


#: The package's own families' sources (their builders live in :mod:`imbench.models`).
BUILTIN_SOURCES = ("timm", "torchvision", "le2020")
#: ``ModelSpec.source`` -> a family registered by :func:`register_model_family` (plug-ins).
REGISTERED_FAMILIES: dict[str, ModelFamily] = {}
_SOURCE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def register_model_family(family: ModelFamily) -> ModelFamily:
    """Register a model family whose names match ``family.names`` (a regular expression).

    Its names are then accepted wherever a model name is (``models``, ``model_image_size``,
    ``imbench plan``, ``imbench weights``) and built by :func:`imbench.models.create_model` with
    ``family.backbone``; ``le2020_<name>`` wraps them as it wraps any model. Raises one
    ``ValueError`` for a bad declaration, a source that exists already, or a name form that
    takes a name of an existing family (its example, the ``pattern``, is not checked).
    """
    if not isinstance(family, ModelFamily):
        raise ValueError(
            f"register_model_family expects an imbench.ModelFamily, got {type(family).__name__}"
        )
    src = family.source
    if not isinstance(src, str) or not _SOURCE.fullmatch(src):
        raise ValueError(
            f"model family {src!r}: source must be a letter followed by letters, digits or '_'"
        )
    if src in BUILTIN_SOURCES or src in REGISTERED_FAMILIES:
        where = "in imbench" if src in BUILTIN_SOURCES else "already"
        raise ValueError(f"model family {src!r} exists {where}; choose another source name")
    if not callable(family.backbone):
        raise ValueError(
            f"model family {src!r}: backbone must be a function "
            "(spec, pretrained, drop_rate, label) -> torch.nn.Module"
        )
    if family.neck is not None:
        raise ValueError(f"model family {src!r}: a registered family cannot set neck")
    for field in ("weights_file", "download", "input_size", "weights_id"):
        value = getattr(family, field)
        if value is not None and not callable(value):
            raise ValueError(f"model family {src!r}: {field} must be a function of the spec")
    if not isinstance(family.names, str) or not family.names:
        raise ValueError(
            f"model family {src!r}: names must be a regular expression of its model names"
        )
    try:
        regex = re.compile(family.names)
    except re.error as exc:
        raise ValueError(f"model family {src!r}: names {family.names!r}: {exc}") from None
    # Registered families are tried first: their names must not hide a timm or torchvision name
    # (checked against the stored name lists; the prefix le2020_ is the wrapping family's).
    timm_names = (_stored_lists().get("timm") or {}).get("models", [])
    tv_names = (_stored_lists().get("torchvision") or {}).get("models", {})
    for name in [LE2020_PREFIX + "x", *timm_names, *(f"{a}.{TORCHVISION_TAG}" for a in tv_names)]:
        if regex.fullmatch(name):
            raise ValueError(
                f"model family {src!r}: names {family.names!r} matches the existing model name "
                f"{name!r}; give the family's names a prefix of their own"
            )
    for other in REGISTERED_FAMILIES.values():
        if re.fullmatch(other.names, family.pattern) or regex.fullmatch(other.pattern):
            raise ValueError(
                f"model family {src!r}: its names overlap those of family {other.source!r}"
            )
    REGISTERED_FAMILIES[src] = family
    return family


def unregister_model_family(source: str) -> None:
    REGISTERED_FAMILIES.pop(source, None)


# ----------------------------------------------------------------------------- stored name lists


def _installed_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


@functools.cache
def _stored_lists() -> dict:
    try:
        return json.loads(NAME_LISTS.read_text())
    except (OSError, ValueError):
        return {}


@functools.cache
def _stored_timm() -> tuple[frozenset, frozenset] | None:
    """(architectures, tagged names) of the stored timm lists; None when they do not describe the
    installed timm."""
    data = _stored_lists().get("timm")
    if not data or data.get("version") != _installed_version("timm"):
        return None
    return frozenset(data["models"]), frozenset(data["tagged"])


@functools.cache
def _stored_torchvision() -> dict | None:
    """arch -> {"default": weights, "weights": [weights...]} of the stored torchvision list; None when
    it does not describe the installed torchvision."""
    data = _stored_lists().get("torchvision")
    if not data or data.get("version") != _installed_version("torchvision"):
        return None
    return data["models"]


def name_lists() -> dict:
    """The lists :data:`NAME_LISTS` holds, taken from the installed timm and torchvision."""
    import timm

    tv = {}
    for arch in _torchvision_archs():
        enum = _tv_weights_enum(arch)
        tv[arch] = {"default": enum.DEFAULT.name, "weights": [m.name for m in enum]}
    return {
        "timm": {
            "version": _installed_version("timm"),
            "models": timm.list_models(),
            "tagged": [n for n in timm.list_models(include_tags=True) if "." in n],
        },
        "torchvision": {"version": _installed_version("torchvision"), "models": tv},
    }


def write_name_lists(path: str | Path = NAME_LISTS) -> Path:
    """Rewrite the stored lists from the installed timm and torchvision."""
    path = Path(path)
    path.write_text(json.dumps(name_lists(), indent=0, sort_keys=True) + "\n")
    for cached in (_stored_lists, _stored_timm, _stored_torchvision):
        cached.cache_clear()
    return path


# ----------------------------------------------------------------------------- parsing


def _torchvision_archs() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def _tv_weights_enum(arch: str):
    from torchvision.models import get_model_weights

    return get_model_weights(arch)


def _stored_spec(name: str, arch: str, tag: str) -> ModelSpec | None:
    """The spec of a timm or torchvision name found in the stored lists; None when not found."""
    if tag == TORCHVISION_TAG or tag.startswith(TORCHVISION_TAG + "_"):
        known = _stored_torchvision()
        if known is None or arch not in known or arch.startswith(_TV_UNSUPPORTED):
            return None
        wanted = tag[len(TORCHVISION_TAG) + 1 :]
        if not wanted:
            return ModelSpec(name, "torchvision", arch, known[arch]["default"])
        for weights in known[arch]["weights"]:
            if weights.lower() == wanted.lower():
                return ModelSpec(name, "torchvision", arch, weights)
        return None
    known = _stored_timm()
    if known is None:
        return None
    models, tagged = known
    if arch in models and (not tag or name in tagged):
        return ModelSpec(name, "timm", name)
    return None


def parse_model_name(name: str) -> ModelSpec:
    """Parse any model-name form (module docstring); unknown names raise one ``ValueError``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    for fam in REGISTERED_FAMILIES.values():
        if re.fullmatch(fam.names, name):
            return ModelSpec(name, fam.source, name)
    if name.startswith(LE2020_PREFIX):
        inner_name = name[len(LE2020_PREFIX) :]
        if inner_name.startswith(LE2020_PREFIX):
            raise ValueError(f"unknown model {name!r}: {LE2020_PREFIX} cannot be nested")
        try:
            inner = parse_model_name(inner_name)
        except ValueError as exc:
            raise ValueError(
                f"unknown model {name!r}: {inner_name!r} after {LE2020_PREFIX!r} is not a model "
                f"name ({exc})"
            ) from None
        return ModelSpec(name, "le2020", inner.arch, inner.weights, inner)
    arch, _, tag = name.partition(".")
    spec = _stored_spec(name, arch, tag)
    if spec is not None:
        return spec
    if tag == TORCHVISION_TAG or tag.startswith(TORCHVISION_TAG + "_"):
        if arch not in _torchvision_archs():
            raise ValueError(
                f"unknown model {name!r}: {arch!r} is not a torchvision classification model "
                f"(torchvision.models.list_models())"
            )
        if arch.startswith(_TV_UNSUPPORTED):
            raise ValueError(
                f"unknown model {name!r}: torchvision {arch} is not supported as a backbone "
                f"(ViTs keep a class token outside their sub-modules, SqueezeNet has no final "
                f"Linear layer); use its timm version"
            )
        enum = _tv_weights_enum(arch)
        wanted = tag[len(TORCHVISION_TAG) + 1 :]
        if not wanted:
            return ModelSpec(name, "torchvision", arch, enum.DEFAULT.name)
        for member in enum:
            if member.name.lower() == wanted.lower():
                return ModelSpec(name, "torchvision", arch, member.name)
        raise ValueError(
            f"unknown model {name!r}: torchvision {arch} has no weights {wanted!r}; "
            f"available: {[m.name for m in enum]}"
        )
    import timm

    if not timm.is_model(name):
        raise ValueError(
            f"unknown model {name!r}: not a timm model name (timm.list_models()), nor "
            f"<arch>.{TORCHVISION_TAG}[_<WEIGHTS>] or {LE2020_PREFIX}<model>"
            + "".join(f", nor {f.pattern}" for f in REGISTERED_FAMILIES.values())
        )
    if tag:
        try:
            timm.models.get_pretrained_cfg(name)
        except RuntimeError:
            tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
            raise ValueError(
                f"unknown model {name!r}: timm has no pretrained tag {tag!r} for {arch}; "
                f"available: {tags}"
            ) from None
    return ModelSpec(name, "timm", name)


def is_model(name: str) -> bool:
    """True for every name :func:`imbench.models.create_model` builds: timm (tag checked), torchvision,
    le2020."""
    try:
        parse_model_name(name)
    except ValueError:
        return False
    return True


def base_name(name: str) -> str:
    """The architecture a paper would name: the part before the first ``.`` (``le2020_`` kept)."""
    return str(name).split(".")[0]


if __name__ == "__main__":
    print(f"wrote {write_name_lists()}")
