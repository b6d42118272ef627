"""The embedded synthetic dataset: HAM10000 format, real proportions, deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from imbench.data.ham10000 import CLASSES, build_index, read_metadata
from imbench.data.synthetic import HAM_COUNTS, class_counts, generate, make_metadata


def test_class_counts_follow_ham10000_proportions():
    counts = class_counts(2000)
    assert sum(counts.values()) == 2000
    total = sum(HAM_COUNTS.values())
    for c in CLASSES:
        assert abs(counts[c] / 2000 - HAM_COUNTS[c] / total) < 0.005, c


def test_metadata_has_real_header_and_conventions():
    meta = make_metadata(500, seed=1)
    assert list(meta.columns) == [
        "lesion_id",
        "image_id",
        "dx",
        "dx_type",
        "age",
        "sex",
        "localization",
        "dataset",
    ]
    assert meta.image_id.is_unique and meta.image_id.str.match(r"^ISIC_\d{7}$").all()
    assert meta.lesion_id.str.match(r"^HAM_\d{7}$").all()
    assert (meta.groupby("lesion_id").dx.nunique() == 1).all()
    assert meta.lesion_id.value_counts().max() >= 2  # several images for some lesions
    ages = meta.age[meta.age != ""]
    assert ages.str.match(r"^\d+\.0$").all()  # floats like HAM10000's 80.0


def test_generated_tree_is_read_by_the_real_parser(tmp_path):
    meta = generate(tmp_path, n_images=300, seed=2, width=40, height=30)
    parsed = read_metadata(tmp_path / "HAM10000_metadata.csv")
    assert list(parsed.image_id) == list(meta.image_id)
    text = (tmp_path / "HAM10000_metadata.csv").read_text()
    assert text.startswith("lesion_id,image_id,dx,dx_type,age,sex,localization,dataset\n")
    index = build_index(tmp_path)
    assert len(index) == 300
    with Image.open(tmp_path / index.path.iloc[0]) as img:
        assert img.format == "JPEG" and img.size == (40, 30)


def test_deterministic_from_seed(tmp_path):
    a = generate(tmp_path / "a", n_images=250, seed=5, width=32, height=24)
    b = generate(tmp_path / "b", n_images=250, seed=5, width=32, height=24)
    c = make_metadata(250, seed=6)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    for image_id in a.image_id[:20]:
        pa = np.asarray(Image.open(tmp_path / "a" / "images" / f"{image_id}.jpg"))
        pb = np.asarray(Image.open(tmp_path / "b" / "images" / f"{image_id}.jpg"))
        assert np.array_equal(pa, pb)


def test_class_signal_is_learnable_but_overlapping(tmp_path):
    """Mean lesion colour separates classes better than chance, but not perfectly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    meta = generate(tmp_path, n_images=700, seed=0, width=32, height=24)
    feats = []
    for image_id in meta.image_id:
        px = np.asarray(Image.open(tmp_path / "images" / f"{image_id}.jpg"), dtype=float)
        centre = px[8:16, 12:20].reshape(-1, 3)
        feats.append(np.concatenate([centre.mean(0), centre.std(0), px.reshape(-1, 3).mean(0)]))
    X = np.array(feats) / 255.0
    y = meta.dx.map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    acc = cross_val_score(
        LogisticRegression(max_iter=2000, class_weight="balanced"),
        X,
        y,
        cv=3,
        scoring="balanced_accuracy",
    ).mean()
    assert 1 / 7 + 0.1 < acc < 0.95
