"""Batched training augmentation on the device, from the uint8 image cache.

``augment: standard`` (a protocol setting) trains on randomly resized crops, affine transformations
(rotation, shear, scaling), horizontal and vertical flips and colour jitter, applied to a whole
batch at once on the device the model trains on (the GPU, or the CPU), with **independent random
parameters for every sample**. The existing values keep their behaviour: ``none`` (no
augmentation) and ``flip`` (random horizontal and vertical flips, :func:`imbench.train.to_input`).

The ``standard`` recipe (:data:`RECIPES`) is the best-performing scenario ("basic set") of Perez et
al., "Data Augmentation for Skin Lesion Analysis", ISIC Skin Image Analysis Workshop at MICCAI 2018
(arXiv:1809.01442), which compared 13 augmentation scenarios for melanoma classification on ISIC
2017, with the ranges of its code (github.com/fabioperez/skin-data-augmentation,
``experiments/run-aug-scenarios.sh``, ``full-basic``): ``RandomResizedCrop`` with scale
(0.4, 1) and aspect ratio 3/4–4/3; an affine transformation with rotation in [−90°, 90°], shear in
[−20°, 20°] and scale in [0.8, 1.2], filling with the mirror image (imgaug's ``symmetric``); random
horizontal and vertical flips; ``ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3,
hue=0.1)``.

How a batch is augmented (:func:`augment_batch`):

1. **Parameters**: one ``torch.rand(n, 13, generator=generator)`` draw on the host per batch, so a
   batch's parameters are a pure function of the generator's state and are identical whatever the
   device. Per sample: crop area fraction ``a ~ U(scale)`` and log aspect ratio
   ``log r ~ U(log ratio)`` give the crop's width ``sqrt(a·r)`` and height ``sqrt(a/r)`` as
   fractions of the image's (clamped to 1, where torchvision's ``RandomResizedCrop`` would retry
   and finally fall back to a centre crop), its centre uniform over the positions that keep it
   inside the image; an angle ``U(−degrees, degrees)``, a shear angle ``U(−shear, shear)`` and a
   scale ``U(zoom)``; a flip each way with probability ½; brightness, contrast and saturation
   factors ``U(1 − x, 1 + x)``; a hue shift ``U(−hue, hue)``.
2. **Geometry in one resampling**: crop, resize, affine map and flips compose into one affine map
   per sample (output pixel → source pixel, :func:`affine_matrices`), applied by
   ``torch.nn.functional.affine_grid`` and ``grid_sample`` (bilinear; points outside the source
   read its mirror image, ``padding_mode="reflection"``). One bilinear resampling, where a
   per-image pipeline resamples twice (crop-resize, then the affine transformation).
3. **Colour** with torchvision's formulas (``adjust_brightness``, ``adjust_contrast``,
   ``adjust_saturation``, ``adjust_hue``: blends with black, the mean grey level and the grey image,
   each clamped to [0, 1]; the hue shift in HSV), vectorised over per-sample factors, in the fixed
   order brightness, contrast, saturation, hue (``ColorJitter`` draws a random order per call).
4. ``normalize: imagenet``: ImageNet's mean and std, as in :func:`imbench.train.to_input`.

The result is float32 NCHW in channels-last memory, like :func:`imbench.train.to_input`'s.
Same seed, same device: the same tensor. The CPU and a GPU draw the same parameters; their
pixels agree to float rounding (bilinear weights computed on different hardware).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional._color import (
    _hsv_to_rgb,
    _rgb_to_grayscale_image,
    _rgb_to_hsv,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = ["RECIPES", "Recipe", "augment_batch", "draw_params", "is_batched"]


@dataclass(frozen=True)
class Recipe:
    """Ranges of one augmentation recipe (see the module docstring for how each is drawn)."""

    scale: tuple[float, float] = (0.4, 1.0)  # crop area, fraction of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio (width / height)
    hflip: float = 0.5  # probability of a horizontal flip
    vflip: float = 0.5  # probability of a vertical flip
    degrees: float = 90.0  # rotation angle ~ U(-degrees, degrees)
    zoom: tuple[float, float] = (0.8, 1.2)  # affine scale factor ~ U(zoom)
    shear: float = 20.0  # horizontal shear angle ~ U(-shear, shear), degrees
    brightness: float = 0.3  # factor ~ U(1 - x, 1 + x)
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.1  # hue shift ~ U(-x, x), in turns of the colour wheel


#: Recipes by ``augment`` value; ``none`` and ``flip`` are handled by :func:`imbench.train.to_input`.
RECIPES: dict[str, Recipe] = {
    # Perez et al. 2018 (arXiv:1809.01442), see the module docstring.
    "standard": Recipe(),
}

#: Number of uniform numbers drawn per sample (the columns of :func:`draw_params`'s draw).
N_DRAWS = 13


def is_batched(settings) -> bool:
    """True when ``settings.augment`` names a recipe of this module."""
    return settings.augment in RECIPES


def draw_params(
    n: int, recipe: Recipe, generator: torch.Generator | None
) -> dict[str, torch.Tensor]:
    """Per-sample parameters of a batch of ``n`` (float32 CPU tensors of length ``n``), from one
    ``torch.rand(n, N_DRAWS, generator=generator)`` draw."""
    u = torch.rand(n, N_DRAWS, generator=generator, dtype=torch.float64)

    def between(col, lo, hi):
        return lo + (hi - lo) * u[:, col]

    area = between(0, *recipe.scale)
    log_ratio = between(1, math.log(recipe.ratio[0]), math.log(recipe.ratio[1]))
    w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    params = {
        "crop_w": w,
        "crop_h": h,
        # crop centre in [-1, 1] coordinates, keeping the crop inside the image
        "cx": (1 - w) * (2 * u[:, 2] - 1),
        "cy": (1 - h) * (2 * u[:, 3] - 1),
        "hflip": u[:, 4] < recipe.hflip,
        "vflip": u[:, 5] < recipe.vflip,
        "angle": between(6, -recipe.degrees, recipe.degrees),
        "brightness": between(7, 1 - recipe.brightness, 1 + recipe.brightness),
        "contrast": between(8, 1 - recipe.contrast, 1 + recipe.contrast),
        "saturation": between(9, 1 - recipe.saturation, 1 + recipe.saturation),
        "hue": between(10, -recipe.hue, recipe.hue),
        "zoom": between(11, *recipe.zoom),
        "shear": between(12, -recipe.shear, recipe.shear),
    }
    return {k: (v if v.dtype == torch.bool else v.float()) for k, v in params.items()}


def affine_matrices(params: dict[str, torch.Tensor], height: int, width: int) -> torch.Tensor:
    """(n, 2, 3) ``affine_grid`` matrices: output coordinates → source coordinates, both in
    ``[-1, 1]`` (``align_corners=False``).

    The output is ``flip(affine(crop(source)))``, the order of the recipe's source: the crop
    (resized to the output size), then the affine transformation about the centre (rotation by
    ``angle`` counter-clockwise as torchvision's ``rotate``, horizontal shear by ``shear`` degrees,
    scaling by ``zoom``), then the flips. The matrix maps backwards: an output point is flipped,
    taken through the inverse affine map (in pixel units, so rotations stay rotations on
    non-square images), then scaled into the crop and moved to its centre."""
    n = params["angle"].shape[0]
    theta = torch.deg2rad(params["angle"])
    cos, sin = torch.cos(theta), torch.sin(theta)
    zeros, ones = torch.zeros(n), torch.ones(n)

    def mat(a, b, c, d):
        return torch.stack([torch.stack([a, b], -1), torch.stack([c, d], -1)], -2)

    # inverse affine map in pixel units: zoom⁻¹ · shear⁻¹ · rotation(−angle); image y points down
    rot_inv = mat(cos, -sin, sin, cos)
    shear_inv = mat(ones, torch.tan(torch.deg2rad(params["shear"])), zeros, ones)  # as TF.affine
    inverse = (shear_inv @ rot_inv) / params["zoom"].view(n, 1, 1)
    to_pixels = torch.tensor([width / 2, height / 2])
    inverse = inverse * to_pixels.view(1, 1, 2) / to_pixels.view(1, 2, 1)  # D⁻¹ · M · D
    flip = torch.ones(n, 2)
    flip[params["hflip"], 0] = -1
    flip[params["vflip"], 1] = -1
    crop = torch.stack([params["crop_w"], params["crop_h"]], -1)
    linear = crop.unsqueeze(-1) * inverse * flip.unsqueeze(-2)  # crop · M · flip
    shift = torch.stack([params["cx"], params["cy"]], -1).unsqueeze(-1)
    return torch.cat([linear, shift], -1)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend`` with a per-sample ratio: ``a·r + b·(1 − r)``, clamped to [0, 1]."""
    return (a * ratio + b * (1 - ratio)).clamp_(0, 1)


def color_jitter(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Brightness, contrast, saturation and hue of a float NCHW batch in [0, 1], per sample, with
    torchvision's formulas (``adjust_*_image``) in that order."""
    n = x.shape[0]

    def col(name):
        return params[name].to(x.device).view(n, 1, 1, 1)

    x = (x * col("brightness")).clamp_(0, 1)
    grey = _rgb_to_grayscale_image(x, num_output_channels=1, preserve_dtype=False)
    x = _blend(x, grey.mean(dim=(-3, -2, -1), keepdim=True), col("contrast"))
    x = _blend(
        x,
        _rgb_to_grayscale_image(x, num_output_channels=1, preserve_dtype=False),
        col("saturation"),
    )
    hsv = _rgb_to_hsv(x)
    h, s, v = hsv.unbind(dim=-3)
    h = (h + col("hue").view(n, 1, 1)).remainder_(1.0)
    return _hsv_to_rgb(torch.stack((h, s, v), dim=-3))


def augment_batch(
    batch_u8: torch.Tensor,
    settings,
    device: torch.device,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """A uint8 NHWC batch → augmented, normalised float32 NCHW (channels-last memory) on ``device``.

    ``settings.augment`` names the recipe (:data:`RECIPES`); ``generator`` (a CPU generator) draws
    the parameters; ``None`` means no augmentation (prediction), only the conversion."""
    x = batch_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
    n, c, h, w = x.shape
    if generator is not None and n:
        params = draw_params(n, RECIPES[settings.augment], generator)
        theta = affine_matrices(params, h, w).to(device)
        grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if c == 3:
            x = color_jitter(x, params)
        else:  # grey images: brightness only
            x = (x * params["brightness"].to(device).view(n, 1, 1, 1)).clamp_(0, 1)
    if settings.normalize == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN[:c], device=device).view(1, c, 1, 1)
        std = torch.tensor(IMAGENET_STD[:c], device=device).view(1, c, 1, 1)
        x = (x - mean) / std
    return x.contiguous(memory_format=torch.channels_last)
