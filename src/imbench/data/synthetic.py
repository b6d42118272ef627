"""The embedded ``synthetic`` dataset: a HAM10000-format tree with generated pixels.

It exists so the whole benchmark runs with no download and no GPU. It is written in HAM10000's
real on-disk format (``HAM10000_metadata.csv`` with the real header and value conventions, one
JPEG per ``image_id``, several images for some lesions), so the real HAM10000 parser reads it.

Class frequencies follow HAM10000's real counts (nv 67 %, …, df 1.1 %). Every class has its own
lesion colour, size and texture, each drawn with noise wide enough that neighbouring classes
overlap: a classifier can learn the signal but not perfectly, and a model trained on the skewed
frequencies under-predicts the rare classes, so imbalance methods differ measurably.
Images of the same lesion share the lesion's draw (plus a small per-image jitter), as photos of one
lesion do, which is why splits must be grouped by ``lesion_id``.

Everything is a pure function of ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .ham10000 import CLASSES, METADATA_NAME

# HAM10000 image counts per class (dataset notes §1.5) and images-per-lesion frequencies.
HAM_COUNTS = {
    "akiec": 327,
    "bcc": 514,
    "bkl": 1099,
    "df": 115,
    "mel": 1113,
    "nv": 6705,
    "vasc": 142,
}
IMAGES_PER_LESION = {1: 5514, 2: 1423, 3: 490, 4: 34, 5: 5, 6: 4}
FIRST_IMAGE_NUMBER = 24306  # HAM10000 ids run from ISIC_0024306

# Class signal: mean lesion colour (RGB), relative radius, texture amplitude.
# Neighbouring classes are close on purpose so that the classes overlap.
_SIGNAL = {
    "akiec": ((150, 70, 60), 0.24, 0.35),
    "bcc": ((170, 100, 110), 0.30, 0.10),
    "bkl": ((120, 85, 55), 0.34, 0.25),
    "df": ((135, 95, 80), 0.20, 0.45),
    "mel": ((70, 45, 40), 0.36, 0.40),
    "nv": ((110, 70, 50), 0.28, 0.15),
    "vasc": ((165, 50, 75), 0.22, 0.05),
}
_DX_TYPE = {"histo": 5340, "follow_up": 3704, "consensus": 902, "confocal": 69}
_SEX = {"male": 5406, "female": 4552, "unknown": 57}
_SITES = (
    "abdomen",
    "acral",
    "back",
    "chest",
    "ear",
    "face",
    "foot",
    "genital",
    "hand",
    "lower extremity",
    "neck",
    "scalp",
    "trunk",
    "unknown",
    "upper extremity",
)
_SOURCES = {"vidir_molemax": 3954, "vidir_modern": 3363, "rosendahl": 2259, "vienna_dias": 439}


def class_counts(n_images: int) -> dict[str, int]:
    """Per-class image counts for ``n_images`` images in HAM10000's proportions (each ≥ 8)."""
    total = sum(HAM_COUNTS.values())
    counts = {c: max(8, int(round(n_images * HAM_COUNTS[c] / total))) for c in CLASSES}
    counts["nv"] += n_images - sum(counts.values())  # absorb rounding in the majority class
    return counts


def _choice(rng: np.random.Generator, table: dict, size: int) -> np.ndarray:
    keys = list(table)
    p = np.array([table[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=size, p=p / p.sum())]


def make_metadata(n_images: int, seed: int) -> pd.DataFrame:
    """The metadata table (HAM10000 header and conventions) of a synthetic dataset."""
    rng = np.random.default_rng([seed, 0])
    rows = []
    lesion_no = 0
    sizes = np.array(list(IMAGES_PER_LESION))
    p_size = np.array(list(IMAGES_PER_LESION.values()), dtype=float)
    p_size /= p_size.sum()
    for dx, n in class_counts(n_images).items():
        left = n
        while left > 0:
            k = int(min(left, rng.choice(sizes, p=p_size)))
            lesion_no += 1
            age = "" if rng.random() < 0.006 else f"{5.0 * rng.integers(0, 18):.1f}"
            common = {
                "lesion_id": f"HAM_{lesion_no:07d}",
                "dx": dx,
                "dx_type": _choice(rng, _DX_TYPE, 1)[0],
                "age": age,
                "sex": _choice(rng, _SEX, 1)[0],
                "localization": _SITES[rng.integers(len(_SITES))],
                "dataset": _choice(rng, _SOURCES, 1)[0],
            }
            rows.extend(dict(common) for _ in range(k))
            left -= k
    df = pd.DataFrame(rows)
    numbers = FIRST_IMAGE_NUMBER + rng.permutation(len(df))
    df.insert(1, "image_id", [f"ISIC_{n:07d}" for n in numbers])
    # HAM10000's file is ordered by lesion within diagnosis blocks; any order is valid.
    return df[["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"]]


def _lesion(dx: str, rng: np.random.Generator, noise: float):
    """Lesion-level draw (shared by all images of a lesion): the class signal plus wide noise."""
    colour, radius, texture = _SIGNAL[dx]
    colour = np.array(colour, float) + rng.normal(0, 28 * noise, 3)
    radius = radius * float(np.exp(rng.normal(0, 0.22 * noise)))
    texture = max(0.0, texture + rng.normal(0, 0.15 * noise))
    aspect = float(np.exp(rng.normal(0, 0.2)))
    freq = 2.0 + 4.0 * rng.random()
    return colour, radius, texture, aspect, freq


def _draw(img, lesion, xx, yy, cx, cy, theta, scale):
    """Blend one elliptic lesion (colour, radius, texture, aspect, freq) onto ``img``."""
    colour, radius, texture, aspect, freq = lesion
    u = ((xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)) / (radius * scale * aspect)
    v = (-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)) / (radius * scale / aspect)
    d = np.sqrt(u**2 + v**2)
    mask = np.clip((1.15 - d) / 0.3, 0, 1)[..., None]  # soft lesion border
    pattern = 1 + texture * np.sin(freq * np.pi * u) * np.sin(freq * np.pi * v)
    return img * (1 - mask) + (colour * pattern[..., None]) * mask


def render(
    dx: str,
    lesion_rng: np.random.Generator,
    image_rng: np.random.Generator,
    width: int,
    height: int,
    noise: float,
    second: tuple[str, np.random.Generator] | None = None,
) -> np.ndarray:
    """Draw one image: skin background, an elliptic lesion with the class's colour/size/texture.

    ``second`` = (class, generator) adds a smaller lesion of another class off-centre (the
    multi-label variant); it draws from its own generator, so the first lesion is unchanged.
    """
    lesion = _lesion(dx, lesion_rng, noise)
    skin = np.array([222, 178, 150], float) + lesion_rng.normal(0, 14, 3)

    # Image-level jitter: position, rotation, lighting, sensor noise.
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    cx = width * (0.5 + image_rng.normal(0, 0.06))
    cy = height * (0.5 + image_rng.normal(0, 0.06))
    theta = image_rng.uniform(0, np.pi)
    img = _draw(
        np.broadcast_to(skin, (height, width, 3)), lesion, xx, yy, cx, cy, theta, min(width, height)
    )
    if second is not None:
        dx2, rng2 = second
        corner = rng2.integers(4)
        cx2 = width * (0.5 + (0.3 if corner % 2 else -0.3) + rng2.normal(0, 0.03))
        cy2 = height * (0.5 + (0.3 if corner // 2 else -0.3) + rng2.normal(0, 0.03))
        img = _draw(
            img,
            _lesion(dx2, rng2, noise),
            xx,
            yy,
            cx2,
            cy2,
            rng2.uniform(0, np.pi),
            0.55 * min(width, height),
        )
    img *= 1 + image_rng.normal(0, 0.05)
    img += image_rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def second_lesions(meta: pd.DataFrame, fraction: float, seed: int) -> pd.Series:
    """Per image, the class of a second lesion in the picture ('' for none): a ``fraction`` of
    lesions get one, of a class other than their own drawn with HAM10000's proportions."""
    classes = list(HAM_COUNTS)
    p = np.array([HAM_COUNTS[c] for c in classes], float)
    out = {}
    for i, (lesion, dx) in enumerate(
        meta.drop_duplicates("lesion_id")[["lesion_id", "dx"]].itertuples(index=False)
    ):
        rng = np.random.default_rng([seed, 3, i])
        if rng.random() < fraction:
            q = np.where(np.array(classes) == dx, 0, p)
            out[lesion] = classes[rng.choice(len(classes), p=q / q.sum())]
        else:
            out[lesion] = ""
    return meta.lesion_id.map(out)


def generate(
    out_dir: str | Path,
    n_images: int = 2000,
    seed: int = 0,
    width: int = 80,
    height: int = 60,
    noise: float = 1.0,
    second_lesion_fraction: float = 0.0,
) -> pd.DataFrame:
    """Write a synthetic HAM10000-format tree to ``out_dir`` and return its metadata.

    Layout: ``out_dir/HAM10000_metadata.csv`` and ``out_dir/images/<image_id>.jpg``.
    The metadata file is written last (atomically), so a tree with a metadata file is complete.

    With ``second_lesion_fraction`` > 0 (the multi-label variant ``synthetic_ml``) some images also
    show a smaller lesion of another class, named in an extra ``dx2`` column (empty otherwise); the
    HAM10000 parser ignores that column, so the tree is still valid HAM10000 format.
    """
    out_dir = Path(out_dir)
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    meta = make_metadata(n_images, seed)
    if second_lesion_fraction > 0:
        meta["dx2"] = second_lesions(meta, second_lesion_fraction, seed)
    lesion_seeds = {lid: i for i, lid in enumerate(dict.fromkeys(meta.lesion_id))}
    for row_no, row in enumerate(meta.itertuples(index=False)):
        lesion_rng = np.random.default_rng([seed, 1, lesion_seeds[row.lesion_id]])
        image_rng = np.random.default_rng([seed, 2, row_no])
        second = None
        if getattr(row, "dx2", ""):
            second = (row.dx2, np.random.default_rng([seed, 4, lesion_seeds[row.lesion_id]]))
        pixels = render(row.dx, lesion_rng, image_rng, width, height, noise, second)
        target = img_dir / f"{row.image_id}.jpg"
        tmp = target.with_suffix(".tmp.jpg")
        Image.fromarray(pixels).save(tmp, quality=92)
        tmp.replace(target)
    from ..io import write_csv

    write_csv(out_dir / METADATA_NAME, meta)
    return meta
