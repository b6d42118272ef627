"""DermaMNIST (MedMNIST v3, Zenodo record 10519652): a ready-made 7-class array dataset.

Labels 0–6 are 0 akiec, 1 bcc, 2 bkl, 3 df, 4 mel, 5 nv, 6 vasc. Format, download and PNG tree:
:mod:`imbench.data.medmnist` (``images/<split>/<split>_<i:05d>.png`` + ``dermamnist_labels.csv``).

The index keeps MedMNIST's own split in ``official_split``. That split ignores ``lesion_id``:
images of the same lesion fall in train and test (Abhishek et al., Sci. Data 2025). It is a
smoke-test and speed dataset, not a leakage-free benchmark, and it must never be mixed with
HAM10000 or ISIC 2019 (it is derived from HAM10000). With no lesion ids, each image is its own group.
"""

from __future__ import annotations

from .ham10000 import CLASSES, HAM_PUBLISHED
from .medmnist import SPLITS as SPLITS
from .medmnist import MedMNIST, medmnist_dataset

PUBLISHED_SPLITS = {"train": 7007, "val": 1003, "test": 2005}
# MD5s published by the MedMNIST authors (medmnist/info.py, v3.0.2).
MD5 = {
    28: "0744692d530f8e62ec473284d019b0c7",
    64: "b70a2f5635c6199aeaa28c31d7202e1f",
    128: "2defd784463fa5243564e855ed717de1",
    224: "8974907d8e169bef5f5b96bc506ae45d",
}
INFO = MedMNIST("dermamnist", CLASSES, PUBLISHED_SPLITS, MD5)
LABELS_CSV = INFO.labels_csv
read_npz = INFO.read_npz
write_tree = INFO.write_tree
build_index = INFO.build_index
prepare = INFO.prepare

# Planning's class counts: the HAM10000 proportions over the 10,015 images (DermaMNIST is HAM10000
# resized; the per-class counts of its three splits are not published as such).
_N = sum(PUBLISHED_SPLITS.values())
_HAM = {c: HAM_PUBLISHED["dx"][c] for c in CLASSES}
CLASS_COUNTS = {c: round(_N * k / sum(_HAM.values())) for c, k in _HAM.items()}

DATASET = medmnist_dataset(
    INFO,
    title="MedMNIST DermaMNIST",
    licence="CC BY-NC 4.0",
    note="MedMNIST DermaMNIST with its own train/val/test split (column official_split). That split "
    "LEAKS lesions: images of one lesion are in train and test. Smoke-test/speed dataset only; never "
    "mix with HAM10000 or ISIC 2019 (it is derived from HAM10000)",
    class_counts=CLASS_COUNTS,
    counts_source="DermaMNIST official split 7,007/1,003/2,005 (HAM10000 proportions)",
    group_key="image (no lesion ids)",
    grouped_by="its own split (leaks lesions)",
    in_all_grid=True,
)
