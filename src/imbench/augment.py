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
   per sample (output pixel → source pixel, :func:`affine_matrices`); its sampling grid is built by
   broadcasting (:func:`sampling_grid`, equal to ``affine_grid``'s) and applied by
   ``torch.nn.functional.grid_sample`` (bilinear; points outside the source read its mirror image,
   ``padding_mode="reflection"``) to the batch converted once to float (0–255, channels-last).
   One bilinear resampling, where a per-image pipeline resamples twice (crop-resize, then the
   affine transformation).
3. **Colour as one matrix per sample** (:func:`colour_matrices`): brightness, contrast and
   saturation with torchvision's formulas (``adjust_brightness``, ``adjust_contrast``,
   ``adjust_saturation``: a scaling, a blend with the mean grey level, a blend with the grey
   image), then the hue shift as a rotation of the chrominance plane of the YIQ colour space
   (``tfa.image.adjust_hsv_in_yiq``, NVIDIA DALI's ``color_twist``), in the fixed order brightness,
   contrast, saturation, hue (``ColorJitter`` draws a random order per call). All four are linear
   maps of the pixel, so they compose into one 3×3 matrix and offset per sample; with the division
   by 255 and ``normalize: imagenet`` (ImageNet's mean and std) folded in, colour and normalisation
   are one batched matrix product and one clamp (to the normalised image of [0, 1]).

   Two departures from torchvision's per-image functions, both for speed (the HSV round trip of
   ``adjust_hue`` cost about 70 % of the whole batch on the CPU): pixels are clamped once, at the
   end, instead of after each step (the steps agree exactly where no intermediate value leaves
   [0, 1], and each step alone agrees exactly); and the hue turns in YIQ rather than HSV: the same
   direction and on average the same amount, individual hues differing by about a quarter of the
   shift (``tests/test_augment.py``).

The result is float32 NCHW in channels-last memory, like :func:`imbench.train.to_input`'s.
Same seed, same device: the same tensor. The CPU and a GPU draw the same parameters; their
pixels agree to float rounding (bilinear weights computed on different hardware).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

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


#: torchvision's grey level (``rgb_to_grayscale``): the weights of R, G and B.
GREY = (0.2989, 0.587, 0.114)

#: RGB → YIQ (NTSC), rows Y, I, Q; a grey pixel has I = Q = 0.
RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.5959, -0.2746, -0.3213),
    (0.2115, -0.5227, 0.3112),
)


@functools.cache
def _yiq_inverse() -> torch.Tensor:
    """YIQ → RGB (float64, on the host: no linear-algebra library is started on a GPU)."""
    return torch.linalg.inv(torch.tensor(RGB_TO_YIQ, dtype=torch.float64))


def colour_matrices(
    params: dict[str, torch.Tensor], channel_means: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(M, t)``, (n, 3, 3) and (n, 3) float32 on ``channel_means``' device, such that
    ``M @ rgb + t`` is the colour jitter of an RGB pixel in [0, 1] (before the final clamp).

    The four operations in their fixed order, each a linear map of the pixel:

    - brightness ``b``: ``x ↦ b·x`` (torchvision's ``adjust_brightness``);
    - contrast ``c``: ``x ↦ c·x + (1 − c)·m``, ``m`` the mean grey level of the brightened image,
      ``b · GREY · channel_means`` (``adjust_contrast``'s blend with the mean of the grey image);
    - saturation ``s``: ``x ↦ s·x + (1 − s)·(GREY · x)`` (``adjust_saturation``'s blend with the
      grey image);
    - hue ``h`` (turns): a rotation of the chrominance plane (I, Q) of the YIQ colour space by
      ``−2πh`` about the grey axis, ``YIQ⁻¹ · R(−2πh) · YIQ``, the hue adjustment of
      ``tfa.image.adjust_hsv_in_yiq`` and NVIDIA DALI's ``color_twist``. The sign makes a positive
      ``h`` turn red towards yellow, as a positive HSV hue shift does.

    ``channel_means`` is the (n, 3) mean of each channel of the images, in [0, 1]. The product is
    formed in float64."""
    n = channel_means.shape[0]
    device, f64 = channel_means.device, torch.float64

    def col(name):
        return params[name].to(device=device, dtype=f64).view(n, 1, 1)

    b, c, s = col("brightness"), col("contrast"), col("saturation")
    eye = torch.eye(3, dtype=f64, device=device)
    grey = torch.tensor(GREY, dtype=f64, device=device)
    ones = torch.ones(3, dtype=f64, device=device)
    saturation = s * eye + (1 - s) * torch.outer(ones, grey)
    yiq = torch.tensor(RGB_TO_YIQ, dtype=f64, device=device)
    angle = -2 * math.pi * col("hue").view(n)
    rot = eye.repeat(n, 1, 1)
    rot[:, 1, 1], rot[:, 1, 2] = torch.cos(angle), -torch.sin(angle)
    rot[:, 2, 1], rot[:, 2, 2] = torch.sin(angle), torch.cos(angle)
    hue_sat = _yiq_inverse().to(device) @ rot @ yiq @ saturation
    matrix = hue_sat * (c * b)
    mean_grey = b.view(n) * (channel_means.to(f64) @ grey)
    shift = hue_sat.sum(-1) * ((1 - c.view(n)) * mean_grey).view(n, 1)
    return matrix.float(), shift.float()


def color_jitter(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Brightness, contrast, saturation and hue of a float NCHW RGB batch in [0, 1], per sample:
    :func:`colour_matrices` applied to every pixel, then one clamp to [0, 1]."""
    n, c, h, w = x.shape
    matrix, shift = colour_matrices(params, x.mean(dim=(2, 3)))
    out = torch.baddbmm(shift.unsqueeze(-1), matrix, x.reshape(n, c, h * w))
    return out.clamp_(0, 1).view(n, c, h, w)


def sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (n, ·, height, width), align_corners=False)``, built by broadcasting
    (an output coordinate is an affine function of its column and its row), which is several times
    faster on the CPU than ``affine_grid``'s batched matrix product with three columns."""
    n = theta.shape[0]
    opts = dict(device=theta.device, dtype=theta.dtype)
    xs = ((torch.arange(width, **opts) * 2 + 1) / width - 1).view(1, 1, width)
    ys = ((torch.arange(height, **opts) * 2 + 1) / height - 1).view(1, height, 1)
    grid = torch.empty((n, height, width, 2), **opts)
    for k in (0, 1):
        a, b, c = (theta[:, k, j].view(n, 1, 1) for j in range(3))
        torch.add(a * xs, b * ys + c, out=grid[..., k])
    return grid


def augment_batch(
    batch_u8: torch.Tensor,
    settings,
    device: torch.device,
    generator: torch.Generator | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """A uint8 NHWC batch → augmented, normalised float32 NCHW (channels-last memory) on ``device``.

    ``settings.augment`` names the recipe (:data:`RECIPES`); ``generator`` (a CPU generator) draws
    the parameters; ``None`` means no augmentation (prediction), only the conversion. ``out``, a
    float tensor of the result's shape on ``device`` (a batch buffer reused between steps), is
    written into instead of allocating the result."""
    n, h, w, c = batch_u8.shape
    if generator is None or not n:
        x = batch_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        if settings.normalize == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN[:c], device=device).view(1, c, 1, 1)
            std = torch.tensor(IMAGENET_STD[:c], device=device).view(1, c, 1, 1)
            x = (x - mean) / std
        return x.contiguous(memory_format=torch.channels_last)
    params = draw_params(n, RECIPES[settings.augment], generator)
    # pixel values 0..255 as floats, channels-last: one conversion, no division yet
    src = torch.empty((n, c, h, w), device=device, memory_format=torch.channels_last)
    src.copy_(batch_u8.to(device, non_blocking=True).permute(0, 3, 1, 2))
    grid = sampling_grid(affine_matrices(params, h, w).to(device), h, w)
    x = F.grid_sample(src, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    del src, grid
    if c == 3:
        matrix, shift = colour_matrices(params, x.mean(dim=(2, 3)) / 255)
    else:  # grey images: brightness only
        matrix = params["brightness"].to(device).view(n, 1, 1)
        shift = torch.zeros((n, 1), device=device)
    if settings.normalize == "imagenet":
        mean = torch.tensor(IMAGENET_MEAN[:c], device=device)
        std = torch.tensor(IMAGENET_STD[:c], device=device)
    else:
        mean, std = torch.zeros(c, device=device), torch.ones(c, device=device)
    # colour, /255 and normalisation in one product: clamp(M·x/255 + t) − mean) / std
    # = clamp((M/255/std)·x + (t − mean)/std, −mean/std, (1 − mean)/std)
    y = torch.baddbmm(
        ((shift - mean) / std).unsqueeze(-1),
        matrix / (255 * std.view(1, c, 1)),
        x.view(n, c, h * w),
    )
    del x
    y.clamp_((-mean / std).view(1, c, 1), ((1 - mean) / std).view(1, c, 1))
    if out is None:
        out = torch.empty((n, c, h, w), device=device, memory_format=torch.channels_last)
    return out.copy_(y.view(n, c, h, w))
