"""Batched device augmentation (imbench.augment): shapes, ranges, determinism, per-sample
parameters, agreement with torchvision's per-image functions, CPU = GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from imbench import augment as A
from imbench.settings import Settings

CPU = torch.device("cpu")


def _batch(n=6, size=32, seed=0):
    return torch.randint(
        0, 256, (n, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def _params(n=1, **values):
    base = {
        "crop_w": 1.0,
        "crop_h": 1.0,
        "cx": 0.0,
        "cy": 0.0,
        "hflip": False,
        "vflip": False,
        "angle": 0.0,
        "brightness": 1.0,
        "contrast": 1.0,
        "saturation": 1.0,
        "hue": 0.0,
        "zoom": 1.0,
        "shear": 0.0,
    }
    base.update(values)
    return {k: torch.tensor([v] * n) for k, v in base.items()}


def _warp(img, params):
    n, c, h, w = img.shape
    grid = torch.nn.functional.affine_grid(
        A.affine_matrices(params, h, w), [n, c, h, w], align_corners=False
    )
    return torch.nn.functional.grid_sample(
        img, grid, padding_mode="reflection", align_corners=False
    )


def test_shape_dtype_layout_and_range():
    u8 = _batch()
    s = Settings(augment="standard", normalize="none", image_size=32)
    x = A.augment_batch(u8, s, CPU, torch.Generator().manual_seed(1))
    assert x.shape == (6, 3, 32, 32) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert 0 <= x.min() and x.max() <= 1
    # normalised: (x - mean) / std of the same values
    xn = A.augment_batch(
        u8, Settings(augment="standard", image_size=32), CPU, torch.Generator().manual_seed(1)
    )
    mean = torch.tensor(A.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(A.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(xn, (x - mean) / std)


def test_no_generator_is_the_plain_conversion():
    """Prediction (no generator): exactly to_input's values, no augmentation."""
    from imbench.train import to_input

    u8 = _batch()
    s = Settings(augment="standard", image_size=32)
    assert torch.equal(A.augment_batch(u8, s, CPU, None), to_input(u8, s, CPU))


def test_same_seed_same_batch_other_seed_other_batch():
    u8 = _batch()
    s = Settings(augment="standard", image_size=32)
    a = A.augment_batch(u8, s, CPU, torch.Generator().manual_seed(3))
    b = A.augment_batch(u8, s, CPU, torch.Generator().manual_seed(3))
    c = A.augment_batch(u8, s, CPU, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_every_sample_gets_its_own_parameters():
    """One batch of identical images: every sample comes out different (a batch-wide draw would
    give identical outputs), and each parameter varies across the batch within its range."""
    n = 16
    u8 = _batch(1).expand(n, -1, -1, -1).contiguous()
    s = Settings(augment="standard", image_size=32)
    x = A.augment_batch(u8, s, CPU, torch.Generator().manual_seed(0))
    flat = x.reshape(n, -1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(n) for j in range(i + 1, n))
    r = A.RECIPES["standard"]
    p = A.draw_params(1000, r, torch.Generator().manual_seed(0))
    assert p["angle"].min() >= -r.degrees and p["angle"].max() <= r.degrees
    assert p["angle"].std() > r.degrees / 3
    area = p["crop_w"] * p["crop_h"]
    assert area.min() >= r.scale[0] - 1e-6 and area.max() <= 1 + 1e-6
    assert (p["cx"].abs() <= 1 - p["crop_w"] + 1e-6).all()
    assert 0.4 < p["hflip"].float().mean() < 0.6 and 0.4 < p["vflip"].float().mean() < 0.6
    for name, width in (("brightness", r.brightness), ("saturation", r.saturation)):
        assert (p[name] - 1).abs().max() <= width + 1e-6 and p[name].std() > width / 3
    assert p["hue"].abs().max() <= r.hue + 1e-6
    assert p["zoom"].min() >= r.zoom[0] and p["zoom"].max() <= r.zoom[1]
    assert p["shear"].abs().max() <= r.shear and p["shear"].std() > r.shear / 3


def test_identity_and_flips_read_pixel_centres():
    """No crop, no rotation: every output pixel reads one source pixel centre (to float rounding
    of the sampling grid), on square and non-square images."""
    for h, w in ((16, 16), (10, 14)):
        img = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
        close = dict(atol=1e-5, rtol=0)
        torch.testing.assert_close(_warp(img, _params()), img, **close)
        torch.testing.assert_close(_warp(img, _params(hflip=True)), img.flip(3), **close)
        torch.testing.assert_close(_warp(img, _params(vflip=True)), img.flip(2), **close)


def test_geometry_matches_torchvision():
    """Rotation turns the picture the way torchvision's rotate does; a crop reads the region
    torchvision's resized_crop reads."""
    img = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(_warp(img, _params(angle=90.0)), TF.rotate(img, 90.0))
    torch.testing.assert_close(_warp(img, _params(angle=-90.0)), TF.rotate(img, -90.0))
    # top-right quarter, upsampled 2x: rows 0..7, columns 8..15
    ours = _warp(img, _params(crop_w=0.5, crop_h=0.5, cx=0.5, cy=-0.5))
    ref = TF.resized_crop(img, 0, 8, 8, 8, [16, 16], antialias=False)
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])
    # scaling by 2 about the centre: the central half of the image, enlarged
    # (the outermost ring differs: resized_crop repeats the crop's edge, the warp reads beyond it)
    ours = _warp(img, _params(zoom=2.0))
    ref = TF.resized_crop(img, 4, 4, 8, 8, [16, 16], antialias=False)
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])
    # shear: torchvision's affine with the same horizontal shear reads the same pixels inside
    ours = _warp(img, _params(shear=10.0))
    ref = TF.affine(img, 0.0, [0, 0], 1.0, [10.0, 0.0], interpolation=TF.InterpolationMode.BILINEAR)
    torch.testing.assert_close(ours[..., 4:-4, 4:-4], ref[..., 4:-4, 4:-4], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "name, fn",
    [
        ("brightness", TF.adjust_brightness),
        ("contrast", TF.adjust_contrast),
        ("saturation", TF.adjust_saturation),
    ],
)
def test_colour_matches_torchvision_per_sample(name, fn):
    """Each of brightness, contrast and saturation alone: torchvision's values, per sample, clamping
    included (factors up to 1.3 on pixels up to 1 do clip)."""
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    factors = [0.7, 0.9, 1.1, 1.3]
    p = _params(4)
    p[name] = torch.tensor(factors)
    ours = A.color_jitter(x, p)
    ref = torch.stack([fn(x[i], f) for i, f in enumerate(factors)])
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def _yiq_hue_reference(x: np.ndarray, turns: float) -> np.ndarray:
    """Pixel by pixel in float64: RGB → YIQ with the NTSC matrix, (I, Q) turned by −2π·turns,
    back to RGB, clamped (tfa.image.adjust_hsv_in_yiq's definition)."""
    yiq = np.array([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])
    a = -2 * np.pi * turns
    out = np.empty_like(x)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            y, ci, cq = yiq @ x[:, i, j]
            ci, cq = ci * np.cos(a) - cq * np.sin(a), ci * np.sin(a) + cq * np.cos(a)
            out[:, i, j] = np.linalg.solve(yiq, [y, ci, cq])
    return out.clip(0, 1)


def test_hue_is_a_rotation_in_yiq():
    x = torch.rand(3, 3, 6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    turns = [-0.1, 0.03, 0.1]
    p = _params(3)
    p["hue"] = torch.tensor(turns)
    ours = A.color_jitter(x.float(), p)
    ref = np.stack([_yiq_hue_reference(x[i].numpy(), t) for i, t in enumerate(turns)])
    np.testing.assert_allclose(ours.numpy(), ref, atol=2e-6)


def test_hue_turns_colours_the_way_torchvision_does():
    """The YIQ rotation approximates torchvision's HSV hue shift: the same direction and, on
    average, the same amount; individual hues deviate by about a quarter of the shift."""
    from torchvision.transforms.v2.functional._color import _rgb_to_hsv

    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.6 + 0.2
    h0 = _rgb_to_hsv(x[0])[0]
    for turns in (0.1, -0.1, 0.05):
        p = _params(1, hue=turns)
        ours = _rgb_to_hsv(A.color_jitter(x, p)[0])[0]
        tv = _rgb_to_hsv(TF.adjust_hue(x[0], turns))[0]
        moved = ((ours - h0 + 0.5) % 1 - 0.5).mean().item()
        assert abs(moved - turns) < 0.15 * abs(turns)
        deviation = ((ours - tv + 0.5) % 1 - 0.5).abs().median().item()
        assert deviation < 0.3 * abs(turns)


def test_all_four_compose_like_torchvision_where_nothing_clips():
    """Brightness, contrast, saturation, then hue, on pixels that never leave [0, 1] on the way:
    torchvision's sequence of functions for the first three, then the YIQ rotation."""
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(2)) * 0.3 + 0.35
    values = [dict(brightness=1.2, contrast=0.8, saturation=1.3, hue=0.07)]
    values.append(dict(brightness=0.75, contrast=1.25, saturation=0.7, hue=-0.04))
    p = {k: torch.tensor([v[k] for v in values]) for k in values[0]}
    ours = A.color_jitter(x, p)
    for i, v in enumerate(values):
        ref = TF.adjust_saturation(
            TF.adjust_contrast(TF.adjust_brightness(x[i], v["brightness"]), v["contrast"]),
            v["saturation"],
        )
        assert 0 < ref.min() and ref.max() < 1
        ref = _yiq_hue_reference(ref.double().numpy(), v["hue"])
        np.testing.assert_allclose(ours[i].numpy(), ref, atol=2e-6)


def test_sampling_grid_is_affine_grid():
    theta = A.affine_matrices(
        A.draw_params(5, A.RECIPES["standard"], torch.Generator().manual_seed(0)), 12, 20
    )
    ours = A.sampling_grid(theta, 12, 20)
    torch.testing.assert_close(ours, F.affine_grid(theta, [5, 3, 12, 20], align_corners=False))


def test_fused_batch_equals_the_steps_one_by_one():
    """augment_batch (geometry, then colour, /255 and normalisation in one product with one clamp)
    gives the values of the separate steps: warp, color_jitter, normalise."""
    u8 = _batch(5, 24)
    s = Settings(augment="standard", image_size=24)
    fused = A.augment_batch(u8, s, CPU, torch.Generator().manual_seed(7))
    p = A.draw_params(5, A.RECIPES["standard"], torch.Generator().manual_seed(7))
    x = _warp(u8.permute(0, 3, 1, 2).float() / 255, p)
    x = A.color_jitter(x, p)
    mean = torch.tensor(A.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(A.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(fused, (x - mean) / std, atol=2e-5, rtol=0)
    out = torch.empty_like(fused)
    again = A.augment_batch(u8, s, CPU, torch.Generator().manual_seed(7), out=out)
    assert again.data_ptr() == out.data_ptr() and torch.equal(again, fused)


def test_parameters_do_not_depend_on_the_device():
    """The draw happens on the host: the generator's stream is the same whatever the device."""
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = A.draw_params(8, A.RECIPES["standard"], g1)
    b = A.draw_params(8, A.RECIPES["standard"], g2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_identical_on_cpu_and_gpu():
    u8 = _batch(8, 64)
    s = Settings(augment="standard", image_size=64)
    cpu = A.augment_batch(u8, s, CPU, torch.Generator().manual_seed(2))
    gpu = A.augment_batch(u8, s, torch.device("cuda"), torch.Generator().manual_seed(2))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-3, rtol=0)


def test_setting_accepts_standard_and_names_the_choices():
    assert Settings.from_dict({"augment": "standard"}).augment == "standard"
    with pytest.raises(ValueError, match="setting augment: .*'standard'"):
        Settings.from_dict({"augment": "mixup"})


def test_a_cell_trains_with_the_recipe_reproducibly(tiny_synthetic, tmp_path, monkeypatch):
    """train_cell uses the recipe for its training batches (the calls are counted), and the same
    seed gives the same predictions; ``flip`` does not go through it."""
    import pandas as pd

    from imbench import train as T

    calls = []
    real = T.augment_batch
    monkeypatch.setattr(T, "augment_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    settings = dict(epochs=1, batch_size=32, image_size=16, lr=3e-3, threads=1)

    def run(out, augment):
        s = Settings.from_dict({**settings, "augment": augment})
        T.train_cell(
            "synthetic", tiny_synthetic["cache"], tiny_synthetic["split"], "test_resnet", "ce", 0,
            s, out, log=lambda m: None,
        )  # fmt: skip
        return pd.read_csv(out / "predictions.csv")

    a = run(tmp_path / "a", "standard")
    assert calls
    b = run(tmp_path / "b", "standard")
    pd.testing.assert_frame_equal(a, b)
    n = len(calls)
    run(tmp_path / "c", "flip")
    assert len(calls) == n
