"""Content identity of reused files, input checks, failures that name their file, byte-identical
outputs: checkpoints, caches and splits are trusted only when their content is what they claim."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imbench.data.cache import CacheMismatch, build_cache, cache_fingerprint
from imbench.train import Settings, train_cell

# A checkpoint after every epoch (checkpoint_every_min 0): the tests kill runs after the first.
TINY = dict(epochs=2, batch_size=32, image_size=16, lr=3e-3, threads=1, checkpoint_every_min=0)


class Killed(Exception):
    pass


def _die_after_first_epoch(msg):
    if msg.startswith("epoch 1/"):
        raise Killed


def _train(cache, split, out, log=lambda m: None, **over):
    s = Settings.from_dict({**TINY, **over})
    return train_cell("synthetic", cache, split, "test_resnet", "ce", 0, s, out, log=log)


@pytest.fixture
def own_cache(tiny_synthetic, tmp_path):
    """A private copy of the session's cache (the tests rebuild or damage it)."""
    cache = tmp_path / "cache"
    shutil.copytree(tiny_synthetic["cache"], cache)
    return cache


def _inverted_raw(tiny, dest: Path) -> Path:
    """The same dataset (ids, labels, groups, image sizes) with every pixel inverted."""
    shutil.copytree(tiny["raw"], dest)
    for rel in tiny["index"]["path"]:
        p = dest / rel
        with Image.open(p) as img:
            pixels = 255 - np.asarray(img.convert("RGB"))
        Image.fromarray(pixels).save(p, quality=95)
    return dest


def test_checkpoint_of_other_pixels_is_not_resumed(tiny_synthetic, own_cache, tmp_path):
    """Killed mid-run, the dataset regenerated with other content of the same size, rerun: the old
    weights are not resumed (one line says why) and the result is that of a fresh run."""
    split = tiny_synthetic["split"]
    with pytest.raises(Killed):
        _train(own_cache, split, tmp_path / "cell", log=_die_after_first_epoch)
    assert (tmp_path / "cell" / "checkpoint.pt").exists()
    raw2 = _inverted_raw(tiny_synthetic, tmp_path / "raw2")
    build_cache(tiny_synthetic["index"], raw2, own_cache, size=16, workers=1)
    messages = []
    _train(own_cache, split, tmp_path / "cell", log=messages.append)
    assert not any(m.startswith("resuming") for m in messages)
    notes = [m for m in messages if "ignoring" in m and "other data" in m]
    assert len(notes) == 1 and "checkpoint.pt" in notes[0]
    _train(own_cache, split, tmp_path / "fresh")
    for name in ("predictions.csv", "history.csv"):
        a = pd.read_csv(tmp_path / "cell" / name).drop(columns="seconds", errors="ignore")
        b = pd.read_csv(tmp_path / "fresh" / name).drop(columns="seconds", errors="ignore")
        pd.testing.assert_frame_equal(a, b)


def test_checkpoint_of_another_split_is_not_resumed(tiny_synthetic, tmp_path):
    from imbench.data.split import grouped_split

    with pytest.raises(Killed):
        _train(
            tiny_synthetic["cache"],
            tiny_synthetic["split"],
            tmp_path / "cell",
            log=_die_after_first_epoch,
        )
    other = tmp_path / "split_other.csv"
    grouped_split(tiny_synthetic["index"], seed=0, fractions=(0.6, 0.2, 0.2)).to_csv(
        other, index=False
    )
    messages = []
    _train(tiny_synthetic["cache"], other, tmp_path / "cell", log=messages.append)
    assert not any(m.startswith("resuming") for m in messages)
    assert any("other data" in m for m in messages)
    assert json.loads((tmp_path / "cell" / "run.json").read_text())["data"]["split_sha256"]


def test_cache_records_its_content(own_cache):
    record = json.loads((own_cache / "cache.json").read_text())
    assert record["size"] == 16 and record["mode"] == "squash" and record["n_images"] == 400
    assert cache_fingerprint(own_cache)["fingerprint"] == record["fingerprint"]


@pytest.mark.parametrize("damage", ["pixels", "index"])
def test_cache_not_matching_its_fingerprint_is_refused_and_marked_for_rebuild(
    tiny_synthetic, own_cache, tmp_path, damage
):
    if damage == "pixels":  # same shape, other pixels (e.g. written over by another build)
        arr = np.load(own_cache / "images.npy", mmap_mode="r+")
        arr[0] = 255 - arr[0]
        arr.flush()
        del arr
    else:
        index = pd.read_csv(own_cache / "index.csv")
        index.loc[0, "label_name"] = "other"
        index.to_csv(own_cache / "index.csv", index=False)
    with pytest.raises(CacheMismatch, match=str(own_cache)):
        _train(own_cache, tiny_synthetic["split"], tmp_path / "cell")
    assert not (own_cache / "cache.json").exists()  # the workflow rebuilds a cache without it
    assert not (tmp_path / "cell" / "predictions.csv").exists()


def test_killed_cache_build_leaves_no_fingerprint(tiny_synthetic, own_cache, monkeypatch):
    import imbench.data.cache as cache_mod

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod, "_fill", boom)
    with pytest.raises(KeyboardInterrupt):
        build_cache(tiny_synthetic["index"], tiny_synthetic["raw"], own_cache, size=16, workers=1)
    assert not (own_cache / "cache.json").exists()


def test_split_whose_labels_differ_from_the_cache_is_refused(tiny_synthetic, tmp_path):
    split = pd.read_csv(tiny_synthetic["split"])
    split.loc[0, "label"] = (split.loc[0, "label"] + 1) % 7
    bad = tmp_path / "split.csv"
    split.to_csv(bad, index=False)
    with pytest.raises(ValueError, match=f"{bad}: its label column does not match"):
        _train(tiny_synthetic["cache"], bad, tmp_path / "cell")
