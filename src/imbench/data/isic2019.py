"""Parser for the ISIC 2019 training set (``ISIC_2019_Training_GroundTruth.csv`` + ``..._Metadata.csv``).

- Ground truth: header ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK``, one-hot ``0.0``/``1.0`` rows.
  ``UNK`` is all zero in the training set; it is not a class of the task (8 classes). A row with
  ``UNK`` = 1 (none in the official file) is dropped and listed in the exclusions.
- Metadata: header ``image,age_approx,anatom_site_general,lesion_id,sex``; some public copies
  spell the last column ``gender``, and both are accepted. Rows must be in the ground truth's order.
- 2,074 ``image`` values end in ``_downsampled``. The suffix is part of the JPEG file name, so
  ``path`` keeps it, while ``image_id`` drops it (the ISIC id, the same as in HAM10000).
- ``lesion_id`` is empty for 2,084 images; such an image is its own split group.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .errors import DatasetError
from .extract import flatten_images, safe_extract
from .fetch import log, mirror_urls
from .ham10000 import ISIC_HOSTS
from .registry import DatasetSpec, Task, published
from .staging import Options, check_counts, check_id_set, check_images_decode, staging

GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
METADATA = "ISIC_2019_Training_Metadata.csv"
TRUTH_COLUMNS = ("image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
META_COLUMNS = ("image", "age_approx", "anatom_site_general", "lesion_id")
SEX_COLUMNS = ("sex", "gender")
PUBLISHED_ROWS = 25331
PUBLISHED_COUNTS = {
    "MEL": 4522,
    "NV": 12875,
    "BCC": 3323,
    "AK": 867,
    "BKL": 2624,
    "DF": 239,
    "VASC": 253,
    "SCC": 628,
}
SUFFIX = "_downsampled"
_IMAGE = re.compile(r"^ISIC_\d{7}(_downsampled)?$")


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    if df.empty:
        raise DatasetError(f"{path}: no data rows")
    for col in df.columns:
        df[col] = df[col].str.strip()
    df.insert(0, "line", range(2, len(df) + 2))
    return df


def read_ground_truth(path: str | Path) -> pd.DataFrame:
    """Validated ground truth: ``line, image, label_name`` (one of ``CLASSES`` or ``UNK``)."""
    path = Path(path)
    df = _read(path)
    if tuple(c for c in df.columns if c != "line") != TRUTH_COLUMNS:
        raise DatasetError(f"{path}: header {list(df.columns[1:])} is not {list(TRUTH_COLUMNS)}")
    bad = ~df["image"].str.match(_IMAGE)
    if bad.any():
        row = df[bad].iloc[0]
        raise DatasetError(
            f"{path}: line {row.line}: image {row.image!r} is not an id like ISIC_0000000[_downsampled]"
        )
    cols = list(TRUTH_COLUMNS[1:])
    values = df[cols].apply(pd.to_numeric, errors="coerce")
    ok = values.isin([0.0, 1.0]).all(axis=1) & (values.sum(axis=1) == 1)
    if not ok.all():
        row = df[~ok].iloc[0]
        raise DatasetError(
            f"{path}: line {row.line}: {row.image} is not one-hot 0.0/1.0 over {cols}"
        )
    dup = df[df.duplicated("image")]
    if len(dup):
        row = dup.iloc[0]
        raise DatasetError(f"{path}: line {row.line}: image {row.image} appears more than once")
    return pd.DataFrame(
        {"line": df["line"], "image": df["image"], "label_name": values.idxmax(axis=1)}
    )


def read_metadata(path: str | Path, truth: pd.DataFrame | None = None) -> pd.DataFrame:
    """Validated metadata: ``line, image, age, site, lesion_id, sex`` (``sex`` or ``gender``).

    With ``truth``, the rows must list the same images in the same order.
    """
    path = Path(path)
    df = _read(path)
    missing = [c for c in META_COLUMNS if c not in df.columns]
    sex = next((c for c in SEX_COLUMNS if c in df.columns), None)
    if missing or sex is None:
        raise DatasetError(
            f"{path}: header {list(df.columns[1:])} lacks {missing + ([] if sex else ['sex|gender'])}; "
            f"expected {list(META_COLUMNS) + ['sex (or gender)']}"
        )
    age = pd.to_numeric(df["age_approx"].replace("", None), errors="coerce")
    bad = age.isna() & (df["age_approx"] != "")
    if bad.any():
        row = df[bad].iloc[0]
        raise DatasetError(
            f"{path}: line {row.line}: age_approx {row.age_approx!r} is not a number or empty"
        )
    if truth is not None:
        if len(df) != len(truth):
            raise DatasetError(f"{path}: {len(df)} rows but {GROUND_TRUTH} has {len(truth)}")
        diff = df["image"].to_numpy() != truth["image"].to_numpy()
        if diff.any():
            i = int(diff.argmax())
            raise DatasetError(
                f"{path}: line {i + 2}: image {df['image'].iloc[i]} but {GROUND_TRUTH} line {i + 2} "
                f"has {truth['image'].iloc[i]} (same order expected)"
            )
    out = pd.DataFrame(
        {
            "line": df["line"],
            "image": df["image"],
            "age": age.astype(float),
            "site": df["anatom_site_general"],
            "lesion_id": df["lesion_id"],
            "sex": df[sex],
        }
    )
    if truth is not None:
        labelled = out.assign(label=truth["label_name"].to_numpy())
        per_lesion = labelled[labelled.lesion_id != ""].groupby("lesion_id")["label"].nunique()
        if (per_lesion > 1).any():
            lesion = per_lesion[per_lesion > 1].index[0]
            lines = out.loc[out.lesion_id == lesion, "line"].tolist()
            raise DatasetError(
                f"{path}: lines {lines}: lesion {lesion} has more than one label in {GROUND_TRUTH}"
            )
    return out


def find_images(root: str | Path) -> dict[str, Path]:
    """Map file stem (``image`` verbatim, ``_downsampled`` kept) → JPEG path below ``root``."""
    found: dict[str, Path] = {}
    for p in sorted(Path(root).rglob("*.jpg")):
        if _IMAGE.match(p.stem):
            found.setdefault(p.stem, p)
    return found


def build_index(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Normalised index of an ISIC 2019 raw folder, and the exclusions.

    Index columns: ``image_id`` (ISIC id, suffix stripped), ``path`` (relative to ``root``),
    ``label``/``label_name`` (8 classes), ``group`` (``lesion_id``, or ``image_id`` when empty), then
    ``isic_image`` (the name as listed), ``lesion_id``, ``source`` (BCN/HAM/MSK4/unknown), ``age``,
    ``site``, ``sex``. Exclusions (``image_id, group, file, reason``): rows labelled ``UNK``.
    """
    root = Path(root)
    truth = read_ground_truth(root / GROUND_TRUTH)
    meta = read_metadata(root / METADATA, truth)
    images = find_images(root)
    missing = [i for i in truth.image if i not in images]
    if missing:
        raise DatasetError(
            f"{root}: {len(missing)} image(s) listed in {GROUND_TRUTH} are missing on disk, "
            f"first {missing[:3]}"
        )
    image_id = truth.image.str.removesuffix(SUFFIX)
    dup = image_id[image_id.duplicated()]
    if len(dup):
        raise DatasetError(
            f"{root / GROUND_TRUTH}: {dup.iloc[0]} is listed both with and without {SUFFIX}"
        )
    group = meta.lesion_id.where(meta.lesion_id != "", image_id)
    source = meta.lesion_id.str.extract(r"^([A-Za-z0-9]+)_", expand=False).fillna("unknown")
    full = pd.DataFrame(
        {
            "image_id": image_id,
            "path": [str(images[i].relative_to(root)) for i in truth.image],
            "label": truth.label_name.map({c: k for k, c in enumerate(CLASSES)}),
            "label_name": truth.label_name,
            "group": group,
            "isic_image": truth.image,
            "lesion_id": meta.lesion_id,
            "source": source,
            "age": meta.age,
            "site": meta.site,
            "sex": meta.sex,
        }
    )
    unk = full.label_name == "UNK"
    exclusions = pd.DataFrame(
        {
            "image_id": full.image_id[unk],
            "group": full.group[unk],
            "file": full.path[unk],
            "reason": f"labelled UNK in {GROUND_TRUTH}",
        }
    )
    index = full[~unk].reset_index(drop=True)
    index["label"] = index["label"].astype(int)
    return index, exclusions.reset_index(drop=True)


# --------------------------------------------------------------------------------------- download

BASE_URLS = tuple(f"{h}/2019" for h in ISIC_HOSTS)
# Checksums reported by third parties only (not by the owners): a mismatch is a warning, followed
# by the content checks.
REPORTED_HASHES = {
    GROUND_TRUTH: "sha256:aa88e9638fe4df9ef330dc4ba22fa4bd475c44af692fffb870c73091ab25cdcd",
    METADATA: "sha256:d93994a8ed201d474de9a7af7e17ec30929cbc4a5220659ecbde17cbe83e9316",
}


ISIC2019_INPUT_ZIP = "ISIC_2019_Training_Input.zip"


def prepare(out: str | Path, opts: Options, base_urls: Sequence[str] = BASE_URLS) -> Path:
    """ISIC 2019 training set: the two CSVs + ``images/<image>.jpg`` (25,331, names kept verbatim)."""
    gt = opts.fetch(
        GROUND_TRUTH,
        mirror_urls(base_urls, GROUND_TRUTH),
        reported_hash=REPORTED_HASHES[GROUND_TRUTH],
        check=read_ground_truth,
    )
    md = opts.fetch(
        METADATA,
        mirror_urls(base_urls, METADATA),
        reported_hash=REPORTED_HASHES[METADATA],
        check=read_metadata,
    )
    truth = read_ground_truth(gt)
    meta = read_metadata(md, truth)
    if opts.published_counts:
        check_counts(str(gt), {"rows": len(truth)}, {"rows": PUBLISHED_ROWS}, tolerance=0.01)
        check_counts(
            f"{gt} classes",
            truth.label_name.value_counts().to_dict(),
            PUBLISHED_COUNTS,
            tolerance=0.01,
        )
    archive = opts.fetch(ISIC2019_INPUT_ZIP, mirror_urls(base_urls, ISIC2019_INPUT_ZIP))
    with staging(out, opts.force) as stage:
        shutil.copy(gt, stage / GROUND_TRUTH)
        shutil.copy(md, stage / METADATA)
        images = safe_extract(archive, stage, flatten_images())
        check_id_set((p.stem for p in images), truth["image"], str(archive), GROUND_TRUTH)
        check_images_decode(images, source=str(archive), undecodable=opts.undecodable)
    opts.done_with(archive)
    log(
        f"isic2019: {len(truth)} images, {meta.lesion_id.replace('', None).nunique()} lesion ids in {out}"
    )
    return Path(out)


DATASET = DatasetSpec(
    name="isic2019",
    title="ISIC 2019 training set",
    prepare=prepare,
    base_urls=BASE_URLS,
    grouping="lesion_id (else the image)",
    licence="CC BY-NC 4.0",
    homepage="https://challenge.isic-archive.com/data/#2019",
    source="ISIC S3 hosts",
    citation="Tschandl et al. 2018; Codella et al. 2017; Combalia et al. 2019",
    tasks=(
        Task(
            name="isic2019",
            dataset="isic2019",
            kind="multiclass",
            classes=CLASSES,
            group_key="lesion_id",
            build=build_index,
            note="ISIC 2019 training set, 8 classes (the all-zero UNK column dropped); images without a "
            "lesion_id are their own group; image_id drops the _downsampled suffix of 2,074 file names; "
            "contains all of HAM10000",
            counts=published(PUBLISHED_COUNTS, "ISIC 2019 training ground truth: 25,331 images"),
            title="ISIC 2019 training set",
            classes_note="UNK dropped",
            grouped_by="`lesion_id` (else the image)",
        ),
    ),
)
