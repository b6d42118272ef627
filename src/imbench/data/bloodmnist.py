"""BloodMNIST (MedMNIST v3, Zenodo record 10519652): 17,092 blood cell images in 8 classes.

The source is the PBC dataset of Acevedo et al., "A dataset of microscopic peripheral blood cell
images for development of automatic recognition systems", Data in Brief 30:105474 (2020): single
normal cells (CellaVision DM96, Hospital Clinic of Barcelona) from individuals without infection,
haematologic or oncologic disease, 360×363 px; MedMNIST centre-crops them to 200×200, resizes them
and splits them 7:1:2 into 11,959 / 1,712 / 3,421 images. Labels 0–7: basophil, eosinophil,
erythroblast, immature granulocyte (myelocytes, metamyelocytes and promyelocytes), lymphocyte,
monocyte, neutrophil, platelet.

URLs, MD5s, split sizes and licence (CC BY 4.0) are MedMNIST's (``medmnist/info.py``, v3.0.2).
Format, download, the npz guard and the PNG tree are :mod:`imbench.data.medmnist`'s
(``images/<split>/<split>_<i:05d>.png`` + ``bloodmnist_labels.csv``).

No patient ids are published, so each image is its own group and the task keeps MedMNIST's own
split (``official_split``); images of one donor may fall in train and test. The imbalance is mild
(neutrophils 3,329 to lymphocytes 1,214: 2.7×): a cross-domain (haematology, not dermatology or
fundus) and speed reference rather than a long-tail benchmark. Planning's class counts are the PBC
dataset's (Acevedo et al., Table 1, all 17,092 images; MedMNIST publishes no per-class counts).
"""

from __future__ import annotations

from .medmnist import MedMNIST, medmnist_dataset

CLASSES = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "immature_granulocyte",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)
PUBLISHED_SPLITS = {"train": 11959, "val": 1712, "test": 3421}
MD5 = {
    28: "7053d0359d879ad8a5505303e11de1dc",
    64: "2b94928a2ae4916078ca51e05b6b800b",
    128: "adace1e0ed228fccda1f39692059dd4c",
    224: "b718ff6835fcbdb22ba9eacccd7b2601",
}
CLASS_COUNTS = {
    "basophil": 1218,
    "eosinophil": 3117,
    "erythroblast": 1551,
    "immature_granulocyte": 2895,
    "lymphocyte": 1214,
    "monocyte": 1420,
    "neutrophil": 3329,
    "platelet": 2348,
}
INFO = MedMNIST("bloodmnist", CLASSES, PUBLISHED_SPLITS, MD5)

DATASET = medmnist_dataset(
    INFO,
    title="MedMNIST BloodMNIST (blood cell microscopy)",
    licence="CC BY 4.0",
    note="MedMNIST BloodMNIST with its own train/val/test split (column official_split); no donor ids, "
    "so each image is its own group; mildly imbalanced (2.7x)",
    class_counts=CLASS_COUNTS,
    counts_source="BloodMNIST official split 11,959/1,712/3,421 (PBC dataset class counts, "
    "Acevedo et al. 2020)",
    citation="Yang et al., Sci. Data 10, 41 (2023); Acevedo et al., Data in Brief 30, 105474 (2020)",
)
