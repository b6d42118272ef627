"""MedMNIST v2/v3 array datasets (Zenodo record 10519652): reading, the PNG tree, index, recipe.

Every 2D MedMNIST dataset is one ``<flag>.npz`` per image size (``<flag>.npz`` at 28 px,
``<flag>_<size>.npz`` at 64, 128 and 224 px) holding ``{train,val,test}_{images,labels}``: images
``N×S×S×3`` uint8 (the RGB datasets; greyscale ones are ``N×S×S``), labels ``N×1`` ints. The
official distribution is Zenodo, with one MD5 per file published in MedMNIST's ``info.py``.

:class:`MedMNIST` holds one dataset's constants; its methods do the work:

- :meth:`MedMNIST.prepare`, the download recipe: fetch the npz (MD5 checked), guard it with
  :func:`~imbench.data.extract.check_npz` (every array's declared shape and size, the compression
  ratio) before NumPy reads it, and write every image losslessly as PNG,
  ``images/<split>/<split>_<i:05d>.png``, plus ``<flag>_labels.csv`` (``image_id, split, label``),
  so that the index and cache steps read it like any image dataset. The npz stays in the
  downloads folder.
- :meth:`MedMNIST.build_index`: the task index, keeping MedMNIST's own split in
  ``official_split``. MedMNIST has no patient or lesion ids, so each image is its own group.

:func:`medmnist_dataset` turns one :class:`MedMNIST` into the registry's
:class:`~imbench.data.registry.DatasetSpec` with its single multi-class task, which uses the
official split (planning's counts: the published split sizes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import write_csv
from .errors import DatasetError, DownloadError
from .extract import check_npz
from .fetch import log, mirror_urls
from .registry import DatasetSpec, Option, Task
from .staging import Options, staging

ZENODO_BASE_URLS = ("https://zenodo.org/records/10519652/files",)
ZENODO_RECORD = "https://doi.org/10.5281/zenodo.10519652"
SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")
SIZE_OPTION = Option(
    "size", 224, "MedMNIST datasets: image size", type=int, choices=SIZES
)  # shared by every MedMNIST dataset


@dataclass(frozen=True)
class MedMNIST:
    """One MedMNIST dataset: its flag (file stem), class names, published split sizes and MD5s."""

    flag: str
    classes: tuple[str, ...]
    splits: dict[str, int]
    md5: dict[int, str]

    @property
    def labels_csv(self) -> str:
        return f"{self.flag}_labels.csv"

    def file(self, size: int) -> str:
        return f"{self.flag}.npz" if size == 28 else f"{self.flag}_{size}.npz"

    def max_array_bytes(self, size: int) -> int:
        """The largest array the published files hold at ``size`` px (the biggest split's images)."""
        return max(self.splits.values()) * size * size * 3

    def read_npz(self, path: str | Path, size: int | None = None, expected: dict | None = None):
        """Load and check the arrays: ``{split: (images, labels)}``, labels a 1-D int array.

        The file is guarded first (:func:`~imbench.data.extract.check_npz`): no array may declare
        more bytes than the published file's largest at ``size`` px (224 px when unknown).
        """
        path = Path(path)
        check_npz(path, self.max_array_bytes(size or max(SIZES)))
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
        n = len(self.classes)
        out = {}
        with data:
            missing = [
                f"{s}_{k}"
                for s in SPLITS
                for k in ("images", "labels")
                if f"{s}_{k}" not in data.files
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
                    raise DatasetError(
                        f"{path}: {s}_images are {images.shape[1]} px, expected {size}"
                    )
                labels = labels.reshape(-1)
                if len(labels) != len(images):
                    raise DatasetError(
                        f"{path}: {s}_labels has {len(labels)} rows but {s}_images has {len(images)}"
                    )
                if (
                    not np.issubdtype(labels.dtype, np.integer)
                    or labels.min() < 0
                    or labels.max() >= n
                ):
                    raise DatasetError(f"{path}: {s}_labels must be integers 0–{n - 1}")
                if expected is not None and len(images) != expected[s]:
                    raise DatasetError(
                        f"{path}: {s} has {len(images)} images, expected {expected[s]} "
                        "(pass --no-published-counts for a subset)"
                    )
                out[s] = (images, labels.astype(int))
        return out

    def write_tree(
        self,
        npz: str | Path,
        out: str | Path,
        size: int | None = None,
        expected: dict | None = None,
    ) -> dict:
        """Write the PNG tree and the labels CSV into ``out``; return images per split."""
        from PIL import Image

        out = Path(out)
        arrays = self.read_npz(npz, size, expected)
        rows = []
        for s, (images, labels) in arrays.items():
            folder = out / "images" / s
            folder.mkdir(parents=True, exist_ok=True)
            for i, (img, lab) in enumerate(zip(images, labels)):
                image_id = f"{s}_{i:05d}"
                Image.fromarray(img).save(
                    folder / f"{image_id}.png", optimize=False, compress_level=1
                )
                rows.append((image_id, s, int(lab)))
        write_csv(out / self.labels_csv, pd.DataFrame(rows, columns=["image_id", "split", "label"]))
        return {s: len(a[0]) for s, a in arrays.items()}

    def build_index(self, root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Index (``image_id, path, label, label_name, group, official_split``), no exclusions."""
        root = Path(root)
        path = root / self.labels_csv
        if not path.is_file():
            raise DatasetError(f"{path}: file not found (run `imbench download {self.flag}`)")
        df = pd.read_csv(path, dtype={"image_id": str, "split": str})
        missing = [c for c in ("image_id", "split", "label") if c not in df.columns]
        if missing:
            raise DatasetError(f"{path}: header {list(df.columns)} lacks column(s) {missing}")
        n = len(self.classes)
        bad = ~df["split"].isin(SPLITS) | ~df["label"].isin(range(n))
        if bad.any():
            i = int(bad.to_numpy().argmax())
            raise DatasetError(
                f"{path}: line {i + 2}: split {df.split.iloc[i]!r} / label {df.label.iloc[i]!r} "
                f"is not one of {list(SPLITS)} / 0–{n - 1}"
            )
        rel = "images/" + df["split"] + "/" + df["image_id"] + ".png"
        missing = [p for p in rel if not (root / p).is_file()]
        if missing:
            raise DatasetError(
                f"{root}: {len(missing)} image(s) listed in {self.labels_csv} are missing, "
                f"first {missing[:3]}"
            )
        index = pd.DataFrame(
            {
                "image_id": df["image_id"],
                "path": rel,
                "label": df["label"].astype(int),
                "label_name": df["label"].map(dict(enumerate(self.classes))),
                "group": df["image_id"],
                "official_split": df["split"],
            }
        )
        return index, pd.DataFrame(columns=["image_id", "group", "file", "reason"])

    def prepare(
        self,
        out: str | Path,
        opts: Options,
        base_urls: Sequence[str] = ZENODO_BASE_URLS,
        size: int = 224,
    ) -> Path:
        """The recipe: the npz at ``size`` px from Zenodo (MD5 checked), written as a PNG tree."""
        if size not in SIZES:
            raise DownloadError(f"{self.flag}: size {size} is not one of {SIZES}")
        name = self.file(size)
        npz = opts.fetch(
            name,
            mirror_urls(base_urls, name, "?download=1"),
            known_hash=f"md5:{self.md5[size]}",
        )
        with staging(out, opts.force) as stage:
            counts = self.write_tree(
                npz, stage, size=size, expected=self.splits if opts.published_counts else None
            )
        opts.done_with(npz)
        log(f"{self.flag}: {counts} images at {size} px in {out}")
        return Path(out)


def medmnist_dataset(
    info: MedMNIST,
    title: str,
    licence: str,
    note: str,
    class_counts: dict[str, int],
    counts_source: str,
    homepage: str = ZENODO_RECORD,
    citation: str = "Yang et al., Sci. Data 10, 41 (2023) (MedMNIST v2)",
    group_key: str = "image (no patient ids)",
    grouped_by: str = "its own split",
    in_all_grid: bool = False,
) -> DatasetSpec:
    """The registry entry of a MedMNIST dataset: one multi-class task on its official split.

    ``class_counts`` are planning's class counts of the whole dataset (all splits);
    ``counts_source`` says where they come from. The spec's ``extra["medmnist"]`` is ``info``.
    """
    total = sum(info.splits.values())
    if sum(class_counts.values()) != total:
        raise ValueError(
            f"{info.flag}: class counts sum to {sum(class_counts.values())}, "
            f"the published splits to {total}"
        )

    def counts(config: dict | None = None):
        return dict(class_counts), dict(info.splits), counts_source

    return DatasetSpec(
        name=info.flag,
        title=title,
        prepare=partial(_prepare, info),
        base_urls=ZENODO_BASE_URLS,
        options=(SIZE_OPTION,),
        grouping="none (each image is its own group)",
        licence=licence,
        homepage=homepage,
        source="Zenodo (MD5 checked)",
        citation=citation,
        in_all_grid=in_all_grid,
        extra={"medmnist": info},
        tasks=(
            Task(
                name=info.flag,
                dataset=info.flag,
                kind="multiclass",
                classes=info.classes,
                group_key=group_key,
                build=info.build_index,
                note=note,
                counts=counts,
                title=title,
                grouped_by=grouped_by,
            ),
        ),
    )


def _prepare(info: MedMNIST, out, opts, base_urls=ZENODO_BASE_URLS, size: int = 224) -> Path:
    return info.prepare(out, opts, base_urls, size=size)
