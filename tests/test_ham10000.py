"""The HAM10000 metadata parser on real rows and on the format variants seen in public copies."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import FIXTURES

from imbench.data.ham10000 import CLASSES, DatasetError, build_index, read_metadata

SAMPLE = FIXTURES / "HAM10000_metadata_sample.csv"


def test_reads_real_rows_with_float_and_empty_ages():
    df = read_metadata(SAMPLE)
    raw = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    assert len(df) == len(raw)
    assert list(df.image_id) == list(raw.image_id)
    assert df.age.isna().sum() == (raw.age == "").sum() > 0  # empty ages → NaN
    assert df.loc[raw.age == "80.0", "age"].eq(80.0).all()
    assert df.lesion_id.value_counts().max() >= 2  # multi-image lesions are kept
    assert set(df.dx) == set(CLASSES)
    assert df.line.iloc[0] == 2  # line numbers for error messages


def test_real_file_counts(real_ham_metadata):
    df = read_metadata(real_ham_metadata)
    assert len(df) == 10015 and df.lesion_id.nunique() == 7470
    assert df.dx.value_counts().to_dict() == {
        "nv": 6705,
        "mel": 1113,
        "bkl": 1099,
        "bcc": 514,
        "akiec": 327,
        "vasc": 142,
        "df": 115,
    }
    assert df.age.isna().sum() == 57


def _variant(tmp_path, text: str):
    p = tmp_path / "HAM10000_metadata.csv"
    p.write_bytes(text.encode())
    return p


def test_kaggle_seven_columns_crlf_and_integer_ages(tmp_path):
    raw = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False).drop(columns="dataset")
    raw["age"] = raw.age.str.replace(".0", "", regex=False)
    text = raw.to_csv(index=False, lineterminator="\r\n")
    df = read_metadata(_variant(tmp_path, text))
    ref = read_metadata(SAMPLE)
    assert list(df.columns) == [c for c in ref.columns if c != "dataset"]
    pd.testing.assert_series_equal(df.age, ref.age)
    assert list(df.image_id) == list(ref.image_id)


def test_pandas_index_column_and_jpg_suffix(tmp_path):
    raw = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    raw["image_id"] = raw.image_id + ".jpg"
    df = read_metadata(_variant(tmp_path, raw.to_csv(index=True)))
    assert list(df.image_id) == list(read_metadata(SAMPLE).image_id)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.drop(columns="dx"), r"lacks column\(s\) \['dx'\]"),
        (
            lambda d: d.assign(dx=d.dx.where(d.index != 3, "melanoma")),
            r"line 5: dx 'melanoma' is not one of",
        ),
        (
            lambda d: d.assign(age=d.age.where(d.index != 0, "eighty")),
            r"line 2: age 'eighty' is not a number",
        ),
        (
            lambda d: d.assign(image_id=d.image_id.where(d.index != 1, d.image_id[0])),
            r"line 3: image_id .* more than once",
        ),
        (
            lambda d: d.assign(image_id=d.image_id.where(d.index != 2, "IMG_1")),
            r"line 4: image_id 'IMG_1'",
        ),
        (
            lambda d: d.assign(lesion_id=d.lesion_id.where(d.index != 2, "")),
            r"line 4: lesion_id '' is not",
        ),
    ],
)
def test_bad_rows_give_one_clear_error(tmp_path, mutate, expected):
    raw = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    path = _variant(tmp_path, mutate(raw).to_csv(index=False))
    with pytest.raises(DatasetError, match=expected) as info:
        read_metadata(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_lesion_with_two_diagnoses(tmp_path):
    raw = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    lesion = raw.lesion_id.value_counts().index[0]  # a multi-image lesion
    first = raw.index[raw.lesion_id == lesion][0]
    raw.loc[first, "dx"] = "df" if raw.loc[first, "dx"] != "df" else "nv"
    with pytest.raises(DatasetError, match=f"lesion {lesion} has more than one dx"):
        read_metadata(_variant(tmp_path, raw.to_csv(index=False)))


def test_build_index_finds_images_in_part_folders(ham_sample_tree):
    index = build_index(ham_sample_tree)
    assert list(index.columns) == ["image_id", "path", "label", "label_name", "group"]
    assert index.path.str.startswith("HAM10000_images_part_").all()
    assert (index.label_name.map(CLASSES.index) == index.label).all()
    assert (ham_sample_tree / index.path.iloc[0]).is_file()


def test_build_index_binary_task(ham_sample_tree):
    index = build_index(ham_sample_tree, binary_positive="mel")
    assert set(index.label) == {0, 1}
    assert (index.label_name == "mel").sum() == index.label.sum()


def test_build_index_reports_missing_images(ham_sample_tree):
    victim = next((ham_sample_tree / "HAM10000_images_part_1").glob("*.jpg"))
    victim.unlink()
    with pytest.raises(
        DatasetError, match=rf"1 image\(s\) listed .* missing on disk, first \['{victim.stem}'\]"
    ):
        build_index(ham_sample_tree)
