"""Parser and indexes for ODIR-5K (training set: 3,500 patients, two fundus images each).

Accepted layouts (found anywhere below the raw folder):

- the normalised one written by ``imbench download odir``: the annotation workbook and
  ``full_df.csv`` at the top, images in ``images/``;
- the Kaggle zip ``andrewmvd/ocular-disease-recognition-odir5k`` extracted as is:
  ``full_df.csv``, ``ODIR-5K/ODIR-5K/data.xlsx``, ``ODIR-5K/ODIR-5K/Training Images/``;
- the official OIA-ODIR folder: ``Training Set/Annotation/training annotation (English).xlsx``,
  ``Training Set/Images/``.

The workbook (15 columns: ``ID, Patient Age, Patient Sex, Left-Fundus, Right-Fundus,
Left-Diagnostic Keywords, Right-Diagnostic Keywords, N, D, G, C, A, H, M, O``) holds the official
**patient-level** labels. Per-eye information is only free-text keywords, separated by the
full-width comma ``，`` (a few by ``,``).

Three framings:

- ``odir_eye`` (:func:`build_eye_index`): one image per row, single label = the category of the
  eye's first keyword, as in Kaggle's ``full_df.csv`` (6,392 images). With ``full_df.csv`` present
  its labels are used verbatim, joined on ``filename``; without it (OIA layout) the same rule is
  applied to the workbook: the first keyword's category from :data:`EYE_CATEGORY`, and an eye whose
  first keyword is an image-quality note or has no category is excluded. On the real files the
  derived labels agree with ``full_df.csv`` on all eyes both keep; the derived set has one eye fewer
  and one more (a first keyword ``low image quality`` that ``full_df.csv`` labels ``O`` here, a
  ``hypertensive retinopathy`` eye missing from ``full_df.csv``).
- ``odir_glaucoma``: the per-eye rows labelled N or G; 0 = N, 1 = G.
- ``odir`` (:func:`build_patient_index`): one row per patient with the 8 official labels as
  multi-hot columns ``y_N … y_O``. The model input is one image per patient: the left and right
  fundus images, each scaled to fit a ``size``×``size`` black square (aspect kept), side by side
  (left eye on the left) in a ``2·size``×``size`` JPEG written once to ``<raw>/combined/<ID>.jpg``.
  With the ``squash`` cache mode each eye then occupies half the cached width. An eye whose keywords
  are all image-quality notes (``lens dust``, ``low image quality`` …), or whose image does not
  decode, is left black; a patient with two such eyes is dropped. ``label`` is the sampling class
  of :mod:`imbench.data.multilabel` (the patient's rarest positive label over the whole index),
  which stratifies the split.

Every dropped or blanked image is listed, one row per image file, in the exclusions table that the
``build_*`` functions return beside the index (``odir_glaucoma`` lists every eye it leaves out,
including those labelled neither N nor G).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePath, PurePosixPath

import pandas as pd

from ..io import atomic_path
from .errors import DatasetError, DownloadError
from .extract import check_zip_container, is_image_name, safe_extract
from .fetch import log, mirror_urls
from .multilabel import make_index
from .registry import DatasetSpec, Option, Task, published
from .staging import (
    Options,
    blame,
    check_counts,
    check_id_set,
    check_images_decode,
    discard_if_bad,
    staging,
)

CLASSES = ("N", "D", "G", "C", "A", "H", "M", "O")
COLUMNS = (
    "ID",
    "Patient Age",
    "Patient Sex",
    "Left-Fundus",
    "Right-Fundus",
    "Left-Diagnostic Keywords",
    "Right-Diagnostic Keywords",
    *CLASSES,
)
FULL_DF = "full_df.csv"
ANNOTATION_NAMES = (
    "data.xlsx",
    "ODIR-5K_Training_Annotations(Updated)_V2.xlsx",
    "training annotation (English).xlsx",
)
PUBLISHED_PATIENT_COUNTS = {
    "patients": 3500,
    "N": 1140,
    "D": 1128,
    "G": 215,
    "C": 212,
    "A": 164,
    "H": 103,
    "M": 174,
    "O": 979,
}
PUBLISHED_EYE_COUNTS = {
    "N": 2873,
    "D": 1608,
    "O": 708,
    "C": 293,
    "G": 284,
    "A": 266,
    "M": 232,
    "H": 128,
}

# Keywords that describe the photograph, not the eye.
QUALITY_KEYWORDS = frozenset(
    {
        "lens dust",
        "low image quality",
        "optic disk photographically invisible",
        "image offset",
        "no fundus image",
        "anterior segment image",
    }
)
# First-keyword → category table of Kaggle's full_df.csv (every first keyword it labels, except the
# quality note "low image quality"). An eye whose first keyword is not here is not in that framing.
EYE_CATEGORY = {
    "normal fundus": "N",
    "diabetic retinopathy": "D",
    "mild nonproliferative retinopathy": "D",
    "moderate non proliferative retinopathy": "D",
    "severe nonproliferative retinopathy": "D",
    "proliferative diabetic retinopathy": "D",
    "severe proliferative diabetic retinopathy": "D",
    "suspected moderate non proliferative retinopathy": "D",
    "glaucoma": "G",
    "suspected glaucoma": "G",
    "cataract": "C",
    "dry age-related macular degeneration": "A",
    "wet age-related macular degeneration": "A",
    "hypertensive retinopathy": "H",
    "pathological myopia": "M",
    "branch retinal vein occlusion": "O",
    "drusen": "O",
    "epiretinal membrane": "O",
    "epiretinal membrane over the macula": "O",
    "macular epiretinal membrane": "O",
    "maculopathy": "O",
    "myelinated nerve fibers": "O",
    "myopic maculopathy": "O",
    "old branch retinal vein occlusion": "O",
    "optic disk epiretinal membrane": "O",
    "refractive media opacity": "O",
    "vitreous degeneration": "O",
}
SIDES = ("left", "right")
_TRAIN_IMAGE = re.compile(r"^(\d+)_(left|right)\.jpe?g$", re.I)


def annotation_kind(filename: str) -> bool:
    """Whether ``filename`` is one of the known names of the training annotation workbook."""
    return filename in ANNOTATION_NAMES


def is_training_image(path: PurePath) -> bool:
    """A training fundus image ``{ID}_{left,right}.jpg`` not under a test or preprocessed folder."""
    if not _TRAIN_IMAGE.match(path.name):
        return False
    parents = [p.lower() for p in path.parts[:-1]]
    return not any("test" in p or p == "preprocessed_images" for p in parents)


@dataclass(frozen=True)
class Layout:
    annotations: Path
    full_df: Path | None
    images_dir: Path


def locate(root: str | Path) -> Layout:
    """Find the annotation workbook, ``full_df.csv`` (optional) and the training image folder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: ODIR folder not found")
    annotations = _first(root, ANNOTATION_NAMES)
    if annotations is None:
        raise DatasetError(
            f"{root}: no ODIR annotation workbook (one of {list(ANNOTATION_NAMES)}) found below it"
        )
    full_df = _first(root, (FULL_DF,))
    images_dir = None
    for cand in (
        root / "images",
        annotations.parent / "Training Images",
        annotations.parent.parent / "Images",
        root / "ODIR-5K" / "ODIR-5K" / "Training Images",
        root / "Training Set" / "Images",
    ):
        if cand.is_dir() and _has_training_images(cand):
            images_dir = cand
            break
    if images_dir is None:
        for cand in sorted(p for p in root.rglob("*") if p.is_dir()):
            if is_training_image(cand.relative_to(root) / "0_left.jpg") and _has_training_images(
                cand
            ):
                images_dir = cand
                break
    if images_dir is None:
        raise DatasetError(
            f"{root}: no folder of training images named like 0_left.jpg found below it"
        )
    return Layout(annotations, full_df, images_dir)


def _first(root: Path, names) -> Path | None:
    for name in names:
        if (root / name).is_file():
            return root / name
    for name in names:
        hits = sorted(
            p
            for p in root.rglob(name)
            if p.is_file() and "test" not in str(p.relative_to(root)).lower()
        )
        if hits:
            return hits[0]
    return None


def _has_training_images(folder: Path) -> bool:
    with os.scandir(folder) as it:
        return any(_TRAIN_IMAGE.match(e.name) for e in it)


def read_annotations(path: str | Path) -> pd.DataFrame:
    """Validated patient table: the 15 columns plus ``row`` (the worksheet row), ``ID`` as int."""
    path = Path(path)
    check_zip_container(path)  # a workbook is a zip: no decompression bomb reaches openpyxl
    try:
        df = pd.read_excel(path, sheet_name=0, dtype=object)
    except ImportError as exc:
        raise DatasetError(f"{path}: reading .xlsx needs openpyxl ({exc})") from None
    except Exception as exc:  # zipfile/openpyxl raise many types for a broken workbook
        raise DatasetError(f"{path}: not a readable .xlsx workbook ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if tuple(df.columns) != COLUMNS:
        raise DatasetError(f"{path}: columns {list(df.columns)} are not {list(COLUMNS)}")
    if df.empty:
        raise DatasetError(f"{path}: no data rows")
    df.insert(0, "row", range(2, len(df) + 2))
    ids = []
    for row, value in zip(df["row"], df["ID"]):
        try:
            ids.append(int(float(str(value).strip())))
        except ValueError:
            raise DatasetError(f"{path}: row {row}: ID {value!r} is not an integer") from None
    df["ID"] = ids
    dup = df[df.duplicated("ID")]
    if len(dup):
        raise DatasetError(
            f"{path}: row {dup.row.iloc[0]}: ID {dup.ID.iloc[0]} appears more than once"
        )
    for c in CLASSES:
        vals = pd.to_numeric(df[c], errors="coerce")
        bad = ~vals.isin([0, 1])
        if bad.any():
            row = df[bad].iloc[0]
            raise DatasetError(f"{path}: row {row.row}: label {c} is {row[c]!r}, expected 0 or 1")
        df[c] = vals.astype(int)
    none = df[df[list(CLASSES)].sum(axis=1) == 0]
    if len(none):
        raise DatasetError(
            f"{path}: row {none.row.iloc[0]}: patient {none.ID.iloc[0]} has no label set"
        )
    for side in SIDES:
        col = f"{side.capitalize()}-Fundus"
        want = df["ID"].astype(str) + f"_{side}.jpg"
        bad = df[col].astype(str).str.strip() != want
        if bad.any():
            row = df[bad].iloc[0]
            raise DatasetError(
                f"{path}: row {row.row}: {col} {row[col]!r} is not {row.ID}_{side}.jpg"
            )
        df[col] = want
        kw = f"{side.capitalize()}-Diagnostic Keywords"
        df[kw] = df[kw].fillna("").astype(str).str.strip()
    df["Patient Age"] = pd.to_numeric(df["Patient Age"], errors="coerce")
    df["Patient Sex"] = df["Patient Sex"].fillna("").astype(str).str.strip()
    return df.reset_index(drop=True)


def read_full_df(path: str | Path, annotations: pd.DataFrame | None = None) -> pd.DataFrame:
    """Kaggle's per-eye table: ``line, ID, filename, label_name`` (from the ``labels`` column)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in ("ID", "filename", "labels") if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: header lacks column(s) {missing}")
    df.insert(0, "line", range(2, len(df) + 2))
    label = df["labels"].str.extract(r"^\s*\[\s*'([A-Z])'\s*\]\s*$", expand=False)
    bad = ~label.isin(CLASSES)
    if bad.any():
        row = df[bad].iloc[0]
        raise DatasetError(
            f"{path}: line {row.line}: labels {row.labels!r} is not one of ['N'] … ['O']"
        )
    m = df["filename"].str.extract(_TRAIN_IMAGE.pattern, flags=re.I)
    bad = m[0].isna() | (m[0] != df["ID"].str.strip())
    if bad.any():
        row = df[bad].iloc[0]
        raise DatasetError(
            f"{path}: line {row.line}: filename {row.filename!r} is not {{ID}}_{{left,right}}.jpg "
            f"for ID {row.ID}"
        )
    dup = df[df.duplicated("filename")]
    if len(dup):
        raise DatasetError(
            f"{path}: line {dup.line.iloc[0]}: {dup.filename.iloc[0]} appears more than once"
        )
    out = pd.DataFrame(
        {
            "line": df["line"],
            "ID": m[0].astype(int),
            "filename": df["filename"],
            "label_name": label,
        }
    )
    if annotations is not None:
        unknown = out[~out.ID.isin(annotations.ID)]
        if len(unknown):
            row = unknown.iloc[0]
            raise DatasetError(
                f"{path}: line {row.line}: patient {row.ID} is not in the annotation workbook"
            )
    return out


def label_sums(annotations: pd.DataFrame) -> dict:
    return {"patients": len(annotations), **{c: int(annotations[c].sum()) for c in CLASSES}}


def split_keywords(text: str) -> list[str]:
    return [k.strip() for k in re.split(r"[，,]", text or "") if k.strip()]


def eye_table(annotations: pd.DataFrame) -> pd.DataFrame:
    """One row per eye: ``ID, side, age, sex, filename, keywords, quality_only, category, reason``.

    ``category`` is the category of the first keyword (the full_df.csv rule), or None with ``reason``.
    """
    return _eyes(annotations)


def _eyes(annotations: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for side in SIDES:
        parts.append(
            pd.DataFrame(
                {
                    "ID": annotations["ID"],
                    "side": side,
                    "text": annotations[f"{side.capitalize()}-Diagnostic Keywords"],
                    "age": annotations["Patient Age"],
                    "sex": annotations["Patient Sex"],
                }
            )
        )
    eyes = (
        pd.concat(parts, ignore_index=True)
        .sort_values(["ID", "side"], kind="stable")
        .reset_index(drop=True)
    )
    return _classify_eyes(eyes)


def _classify_eyes(eyes: pd.DataFrame) -> pd.DataFrame:
    eyes = eyes.copy()
    eyes["filename"] = eyes["ID"].astype(str) + "_" + eyes["side"] + ".jpg"
    kws = eyes["text"].map(split_keywords)
    eyes["keywords"] = kws.map("; ".join)
    eyes["quality_only"] = kws.map(lambda ks: all(k in QUALITY_KEYWORDS for k in ks))
    first = kws.map(lambda ks: ks[0] if ks else "")
    eyes["category"] = first.map(lambda k: None if k in QUALITY_KEYWORDS else EYE_CATEGORY.get(k))
    eyes["reason"] = [
        None
        if cat is not None
        else f"first keyword {k!r} is an image-quality note"
        if k in QUALITY_KEYWORDS
        else f"first keyword {k!r} has no category in the full_df.csv framing"
        for k, cat in zip(first, eyes["category"])
    ]
    return eyes.drop(columns="text")


def _rel(root: Path, folder: Path, name: str) -> str:
    return str((folder / name).relative_to(root))


def _check_on_disk(root: Path, layout: Layout, filenames) -> None:
    missing = [f for f in filenames if not (layout.images_dir / f).is_file()]
    if missing:
        raise DatasetError(
            f"{layout.images_dir}: {len(missing)} image(s) listed in {layout.annotations.name} are "
            f"missing, first {missing[:3]}"
        )


def build_eye_index(root: str | Path, binary: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-eye index (``odir_eye``; ``binary``: ``odir_glaucoma``, N = 0 vs G = 1) and exclusions.

    Index columns: ``image_id`` (``{ID}_{side}``), ``path``, ``label``, ``label_name``, ``group``
    (patient ID), ``side``, ``age``, ``sex``, ``keywords``. Exclusions (``image_id, group, file,
    action, reason``): eyes outside the full_df.csv framing and, with ``binary``, every eye labelled
    neither N nor G.
    """
    root = Path(root)
    layout = locate(root)
    ann = read_annotations(layout.annotations)
    eyes = _eyes(ann)
    if layout.full_df is not None:
        full = read_full_df(layout.full_df, ann)
        label = dict(zip(full.filename, full.label_name))
        eyes["category"] = eyes["filename"].map(label)
        eyes["reason"] = [
            None if isinstance(c, str) else f"not in {FULL_DF} (keywords: {k})"
            for c, k in zip(eyes["category"], eyes["keywords"])
        ]
    kept = eyes[eyes["category"].notna()]
    dropped = eyes[eyes["category"].isna()]
    _check_on_disk(root, layout, kept["filename"])
    classes = ("N", "G") if binary else CLASSES
    if binary:
        other = kept[~kept["category"].isin(classes)]
        kept = kept[kept["category"].isin(classes)]
        dropped = pd.concat(
            [
                dropped,
                other.assign(
                    reason=[
                        f"label {c} is neither N nor G (the glaucoma task keeps normal and glaucoma eyes)"
                        for c in other["category"]
                    ]
                ),
            ]
        ).sort_values(["ID", "side"], kind="stable")
    index = pd.DataFrame(
        {
            "image_id": kept["filename"].str.replace(r"\.jpe?g$", "", regex=True),
            "path": [_rel(root, layout.images_dir, f) for f in kept["filename"]],
            "label": kept["category"].map({c: k for k, c in enumerate(classes)}).astype(int),
            "label_name": kept["category"],
            "group": kept["ID"].astype(str),
            "side": kept["side"],
            "age": kept["age"],
            "sex": kept["sex"],
            "keywords": kept["keywords"],
        }
    ).reset_index(drop=True)
    exclusions = pd.DataFrame(
        {
            "image_id": dropped["filename"].str.replace(r"\.jpe?g$", "", regex=True),
            "group": dropped["ID"].astype(str),
            "file": [_rel(root, layout.images_dir, f) for f in dropped["filename"]],
            "action": "dropped",
            "reason": dropped["reason"],
        }
    ).reset_index(drop=True)
    return index, exclusions


def build_patient_index(
    root: str | Path, size: int = 512, workers: int | None = None, undecodable: str = "exclude"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient multi-label index (``odir``) and exclusions; writes ``<root>/combined/<ID>.jpg``.

    Index columns (the multi-label index of ``imbench.data.multilabel``): ``image_id`` and ``group``
    (patient ID), ``path`` (``combined/<ID>.jpg``), ``label``/``label_name`` (sampling class: the
    rarest positive label), ``y_N … y_O`` (0/1), then ``labels`` (positive labels joined by ``|``),
    ``age``, ``sex``, ``left_blank``, ``right_blank``, ``left_path``, ``right_path`` (the eye images
    used, relative to ``root``; empty for a blanked eye).
    Exclusions (``image_id, group, file, action, reason``): one row per eye image left out: blanked
    eyes, and both eyes of each dropped patient. Every eye image is decoded first (the
    ``undecodable`` setting of :mod:`imbench.data.images`): with ``exclude`` an eye that does not
    decode is blanked like a quality-only eye, and a patient without a usable eye is dropped; with
    ``fail`` the first such eye stops the build.
    """
    from .images import check_policy, decode_errors

    check_policy(undecodable)
    root = Path(root)
    layout = locate(root)
    ann = read_annotations(layout.annotations)
    eyes = _eyes(ann).set_index(["ID", "side"])
    _check_on_disk(root, layout, eyes["filename"])
    usable = eyes[~eyes["quality_only"]]
    bad = decode_errors([layout.images_dir / f for f in usable["filename"]], workers=workers)
    if bad and undecodable == "fail":
        first = sorted(bad)[0]
        raise DatasetError(
            f"{first}: undecodable image ({bad[first]}); {len(bad)} undecodable eye image(s) in all "
            "(index.undecodable: exclude leaves them out and lists them)"
        )
    bad_by_name = {Path(p).name: r for p, r in bad.items()}
    # plain dicts: one lookup per eye instead of a DataFrame .loc
    filename = eyes["filename"].to_dict()
    quality_only = eyes["quality_only"].to_dict()
    keywords = eyes["keywords"].to_dict()
    excl = []
    keep_rows = []
    for rec in ann.itertuples(index=False):
        pid = rec.ID
        why = {}
        for s in SIDES:
            if quality_only[(pid, s)]:
                why[s] = f"only image-quality keywords: {keywords[(pid, s)]}"
            elif filename[(pid, s)] in bad_by_name:
                why[s] = f"undecodable image: {bad_by_name[filename[(pid, s)]]}"
        blank = {s: s in why for s in SIDES}
        dropped = all(blank.values())
        for s in SIDES:
            if blank[s]:
                reason = (
                    f"patient dropped, no usable eye; this eye: {why[s]}" if dropped else why[s]
                )
                excl.append(
                    (
                        f"{pid}_{s}",
                        str(pid),
                        _rel(root, layout.images_dir, filename[(pid, s)]),
                        "dropped" if dropped else "blanked",
                        reason,
                    )
                )
        if not dropped:
            keep_rows.append((pid, blank))
    kept = ann.set_index("ID").loc[[pid for pid, _ in keep_rows]]
    y = kept[list(CLASSES)].to_numpy()
    jobs = []
    for pid, blank in keep_rows:
        paths = [None if blank[s] else layout.images_dir / filename[(pid, s)] for s in SIDES]
        jobs.append((paths[0], paths[1], root / "combined" / f"{pid}.jpg", size))
    _write_combined(jobs, workers)
    base = pd.DataFrame(
        {
            "image_id": [str(pid) for pid, _ in keep_rows],
            "path": [f"combined/{pid}.jpg" for pid, _ in keep_rows],
            "group": [str(pid) for pid, _ in keep_rows],
        }
    )
    index = make_index(base, y, CLASSES)
    index["labels"] = ["|".join(c for c, v in zip(CLASSES, row) if v) for row in y]
    index["age"] = kept["Patient Age"].to_numpy()
    index["sex"] = kept["Patient Sex"].to_numpy()
    index["left_blank"] = [b["left"] for _, b in keep_rows]
    index["right_blank"] = [b["right"] for _, b in keep_rows]
    for s in SIDES:
        index[f"{s}_path"] = [
            "" if b[s] else _rel(root, layout.images_dir, filename[(pid, s)])
            for pid, b in keep_rows
        ]
    exclusions = pd.DataFrame(excl, columns=["image_id", "group", "file", "action", "reason"])
    return index, exclusions


def _write_combined(jobs: list, workers: int | None) -> None:
    folders = {Path(j[2]).parent for j in jobs}
    for folder in folders:  # temporary files of a run that was killed
        for stale in folder.glob(".*.tmp.jpg"):
            stale.unlink(missing_ok=True)
    todo = [j for j in jobs if not _combined_ok(j[2], j[3])]
    if not todo:
        return
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(todo) < 64:
        for job in todo:
            combine_eyes(*job)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_combine_job, todo, chunksize=16))


def _combine_job(job) -> None:
    combine_eyes(*job)


def _combined_ok(path: Path, size: int) -> bool:
    from PIL import Image

    if not path.is_file():
        return False
    try:
        with Image.open(path) as img:
            return img.size == (2 * size, size)
    except Exception:
        return False


def combine_eyes(left: Path | None, right: Path | None, out: Path, size: int = 512) -> None:
    """Write the two eyes side by side (left eye on the left), each fitted into a black
    ``size``×``size`` square with its aspect kept; a ``None`` eye stays black."""
    from PIL import Image, ImageOps

    from .cache import to_rgb8

    canvas = Image.new("RGB", (2 * size, size))
    for k, p in enumerate((left, right)):
        if p is None:
            continue
        try:
            with Image.open(p) as img:
                img.draft("RGB", (size, size))
                eye = ImageOps.contain(to_rgb8(img), (size, size), method=Image.BILINEAR)
        except Exception as exc:
            raise DatasetError(f"{p}: not a decodable image ({exc})") from None
        canvas.paste(eye, (k * size + (size - eye.width) // 2, (size - eye.height) // 2))
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="JPEG", quality=95)


# --------------------------------------------------------------------------------------- download

KAGGLE_DATASET = "andrewmvd/ocular-disease-recognition-odir5k"
KAGGLE_ZIP = "ocular-disease-recognition-odir5k.zip"
#: Planning's sampling classes of the multi-label ``odir`` task: each patient's rarest positive
#: label, as the samplers use them (3,499 patients: one with two quality-only eyes is dropped).
PATIENT_SAMPLING_COUNTS = {
    "N": 1139,
    "D": 697,
    "G": 186,
    "C": 210,
    "A": 160,
    "H": 103,
    "M": 171,
    "O": 833,
}


def kaggle_credentials() -> str | None:
    """Where Kaggle credentials were found (a description), or None."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        dirs = [Path(os.environ["KAGGLE_CONFIG_DIR"])]
    else:
        xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        dirs = [Path.home() / ".kaggle", xdg / "kaggle"]
    for d in dirs:
        if (d / "kaggle.json").is_file():
            return str(d / "kaggle.json")
    return None


def _odir_instructions(downloads: Path, out: Path) -> str:
    return (
        f"ODIR-5K needs a Kaggle API token (~/.kaggle/kaggle.json or KAGGLE_USERNAME + KAGGLE_KEY, "
        f"then `pip install kaggle`) or files placed by hand: put the Kaggle zip {KAGGLE_ZIP} (from "
        f"kaggle.com/datasets/{KAGGLE_DATASET}) or the official OIA-ODIR folder 'Training Set/' "
        f"(with 'Images/' and 'Annotation/training annotation (English).xlsx') in {downloads}/ and run "
        f"again; an extracted tree put in {out}/ instead is indexed as it is"
    )


def _odir_manual_source(downloads: Path) -> Path | None:
    """A zip or an extracted tree placed by hand in ``downloads``, if any."""
    if not downloads.is_dir():
        return None
    zips = sorted(p for p in downloads.glob("*.zip") if not p.name.startswith("."))
    for z in zips:
        with contextlib.suppress(zipfile.BadZipFile, OSError):
            with zipfile.ZipFile(z) as zf:
                if any(annotation_kind(PurePosixPath(n).name) for n in zf.namelist()):
                    return z
    with contextlib.suppress(DatasetError):
        locate(downloads)
        return downloads
    return None


def _odir_from_kaggle(opts: Options, dataset: str) -> Path:
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi  # lazy: optional dependency
    except ImportError:
        raise DownloadError(
            "Kaggle credentials found but the kaggle package is not installed; "
            "run `pip install kaggle` or place the files by hand"
        ) from None
    except (
        Exception,
        SystemExit,
    ) as exc:  # the package authenticates on import (some versions exit)
        raise DownloadError(f"kaggle: authentication failed ({exc})") from None
    opts.downloads.mkdir(parents=True, exist_ok=True)
    target = opts.downloads / f"{dataset.split('/')[-1]}.zip"
    if target.exists() and zipfile.is_zipfile(target):
        return target
    try:
        api = KaggleApi()
        api.authenticate()
        api.dataset_download_files(
            dataset, path=str(opts.downloads), unzip=False, quiet=not opts.progress
        )
    except (Exception, SystemExit) as exc:
        target.unlink(missing_ok=True)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(f"kaggle: downloading {dataset} failed ({reason})") from None
    if not zipfile.is_zipfile(target):
        target.unlink(missing_ok=True)
        raise DownloadError(
            f"kaggle: {target} is not a complete zip after the download; deleted, run again"
        )
    return target


def _odir_select(name: str) -> str | None:
    p = PurePosixPath(name.replace("\\", "/"))
    if annotation_kind(p.name) or p.name == FULL_DF:
        return p.name
    if is_image_name(name) and is_training_image(p):
        return f"images/{p.name}"
    return None


def prepare(
    out: str | Path,
    opts: Options,
    base_urls: Sequence[str] = (),
    kaggle_dataset: str = KAGGLE_DATASET,
) -> Path:
    """ODIR-5K training set, from (in order) files placed by hand in the downloads folder, a mirror
    serving the Kaggle zip under ``base_urls``, or the Kaggle API; else one line saying what to place.

    Result: ``out/<annotation xlsx>``, ``out/full_df.csv`` (Kaggle only) and ``out/images/`` holding
    the 7,000 training fundus images ``{ID}_{left,right}.jpg``.
    """
    out = Path(out)
    source = _odir_manual_source(opts.downloads)
    manual = source is not None
    if source is None and base_urls:
        source = opts.fetch(KAGGLE_ZIP, mirror_urls(base_urls, KAGGLE_ZIP))
    if source is None and kaggle_credentials():
        source = _odir_from_kaggle(opts, kaggle_dataset)
    if source is None:
        raise DownloadError(_odir_instructions(opts.downloads, out))
    log(f"odir: using {source}")
    with staging(out, opts.force) as stage, blame(stage, source):
        if source.is_dir():
            layout = locate(source)
            files = [layout.annotations] + ([layout.full_df] if layout.full_df else [])
            for f in files:
                shutil.copy(f, stage / f.name)
            (stage / "images").mkdir()
            images = []
            for p in sorted(layout.images_dir.iterdir()):
                if is_image_name(p.name) and is_training_image(PurePosixPath(p.name)):
                    shutil.copy(p, stage / "images" / p.name)
                    images.append(stage / "images" / p.name)
        else:
            with discard_if_bad(source, not manual):
                extracted = safe_extract(
                    source, stage, _odir_select, discard=not manual, duplicates="first"
                )
                images = [p for p in extracted if p.parent.name == "images"]
                layout = locate(stage)
                read_annotations(layout.annotations)
                if layout.full_df:
                    read_full_df(layout.full_df)
        layout = locate(stage)
        ann = read_annotations(layout.annotations)
        expected = [f"{i}_{side}" for i in ann.ID for side in ("left", "right")]
        check_id_set((p.stem for p in images), expected, str(source), layout.annotations.name)
        full_df = read_full_df(layout.full_df, ann) if layout.full_df else None
        if opts.published_counts:
            check_counts(str(layout.annotations), label_sums(ann), PUBLISHED_PATIENT_COUNTS)
            if full_df is not None:
                check_counts(
                    str(layout.full_df),
                    full_df.label_name.value_counts().to_dict(),
                    PUBLISHED_EYE_COUNTS,
                )
        check_images_decode(images, source=str(source), undecodable=opts.undecodable)
    if source.is_file() and not manual:
        opts.done_with(source)
    log(f"odir: {len(ann)} patients, {len(images)} images in {out}")
    return out


DATASET = DatasetSpec(
    name="odir",
    title="ODIR-5K",
    prepare=prepare,
    base_urls=(),
    options=(Option("kaggle_dataset", KAGGLE_DATASET, "odir: Kaggle dataset slug"),),
    grouping="patient ID",
    licence="none stated (research, non-commercial)",
    homepage="https://odir2019.grand-challenge.org",
    source="Kaggle API, a mirror of the Kaggle zip, or files placed by hand",
    citation="Li et al., arXiv:2102.07978; ODIR-2019 challenge",
    tasks=(
        Task(
            name="odir_eye",
            dataset="odir",
            kind="multiclass",
            classes=CLASSES,
            group_key="patient ID",
            build=build_eye_index,
            note="ODIR-5K per eye in Kaggle's full_df.csv framing (6,392 images): the category of each "
            "eye's first diagnostic keyword; both eyes of a patient share a split",
            counts=published(PUBLISHED_EYE_COUNTS, "ODIR-5K full_df.csv framing: 6,392 eyes"),
            title="ODIR-5K, per eye (Kaggle `full_df.csv` framing)",
            grouped_by="patient",
        ),
        Task(
            name="odir_glaucoma",
            dataset="odir",
            kind="binary",
            classes=("N", "G"),
            group_key="patient ID",
            build=partial(build_eye_index, binary=True),
            note="ODIR-5K per eye, glaucoma (G) vs normal (N) eyes of the odir_eye framing: fundus "
            "analog of BBFL",
            counts=published(
                {"N": PUBLISHED_EYE_COUNTS["N"], "G": PUBLISHED_EYE_COUNTS["G"]},
                "ODIR-5K full_df.csv framing: 2,873 N + 284 G eyes",
            ),
            title="ODIR-5K, per eye",
            kind_note="G vs N",
            grouped_by="patient",
        ),
        Task(
            name="odir",
            dataset="odir",
            kind="multilabel",
            classes=CLASSES,
            group_key="patient ID",
            build=build_patient_index,
            checks_images=True,
            note="ODIR-5K official framing: 8 patient-level labels (multi-hot columns y_N..y_O); input = "
            "both fundus images side by side in one 1024x512 image (combined/<ID>.jpg, written at index "
            "time); eyes with only image-quality keywords are blanked, patients with two such eyes "
            "dropped; label = rarest positive label, for stratification",
            counts=published(
                PATIENT_SAMPLING_COUNTS,
                "ODIR-5K training annotations: 3,499 patients (one with two quality-only eyes "
                "dropped), sampling class = rarest positive label",
            ),
            title="ODIR-5K, per patient (both eyes side by side)",
            grouped_by="patient",
        ),
    ),
)
