"""The decoded-image cache: shapes, resize modes, draft decoding, bit depths, atomic writes, killed builds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imbench.data.cache import build_cache, load_cache, load_resized


def _image(path, w, h):
    # left half red, right half blue: the crop mode keeps the centre, squash keeps both halves
    px = np.zeros((h, w, 3), np.uint8)
    px[:, : w // 2, 0] = 255
    px[:, w // 2 :, 2] = 255
    Image.fromarray(px).save(path, quality=95)


def test_squash_and_crop(tmp_path):
    _image(tmp_path / "a.jpg", 400, 100)
    sq = load_resized(tmp_path / "a.jpg", 32, "squash")
    cr = load_resized(tmp_path / "a.jpg", 32, "crop")
    assert sq.shape == cr.shape == (32, 32, 3) and sq.dtype == np.uint8
    # squash keeps the 1:1 red/blue split; the centre crop of a 4:1 image is half red, half blue too,
    # but a crop of the left-centre region: check the colour at the far left differs
    assert sq[16, 1, 0] > 200 and sq[16, 30, 2] > 200
    assert cr[16, 1, 0] > 200 and cr[16, 30, 2] > 200
    # crop: the 100-px-high image is resized to 32 high; the crop spans 100 of 400 columns
    # around the centre, so the red→blue edge sits in the middle of the crop
    assert abs(int((cr[16, :, 0] > 128).sum()) - 16) <= 1


def test_draft_decoding_matches_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    # 600×450 like HAM10000, made of 75-px blocks so both paths see the same low-frequency picture
    smooth = np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((75, 75, 1))).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    fast = load_resized(tmp_path / "big.jpg", 32).astype(float)
    with Image.open(tmp_path / "big.jpg") as img:
        full = np.asarray(img.convert("RGB").resize((32, 32), Image.BILINEAR), dtype=float)
    assert (
        np.abs(fast - full).mean() < 4
    )  # same picture; draft scaling changes pixels only slightly


def test_build_and_load(tiny_synthetic):
    images, index = load_cache(tiny_synthetic["cache"])
    assert images.shape == (len(tiny_synthetic["index"]), 16, 16, 3) and images.dtype == np.uint8
    assert list(index.image_id) == list(tiny_synthetic["index"].image_id)
    direct = load_resized(tiny_synthetic["raw"] / index.path.iloc[7], 16)
    assert np.array_equal(images[7], direct)


def test_parallel_equals_serial(tiny_synthetic, tmp_path):
    index = tiny_synthetic["index"].iloc[:90]
    build_cache(index, tiny_synthetic["raw"], tmp_path / "one", 16, workers=1)
    build_cache(index, tiny_synthetic["raw"], tmp_path / "two", 16, workers=2, chunk=20)
    assert np.array_equal(
        np.load(tmp_path / "one" / "images.npy"), np.load(tmp_path / "two" / "images.npy")
    )


def test_failure_leaves_nothing_behind(tiny_synthetic, tmp_path):
    index = tiny_synthetic["index"].iloc[:10].copy()
    (tmp_path / "raw").mkdir()
    for p in index.path[:9]:
        (tmp_path / "raw" / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "raw" / p).write_bytes((tiny_synthetic["raw"] / p).read_bytes())
    (tmp_path / "raw" / index.path.iloc[9]).write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=rf"cache: cannot decode image .*{index.path.iloc[9]}"):
        build_cache(index, tmp_path / "raw", tmp_path / "out", 16, workers=1)
    assert not (tmp_path / "out" / "images.npy").exists()
    assert list((tmp_path / "out").glob("*")) == []


def test_missing_file_is_named(tiny_synthetic, tmp_path):
    index = pd.DataFrame({"path": ["nope/ISIC_0000001.jpg"], "image_id": ["ISIC_0000001"]})
    with pytest.raises(FileNotFoundError, match="ISIC_0000001.jpg"):
        build_cache(index, tmp_path, tmp_path / "out", 16)


def _png16(path, array, color_type):
    """A 16-bit PNG written byte by byte (color_type 0: grayscale, 2: RGB, 4: gray + alpha)."""
    import struct
    import zlib

    h, w = array.shape[:2]
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("color_type", [0, 2, 4])
def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path, color_type):
    # a horizontal ramp over the whole 16-bit range: 0, 4369, ..., 65535
    ramp = np.tile(np.arange(16, dtype=np.uint16) * 4369, (16, 1))
    array = {
        0: ramp,
        2: np.stack([ramp] * 3, -1),
        4: np.stack([ramp, np.full_like(ramp, 65535)], -1),
    }[color_type]
    _png16(tmp_path / "a.png", array, color_type)
    got = load_resized(tmp_path / "a.png", 16)
    want = np.rint(np.arange(16) * 4369 * 255 / 65535)  # 0, 17, ..., 255
    assert got.dtype == np.uint8 and got.shape == (16, 16, 3)
    assert np.abs(got[8, :, 0].astype(int) - want).max() <= 1
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
    assert (
        len(np.unique(got[8, :, 0])) == 16
    )  # every grey level stays distinct (clipping merges them)


def test_high_bit_depth_modes_are_scaled_and_out_of_range_values_refused():
    from imbench.data.cache import to_rgb8

    wide = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32), mode="I")
    assert np.asarray(to_rgb8(wide))[0, :, 0].tolist() == [0, 128, 255]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F")
    assert np.asarray(to_rgb8(floats))[0, :, 0].tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="0–65535"):
        to_rgb8(Image.fromarray(np.array([[-1, 70000]], dtype=np.int32), mode="I"))


def test_orphan_temporary_array_of_a_killed_build_is_removed(tiny_synthetic, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    index = tiny_synthetic["index"].iloc[:40]
    out = tmp_path / "out"
    out.mkdir()
    # a build killed while it writes: simulated by a child that stops inside the fill
    code = (
        "import sys, time, pandas as pd\n"
        "import imbench.data.cache as c\n"
        "def stop(args):\n"
        "    print('filling', flush=True); time.sleep(60)\n"
        "c._fill = stop\n"
        "c.build_cache(pd.read_pickle(sys.argv[1]), sys.argv[2], sys.argv[3], 16, workers=1)\n"
    )
    index.to_pickle(tmp_path / "index.pkl")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            str(tmp_path / "index.pkl"),
            str(tiny_synthetic["raw"]),
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert proc.stdout.readline().strip() == "filling"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    orphans = list(out.glob(".images.*"))
    assert len(orphans) == 1 and orphans[0].stat().st_size > 0  # what the kill leaves behind
    build_cache(index, tiny_synthetic["raw"], out, 16, workers=1)
    assert sorted(p.name for p in out.iterdir()) == ["cache.json", "images.npy", "index.csv"]
