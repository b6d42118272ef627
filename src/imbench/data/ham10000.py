"""Parser for HAM10000's ``HAM10000_metadata.csv`` and its image folders.

The file exists in several public variants with the same rows (see the project's dataset notes):
the Dataverse copy (8 columns, LF, ages as ``80.0``), the Kaggle copy (7 columns, no ``dataset``)
and spreadsheet re-saves (CRLF, integer ages). All are accepted. Ages may be empty. A stray index
column written by pandas is dropped; ``.jpg`` suffixes on ``image_id`` are stripped.

Anything else that is off (a missing column, an unknown diagnosis, a duplicated image, a lesion
with two diagnoses) stops with one ``DatasetError`` naming the file, the line and what was expected.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
OPTIONAL_COLUMNS = ("dataset",)
METADATA_NAME = "HAM10000_metadata.csv"
_IMAGE_ID = re.compile(r"^ISIC_\d{7}$")


class DatasetError(ValueError):
    """Raised when a dataset file does not have the expected content."""


def read_metadata(path: str | Path) -> pd.DataFrame:
    """Read and validate a HAM10000 metadata file.

    Returns one row per image with the columns of ``REQUIRED_COLUMNS`` (+ ``dataset`` when present),
    ``age`` as float (NaN where empty) and a ``line`` column giving the row's line in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: metadata file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV file ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    for junk in [c for c in df.columns if c == "" or c.startswith("Unnamed:")]:
        df = df.drop(columns=junk)  # an index column added by a pandas re-save
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{path}: header {list(df.columns)} lacks column(s) {missing}; "
            f"expected {list(REQUIRED_COLUMNS)} (+ optional {list(OPTIONAL_COLUMNS)})"
        )
    df = df[[c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in df.columns]].copy()
    for col in df.columns:
        df[col] = df[col].str.strip()
    df.insert(0, "line", range(2, len(df) + 2))
    if df.empty:
        raise DatasetError(f"{path}: no data rows")

    df["image_id"] = df["image_id"].str.replace(r"\.jpe?g$", "", regex=True, flags=re.I)
    _check_each(path, df, "image_id", lambda v: bool(_IMAGE_ID.match(v)), "an id like ISIC_0024306")
    _check_each(path, df, "lesion_id", lambda v: v != "", "a non-empty lesion id")
    _check_each(path, df, "dx", lambda v: v in CLASSES, f"one of {list(CLASSES)}")
    _check_each(path, df, "age", _is_age, "a number or empty")
    df["age"] = pd.to_numeric(df["age"].replace("", None), errors="coerce").astype(float)

    dup = df[df.duplicated("image_id", keep="first")]
    if len(dup):
        row = dup.iloc[0]
        raise DatasetError(
            f"{path}: line {row.line}: image_id {row.image_id} appears more than once"
        )
    n_dx = df.groupby("lesion_id")["dx"].nunique()
    if (n_dx > 1).any():
        lesion = n_dx[n_dx > 1].index[0]
        lines = df.loc[df.lesion_id == lesion, "line"].tolist()
        raise DatasetError(f"{path}: lines {lines}: lesion {lesion} has more than one dx")
    return df.reset_index(drop=True)


def _is_age(value: str) -> bool:
    if value == "":
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True


def _check_each(path: Path, df: pd.DataFrame, column: str, ok, expected: str) -> None:
    bad = ~df[column].map(ok)
    if bad.any():
        row = df[bad].iloc[0]
        raise DatasetError(
            f"{path}: line {row.line}: {column} {row[column]!r} is not {expected}"
            + (f" ({int(bad.sum())} such rows)" if bad.sum() > 1 else "")
        )


def find_images(root: str | Path) -> dict[str, Path]:
    """Map ``image_id`` → JPEG path for every ``ISIC_*.jpg`` below ``root`` (any sub-folder)."""
    found: dict[str, Path] = {}
    for p in sorted(Path(root).rglob("*.jpg")):
        if _IMAGE_ID.match(p.stem):
            found.setdefault(p.stem, p)
    return found


def build_index(root: str | Path, binary_positive: str | None = None) -> pd.DataFrame:
    """Normalised index of a HAM10000 tree: ``image_id, path, label, label_name, group``.

    ``binary_positive`` (e.g. ``"mel"``) turns the task into positive-vs-rest with labels 0/1.
    Paths are relative to ``root``. Every metadata image must be present on disk.
    """
    root = Path(root)
    meta = read_metadata(root / METADATA_NAME)
    images = find_images(root)
    missing = [i for i in meta.image_id if i not in images]
    if missing:
        raise DatasetError(
            f"{root}: {len(missing)} image(s) listed in {METADATA_NAME} are missing on disk, "
            f"first {missing[:3]}"
        )
    if binary_positive is None:
        label = meta.dx.map({c: i for i, c in enumerate(CLASSES)})
        label_name = meta.dx
    else:
        if binary_positive not in CLASSES:
            raise DatasetError(
                f"binary positive class {binary_positive!r} is not one of {list(CLASSES)}"
            )
        label = (meta.dx == binary_positive).astype(int)
        label_name = label.map({0: "rest", 1: binary_positive})
    return pd.DataFrame(
        {
            "image_id": meta.image_id,
            "path": [str(images[i].relative_to(root)) for i in meta.image_id],
            "label": label.astype(int),
            "label_name": label_name,
            "group": meta.lesion_id,
        }
    )
