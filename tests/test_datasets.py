"""Download → verify → extract → index for every real dataset, against a local HTTP server.

Each dataset's remote files are rebuilt in miniature (real metadata rows from tests/fixtures/, synthetic
images at the real sizes) and served from 127.0.0.1. Faults: truncated transfers, wrong checksums,
HTTP 404/500, unsafe archive members, metadata listing a missing image. Nothing here touches the
internet.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets_server import (
    FIXTURES,
    ISIC_GT,
    FileServer,
    dermamnist_npz,
    ham_remote,
    isic2019_remote,
    make_zip,
    odir_members,
    odir_oia_tree,
)
from PIL import Image

from imbench.data import dermamnist, extract, fetch, ham10000, isic2019, odir, staging
from imbench.data import download as dl
from imbench.data.errors import DownloadError
from imbench.data.ham10000 import DatasetError
from imbench.data.tasks import get_task

SHARED = Path(__file__).resolve().parents[2] / "shared" / "metadata"


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


def _opts(tmp_path, **kw) -> staging.Options:
    kw.setdefault("retries", 1)
    kw.setdefault("progress", False)
    kw.setdefault("published_counts", False)
    return staging.Options(downloads=tmp_path / "downloads", **kw)


def _leftovers(folder: Path) -> list[str]:
    """Temporary or partial files left in a folder (there should be none after a clean outcome)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "tmp" in p.name)


# --------------------------------------------------------------------------------- fetch_file


def test_fetch_verifies_checksum_and_leaves_no_temporary_files(server, tmp_path):
    data = b"x" * 50_000
    url = server.add("/f/data.bin", data)
    path = fetch.fetch_file(
        "data.bin",
        [url],
        tmp_path,
        known_hash="sha256:" + hashlib.sha256(data).hexdigest(),
        retries=0,
        progress=False,
    )
    assert path.read_bytes() == data
    assert _leftovers(tmp_path) == []
    # a second call reuses the verified file without a request
    fetch.fetch_file(
        "data.bin",
        [url],
        tmp_path,
        known_hash="md5:" + hashlib.md5(data).hexdigest(),
        retries=0,
        progress=False,
    )
    assert len(server.requests_of("/f/data.bin")) == 1


def test_truncated_download_resumes_with_a_range_request(server, tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB; the server stops after half
    url = server.add("/f/big.bin", data)
    server.fail("/f/big.bin", "truncate")
    path = fetch.fetch_file(
        "big.bin",
        [url],
        tmp_path,
        known_hash=hashlib.sha256(data).hexdigest(),
        retries=2,
        progress=False,
    )
    assert path.read_bytes() == data
    ranges = server.requests_of("/f/big.bin")
    assert ranges[0] is None and ranges[1].startswith("bytes=")
    assert 0 < int(ranges[1][6:-1]) <= len(data) // 2  # resumed from what had arrived
    assert _leftovers(tmp_path) == []


def test_persistent_truncation_is_one_error_and_the_next_run_resumes(server, tmp_path):
    data = b"abcdefgh" * 100_000
    url = server.add("/f/t.bin", data)
    server.fail("/f/t.bin", "truncate", "truncate")
    with pytest.raises(DownloadError) as err:
        fetch.fetch_file("t.bin", [url], tmp_path, retries=1, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and url in msg and "t.bin" in msg
    assert not (tmp_path / "t.bin").exists()  # never under the final name
    assert (tmp_path / ".t.bin.part").exists()  # kept for the next run
    path = fetch.fetch_file("t.bin", [url], tmp_path, retries=0, progress=False)
    assert path.read_bytes() == data
    assert server.requests_of("/f/t.bin")[-1] is not None  # resumed, not restarted
    assert _leftovers(tmp_path) == []


def test_wrong_checksum_is_one_error_and_nothing_is_kept(server, tmp_path):
    url = server.add("/f/c.bin", b"payload")
    with pytest.raises(DownloadError) as err:
        fetch.fetch_file(
            "c.bin", [url], tmp_path, known_hash="md5:" + "0" * 32, retries=0, progress=False
        )
    msg = str(err.value)
    assert "\n" not in msg and url in msg and "md5 checksum mismatch" in msg and "0" * 32 in msg
    assert list(tmp_path.iterdir()) == []


def test_http_404_tries_the_next_mirror_and_500_is_retried(server, tmp_path):
    good = server.add("/b/m.bin", b"mirror")
    missing = server.url + "/a/m.bin"
    server.fail("/b/m.bin", "500")
    path = fetch.fetch_file("m.bin", [missing, good], tmp_path, retries=1, progress=False)
    assert path.read_bytes() == b"mirror"
    assert len(server.requests_of("/a/m.bin")) == 1  # a 404 is not retried
    assert len(server.requests_of("/b/m.bin")) == 2  # a 500 is


def test_http_errors_on_every_mirror_name_each_url(server, tmp_path):
    server.add("/b/e.bin", b"x")
    server.fail("/b/e.bin", "500", "500")
    with pytest.raises(DownloadError) as err:
        fetch.fetch_file(
            "e.bin",
            [server.url + "/a/e.bin", server.url + "/b/e.bin"],
            tmp_path,
            retries=1,
            progress=False,
        )
    msg = str(err.value)
    assert (
        "\n" not in msg
        and "HTTP 404" in msg
        and "500" in msg
        and "/a/e.bin" in msg
        and "/b/e.bin" in msg
    )
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------------- archives


def _tar_with(tmp_path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as tf:
        tf.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(
    "name", ["../evil.jpg", "images/../../evil.jpg", "/etc/evil.jpg", "C:/evil.jpg"]
)
def test_unsafe_zip_member_stops_extraction_before_anything_is_written(tmp_path, name):
    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zip({"ok/ISIC_0000001.jpg": b"jpg", name: b"evil"}))
    dest = tmp_path / "out"
    with pytest.raises(DownloadError) as err:
        extract.safe_extract(archive, dest, extract.flatten_images())
    assert (
        "\n" not in str(err.value)
        and repr(name) in str(err.value)
        and str(archive) in str(err.value)
    )
    assert not dest.exists()


def test_links_pointing_outside_are_refused_and_inner_links_skipped(tmp_path):
    link = tarfile.TarInfo("images/x.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    with pytest.raises(DownloadError, match="outside the archive"):
        extract.safe_extract(_tar_with(tmp_path, link), tmp_path / "out", extract.flatten_images())
    # a zip symlink (mode in external_attr) pointing outside
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("a/evil.jpg")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    (tmp_path / "l.zip").write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="outside the archive"):
        extract.safe_extract(tmp_path / "l.zip", tmp_path / "out2", extract.flatten_images())
    # a link inside the archive is harmless but never created; non-images are skipped
    inner = tarfile.TarInfo("d/link.jpg")
    inner.type, inner.linkname = tarfile.SYMTYPE, "real.jpg"
    path = tmp_path / "b.tar"
    with tarfile.open(path, "w") as tf:
        tf.addfile(inner)
        for name, data in (
            ("d/real.jpg", b"jpg"),
            ("d/LICENSE.txt", b"txt"),
            ("__MACOSX/d/._real.jpg", b"rsrc"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    out = extract.safe_extract(path, tmp_path / "out3", extract.flatten_images())
    assert [p.name for p in out] == ["real.jpg"]
    assert sorted(p.name for p in (tmp_path / "out3" / "images").iterdir()) == ["real.jpg"]


def test_truncated_archive_is_deleted_with_one_error(tmp_path):
    archive = tmp_path / "a.zip"
    data = make_zip({f"x/ISIC_{i:07d}.jpg": bytes(1000) for i in range(3)})
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError, match="corrupt .*deleted it"):
        extract.safe_extract(archive, tmp_path / "out", extract.flatten_images())
    assert not archive.exists()


def test_id_set_check_names_missing_and_extra_images():
    with pytest.raises(
        DownloadError, match=r"1 image\(s\) listed in meta.csv are missing, first \['b'\]"
    ):
        staging.check_id_set(["a"], ["a", "b"], "x.zip", "meta.csv")
    with pytest.raises(DownloadError, match=r"not listed in meta.csv, first \['c'\]"):
        staging.check_id_set(["a", "c"], ["a"], "x.zip", "meta.csv")


# --------------------------------------------------------------------------------- HAM10000


def test_ham10000_download_verify_extract_index(server, tmp_path):
    remote = ham_remote(server)
    out = tmp_path / "raw" / "ham10000"
    rc = dl.main(
        [
            "ham10000",
            "--out",
            str(out),
            "--downloads",
            str(tmp_path / "dl"),
            "--no-progress",
            "--retries",
            "0",
            "--no-published-counts",
            "--dataverse-url",
            remote["dataverse"],
            *sum((["--base-url", u] for u in remote["base_urls"]), []),
        ]
    )
    assert rc == 0
    images = sorted((out / "images").iterdir())
    assert len(images) == len(remote["meta"]) and all(p.suffix == ".jpg" for p in images)
    assert (out / "HAM10000_metadata.csv").read_bytes() == (
        FIXTURES / "HAM10000_metadata_sample.csv"
    ).read_bytes()
    assert _leftovers(out.parent) == []
    # the first host 404s; the second serves everything
    assert server.requests_of(
        "/isic-archive/challenges/2018/ISIC2018_Task3_Training_Input.zip"
    ) == [None]
    index = get_task("ham10000").build(out)
    assert len(index) == len(remote["meta"]) and set(index.group) == set(remote["meta"].lesion_id)
    with Image.open(out / index.path[0]) as img:
        assert img.size == (600, 450)


def test_ham10000_missing_image_is_one_error_and_no_output(server, tmp_path, capsys):
    remote = ham_remote(server, drop_image="ISIC_0027419")
    out = tmp_path / "raw" / "ham10000"
    rc = dl.main(
        [
            "ham10000",
            "--out",
            str(out),
            "--downloads",
            str(tmp_path / "dl"),
            "--no-progress",
            "--retries",
            "0",
            "--no-published-counts",
            "--dataverse-url",
            remote["dataverse"],
            "--base-url",
            remote["base_urls"][1],
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2
    assert (
        "ISIC2018_Task3_Training_Input.zip" in err
        and "['ISIC_0027419']" in err
        and "missing" in err
    )
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_ham10000_published_counts_and_metadata_from_isic(server, tmp_path):
    remote = ham_remote(server)
    server.fail(
        "/dataverse/api/datasets/:persistentId/?persistentId=doi:10.7910/DVN/DBW86T", "500", "500"
    )
    opts = _opts(tmp_path, published_counts=True)
    with pytest.raises(DownloadError, match="pass --metadata-from-isic"):
        ham10000.prepare(tmp_path / "raw", opts, remote["base_urls"], remote["dataverse"])
    # the fallback metadata: ISIC 2018 ground truth + lesion groupings; the miniature fails the published counts
    with pytest.raises(
        DownloadError,
        match=r"counts differ from the published ones: rows 59 \(published 10015\)",
    ):
        ham10000.prepare(tmp_path / "raw", opts, remote["base_urls"], metadata_from_isic=True)
    assert not (tmp_path / "raw").exists()
    opts.published_counts = False
    ham10000.prepare(tmp_path / "raw", opts, remote["base_urls"], metadata_from_isic=True)
    meta = pd.read_csv(tmp_path / "raw" / "HAM10000_metadata.csv")
    assert len(meta) == len(remote["meta"]) and set(meta.sex) == {"unknown"}
    assert len(get_task("ham10000_mel").build(tmp_path / "raw")) == len(meta)


# --------------------------------------------------------------------------------- ISIC 2019


def test_isic2019_download_and_index(server, tmp_path, capsys):
    remote = isic2019_remote(server)
    out = tmp_path / "raw" / "isic2019"
    isic2019.prepare(out, _opts(tmp_path), remote["base_urls"])
    # the sample is not the published file: a warning, then the content checks
    assert "a third party reported aa88e963" in capsys.readouterr().err
    index, excl = get_task("isic2019").build(out)
    meta = remote["meta"]
    assert len(index) == len(meta) and excl.empty
    assert set(index.label_name) == set(isic2019.CLASSES)
    assert not index.image_id.str.endswith("_downsampled").any()
    down = index[index.isic_image.str.endswith("_downsampled")]
    assert len(down) and all(p.endswith("_downsampled.jpg") for p in down.path)
    no_lesion = index[index.lesion_id == ""]
    assert len(no_lesion) and (no_lesion.group == no_lesion.image_id).all()
    sizes = {Image.open(out / p).size for p in index.path}
    assert {(600, 450), (1024, 1024)} <= sizes and len(sizes) >= 3


def test_isic2019_bad_row_is_one_error_naming_the_line(server, tmp_path):
    lines = (FIXTURES / "ISIC_2019_Training_GroundTruth_sample.csv").read_bytes().split(b"\r\n")
    lines[3] = lines[3].replace(b"0.0", b"1.0", 1)  # two labels on line 4
    isic2019_remote(server, truth_bytes=b"\r\n".join(lines))
    with pytest.raises(DatasetError, match=r"line 4: ISIC_\d{7}\S* is not one-hot"):
        isic2019.prepare(tmp_path / "raw", _opts(tmp_path), [server.url + "/isic/2019"])


def test_isic2019_archive_with_a_parent_member_is_refused(server, tmp_path):
    remote = isic2019_remote(server)
    zip_path = "/isic/2019/ISIC_2019_Training_Input.zip"
    members = {
        n: zipfile.ZipFile(io.BytesIO(server.files[zip_path])).read(n)
        for n in zipfile.ZipFile(io.BytesIO(server.files[zip_path])).namelist()
    }
    members["ISIC_2019_Training_Input/../../ISIC_0000000.jpg"] = b"evil"
    server.add(zip_path, make_zip(members))
    out = tmp_path / "raw" / "isic2019"
    with pytest.raises(
        DownloadError, match=r"member '.*\.\./\.\./ISIC_0000000.jpg' has a '\.\.' component"
    ):
        isic2019.prepare(out, _opts(tmp_path), remote["base_urls"])
    assert not out.exists() and list(out.parent.iterdir()) == []
    assert not (tmp_path / "ISIC_0000000.jpg").exists()


def test_isic2019_lesion_with_two_labels_is_refused(tmp_path):
    lines = (FIXTURES / "ISIC_2019_Training_GroundTruth_sample.csv").read_bytes().split(b"\r\n")
    i = next(
        k for k, line in enumerate(lines) if line.startswith(b"ISIC_0030121,")
    )  # NV, lesion HAM_0003088
    lines[i] = b"ISIC_0030121,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0"
    (tmp_path / "gt.csv").write_bytes(b"\r\n".join(lines))
    truth = isic2019.read_ground_truth(tmp_path / "gt.csv")
    with pytest.raises(DatasetError, match=r"lesion HAM_0003088 has more than one label"):
        isic2019.read_metadata(FIXTURES / "ISIC_2019_Training_Metadata_sample.csv", truth)


def test_isic2019_header_variant_gender_is_accepted(tmp_path):
    md = (
        (FIXTURES / "ISIC_2019_Training_Metadata_sample.csv")
        .read_bytes()
        .replace(b",sex\r\n", b",gender\r\n", 1)
    )
    (tmp_path / "md.csv").write_bytes(md)
    truth = isic2019.read_ground_truth(FIXTURES / "ISIC_2019_Training_GroundTruth_sample.csv")
    assert len(isic2019.read_metadata(tmp_path / "md.csv", truth)) == len(truth)


# --------------------------------------------------------------------------------- ODIR-5K


@pytest.fixture
def no_kaggle(monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))


def test_odir_mirror_zip_to_all_three_framings(server, tmp_path, no_kaggle):
    server.add(
        "/odir/ocular-disease-recognition-odir5k.zip", make_zip(odir_members(tmp_path / "x"))
    )
    out = tmp_path / "raw" / "odir"
    odir.prepare(out, _opts(tmp_path), [server.url + "/odir"])
    names = sorted(p.name for p in (out / "images").iterdir())
    assert (
        len(names) == 22 and "937_left.jpg" not in names
    )  # test/preprocessed images not extracted

    eye, eye_excl = get_task("odir_eye").build(out)
    full = odir.read_full_df(out / "full_df.csv")
    assert sorted(eye.image_id) == sorted(full.filename.str[:-4])
    assert set(eye_excl.image_id) == {
        "2_left",
        "12_left",
        "12_right",
        "188_left",
        "3265_left",
        "3265_right",
        "4149_left",
        "4149_right",
    }
    assert eye.groupby("group").size().max() <= 2

    glaucoma, _ = get_task("odir_glaucoma").build(out)
    assert set(glaucoma.label_name) == {"N", "G"}
    assert (glaucoma.label == (glaucoma.label_name == "G")).all()

    patients, excl = get_task("odir").build(out)
    assert "4149" not in set(patients.image_id)  # both eyes "low image quality"
    assert set(zip(excl.image_id, excl.action)) == {
        ("4149_left", "dropped"),
        ("4149_right", "dropped"),
        ("3265_left", "blanked"),
    }
    assert [c for c in patients.columns if c.startswith("y_")] == [f"y_{c}" for c in odir.CLASSES]
    row = patients.set_index("image_id").loc["188"]
    rarest = min(("D", "C", "O"), key=lambda c: (patients[f"y_{c}"].sum(), odir.CLASSES.index(c)))
    assert row.labels == "D|C|O" and row.label_name == rarest
    with Image.open(out / row.path) as img:
        assert img.size == (1024, 512)
    with Image.open(out / "combined" / "3265.jpg") as img:  # left eye blanked, right eye drawn
        px = np.asarray(img.convert("L"))
    assert px[:, :512].max() < 16 and px[:, 512:].max() > 100


def test_odir_manual_oia_folder_derives_per_eye_labels(tmp_path, no_kaggle):
    odir_oia_tree(tmp_path / "downloads", size=(1444, 1444))
    out = tmp_path / "raw" / "odir"
    odir.prepare(out, _opts(tmp_path))
    assert not (out / "full_df.csv").exists()
    eye, excl = get_task("odir_eye").build(out)
    full = pd.read_csv(FIXTURES / "ODIR_full_df_sample.csv")
    kaggle = dict(zip(full.filename.str[:-4], full.labels.str[2]))
    assert all(kaggle[i] == lab for i, lab in zip(eye.image_id, eye.label_name))
    assert set(eye.image_id) == set(kaggle)
    assert (tmp_path / "downloads" / "Training Set").is_dir()  # hand-placed files are left alone


def test_odir_without_credentials_names_the_files_to_place(tmp_path, no_kaggle, capsys):
    rc = dl.main(
        [
            "odir",
            "--out",
            str(tmp_path / "raw" / "odir"),
            "--downloads",
            str(tmp_path / "dl"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert (
        "ocular-disease-recognition-odir5k.zip" in err
        and "Training Set/" in err
        and str(tmp_path / "dl") in err
    )
    assert "kaggle.json" in err and "KAGGLE_USERNAME" in err


def test_odir_through_the_kaggle_api(tmp_path, monkeypatch):
    members = odir_members(tmp_path / "x", size=(320, 240))
    calls = []

    class FakeApi:
        def authenticate(self):
            pass

        def dataset_download_files(self, dataset, path, unzip, quiet):
            calls.append(dataset)
            (Path(path) / f"{dataset.split('/')[1]}.zip").write_bytes(make_zip(members))

    fake = type(sys)("kaggle.api.kaggle_api_extended")
    fake.KaggleApi = FakeApi
    for name in ("kaggle", "kaggle.api"):
        monkeypatch.setitem(sys.modules, name, type(sys)(name))
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", fake)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    out = tmp_path / "raw" / "odir"
    odir.prepare(out, _opts(tmp_path))
    assert calls == [odir.KAGGLE_DATASET]
    assert len(list((out / "images").iterdir())) == 22


# --------------------------------------------------------------------------------- DermaMNIST


def test_dermamnist_md5_then_png_tree_and_index(server, tmp_path):
    data = dermamnist_npz()
    server.add("/zenodo/dermamnist.npz?download=1", data)
    base = [server.url + "/zenodo"]
    with pytest.raises(DownloadError, match="md5 checksum mismatch: expected md5:0744692d"):
        dermamnist.prepare(tmp_path / "raw", _opts(tmp_path), size=28, base_urls=base)
    opts = _opts(tmp_path, hashes={"dermamnist.npz": "md5:" + hashlib.md5(data).hexdigest()})
    dermamnist.prepare(tmp_path / "raw", opts, size=28, base_urls=base)
    index, excl = get_task("dermamnist").build(tmp_path / "raw")
    assert index.official_split.value_counts().to_dict() == {"train": 14, "val": 7, "test": 7}
    assert excl.empty and (index.group == index.image_id).all()
    arrays = np.load(io.BytesIO(data))
    with Image.open(tmp_path / "raw" / index.path[3]) as img:
        assert (np.asarray(img) == arrays["train_images"][3]).all()  # lossless
    with pytest.raises(DatasetError, match="train has 14 images, expected 7007"):
        dermamnist.prepare(
            tmp_path / "raw2",
            staging.Options(downloads=opts.downloads, hashes=opts.hashes, progress=False),
            size=28,
            base_urls=base,
        )


# --------------------------------------------------------------------------------- CLI and config


def test_cli_args_from_config_and_unknown_keys():
    assert dl.cli_args(
        "dermamnist", {"size": 64, "base_urls": ["http://m/x"], "published_counts": False}
    ) == ["--base-url", "http://m/x", "--size", "64", "--no-published-counts"]
    assert dl.cli_args("ham10000", None) == []
    with pytest.raises(DownloadError, match="download.odir: unknown key"):
        dl.cli_args("odir", {"size": 64})
    args = dl.get_args_parser().parse_args(
        [
            "isic2019",
            "--out",
            "x",
            *dl.cli_args("isic2019", {"hashes": {ISIC_GT: "sha256:" + "a" * 64}, "retries": 5}),
        ]
    )
    assert args.hash == [f"{ISIC_GT}=sha256:" + "a" * 64] and args.retries == 5


def test_existing_output_is_not_overwritten_without_force(tmp_path, capsys):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert (
        dl.main(
            [
                "dermamnist",
                "--out",
                str(out),
                "--downloads",
                str(tmp_path / "dl"),
                "--no-progress",
                "--base-url",
                "http://127.0.0.1:9/none",
            ]
        )
        == 2
    )  # never reaches the network
    assert "already exists" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"


# --------------------------------------------------------------------------------- real metadata files


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(
            f"real metadata file {path} not available (it sits beside the project's shared docs)"
        )
    return path


def test_real_ham10000_metadata_passes_the_published_checks():
    from imbench.data import ham10000

    ham10000._check_ham_published(
        ham10000.read_metadata(_shared("HAM10000_metadata.csv")), SHARED / "HAM10000_metadata.csv"
    )


def test_real_isic2019_files_match_the_published_counts():
    truth = isic2019.read_ground_truth(_shared("ISIC_2019_Training_GroundTruth.csv"))
    meta = isic2019.read_metadata(_shared("ISIC_2019_Training_Metadata.csv"), truth)
    staging.check_counts("gt", {"rows": len(truth)}, {"rows": isic2019.PUBLISHED_ROWS})
    staging.check_counts("gt", truth.label_name.value_counts().to_dict(), isic2019.PUBLISHED_COUNTS)
    assert (meta.lesion_id == "").sum() == 2084 and truth.image.str.endswith(
        "_downsampled"
    ).sum() == 2074
    assert fetch.file_hash(SHARED / ISIC_GT) == isic2019.REPORTED_HASHES[ISIC_GT].split(":")[1]


def test_real_odir_workbook_and_full_df_match_the_published_counts():
    ann = odir.read_annotations(_shared("ODIR-5K_Training_Annotations(Updated)_V2.xlsx"))
    assert odir.label_sums(ann) == odir.PUBLISHED_PATIENT_COUNTS
    full = odir.read_full_df(_shared("full_df.csv"), ann)
    assert full.label_name.value_counts().to_dict() == odir.PUBLISHED_EYE_COUNTS
    eyes = odir.eye_table(ann).assign(
        kaggle=lambda e: e.filename.map(dict(zip(full.filename, full.label_name)))
    )
    both = eyes.dropna(subset=["category", "kaggle"])
    assert (both.category == both.kaggle).all() and len(both) == len(full) - 1
    assert eyes.quality_only.sum() == 30


# --------------------------------------------------------------------------------- hostile archives


def _deflated_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Rewrite the uncompressed size that the zip's headers declare for ``name``."""
    import struct

    out = bytearray(data)
    key = name.encode()
    for sig, size_at, name_len_at, name_at in (
        (b"PK\x03\x04", 22, 26, 30),
        (b"PK\x01\x02", 24, 28, 46),
    ):
        i = out.find(sig)
        while i >= 0:
            n = struct.unpack_from("<H", out, i + name_len_at)[0]
            if out[i + name_at : i + name_at + n] == key:
                struct.pack_into("<I", out, i + size_at, size)
            i = out.find(sig, i + 4)
    return bytes(out)


def test_zip_bomb_member_is_refused_before_anything_is_written_and_deleted(tmp_path):
    archive = _deflated_zip(
        tmp_path / "bomb.zip", {"x/ISIC_0000001.jpg": b"jpg", "x/ISIC_0000002.jpg": bytes(32 << 20)}
    )  # 32 MiB of zeros
    assert archive.stat().st_size < 100_000
    dest = tmp_path / "out"
    with pytest.raises(DownloadError) as err:
        extract.safe_extract(archive, dest, extract.flatten_images())
    msg = str(err.value)
    assert (
        "\n" not in msg
        and str(archive) in msg
        and "'x/ISIC_0000002.jpg'" in msg
        and "decompression bomb" in msg
    )
    assert (
        not dest.exists() and not archive.exists()
    )  # refused before writing; deleted, a rerun fetches again


def test_member_declaring_gigabytes_is_refused(tmp_path):
    archive = tmp_path / "big.zip"
    data = make_zip({"x/ISIC_0000001.jpg": b"jpg", "x/ISIC_0000002.jpg": b"small"})
    archive.write_bytes(_patch_declared_size(data, "x/ISIC_0000002.jpg", 3_900_000_000))
    with pytest.raises(
        DownloadError,
        match=r"big\.zip: member 'x/ISIC_0000002\.jpg' declares 3,900,000,000 "
        r"bytes, more than",
    ):
        extract.safe_extract(archive, tmp_path / "out", extract.flatten_images(), discard=False)
    assert (
        not (tmp_path / "out").exists() and archive.exists()
    )  # discard=False: a file placed by hand stays


def test_whole_archive_ratio_is_checked_for_compressed_tars(tmp_path):
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for i in range(
            8
        ):  # 8 × 1 MiB of zeros: each under the member limit, the archive inflates ~1000×
            info = tarfile.TarInfo(f"d/ISIC_{i:07d}.jpg")
            info.size = 1 << 20
            tf.addfile(info, io.BytesIO(bytes(info.size)))
    with pytest.raises(
        DownloadError, match=r"a\.tar\.gz: its members declare 8,388,608 bytes in all .*bomb"
    ):
        extract.safe_extract(path, tmp_path / "out", extract.flatten_images())
    assert not (tmp_path / "out").exists()


def test_member_larger_than_declared_is_stopped_at_its_declared_size(tmp_path):
    archive = tmp_path / "lie.zip"
    data = _deflated_zip(
        tmp_path / "src.zip", {"x/ISIC_0000001.jpg": bytes(range(256)) * 400}
    ).read_bytes()
    archive.write_bytes(
        _patch_declared_size(data, "x/ISIC_0000001.jpg", 1000)
    )  # really 102,400 bytes
    with pytest.raises(DownloadError, match="lie.zip: .*deleted") as err:
        extract.safe_extract(archive, tmp_path / "out", extract.flatten_images())
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "out").rglob("*.jpg"))  # the partial member is not left behind
    # the bounded copy itself: a stream yielding more than declared stops one chunk past the limit
    with pytest.raises(extract._Refused, match="more than the 10 bytes it declares"):
        extract._copy_bounded(io.BytesIO(bytes(10_000)), tmp_path / "t.bin", 10, "t.bin")
    assert not (tmp_path / "t.bin").exists()


def test_symlink_member_body_is_never_read_whole(tmp_path):
    import tracemalloc

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("a/link.jpg")
        info.external_attr = 0o120777 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, bytes(64 << 20))  # a "link target" of 64 MiB
        zf.writestr("a/ISIC_0000001.jpg", b"jpg")
    (tmp_path / "l.zip").write_bytes(buf.getvalue())
    tracemalloc.start()
    try:
        with pytest.raises(
            DownloadError, match=r"l\.zip: member 'a/link\.jpg' is a link whose target declares"
        ):
            extract.safe_extract(
                tmp_path / "l.zip", tmp_path / "out", extract.flatten_images(), discard=False
            )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
    # a device and a fifo in a tar are skipped, never created, and their (absent) bodies never read
    path = tmp_path / "d.tar"
    with tarfile.open(path, "w") as tf:
        for name, kind in (
            ("d/ISIC_0000002.jpg", tarfile.CHRTYPE),
            ("d/ISIC_0000003.jpg", tarfile.FIFOTYPE),
        ):
            info = tarfile.TarInfo(name)
            info.type = kind
            tf.addfile(info)
        info = tarfile.TarInfo("d/ISIC_0000001.jpg")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"jpg"))
    assert [
        p.name for p in extract.safe_extract(path, tmp_path / "out2", extract.flatten_images())
    ] == ["ISIC_0000001.jpg"]


def test_archive_needing_more_than_the_free_space_is_refused_and_kept(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zip({f"x/ISIC_{i:07d}.jpg": bytes(1000) for i in range(3)}))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 << 20, 10 << 20, 2000))
    with pytest.raises(
        DownloadError,
        match=r"a\.zip: extracting 3 member\(s\) needs 3,000 bytes .* has 2,000 "
        r"bytes free; refusing to extract the archive$",
    ):
        extract.safe_extract(archive, tmp_path / "out", extract.flatten_images())
    assert archive.exists() and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------- content checks


def test_html_page_served_with_200_is_never_kept_and_the_rerun_fetches_the_file(server, tmp_path):
    remote = isic2019_remote(server)
    gt_path = f"/isic/2019/{ISIC_GT}"
    server.fail(gt_path, "html")
    out = tmp_path / "raw" / "isic2019"
    with pytest.raises(DownloadError) as err:
        isic2019.prepare(out, _opts(tmp_path, retries=0), remote["base_urls"])
    msg = str(err.value)
    assert "\n" not in msg and ISIC_GT in msg and "HTML page" in msg
    assert (
        not (tmp_path / "downloads" / ISIC_GT).exists() and _leftovers(tmp_path / "downloads") == []
    )
    isic2019.prepare(
        out, _opts(tmp_path, retries=0), remote["base_urls"]
    )  # the server answers properly now
    assert (out / ISIC_GT).read_bytes() == server.files[gt_path]


def test_file_failing_its_content_check_is_deleted_and_the_rerun_fetches_it(server, tmp_path):
    remote = isic2019_remote(server)
    md_path = "/isic/2019/ISIC_2019_Training_Metadata.csv"
    server.fail(md_path, "json")  # an error message served with HTTP 200, not HTML
    out = tmp_path / "raw" / "isic2019"
    with pytest.raises(
        DownloadError, match=r"ISIC_2019_Training_Metadata\.csv: no data rows\).*deleted"
    ):
        isic2019.prepare(out, _opts(tmp_path, retries=0), remote["base_urls"])
    assert not (tmp_path / "downloads" / "ISIC_2019_Training_Metadata.csv").exists()
    isic2019.prepare(out, _opts(tmp_path, retries=0), remote["base_urls"])
    assert (out / "ISIC_2019_Training_Metadata.csv").read_bytes() == server.files[md_path]


def test_bad_file_left_by_an_older_version_is_replaced_on_the_next_run(server, tmp_path):
    remote = isic2019_remote(server)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / ISIC_GT).write_text("<!DOCTYPE html><html><body>Access denied</body></html>\n")
    out = tmp_path / "raw" / "isic2019"
    isic2019.prepare(out, _opts(tmp_path, retries=0), remote["base_urls"])
    assert (out / ISIC_GT).read_bytes() == server.files[f"/isic/2019/{ISIC_GT}"]
    assert len(server.requests_of(f"/isic/2019/{ISIC_GT}")) == 1


def test_html_check_spares_files_named_html(server, tmp_path):
    url = server.add("/f/page.html", b"<html><body>ok</body></html>")
    assert (
        fetch.fetch_file("page.html", [url], tmp_path, retries=0, progress=False)
        .read_bytes()
        .startswith(b"<html>")
    )


def test_empty_temporary_file_of_a_killed_transfer_is_removed(server, tmp_path):
    url = server.add("/f/k.bin", b"data")
    (tmp_path / "tmpab_cd123").write_bytes(b"")  # what pooch leaves when its process is killed
    (tmp_path / "tmpkeep.txt").write_bytes(b"")  # not one of pooch's names: left alone
    fetch.fetch_file("k.bin", [url], tmp_path, retries=0, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.bin", "tmpkeep.txt"]


def test_workbook_that_is_a_decompression_bomb_is_refused_before_parsing(tmp_path):
    book = _deflated_zip(
        tmp_path / "data.xlsx",
        {"[Content_Types].xml": b"<Types/>", "xl/worksheets/sheet1.xml": b" " * (16 << 20)},
    )
    with pytest.raises(
        DownloadError, match=r"data\.xlsx: member 'xl/worksheets/sheet1\.xml' inflates .*bomb"
    ):
        odir.read_annotations(book)
