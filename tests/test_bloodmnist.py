"""BloodMNIST: registered from its module alone; download (local server), guard, index, workflow."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from datasets_server import FileServer
from PIL import Image

from imbench import plan
from imbench.config import check_config
from imbench.data import bloodmnist, download, registry
from imbench.data.tasks import TASKS, build_task_index

ROOT = Path(__file__).resolve().parents[1]
COUNTS = (16, 8, 8)


def npz_bytes(counts=COUNTS, size=28, labels=None) -> bytes:
    """BloodMNIST's npz format (N×S×S×3 uint8 images, N×1 labels), every class in every split."""
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (
            (np.arange(n) % 8 if labels is None else np.full(n, labels)).reshape(-1, 1)
        ).astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


def _cli(tmp_path: Path, server: FileServer, data: bytes, *extra: str) -> int:
    server.add("/zenodo/bloodmnist.npz?download=1", data)
    return download.main(
        [
            "bloodmnist",
            "--out",
            str(tmp_path / "raw"),
            "--downloads",
            str(tmp_path / "downloads"),
            "--base-url",
            server.url + "/zenodo",
            "--size",
            "28",
            "--retries",
            "0",
            "--no-progress",
            *extra,
        ]
    )


def test_registered_with_its_task_counts_and_config_names():
    spec = registry.get_dataset("bloodmnist")
    assert spec.licence == "CC BY 4.0" and spec.tasks[0] is TASKS["bloodmnist"]
    counts, official, source = plan.task_counts("bloodmnist")
    assert sum(counts.values()) == 17092 == sum(official.values())
    assert list(counts) == list(bloodmnist.CLASSES) and "Acevedo" in source
    train, n_val, n_test = plan.split_sizes("bloodmnist", {})
    assert (n_val, n_test) == (1712, 3421) and sum(train.values()) == pytest.approx(11959, abs=8)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    assert check_config({**config, "tasks": ["bloodmnist"]}) == []
    assert download.cli_args("bloodmnist", {"size": 64}) == ["--size", "64"]


def test_official_md5_then_png_tree_and_index(server, tmp_path, capsys):
    data = npz_bytes()
    assert _cli(tmp_path, server, data, "--no-published-counts") == 2  # not the official file
    assert "md5 checksum mismatch: expected md5:7053d035" in capsys.readouterr().err
    pin = f"bloodmnist.npz=md5:{hashlib.md5(data).hexdigest()}"
    assert _cli(tmp_path, server, data, "--no-published-counts", "--hash", pin) == 0
    index, exclusions = build_task_index("bloodmnist", tmp_path / "raw", workers=1)
    assert exclusions.empty and len(index) == sum(COUNTS)
    assert index.official_split.value_counts().to_dict() == {"train": 16, "val": 8, "test": 8}
    assert (
        set(index.label_name) == set(bloodmnist.CLASSES) and (index.group == index.image_id).all()
    )
    assert index.label_name[7] == "platelet"
    arrays = np.load(io.BytesIO(data))
    with Image.open(tmp_path / "raw" / index.path[5]) as img:
        assert (np.asarray(img) == arrays["train_images"][5]).all()  # lossless


def test_published_split_sizes_and_label_range_are_checked(server, tmp_path, capsys):
    data = npz_bytes()
    pin = f"bloodmnist.npz=md5:{hashlib.md5(data).hexdigest()}"
    assert _cli(tmp_path, server, data, "--hash", pin) == 2
    assert "train has 16 images, expected 11959" in capsys.readouterr().err
    assert not (tmp_path / "raw").exists()
    bad = npz_bytes(labels=8)
    (tmp_path / "downloads" / "bloodmnist.npz").unlink()
    pin = f"bloodmnist.npz=md5:{hashlib.md5(bad).hexdigest()}"
    assert _cli(tmp_path, server, bad, "--hash", pin, "--no-published-counts") == 2
    assert "train_labels must be integers 0–7" in capsys.readouterr().err


def test_workflow_downloads_and_indexes_it(server, tmp_path):
    data = npz_bytes()
    server.add("/zenodo/bloodmnist.npz?download=1", data)
    config = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    config["tasks"] = ["bloodmnist"]
    config["download"] = {
        "bloodmnist": {
            "base_urls": [server.url + "/zenodo"],
            "size": 28,
            "published_counts": False,
            "hashes": {"bloodmnist.npz": "md5:" + hashlib.md5(data).hexdigest()},
        }
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")),
            *("--directory", str(tmp_path), "resources/prepared/bloodmnist/index.csv"),
            *("--cores", "1", "--configfile", "config.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule download:" in proc.stdout + proc.stderr
    index = pd.read_csv(tmp_path / "resources" / "prepared" / "bloodmnist" / "index.csv")
    assert len(index) == sum(COUNTS) and index.label.nunique() == 8
