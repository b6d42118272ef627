"""Shared fixtures: small datasets in real on-disk formats with synthetic pixels."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_METADATA = ROOT.parent / "shared" / "metadata"


def write_jpegs(folder: Path, image_ids, size=(60, 45), seed=0) -> None:
    """Random-pixel JPEGs named ``<image_id>.jpg`` (a stand-in for the real images)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in image_ids:
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{image_id}.jpg", quality=90)


@pytest.fixture
def ham_sample_tree(tmp_path) -> Path:
    """A HAM10000 tree: real metadata rows (committed sample) + synthetic JPEGs in two part folders."""
    root = tmp_path / "ham10000"
    root.mkdir()
    shutil.copy(FIXTURES / "HAM10000_metadata_sample.csv", root / "HAM10000_metadata.csv")
    ids = pd.read_csv(root / "HAM10000_metadata.csv").image_id.tolist()
    half = len(ids) // 2
    write_jpegs(root / "HAM10000_images_part_1", ids[:half], size=(600, 450))
    write_jpegs(root / "HAM10000_images_part_2", ids[half:], size=(600, 450), seed=1)
    return root


@pytest.fixture
def real_ham_metadata() -> Path:
    path = SHARED_METADATA / "HAM10000_metadata.csv"
    if not path.exists():
        pytest.skip(
            f"real HAM10000 metadata not available at {path} (only beside the project's shared docs)"
        )
    return path


@pytest.fixture
def real_ham_index(real_ham_metadata) -> pd.DataFrame:
    """The real HAM10000 metadata as a split-ready index (label, label_name, group = lesion)."""
    meta = pd.read_csv(real_ham_metadata)
    classes = sorted(meta.dx.unique())
    return pd.DataFrame(
        {
            "image_id": meta.image_id,
            "label": meta.dx.map(classes.index),
            "label_name": meta.dx,
            "group": meta.lesion_id,
        }
    )


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """A small synthetic dataset with its index, split and 16-px cache (built once per session)."""
    from imbench.data.cache import build_cache
    from imbench.data.split import grouped_split
    from imbench.data.synthetic import generate
    from imbench.data.tasks import get_task

    root = tmp_path_factory.mktemp("synthetic")
    raw = root / "raw"
    generate(raw, n_images=400, seed=3, width=40, height=30)
    index = get_task("synthetic").build(raw)
    split = grouped_split(index, seed=0)
    split.to_csv(root / "split.csv", index=False)
    build_cache(index, raw, root / "cache", size=16, workers=1)
    return {
        "root": root,
        "raw": raw,
        "index": index,
        "split": root / "split.csv",
        "cache": root / "cache",
    }


@contextlib.contextmanager
def saved_registries():
    """Every global registry table (methods, their parameter tables, plug-in records, datasets,
    tasks, model families) as it was on entry, restored on exit: plug-ins change them."""
    from imbench import model_names, plugins
    from imbench.data import registry
    from imbench.methods import METHODS, tables

    registry._ensure()
    tabs = (
        METHODS,
        tables.LOSS_PARAMS,
        tables.LOSS_DEFAULTS,
        tables.LOSS_KINDS,
        tables.LOSS_CLASS_WEIGHTS,
        plugins.PLUGIN_LOSSES,
        plugins.ORIGIN,
        plugins.LOADED,
        plugins.DATASET_ORIGIN,
        plugins.FAMILY_ORIGIN,
        registry.DATASETS,
        registry.TASKS,
        model_names.REGISTERED_FAMILIES,
    )
    saved = [dict(t) for t in tabs]
    try:
        yield
    finally:
        for t, s in zip(tabs, saved):
            t.clear()
            t.update(s)
