"""The real Snakemake rules on every real dataset, served in miniature from a local HTTP server.

Each dataset's remote files are rebuilt from real metadata rows (tests/fixtures/, repeated under
shifted ids so that the 20-fold grouped split has enough groups) with synthetic images
(tests/datasets_server.py) and served on 127.0.0.1. Snakemake is then asked for every task's split
and 16-px cache, which runs download → verify → extract → index → split → cache and no training:
one run for HAM10000 and DermaMNIST (default), one for ISIC 2019 and ODIR-5K (``slow``).

Then the faults, through the command line that the download rules call: a corrupt JPEG, a changed
header, an unknown class label, no Kaggle credentials (through Snakemake). Each stops with one line
naming the file and leaves no ``resources/raw/<dataset>`` behind. Last, the published counts and
grouped splits of the full metadata files, skipped where the shared metadata folder is absent.
Nothing here touches the internet.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import datasets_server
import numpy as np
import pandas as pd
import pytest
import yaml
from datasets_server import (
    ISIC_GT,
    ISIC_MD,
    FileServer,
    dermamnist_npz,
    ham_remote,
    isic2019_remote,
    make_zip,
    odir_members,
)
from PIL import Image

from imbench.data import download as dl
from imbench.data import images, isic2019, odir
from imbench.data.split import grouped_split
from imbench.data.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "metadata"
SIZE = 16  # protocol_overrides.image_size, hence the cache the targets ask for
ODIR_ZIP = "ocular-disease-recognition-odir5k.zip"
DATAVERSE_META = "/dataverse/api/access/datafile/42?format=original"
DATAVERSE_LIST = "/dataverse/api/datasets/:persistentId/?persistentId=doi:10.7910/DVN/DBW86T"

# How many times each fixture's rows are repeated (under shifted ids): the split uses 20 folds, so a
# task needs at least 20 groups and one class with at least 20 of them.
COPIES = {"ham10000": 2, "isic2019": 3, "odir": 10}


# ------------------------------------------------------------------------------ miniatures


def _repeat_rows(text: str, copies: int, shift) -> str:
    """The header, then the data rows ``copies`` times, copy k passed through ``shift(row, k)``.
    Line ends and the presence of a final newline are kept."""
    eol = "\r\n" if "\r\n" in text else "\n"
    trailing = text.endswith(eol)
    header, *rows = text.removesuffix(eol).split(eol)
    out = [header] + [shift(row, k) for k in range(copies) for row in rows]
    return eol.join(out) + (eol if trailing else "")


def _shift_dermoscopy(row: str, k: int) -> str:
    """ISIC_0027419 → ISIC_1027419, HAM_0000118 → HAM_1000118 (and BCN_/MSK4_ lesion ids) in copy 1."""
    return re.sub(
        r"\b([A-Z][A-Z0-9]*)_(\d{7})", lambda m: f"{m[1]}_{int(m[2]) + k * 1_000_000:07d}", row
    )


def _shift_patient(row: str, k: int) -> str:
    """Patient 188 → 10188 in copy 1: the leading ID and every {ID}_{side}.jpg."""
    row = re.sub(r"^(\d+),", lambda m: f"{int(m[1]) + k * 10_000},", row)
    return re.sub(
        r"\b(\d+)_(left|right)\.jpg", lambda m: f"{int(m[1]) + k * 10_000}_{m[2]}.jpg", row
    )


def enlarged_fixtures(dest: Path) -> Path:
    """The fixture files with their rows repeated (see COPIES), written to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    files = {
        "HAM10000_metadata_sample.csv": ("ham10000", _shift_dermoscopy),
        "ISIC_2019_Training_GroundTruth_sample.csv": ("isic2019", _shift_dermoscopy),
        "ISIC_2019_Training_Metadata_sample.csv": ("isic2019", _shift_dermoscopy),
        "ODIR-5K_Training_Annotations_sample.csv": ("odir", _shift_patient),
        "ODIR_full_df_sample.csv": ("odir", _shift_patient),
    }
    for name, (dataset, shift) in files.items():
        text = (datasets_server.FIXTURES / name).read_bytes().decode("utf-8")
        (dest / name).write_bytes(_repeat_rows(text, COPIES[dataset], shift).encode("utf-8"))
    return dest


def dermamnist_remote(server: FileServer, data: bytes) -> dict:
    """The npz at Zenodo's path, and the download options that pin its MD5 (it is not the official file)."""
    server.add("/zenodo/dermamnist.npz?download=1", data)
    return {
        "base_urls": [server.url + "/zenodo"],
        "size": 28,
        "hashes": {"dermamnist.npz": "md5:" + hashlib.md5(data).hexdigest()},
    }


# ------------------------------------------------------------------------------ running the workflow


def _env(work: Path) -> dict:
    """Snakemake's environment: the venv first on PATH, no proxy for 127.0.0.1, no Kaggle token."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAGGLE_USERNAME", "KAGGLE_KEY")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["KAGGLE_CONFIG_DIR"] = str(work / "no-kaggle")
    return env


def workflow(
    work: Path,
    tasks: list[str],
    download: dict,
    targets: list[str],
    *options: str,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run the real workflow in ``work`` with a complete config for ``tasks`` and ``download``."""
    config = {
        "experiment": "datasets",
        "tasks": tasks,
        "models": ["test_resnet"],
        "methods": ["ce"],
        "seeds": [0],
        "protocol": "demo",
        "protocol_overrides": {"image_size": SIZE},
        "download": download,
    }
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        *targets,
        "--cores",
        "2",
        *options,
        "--configfile",
        "config.yaml",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env=_env(work), cwd=work
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stderr[-3000:]}\n{job_logs(work)}"
        )
    return proc


def task_targets(task: str) -> list[str]:
    return [
        f"resources/cache/{task}/{SIZE}px-squash/images.npy",
        f"resources/prepared/{task}/split_seed0_frac0.7_0.15_0.15.csv",
    ]


def job_logs(work: Path, pattern: str = "*") -> str:
    return "\n".join(
        f"--- {p.relative_to(work)}\n{p.read_text()[-1500:]}"
        for p in sorted((work / "logs").rglob(f"{pattern}.log"))
    )


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """The 'Job stats' table Snakemake prints before running: rule → count."""
    jobs = {}
    for line in (proc.stdout + proc.stderr).split("Job stats:")[-1].splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


# ------------------------------------------------------------------------------ the real rules


def run_workflow(tmp: Path, tasks: dict[str, str]) -> dict:
    """Serve the miniatures of the datasets of ``tasks`` (task → dataset) and run Snakemake once for
    every task's split and cache (one start-up for several datasets), going on past a failure so that
    each dataset's test reports its own."""
    fixtures = enlarged_fixtures(tmp / "fixtures")
    work = tmp / "work"
    datasets = set(tasks.values())
    download, expected = {}, {}
    with pytest.MonkeyPatch.context() as mp, FileServer() as server:
        mp.setattr(datasets_server, "FIXTURES", fixtures)
        if "ham10000" in datasets:
            ham = ham_remote(server)
            download["ham10000"] = {
                "base_urls": ham["base_urls"],
                "dataverse_url": ham["dataverse"],
            }
            expected["ham10000"] = ham["meta"]
        if "isic2019" in datasets:
            isic = isic2019_remote(server)
            download["isic2019"] = {"base_urls": isic["base_urls"]}
            expected["isic2019"] = isic["meta"]
        if "odir" in datasets:
            server.add(f"/odir/{ODIR_ZIP}", make_zip(odir_members(tmp / "odir", size=(400, 300))))
            download["odir"] = {"base_urls": [server.url + "/odir"]}
        if "dermamnist" in datasets:
            download["dermamnist"] = dermamnist_remote(server, dermamnist_npz(counts=(14, 7, 7)))
        for options in download.values():
            options.update(published_counts=False, retries=0)
        targets = [t for task in tasks for t in task_targets(task)]
        proc = workflow(work, list(tasks), download, targets, "--keep-going", check=False)
    return {"work": work, "proc": proc, "tasks": tasks, "fixtures": fixtures, "expected": expected}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """HAM10000 and DermaMNIST (the default test run)."""
    return run_workflow(
        tmp_path_factory.mktemp("datasets_pipeline"),
        {"ham10000": "ham10000", "dermamnist": "dermamnist"},
    )


@pytest.fixture(scope="module")
def slow_run(tmp_path_factory):
    """ISIC 2019 and ODIR-5K (per patient and per eye): larger miniatures, five more jobs."""
    return run_workflow(
        tmp_path_factory.mktemp("datasets_pipeline_slow"),
        {"isic2019": "isic2019", "odir": "odir", "odir_eye": "odir"},
    )


def outputs(run: dict, task: str, n_rows: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Index, exclusions and split of ``task``, checked against each other, the cache and ``n_rows``."""
    work, dataset = run["work"], run["tasks"][task]
    prepared = work / "resources" / "prepared" / task
    cache = work / "resources" / "cache" / task / f"{SIZE}px-squash"
    if (
        not (cache / "images.npy").is_file()
        or not (prepared / "split_seed0_frac0.7_0.15_0.15.csv").is_file()
    ):
        pytest.fail(
            f"{task}: the workflow did not finish\n{run['proc'].stderr[-2000:]}\n"
            f"{job_logs(work, f'*{dataset}*')}\n{job_logs(work, f'*{task}*')}"
        )
    index = pd.read_csv(prepared / "index.csv", dtype={"image_id": str, "group": str})
    exclusions = pd.read_csv(prepared / "exclusions.csv", dtype={"image_id": str, "group": str})
    assert len(index) == n_rows
    raw = work / "resources" / "raw" / dataset
    assert all((raw / p).is_file() for p in index.path)
    split = pd.read_csv(
        prepared / "split_seed0_frac0.7_0.15_0.15.csv", dtype={"image_id": str, "group": str}
    )
    assert list(split.image_id) == list(index.image_id)
    assert set(split.split) == {"train", "val", "test"}
    per_group = split.groupby("group").split.nunique()
    assert (per_group == 1).all(), (
        f"groups in two splits: {list(per_group[per_group > 1].index[:3])}"
    )
    images = np.load(cache / "images.npy", mmap_mode="r")
    assert images.shape == (n_rows, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert (images.reshape(n_rows, -1).std(axis=1) > 0).all()  # every row holds a decoded picture
    cached = pd.read_csv(cache / "index.csv", dtype={"image_id": str})
    assert list(cached.image_id) == list(index.image_id)
    return index, exclusions, split


def _only_data_rules(run: dict) -> None:
    work, tasks = run["work"], run["tasks"]
    datasets = sorted(set(tasks.values()))
    n = len(tasks)
    assert planned_jobs(run["proc"]) == {
        "download": len(datasets),
        "index": n,
        "split": n,
        "cache": n,
    }
    assert (
        sorted(p.name for p in (work / "resources" / "raw").iterdir()) == datasets
    )  # nothing staged left
    assert not (work / "results").exists()
    for dataset in datasets:  # no temporary or partial file in the downloads folders
        folder = work / "resources" / "downloads" / dataset
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], dataset


def test_only_the_data_rules_run_and_nothing_is_left_half_done(run):
    _only_data_rules(run)


def test_ham10000_workflow(run):
    meta = run["expected"]["ham10000"]
    index, exclusions, split = outputs(run, "ham10000", len(meta))
    assert exclusions.empty
    assert dict(zip(index.image_id, index.group)) == dict(zip(meta.image_id, meta.lesion_id))
    assert split.groupby("group").size().max() >= 2  # multi-image lesions, kept together


def test_dermamnist_workflow_keeps_the_official_split(run):
    index, exclusions, split = outputs(run, "dermamnist", 28)
    assert exclusions.empty and (split.split == split.official_split).all()


@pytest.mark.slow
def test_slow_run_only_runs_the_data_rules(slow_run):
    _only_data_rules(slow_run)


@pytest.mark.slow
def test_isic2019_workflow(slow_run):
    meta = slow_run["expected"]["isic2019"]
    index, exclusions, _ = outputs(slow_run, "isic2019", len(meta))
    assert exclusions.empty
    # `_downsampled` stays in the file name, not in the id; images without a lesion are their own group
    down = index[index.isic_image.str.endswith("_downsampled")]
    assert len(down) and down.path.str.endswith("_downsampled.jpg").all()
    assert not index.image_id.str.endswith("_downsampled").any()
    lone = index[index.lesion_id.isna()]
    assert len(lone) and (lone.group == lone.image_id).all()


@pytest.mark.slow
def test_odir_workflow_patient_and_eye_framings(slow_run):
    ann = pd.read_csv(slow_run["fixtures"] / "ODIR-5K_Training_Annotations_sample.csv", dtype=str)
    full = pd.read_csv(slow_run["fixtures"] / "ODIR_full_df_sample.csv", dtype=str)
    quality_only = ann[ann.ID.astype(int) % 10_000 == 4149].ID  # both eyes "low image quality"
    patients, excl, _ = outputs(slow_run, "odir", len(ann) - len(quality_only))
    assert not set(quality_only) & set(patients.image_id)
    both_eyes = {f"{i}_{side}" for i in quality_only for side in ("left", "right")}
    assert set(excl[excl.action == "dropped"].image_id) == both_eyes
    raw = slow_run["work"] / "resources" / "raw" / "odir"
    with Image.open(raw / patients.path.iloc[0]) as img:  # both eyes side by side
        assert img.size == (1024, 512)
    eyes, _, eye_split = outputs(slow_run, "odir_eye", len(full))
    assert sorted(eyes.image_id + ".jpg") == sorted(full.filename)
    assert (eye_split.groupby("group").size() == 2).any()  # both eyes of a patient, in one split
    assert not (raw / "images" / "937_left.jpg").exists()  # test images are not extracted


@pytest.mark.slow
@pytest.mark.parametrize("which", ["run", "slow_run"])
def test_rerun_has_nothing_to_do(request, which):
    """The index rule of `odir` writes combined/ into the raw folder: that must not make the
    download look newer than its consumers."""
    run = request.getfixturevalue(which)
    targets = [t for task in run["tasks"] for t in task_targets(task)]
    config = yaml.safe_load((run["work"] / "config.yaml").read_text())
    proc = workflow(run["work"], config["tasks"], config["download"], targets, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ faults


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


@pytest.fixture(autouse=True)
def quiet_pooch(monkeypatch):
    """pooch logs through a handler bound to the stderr of the test that first imported it, which
    pytest may have closed since; its progress lines are not what these tests check."""
    import pooch

    monkeypatch.setattr(pooch.get_logger(), "disabled", True)


def download(dataset: str, tmp_path: Path, capsys, *args: str) -> str:
    """Run `imbench download` (what the rule runs); it must fail with one error line, leaving no
    raw folder and nothing staged beside it. Returns that line."""
    out = tmp_path / "resources" / "raw" / dataset
    rc = dl.main(
        [
            dataset,
            "--out",
            str(out),
            "--downloads",
            str(tmp_path / "downloads"),
            "--no-progress",
            "--retries",
            "0",
            "--no-published-counts",
            *args,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error" in line.lower()]
    assert rc == 2 and len(errors) == 1 and errors[0] == err[-1], err
    assert errors[0].startswith(f"imbench download {dataset}: error: ")
    assert not out.exists() and not (out.parent.exists() and list(out.parent.iterdir()))
    return errors[0]


def _zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _ham_args(remote: dict) -> list[str]:
    return ["--dataverse-url", remote["dataverse"], "--base-url", remote["base_urls"][1]]


def _serve_ham_metadata(server: FileServer, data: bytes) -> None:
    """Serve other metadata bytes through the Dataverse stand-in (with their MD5 in the file list)."""
    server.files[DATAVERSE_META] = data
    listing = json.loads(server.files[DATAVERSE_LIST])
    for f in listing["data"]["latestVersion"]["files"]:
        if "md5" in f["dataFile"]:
            f["dataFile"]["md5"] = f["dataFile"]["checksum"]["value"] = hashlib.md5(
                data
            ).hexdigest()
    server.files[DATAVERSE_LIST] = json.dumps(listing).encode()


def _ham_metadata(edit) -> bytes:
    return edit((datasets_server.FIXTURES / "HAM10000_metadata_sample.csv").read_text()).encode()


def _truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def test_corrupt_jpeg_in_ham10000_is_named_even_outside_the_decoded_sample(
    server, tmp_path, capsys
):
    remote = ham_remote(server)
    path = "/isic-challenge-data/2018/ISIC2018_Task3_Training_Input.zip"
    members = _zip_members(server.files[path])
    last = [n for n in members if n.endswith(".jpg")][-1]  # not among the images decoded in full
    members[last] = _truncated(members[last])
    server.add(path, make_zip(members))
    line = download("ham10000", tmp_path, capsys, "--undecodable", "fail", *_ham_args(remote))
    name = Path(last).name
    assert (
        f"ISIC2018_Task3_Training_Input.zip: image {name}: not a decodable image (image file is truncated"
        in line
    )


def test_corrupt_jpeg_in_isic2019_is_named(server, tmp_path, capsys):
    remote = isic2019_remote(server)
    path = "/isic/2019/ISIC_2019_Training_Input.zip"
    members = _zip_members(server.files[path])
    victim = "ISIC_2019_Training_Input/ISIC_0001100_downsampled.jpg"
    members[victim] = b"<html>502 Bad Gateway</html>"  # not an image at all
    server.add(path, make_zip(members))
    line = download(
        "isic2019", tmp_path, capsys, "--undecodable", "fail", "--base-url", remote["base_urls"][0]
    )
    assert (
        "ISIC_2019_Training_Input.zip: image ISIC_0001100_downsampled.jpg: not a decodable image"
        in line
    )


def test_corrupt_jpeg_by_default_is_reported_kept_and_listed_by_the_index(server, tmp_path, capsys):
    from imbench.data.tasks import build_task_index

    remote = isic2019_remote(server)
    path = "/isic/2019/ISIC_2019_Training_Input.zip"
    members = _zip_members(server.files[path])
    victim = "ISIC_2019_Training_Input/ISIC_0001100_downsampled.jpg"
    members[victim] = _truncated(members[victim])
    server.add(path, make_zip(members))
    out = tmp_path / "raw" / "isic2019"
    rc = dl.main(
        [
            "isic2019",
            "--out",
            str(out),
            "--downloads",
            str(tmp_path / "downloads"),
            "--no-progress",
            "--retries",
            "0",
            "--no-published-counts",
            "--base-url",
            remote["base_urls"][0],
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and "1 image(s) do not decode, first ISIC_0001100_downsampled.jpg" in err, err
    index, exclusions = build_task_index("isic2019", out, workers=1)
    assert "ISIC_0001100" not in set(index.image_id)
    row = exclusions.set_index("image_id").loc["ISIC_0001100"]
    assert row.file == "images/ISIC_0001100_downsampled.jpg" and row.reason.startswith(
        "undecodable image"
    )


def test_corrupt_jpeg_in_odir_is_named(server, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    members = odir_members(tmp_path / "x", size=(320, 240))
    victim = "ODIR-5K/ODIR-5K/Training Images/188_right.jpg"
    members[victim] = _truncated(members[victim])
    server.add(f"/odir/{ODIR_ZIP}", make_zip(members))
    line = download(
        "odir", tmp_path, capsys, "--undecodable", "fail", "--base-url", server.url + "/odir"
    )
    assert f"{ODIR_ZIP}: image 188_right.jpg: not a decodable image" in line


def test_changed_header_of_ham10000_metadata(server, tmp_path, capsys):
    remote = ham_remote(server)
    _serve_ham_metadata(server, _ham_metadata(lambda t: t.replace(",dx,", ",diagnosis,", 1)))
    line = download("ham10000", tmp_path, capsys, *_ham_args(remote))
    assert re.search(
        r"downloads/HAM10000_metadata\.csv: header \[.*'diagnosis'.*\] lacks column\(s\) \['dx'\]",
        line,
    )


@pytest.mark.parametrize(
    "name, edit, expected",
    [
        (
            ISIC_GT,
            lambda t: t.replace(",AK,", ",AKIEC,", 1),
            r"GroundTruth\.csv: header \[.*'AKIEC'.*\] is not \[",
        ),
        (
            ISIC_GT,
            lambda t: t.replace(",UNK\r\n", "\r\n", 1),
            r"GroundTruth\.csv: header \[.*'SCC'\] is not \[",
        ),
        (
            ISIC_MD,
            lambda t: t.replace(",lesion_id,", ",lesion,", 1),
            r"Metadata\.csv: header .* lacks \['lesion_id'\]",
        ),
    ],
)
def test_changed_header_of_isic2019_files(server, tmp_path, capsys, name, edit, expected):
    remote = isic2019_remote(server)
    path = f"/isic/2019/{name}"
    server.add(path, edit(server.files[path].decode()).encode())
    line = download("isic2019", tmp_path, capsys, "--base-url", remote["base_urls"][0])
    assert re.search(expected, line), line


def _odir_zip(tmp_path: Path, edit) -> bytes:
    members = odir_members(tmp_path / "x", size=(64, 48))
    edit(members)
    return make_zip(members)


def _rename_workbook_column(members: dict) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(members["ODIR-5K/ODIR-5K/data.xlsx"]))
    wb.active["H1"] = "Normal"  # the N column
    buf = io.BytesIO()
    wb.save(buf)
    members["ODIR-5K/ODIR-5K/data.xlsx"] = buf.getvalue()


def _unknown_eye_label(members: dict) -> None:
    members["full_df.csv"] = members["full_df.csv"].replace(b"['M']", b"['X']", 1)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (_rename_workbook_column, r"data\.xlsx: columns \[.*'Normal'.*\] are not \["),
        (_unknown_eye_label, r"full_df\.csv: line \d+: labels \"\['X'\]\" is not one of"),
    ],
)
def test_odir_changed_header_or_unknown_label(
    server, tmp_path, capsys, monkeypatch, edit, expected
):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    server.add(f"/odir/{ODIR_ZIP}", _odir_zip(tmp_path, edit))
    line = download("odir", tmp_path, capsys, "--base-url", server.url + "/odir")
    assert re.search(expected, line), line


def test_unknown_class_label_in_ham10000_metadata(server, tmp_path, capsys):
    remote = ham_remote(server)
    _serve_ham_metadata(server, _ham_metadata(lambda t: t.replace(",mel,", ",melanoma,", 1)))
    line = download("ham10000", tmp_path, capsys, *_ham_args(remote))
    assert re.search(
        r"HAM10000_metadata\.csv: line \d+: dx 'melanoma' is not one of \['akiec'", line
    ), line


def test_unknown_class_label_in_dermamnist(server, tmp_path, capsys):
    arrays = dict(np.load(io.BytesIO(dermamnist_npz())))
    arrays["val_labels"][3] = 7  # DermaMNIST has labels 0–6
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    remote = dermamnist_remote(server, buf.getvalue())
    line = download(
        "dermamnist",
        tmp_path,
        capsys,
        "--size",
        "28",
        "--base-url",
        remote["base_urls"][0],
        "--hash",
        "dermamnist.npz=" + remote["hashes"]["dermamnist.npz"],
    )
    assert "dermamnist.npz: val_labels must be integers 0–6" in line


def test_odir_without_credentials_stops_the_workflow_with_the_files_to_place(tmp_path):
    work = tmp_path / "work"
    proc = workflow(work, ["odir"], {"odir": {"retries": 0}}, task_targets("odir"), check=False)
    assert proc.returncode != 0
    assert planned_jobs(proc) == {"download": 1, "index": 1, "split": 1, "cache": 1}
    assert "logs/download/odir.log" in proc.stderr  # Snakemake points at the log
    log = (work / "logs" / "download" / "odir.log").read_text().strip().splitlines()
    assert len(log) == 1 and log[0].startswith("imbench download odir: error: ")
    for needle in (
        ODIR_ZIP,
        "kaggle.json",
        "KAGGLE_USERNAME",
        "Training Set/",
        "training annotation (English).xlsx",
        "resources/downloads/odir/",
    ):
        assert needle in log[0], needle
    assert not (work / "resources" / "raw").exists() or not list(
        (work / "resources" / "raw").iterdir()
    )
    assert not (work / "resources" / "prepared").exists()


# ------------------------------------------------------------------------------ real metadata


def _shared(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(
            f"real metadata file {path} not available (it sits beside the project's shared docs)"
        )
    return path


def _no_leak(index: pd.DataFrame) -> pd.DataFrame:
    split = grouped_split(index, seed=0)
    assert (split.groupby("group").split.nunique() == 1).all()
    frac = split.split.value_counts(normalize=True)
    assert abs(frac["train"] - 0.70) < 0.02 and abs(frac["test"] - 0.15) < 0.02
    return split


@pytest.fixture
def odir_real_root(tmp_path, monkeypatch) -> Path:
    """The real workbook and full_df.csv in an ODIR layout, images assumed present (none are stored)."""
    root = tmp_path / "odir"
    (root / "images").mkdir(parents=True)
    (root / "images" / "0_left.jpg").touch()  # lets locate() find the image folder
    for name in ("ODIR-5K_Training_Annotations(Updated)_V2.xlsx", "full_df.csv"):
        (root / name).symlink_to(_shared(name))
    monkeypatch.setattr(odir, "_check_on_disk", lambda *a: None)
    monkeypatch.setattr(odir, "_write_combined", lambda *a: None)
    monkeypatch.setattr(images, "decode_errors", lambda *a, **k: {})  # no image files stored
    return root


def test_real_odir_eye_framing_has_6392_rows_and_a_grouped_split(odir_real_root):
    index, exclusions = get_task("odir_eye").build(odir_real_root)
    assert len(index) == 6392 and index.group.nunique() == 3358
    assert len(index) + len(exclusions) == 7000
    assert index.label_name.value_counts().to_dict() == odir.PUBLISHED_EYE_COUNTS
    _no_leak(index)


def test_real_odir_patient_framing_has_3500_patients_and_a_grouped_split(odir_real_root):
    index, exclusions = get_task("odir").build(odir_real_root)
    dropped = exclusions[exclusions.action == "dropped"]
    assert len(index) + dropped.group.nunique() == 3500
    # 30 quality-only eyes: blanked, or dropped (both listed) with their patient
    assert len(exclusions) == 30 and len(dropped) == 2 * dropped.group.nunique()
    assert index[[f"y_{c}" for c in odir.CLASSES]].sum().sum() > 0
    _no_leak(index)


def test_real_isic2019_index_contains_all_of_ham10000(tmp_path, monkeypatch):
    root = tmp_path / "isic2019"
    root.mkdir()
    for name in (ISIC_GT, ISIC_MD):
        (root / name).symlink_to(_shared(name))
    ham = pd.read_csv(_shared("HAM10000_metadata.csv"))
    monkeypatch.setattr(isic2019, "find_images", lambda r: {})  # no images stored: all "missing"
    with pytest.raises(isic2019.DatasetError, match="25331 image\\(s\\) listed"):
        get_task("isic2019").build(root)
    truth = isic2019.read_ground_truth(root / ISIC_GT)
    monkeypatch.setattr(
        isic2019, "find_images", lambda r: {i: Path(r) / "images" / f"{i}.jpg" for i in truth.image}
    )
    index, exclusions = get_task("isic2019").build(root)
    assert len(index) == 25331 and exclusions.empty
    assert index.label_name.value_counts().to_dict() == isic2019.PUBLISHED_COUNTS
    assert index.group.nunique() == 11847 + 2084  # lesions + images without one
    assert set(ham.image_id) <= set(index.image_id) and set(ham.lesion_id) <= set(index.lesion_id)
    assert (index.source == "HAM").sum() == 10015


@pytest.mark.slow
def test_real_isic2019_grouped_split(tmp_path, monkeypatch):
    root = tmp_path / "isic2019"
    root.mkdir()
    for name in (ISIC_GT, ISIC_MD):
        (root / name).symlink_to(_shared(name))
    monkeypatch.setattr(
        isic2019,
        "find_images",
        lambda r: {
            i: Path(r) / f"{i}.jpg" for i in isic2019.read_ground_truth(root / ISIC_GT).image
        },
    )
    index, _ = get_task("isic2019").build(root)
    _no_leak(index)
