"""DermaMNIST (MedMNIST v3, Zenodo record 10519652): a ready-made 7-class array dataset.

The npz holds ``{train,val,test}_{images,labels}``: images ``N×S×S×3`` uint8, labels ``N×1`` ints
0–6 (0 akiec, 1 bcc, 2 bkl, 3 df, 4 mel, 5 nv, 6 vasc). The download step writes every array
image losslessly as PNG, ``images/<split>/<split>_<i:05d>.png``, plus ``dermamnist_labels.csv``
(``image_id, split, label``), so that the rest of the pipeline (index, cache) reads it like any
image dataset. The npz itself stays in the downloads folder.

The index keeps MedMNIST's own split in ``official_split``. That split ignores ``lesion_id``:
images of the same lesion fall in train and test (Abhishek et al., Sci. Data 2025). It is a
smoke-test and speed dataset, not a leakage-free benchmark, and it must never be mixed with
HAM10000 or ISIC 2019 (it is derived from HAM10000). With no lesion ids, each image is its own group.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import write_csv
from .ham10000 import DatasetError

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
SPLITS = ("train", "val", "test")
PUBLISHED_SPLITS = {"train": 7007, "val": 1003, "test": 2005}
LABELS_CSV = "dermamnist_labels.csv"


def read_npz(path: str | Path, size: int | None = None, expected: dict | None = None) -> dict:
    """Load and check the arrays: ``{split: (images, labels)}`` with labels as a 1-D int array."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    out = {}
    with data:
        missing = [
            f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in data.files
        ]
        if missing:
            raise DatasetError(f"{path}: lacks array(s) {missing}; has {sorted(data.files)}")
        for s in SPLITS:
            images, labels = data[f"{s}_images"], data[f"{s}_labels"]
            square_rgb = (
                images.ndim == 4 and images.shape[3] == 3 and images.shape[1] == images.shape[2]
            )
            if images.dtype != np.uint8 or not square_rgb:
                raise DatasetError(
                    f"{path}: {s}_images has shape {images.shape} and dtype {images.dtype}, "
                    "expected N×S×S×3 uint8"
                )
            if size is not None and images.shape[1] != size:
                raise DatasetError(f"{path}: {s}_images are {images.shape[1]} px, expected {size}")
            labels = labels.reshape(-1)
            if len(labels) != len(images):
                raise DatasetError(
                    f"{path}: {s}_labels has {len(labels)} rows but {s}_images has {len(images)}"
                )
            if (
                not np.issubdtype(labels.dtype, np.integer)
                or labels.min() < 0
                or labels.max() >= len(CLASSES)
            ):
                raise DatasetError(f"{path}: {s}_labels must be integers 0–{len(CLASSES) - 1}")
            if expected is not None and len(images) != expected[s]:
                raise DatasetError(
                    f"{path}: {s} has {len(images)} images, expected {expected[s]} "
                    "(pass --no-published-counts for a subset)"
                )
            out[s] = (images, labels.astype(int))
    return out


def write_tree(
    npz: str | Path, out: str | Path, size: int | None = None, expected: dict | None = None
) -> dict:
    """Write the PNG tree and ``dermamnist_labels.csv`` into ``out``; return images per split."""
    from PIL import Image

    out = Path(out)
    arrays = read_npz(npz, size, expected)
    rows = []
    for s, (images, labels) in arrays.items():
        folder = out / "images" / s
        folder.mkdir(parents=True, exist_ok=True)
        for i, (img, lab) in enumerate(zip(images, labels)):
            image_id = f"{s}_{i:05d}"
            Image.fromarray(img).save(folder / f"{image_id}.png", optimize=False, compress_level=1)
            rows.append((image_id, s, int(lab)))
    write_csv(out / LABELS_CSV, pd.DataFrame(rows, columns=["image_id", "split", "label"]))
    return {s: len(a[0]) for s, a in arrays.items()}


def build_index(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index (``image_id, path, label, label_name, group, official_split``) and (empty) exclusions."""
    root = Path(root)
    path = root / LABELS_CSV
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (run `imbench download dermamnist`)")
    df = pd.read_csv(path, dtype={"image_id": str, "split": str})
    missing = [c for c in ("image_id", "split", "label") if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: header {list(df.columns)} lacks column(s) {missing}")
    bad = ~df["split"].isin(SPLITS) | ~df["label"].isin(range(len(CLASSES)))
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise DatasetError(
            f"{path}: line {i + 2}: split {df.split.iloc[i]!r} / label {df.label.iloc[i]!r} "
            f"is not one of {list(SPLITS)} / 0–{len(CLASSES) - 1}"
        )
    rel = "images/" + df["split"] + "/" + df["image_id"] + ".png"
    missing = [p for p in rel if not (root / p).is_file()]
    if missing:
        raise DatasetError(
            f"{root}: {len(missing)} image(s) listed in {LABELS_CSV} are missing, first {missing[:3]}"
        )
    index = pd.DataFrame(
        {
            "image_id": df["image_id"],
            "path": rel,
            "label": df["label"].astype(int),
            "label_name": df["label"].map(dict(enumerate(CLASSES))),
            "group": df["image_id"],
            "official_split": df["split"],
        }
    )
    return index, pd.DataFrame(columns=["image_id", "group", "file", "reason"])
