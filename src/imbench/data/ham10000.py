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
import shutil
from collections.abc import Sequence
from functools import partial
from pathlib import Path, PurePosixPath

import pandas as pd

from .errors import DatasetError, DownloadError
from .extract import flatten_images, safe_extract
from .fetch import fetch_json, log, mirror_urls
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

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
OPTIONAL_COLUMNS = ("dataset",)
METADATA_NAME = "HAM10000_metadata.csv"
_IMAGE_ID = re.compile(r"^ISIC_\d{7}$")


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


# --------------------------------------------------------------------------------------- download

# ISIC challenge hosts, in the order tried. The same file names are served by both.
ISIC_HOSTS = (
    "https://isic-archive.s3.amazonaws.com/challenges",
    "https://isic-challenge-data.s3.amazonaws.com",
)
HAM_BASE_URLS = tuple(f"{h}/2018" for h in ISIC_HOSTS)
DATAVERSE_URL = "https://dataverse.harvard.edu"
HAM_DOI = "doi:10.7910/DVN/DBW86T"
# Checksums and sizes reported by third parties only (not by the owners): a mismatch is a warning,
# followed by the content checks.
REPORTED_HASHES = {
    "ISIC2018_Task3_Training_GroundTruth.zip": "md5:8302427e4ce0c107559531b9f444abe9",
    "ISIC2018_Task3_Training_LesionGroupings.csv": "md5:9517b6aa6902d6c27e234bac8279a64a",
}
REPORTED_SIZES = {"ISIC2018_Task3_Training_Input.zip": 2_771_732_744}


HAM_INPUT_ZIP = "ISIC2018_Task3_Training_Input.zip"
HAM_TRUTH_ZIP = "ISIC2018_Task3_Training_GroundTruth.zip"
HAM_TRUTH_CSV = "ISIC2018_Task3_Training_GroundTruth.csv"
HAM_GROUPS_CSV = "ISIC2018_Task3_Training_LesionGroupings.csv"
HAM_PUBLISHED = {
    "rows": 10015,
    "lesions": 7470,
    "dx": {"nv": 6705, "mel": 1113, "bkl": 1099, "bcc": 514, "akiec": 327, "vasc": 142, "df": 115},
}
HAM_ID_RANGE = (24306, 34320)
HAM_SIZE = (600, 450)
_HAM_TRUTH_CODES = {
    "MEL": "mel",
    "NV": "nv",
    "BCC": "bcc",
    "AKIEC": "akiec",
    "BKL": "bkl",
    "DF": "df",
    "VASC": "vasc",
}


def prepare(
    out: str | Path,
    opts: Options,
    base_urls: Sequence[str] = HAM_BASE_URLS,
    dataverse_url: str = DATAVERSE_URL,
    metadata_from_isic: bool = False,
) -> Path:
    """HAM10000 as ISIC 2018 Task 3 (images, ground truth, lesion groupings) + Dataverse metadata.

    Result: ``out/HAM10000_metadata.csv``, ``out/images/ISIC_*.jpg`` (10,015 at 600×450) and the two
    ISIC 2018 CSVs. The metadata's ``dx`` and ``lesion_id`` must agree with the ISIC 2018 files.
    ``metadata_from_isic`` builds the metadata from the ISIC 2018 files instead of Dataverse (age,
    sex and site are then unknown).
    """
    truth_zip = opts.fetch(
        HAM_TRUTH_ZIP,
        mirror_urls(base_urls, HAM_TRUTH_ZIP),
        reported_hash=REPORTED_HASHES[HAM_TRUTH_ZIP],
    )
    groups_csv = opts.fetch(
        HAM_GROUPS_CSV,
        mirror_urls(base_urls, HAM_GROUPS_CSV),
        reported_hash=REPORTED_HASHES[HAM_GROUPS_CSV],
        check=_read_lesion_groupings,
    )
    if not metadata_from_isic:
        meta_src = _fetch_dataverse_metadata(opts, dataverse_url)
    input_zip = opts.fetch(
        HAM_INPUT_ZIP,
        mirror_urls(base_urls, HAM_INPUT_ZIP),
        reported_size=REPORTED_SIZES[HAM_INPUT_ZIP],
    )

    with staging(out, opts.force) as stage, blame(stage, truth_zip):
        with discard_if_bad(truth_zip):
            csvs = safe_extract(
                truth_zip,
                stage,
                lambda n: HAM_TRUTH_CSV if PurePosixPath(n).name == HAM_TRUTH_CSV else None,
            )
            if not csvs:
                raise DownloadError(f"{truth_zip}: no member named {HAM_TRUTH_CSV}")
            truth = _read_ham_truth(stage / HAM_TRUTH_CSV)
        groups = _read_lesion_groupings(groups_csv)
        shutil.copy(groups_csv, stage / HAM_GROUPS_CSV)
        meta_path = stage / METADATA_NAME
        if metadata_from_isic:
            _ham_metadata_from_isic(truth, groups, meta_path)
        else:
            shutil.copy(meta_src, meta_path)
        checked = meta_path if metadata_from_isic else meta_src  # errors name the downloaded file
        meta = read_metadata(checked)
        _cross_check_ham(meta, truth, groups, checked)
        if opts.published_counts:
            _check_ham_published(meta, checked)

        images = safe_extract(input_zip, stage, flatten_images())
        check_id_set((p.stem for p in images), meta.image_id, str(input_zip), str(meta_path.name))
        check_images_decode(
            images, size=HAM_SIZE, source=str(input_zip), undecodable=opts.undecodable
        )
    opts.done_with(input_zip)
    log(f"ham10000: {len(meta)} images of {meta.lesion_id.nunique()} lesions in {out}")
    return Path(out)


def _fetch_dataverse_metadata(opts: Options, dataverse_url: str) -> Path:
    base = dataverse_url.rstrip("/")
    listing_url = f"{base}/api/datasets/:persistentId/?persistentId={HAM_DOI}"
    try:
        listing = fetch_json(
            listing_url, opts.downloads / "dataverse_DBW86T.json", opts.retries, opts.timeout
        )
    except DownloadError as exc:
        raise DownloadError(
            f"{exc} (pass --metadata-from-isic to build the metadata from the ISIC 2018 "
            "files instead)"
        ) from None
    try:
        files = listing["data"]["latestVersion"]["files"]
    except (KeyError, TypeError):
        raise DownloadError(f"{listing_url}: answer has no data.latestVersion.files list") from None
    for f in files:
        df = f.get("dataFile", {}) if isinstance(f, dict) else {}
        names = {
            str(df.get("filename", "")),
            str(df.get("originalFileName", "")),
            str(f.get("label", "")),
        }
        if any(re.sub(r"\.(tab|csv)$", "", n) == "HAM10000_metadata" for n in names):
            break
    else:
        raise DownloadError(
            f"{listing_url}: no file named HAM10000_metadata in the dataset's file list"
        )
    file_id = df.get("id")
    md5 = df.get("md5") or (df.get("checksum") or {}).get("value")
    alg = ((df.get("checksum") or {}).get("type") or "MD5").lower().replace("-", "")
    if file_id is None:
        raise DownloadError(f"{listing_url}: HAM10000_metadata entry has no dataFile.id")
    url = f"{base}/api/access/datafile/{file_id}?format=original"
    known = f"{alg}:{md5}" if md5 and alg in ("md5", "sha1", "sha256", "sha512") else None
    return opts.fetch("HAM10000_metadata.csv", [url], known_hash=known, check=read_metadata)


def _read_csv_checked(path: Path, required: Sequence[str]):
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DownloadError(f"{path}: not a readable CSV file ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DownloadError(f"{path}: header {list(df.columns)} lacks column(s) {missing}")
    return df


def _read_ham_truth(path: Path):
    """ISIC 2018 Task 3 ground truth → DataFrame(image, dx); rows must be one-hot."""
    import pandas as pd

    df = _read_csv_checked(path, ["image", *_HAM_TRUTH_CODES])
    values = df[list(_HAM_TRUTH_CODES)].apply(pd.to_numeric, errors="coerce")
    ok = values.isin([0.0, 1.0]).all(axis=1) & (values.sum(axis=1) == 1)
    if not ok.all():
        i = int((~ok).to_numpy().argmax())
        raise DownloadError(
            f"{path}: line {i + 2}: expected one-hot 0.0/1.0 over {list(_HAM_TRUTH_CODES)}"
        )
    dx = values.idxmax(axis=1).map(_HAM_TRUTH_CODES)
    return pd.DataFrame({"image": df["image"].str.strip(), "dx": dx})


def _read_lesion_groupings(path: Path):
    df = _read_csv_checked(path, ["image", "lesion_id"])
    return df.assign(image=df["image"].str.strip(), lesion_id=df["lesion_id"].str.strip())


def _ham_metadata_from_isic(truth, groups, out: Path) -> None:
    import pandas as pd

    from ..io import write_csv

    merged = truth.merge(groups, on="image", how="outer", indicator=True)
    lost = merged[merged["_merge"] != "both"]
    if len(lost):
        raise DownloadError(
            f"{HAM_TRUTH_CSV} and {HAM_GROUPS_CSV} list different images, first {lost.image.iloc[0]}"
        )
    confirm = merged["diagnosis_confirm_type"] if "diagnosis_confirm_type" in merged else "unknown"
    write_csv(
        out,
        pd.DataFrame(
            {
                "lesion_id": merged["lesion_id"],
                "image_id": merged["image"],
                "dx": merged["dx"],
                "dx_type": confirm,
                "age": "",
                "sex": "unknown",
                "localization": "unknown",
            }
        ),
    )
    log(f"ham10000: built {out.name} from the ISIC 2018 files (age, sex and site unknown)")


def _cross_check_ham(meta, truth, groups, meta_path: Path) -> None:
    for other, name, col in ((truth, HAM_TRUTH_CSV, "dx"), (groups, HAM_GROUPS_CSV, "lesion_id")):
        check_id_set(other["image"], meta["image_id"], name, meta_path.name)
        joined = meta.merge(
            other.rename(columns={"image": "image_id", col: "_other"}), on="image_id"
        )
        bad = joined[joined[col] != joined["_other"]]
        if len(bad):
            row = bad.iloc[0]
            raise DownloadError(
                f"{meta_path}: line {row.line}: {col} of {row.image_id} is {row[col]!r} but "
                f"{name} says {row['_other']!r} ({len(bad)} such rows)"
            )


def _check_ham_published(meta, meta_path: Path) -> None:
    check_counts(
        f"{meta_path}",
        {"rows": len(meta), "lesions": meta.lesion_id.nunique()},
        {"rows": HAM_PUBLISHED["rows"], "lesions": HAM_PUBLISHED["lesions"]},
    )
    check_counts(f"{meta_path} dx", meta.dx.value_counts().to_dict(), HAM_PUBLISHED["dx"])
    numbers = meta.image_id.str[5:].astype(int)
    if numbers.min() != HAM_ID_RANGE[0] or numbers.max() != HAM_ID_RANGE[1]:
        raise DownloadError(
            f"{meta_path}: image ids run from ISIC_{numbers.min():07d} to ISIC_{numbers.max():07d}, "
            f"expected ISIC_{HAM_ID_RANGE[0]:07d} to ISIC_{HAM_ID_RANGE[1]:07d}"
        )


DATASET = DatasetSpec(
    name="ham10000",
    title="HAM10000",
    prepare=prepare,
    base_urls=HAM_BASE_URLS,
    options=(
        Option("dataverse_url", DATAVERSE_URL, "ham10000: Dataverse installation"),
        Option(
            "metadata_from_isic",
            False,
            "ham10000: build the metadata from the ISIC 2018 files instead of Dataverse",
            type=bool,
        ),
    ),
    grouping="lesion_id",
    licence="CC BY-NC 4.0",
    homepage="https://doi.org/10.7910/DVN/DBW86T",
    source="ISIC 2018 Task 3 archives (two S3 mirrors) + Dataverse metadata",
    citation="Tschandl et al., Sci. Data 5, 180161 (2018)",
    tasks=(
        Task(
            name="ham10000",
            dataset="ham10000",
            kind="multiclass",
            classes=CLASSES,
            group_key="lesion_id",
            build=build_index,
            counts=published(
                {c: HAM_PUBLISHED["dx"][c] for c in CLASSES}, "HAM10000 metadata: 10,015 images"
            ),
            title="HAM10000",
            grouped_by="`lesion_id`",
        ),
        Task(
            name="ham10000_mel",
            dataset="ham10000",
            kind="binary",
            classes=("rest", "mel"),
            group_key="lesion_id",
            build=partial(build_index, binary_positive="mel"),
            note="melanoma vs rest: binary analog of BBFL's private RNFLD task",
            counts=published(
                {
                    "rest": HAM_PUBLISHED["rows"] - HAM_PUBLISHED["dx"]["mel"],
                    "mel": HAM_PUBLISHED["dx"]["mel"],
                },
                "HAM10000: 1,113 mel of 10,015",
            ),
            title="HAM10000",
            kind_note="melanoma vs rest",
            grouped_by="`lesion_id`",
        ),
    ),
)
