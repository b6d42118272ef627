"""Every image file a task leaves out is listed in its exclusions table, with a reason; undecodable
images are left out and listed (or stop the index under ``undecodable: fail``).

Each dataset's raw folder is built in miniature (committed metadata samples, tiny JPEGs), with the
extras that real folders hold: a file the metadata does not name, a second copy of an image, ODIR's
test and preprocessed images. The same completeness check then runs over the real metadata files
beside the shared docs (skipped when they are absent), with one tiny JPEG linked under every name.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets_server import FIXTURES, dermamnist_npz, odir_workbook
from PIL import Image

from imbench.data import dermamnist, odir, registry
from imbench.data.ham10000 import DatasetError
from imbench.data.tasks import TASKS, UNLISTED_REASON, build_task_index, image_files

SHARED = Path(__file__).resolve().parents[2] / "shared" / "metadata"
ISIC_GT = "ISIC_2019_Training_GroundTruth.csv"
ISIC_MD = "ISIC_2019_Training_Metadata.csv"


def _jpeg(seed: int = 0, size=(24, 18)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        buf, format="JPEG"
    )
    return buf.getvalue()


def _write(folder: Path, names, seed=0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        (folder / name).write_bytes(_jpeg(seed + k))


def _ham(root: Path) -> None:
    shutil.copy(FIXTURES / "HAM10000_metadata_sample.csv", root / "HAM10000_metadata.csv")
    ids = pd.read_csv(root / "HAM10000_metadata.csv").image_id.tolist()
    _write(root / "HAM10000_images_part_1", [f"{i}.jpg" for i in ids[:30]])
    _write(root / "HAM10000_images_part_2", [f"{i}.jpg" for i in ids[30:]], seed=100)
    # a second copy of an indexed image, and an image the metadata does not name
    shutil.copy(
        root / "HAM10000_images_part_1" / f"{ids[0]}.jpg",
        root / "HAM10000_images_part_2" / f"{ids[0]}.jpg",
    )
    _write(root / "extra", ["ISIC_9999999.jpg", "notes.png"], seed=200)


def _synthetic_ml(root: Path) -> None:
    from imbench.data.synthetic import generate

    generate(root, n_images=60, width=24, height=18, second_lesion_fraction=0.3)
    _write(root / "images", ["ISIC_9999999.jpg"])


def _isic2019(root: Path) -> None:
    shutil.copy(FIXTURES / "ISIC_2019_Training_GroundTruth_sample.csv", root / ISIC_GT)
    shutil.copy(FIXTURES / "ISIC_2019_Training_Metadata_sample.csv", root / ISIC_MD)
    images = pd.read_csv(root / ISIC_GT).image
    _write(root / "images", [f"{i}.jpg" for i in images] + ["ISIC_9999999.jpg"])


def _odir(root: Path) -> None:
    # the Kaggle zip extracted as is: training, test and preprocessed images
    df = odir_workbook(root / "ODIR-5K" / "ODIR-5K" / "data.xlsx")
    shutil.copy(FIXTURES / "ODIR_full_df_sample.csv", root / "full_df.csv")
    _write(
        root / "ODIR-5K" / "ODIR-5K" / "Training Images",
        [f"{pid}_{side}.jpg" for pid in df.ID for side in ("left", "right")],
    )
    _write(root / "ODIR-5K" / "ODIR-5K" / "Testing Images", ["937_left.jpg"])
    _write(root / "preprocessed_images", ["0_left.jpg"])


def _dermamnist(root: Path) -> None:
    npz = root.parent / "dermamnist.npz"
    npz.write_bytes(dermamnist_npz())
    dermamnist.write_tree(npz, root)
    _write(root / "images" / "train", ["stray.png"])


BUILDERS = {
    "synthetic": _ham,
    "ham10000": _ham,
    "synthetic_ml": _synthetic_ml,
    "isic2019": _isic2019,
    "odir": _odir,
    "dermamnist": _dermamnist,
}


def _medmnist(info):
    """A miniature raw folder of any MedMNIST dataset: a few images per split over its classes."""

    def build(root: Path) -> None:
        rng = np.random.default_rng(0)
        arrays = {}
        for split, n in zip(("train", "val", "test"), (12, 6, 6)):
            arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
            arrays[f"{split}_labels"] = (np.arange(n) % len(info.classes)).reshape(-1, 1)
        npz = root.parent / info.file(28)
        np.savez_compressed(npz, **arrays)
        info.write_tree(npz, root)
        _write(root / "images" / "train", ["stray.png"])

    return build


# Every other MedMNIST dataset of the registry is built the same way.
for _spec in registry.DATASETS.values():
    if "medmnist" in _spec.extra and _spec.name not in BUILDERS:
        BUILDERS[_spec.name] = _medmnist(_spec.extra["medmnist"])


@pytest.fixture(scope="module")
def raw_folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("raw")
    folders = {}
    for dataset, build in BUILDERS.items():
        (base / dataset).mkdir()
        build(base / dataset)
        folders[dataset] = base / dataset
    return folders


def _used(index: pd.DataFrame) -> set[str]:
    return {
        p for c in ("path", "left_path", "right_path") if c in index.columns for p in index[c] if p
    }


def _check_complete(task: str, root: Path, index: pd.DataFrame, exclusions: pd.DataFrame) -> None:
    on_disk = set(image_files(root, TASKS[task].dataset))
    used, listed = _used(index), set(exclusions.file)
    assert on_disk - used - listed == set(), f"{task}: left out but not listed"
    assert not used & listed, f"{task}: listed as excluded but used"
    assert listed <= on_disk, f"{task}: lists files that do not exist"
    assert exclusions.file.is_unique
    assert exclusions.reason.astype(str).str.len().gt(0).all() and exclusions.reason.notna().all()
    assert list(exclusions.columns[:5]) == ["image_id", "group", "file", "action", "reason"]


def test_every_task_has_a_dataset_built_here():
    assert {t.dataset for t in TASKS.values()} <= set(BUILDERS) | {
        "ham10000",
        "synthetic",
        "synthetic_ml",
    }


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_left_out_image_is_listed_with_a_reason(raw_folders, task):
    root = raw_folders[TASKS[task].dataset if TASKS[task].dataset in raw_folders else "ham10000"]
    index, exclusions = build_task_index(task, root, workers=1)
    _check_complete(task, root, index, exclusions)
    assert len(index) > 0
    unlisted = set(exclusions.file[exclusions.reason == UNLISTED_REASON])
    if TASKS[task].dataset in ("ham10000", "synthetic"):
        assert unlisted == {
            "extra/ISIC_9999999.jpg",
            "extra/notes.png",
            next(p for p in unlisted if p.startswith("HAM10000_images_part_2/")),
        }
    if TASKS[task].dataset == "odir":
        assert {
            "ODIR-5K/ODIR-5K/Testing Images/937_left.jpg",
            "preprocessed_images/0_left.jpg",
        } <= unlisted


def test_odir_glaucoma_lists_every_eye_that_is_neither_normal_nor_glaucoma(raw_folders):
    root = raw_folders["odir"]
    eye, _ = build_task_index("odir_eye", root, workers=1)
    glaucoma, excl = build_task_index("odir_glaucoma", root, workers=1)
    others = set(eye.image_id[~eye.label_name.isin(["N", "G"])])
    assert others and others <= set(excl.image_id)
    reasons = excl[excl.reason != UNLISTED_REASON].set_index("image_id").reason
    assert all("neither N nor G" in reasons[i] for i in others)
    assert len(glaucoma) + len(excl[excl.reason != UNLISTED_REASON]) == 2 * len(
        odir.read_annotations(root / "ODIR-5K" / "ODIR-5K" / "data.xlsx")
    )


def test_odir_patient_framing_lists_both_eyes_of_a_dropped_patient(raw_folders):
    index, excl = build_task_index("odir", raw_folders["odir"], workers=1)
    dropped = excl[excl.action == "dropped"].set_index("image_id")
    assert {"4149_left", "4149_right"} <= set(dropped.index)  # both eyes "low image quality"
    assert "4149" not in set(index.image_id)
    assert dropped.loc["4149_left", "file"].endswith("Training Images/4149_left.jpg")


# ------------------------------------------------------------------------------- undecodable


@pytest.fixture
def broken_ham(tmp_path) -> tuple[Path, str]:
    root = tmp_path / "ham"
    root.mkdir()
    _ham(root)
    bad = sorted((root / "HAM10000_images_part_1").iterdir())[3]
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])  # truncated
    return root, str(bad.relative_to(root))


def test_undecodable_image_is_excluded_and_listed_and_the_cache_builds(broken_ham, tmp_path):
    from imbench.data.cache import build_cache

    root, bad = broken_ham
    index, excl = build_task_index("ham10000", root, workers=1)
    assert bad not in set(index.path)
    row = excl.set_index("file").loc[bad]
    assert (
        row.action == "dropped"
        and row.reason.startswith("undecodable image")
        and "truncated" in row.reason.lower()
    )
    _check_complete("ham10000", root, index, excl)
    build_cache(
        index, root, tmp_path / "cache", 16, workers=1
    )  # the bad image never reaches the cache
    assert np.load(tmp_path / "cache" / "images.npy").shape[0] == len(index)


def test_undecodable_fail_setting_stops_with_one_line_naming_the_image(broken_ham, tmp_path):
    root, bad = broken_ham
    with pytest.raises(
        DatasetError, match=rf"(?i){bad}: undecodable image .*truncated.*1 undecodable image"
    ):
        build_task_index("ham10000", root, undecodable="fail", workers=1)
    out = tmp_path / "prepared"
    cmd = [
        sys.executable,
        "-m",
        "imbench",
        "index",
        "--task",
        "ham10000",
        "--raw",
        str(root),
        "--out",
        str(out / "index.csv"),
        "--exclusions",
        str(out / "exclusions.csv"),
        "--workers",
        "1",
    ]
    proc = subprocess.run(cmd + ["--undecodable", "fail"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and bad in proc.stderr, proc.stderr
    assert not out.exists() or not list(out.iterdir())
    out.mkdir(exist_ok=True)
    orphan = out / ".index.abc123.tmp.csv"  # left by a killed index step
    orphan.write_text("image_id\n")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert bad in set(pd.read_csv(out / "exclusions.csv").file)
    assert sorted(p.name for p in out.iterdir()) == ["exclusions.csv", "index.csv"]


def test_odir_undecodable_eye_is_blanked_and_listed(tmp_path):
    root = tmp_path / "odir"
    root.mkdir()
    _odir(root)
    images = root / "ODIR-5K" / "ODIR-5K" / "Training Images"
    (images / "0_left.jpg").write_bytes(b"<html>not found</html>")
    index, excl = build_task_index("odir", root, workers=1)
    row = excl.set_index("file").loc["ODIR-5K/ODIR-5K/Training Images/0_left.jpg"]
    assert row.action == "blanked" and "undecodable image" in row.reason
    assert bool(index.set_index("image_id").loc["0", "left_blank"])
    with pytest.raises(DatasetError, match="0_left.jpg: undecodable image"):
        build_task_index("odir", root, undecodable="fail", workers=1)
    eye, excl = build_task_index("odir_eye", root, workers=1)
    assert "0_left" not in set(eye.image_id)
    assert (
        "undecodable" in excl.set_index("file").reason["ODIR-5K/ODIR-5K/Training Images/0_left.jpg"]
    )


# ------------------------------------------------------------------------------- real metadata


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(
            f"real metadata file {path} not available (it sits beside the project's shared docs)"
        )
    return path


def _link_images(folder: Path, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / ".one.jpg"
    src.write_bytes(_jpeg(0, (8, 8)))
    for name in names:
        os.link(src, folder / name)
    src.unlink()


@pytest.fixture(scope="module")
def real_roots(tmp_path_factory) -> dict[str, Path]:
    """Raw folders holding the real metadata files, one tiny JPEG linked under every image name."""
    roots = {}
    ham = _shared("HAM10000_metadata.csv")
    root = roots["ham10000"] = tmp_path_factory.mktemp("real") / "ham10000"
    root.mkdir()
    shutil.copy(ham, root / ham.name)
    _link_images(root / "images", [f"{i}.jpg" for i in pd.read_csv(ham).image_id])
    names = ("ODIR-5K_Training_Annotations(Updated)_V2.xlsx", "full_df.csv")
    root = roots["odir"] = tmp_path_factory.mktemp("real") / "odir"
    root.mkdir()
    for name in names:
        shutil.copy(_shared(name), root / name)
    ann = odir.read_annotations(root / names[0])
    _link_images(root / "images", [f"{i}_{s}.jpg" for i in ann.ID for s in ("left", "right")])
    return roots


# eyes outside the full_df.csv framing (608), plus for glaucoma the 3,235 eyes labelled neither N nor G;
# odir: 30 quality-only eyes, blanked or dropped with their patient (both eyes listed)
@pytest.mark.parametrize(
    "task, left_out",
    [
        ("ham10000", 0),
        pytest.param("ham10000_mel", 0, marks=pytest.mark.slow),
        pytest.param("odir_eye", 608, marks=pytest.mark.slow),
        ("odir_glaucoma", 608 + 3235),
        ("odir", 30),
    ],
)
def test_real_metadata_every_left_out_image_is_listed(real_roots, monkeypatch, task, left_out):
    root = real_roots[TASKS[task].dataset]
    monkeypatch.setattr(
        odir, "_write_combined", lambda *a: None
    )  # 3,500 side-by-side JPEGs: not needed
    index, excl = build_task_index(task, root)
    _check_complete(task, root, index, excl)
    assert len(excl) == left_out
    if task == "odir":
        assert len(index) + excl[excl.action == "dropped"].group.nunique() == 3500
        assert set(excl.action) == {"blanked", "dropped"}


@pytest.mark.slow
def test_real_isic2019_metadata_every_left_out_image_is_listed(tmp_path):
    root = tmp_path / "isic2019"
    root.mkdir()
    for name in (ISIC_GT, ISIC_MD):
        shutil.copy(_shared(name), root / name)
    _link_images(root / "images", [f"{i}.jpg" for i in pd.read_csv(root / ISIC_GT).image])
    index, excl = build_task_index("isic2019", root)
    _check_complete("isic2019", root, index, excl)
    assert len(index) == 25331 and excl.empty
