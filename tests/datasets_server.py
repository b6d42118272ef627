"""A local HTTP server standing in for the dataset hosts, and miniature copies of their files.

``FileServer`` serves in-memory files on 127.0.0.1 (random port) from a thread. It honours HTTP
``Range`` requests (so downloads can resume) and can be told to misbehave, per path, for the next
requests: ``"truncate"`` (announce the full length, send half, close), ``"404"``, ``"500"``,
``"html"`` / ``"json"`` (an error page or message served with HTTP 200 in place of the file).

The ``*_remote`` builders make each dataset's remote files in its real layout: real metadata rows
(committed samples in tests/fixtures/) with synthetic images at the real sizes.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

FIXTURES = Path(__file__).resolve().parent / "fixtures"


class FileServer:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.log: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server._answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path`` (which may include a query string); return its full URL."""
        self.files[path] = data
        return self.url + path

    def fail(self, path: str, *faults: str) -> None:
        """Make the next ``len(faults)`` requests of ``path`` fail in these ways, in order."""
        self.faults.setdefault(path, []).extend(faults)

    def requests_of(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.log if p == path]

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        rng = h.headers.get("Range")
        self.log.append((h.path, rng))
        queue = self.faults.get(h.path)
        fault = queue.pop(0) if queue else None
        if fault in ("html", "json"):  # an error page served with HTTP 200 in place of the file
            body = (
                b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
                b"<body>Please try again later.</body></html>\n"
                if fault == "html"
                else b'{"error": "rate limit exceeded"}\n'
            )
            h.send_response(200)
            h.send_header("Content-Type", "text/html" if fault == "html" else "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        if fault in ("404", "500") or h.path not in self.files:
            code = 500 if fault == "500" else 404
            h.send_response(code)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = self.files[h.path]
        start = 0
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        body = data[start:]
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if fault == "truncate":
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)


# ------------------------------------------------------------------------------------ images


def jpeg(width: int, height: int, seed: int, fundus: bool = False) -> bytes:
    """A small-file synthetic photo: a smooth background with a disc (a lesion or a fundus)."""
    rng = np.random.default_rng(seed)
    if fundus:
        img = Image.new("RGB", (width, height))
        d = ImageDraw.Draw(img)
        r = int(min(width, height) * 0.48)
        cx, cy = width // 2, height // 2
        d.ellipse(
            [cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(120, 220, 3))
        )
        d.ellipse(
            [cx + r // 3, cy - r // 8, cx + r // 3 + r // 5, cy + r // 8], fill=(250, 230, 160)
        )
    else:
        base = rng.integers(150, 230, 3)
        img = Image.new("RGB", (width, height), tuple(int(v) for v in base))
        d = ImageDraw.Draw(img)
        w, h = rng.integers(width // 5, width // 2), rng.integers(height // 5, height // 2)
        d.ellipse(
            [width // 2 - w, height // 2 - h, width // 2 + w, height // 2 + h],
            fill=tuple(int(v) for v in rng.integers(40, 140, 3)),
        )
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ HAM10000


def ham_remote(server: FileServer, drop_image: str | None = None) -> dict:
    """ISIC 2018 Task 3 files (two hosts; the first lacks everything) + a Dataverse API stand-in.

    Returns the URLs to pass and the metadata rows. ``drop_image`` leaves that image out of the
    input zip (metadata listing a missing image).
    """
    meta_bytes = (FIXTURES / "HAM10000_metadata_sample.csv").read_bytes()
    meta = pd.read_csv(io.BytesIO(meta_bytes))
    images = {
        f"ISIC2018_Task3_Training_Input/{i}.jpg": jpeg(600, 450, k)
        for k, i in enumerate(meta.image_id)
        if i != drop_image
    }
    images["ISIC2018_Task3_Training_Input/ATTRIBUTION.txt"] = b"(c) ViDIR Group"
    images["ISIC2018_Task3_Training_Input/LICENSE.txt"] = b"CC BY-NC 4.0"
    codes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    truth = (
        "image,"
        + ",".join(codes)
        + "\n"
        + "".join(
            f"{i}," + ",".join("1.0" if c == dx.upper() else "0.0" for c in codes) + "\n"
            for i, dx in zip(meta.image_id, meta.dx)
        )
    )
    groups = "image,lesion_id,diagnosis_confirm_type\n" + "".join(
        f"{i},{lesion},{t}\n" for i, lesion, t in zip(meta.image_id, meta.lesion_id, meta.dx_type)
    )
    host = "/isic-challenge-data/2018"
    server.add(f"{host}/ISIC2018_Task3_Training_Input.zip", make_zip(images))
    server.add(
        f"{host}/ISIC2018_Task3_Training_GroundTruth.zip",
        make_zip(
            {
                "ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv": truth.encode(),
                "ISIC2018_Task3_Training_GroundTruth/LICENSE.txt": b"CC BY-NC 4.0",
            }
        ),
    )
    server.add(f"{host}/ISIC2018_Task3_Training_LesionGroupings.csv", groups.encode())
    import hashlib

    listing = {
        "status": "OK",
        "data": {
            "latestVersion": {
                "files": [
                    {
                        "label": "HAM10000_images_part_1.zip",
                        "dataFile": {"id": 11, "filename": "HAM10000_images_part_1.zip"},
                    },
                    {
                        "label": "HAM10000_metadata.tab",
                        "dataFile": {
                            "id": 42,
                            "filename": "HAM10000_metadata.tab",
                            "originalFileName": "HAM10000_metadata",
                            "md5": hashlib.md5(meta_bytes).hexdigest(),
                            "checksum": {
                                "type": "MD5",
                                "value": hashlib.md5(meta_bytes).hexdigest(),
                            },
                        },
                    },
                ]
            }
        },
    }
    server.add(
        "/dataverse/api/datasets/:persistentId/?persistentId=doi:10.7910/DVN/DBW86T",
        json.dumps(listing).encode(),
    )
    server.add("/dataverse/api/access/datafile/42?format=original", meta_bytes)
    return {
        "base_urls": [server.url + "/isic-archive/challenges/2018", server.url + host],
        "dataverse": server.url + "/dataverse",
        "meta": meta,
    }


# ------------------------------------------------------------------------------------ ISIC 2019

ISIC_GT = "ISIC_2019_Training_GroundTruth.csv"
ISIC_MD = "ISIC_2019_Training_Metadata.csv"


def isic2019_sizes(image: str, lesion_id: str) -> tuple[int, int]:
    """Real size families: HAM 600×450, BCN 1024×1024, others various."""
    if lesion_id.startswith("HAM_"):
        return 600, 450
    if lesion_id.startswith("BCN_"):
        return 1024, 1024
    return (1024, 768) if image.endswith("_downsampled") else (722, 542)


def isic2019_remote(server: FileServer, truth_bytes: bytes | None = None) -> dict:
    gt = truth_bytes or (FIXTURES / "ISIC_2019_Training_GroundTruth_sample.csv").read_bytes()
    md = (FIXTURES / "ISIC_2019_Training_Metadata_sample.csv").read_bytes()
    meta = pd.read_csv(io.BytesIO(md), dtype=str, keep_default_na=False)
    images = {}
    for k, (image, lesion) in enumerate(zip(meta.image, meta.lesion_id)):
        w, h = isic2019_sizes(image, lesion)
        images[f"ISIC_2019_Training_Input/{image}.jpg"] = jpeg(w, h, 100 + k)
    images["ISIC_2019_Training_Input/ATTRIBUTION.txt"] = b"BCN_20000, HAM10000, MSK"
    images["ISIC_2019_Training_Input/LICENSE.txt"] = b"CC BY-NC 4.0"
    host = "/isic/2019"
    server.add(f"{host}/{ISIC_GT}", gt)
    server.add(f"{host}/{ISIC_MD}", md)
    server.add(f"{host}/ISIC_2019_Training_Input.zip", make_zip(images))
    return {"base_urls": [server.url + host], "meta": meta}


# ------------------------------------------------------------------------------------ ODIR-5K


def odir_workbook(path: Path) -> pd.DataFrame:
    """Write the sampled annotation rows as an .xlsx like the real one (ID stored as text)."""
    from openpyxl import Workbook

    df = pd.read_csv(
        FIXTURES / "ODIR-5K_Training_Annotations_sample.csv", dtype=str, keep_default_na=False
    )
    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(df.columns))
    for rec in df.itertuples(index=False):
        row = list(rec)
        ws.append([row[0], int(row[1])] + row[2:7] + [int(v) for v in row[7:]])
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return df


def odir_members(tmp: Path, size=(2000, 1500)) -> dict[str, bytes]:
    """The Kaggle zip's members: full_df.csv, ODIR-5K/ODIR-5K/{data.xlsx, Training Images/},
    plus test and preprocessed images that must not be extracted."""
    df = odir_workbook(tmp / "data.xlsx")
    members = {
        "full_df.csv": (FIXTURES / "ODIR_full_df_sample.csv").read_bytes(),
        "ODIR-5K/ODIR-5K/data.xlsx": (tmp / "data.xlsx").read_bytes(),
    }
    for k, pid in enumerate(df.ID):
        for j, side in enumerate(("left", "right")):
            members[f"ODIR-5K/ODIR-5K/Training Images/{pid}_{side}.jpg"] = jpeg(
                *size, 300 + 2 * k + j, fundus=True
            )
    members["ODIR-5K/ODIR-5K/Testing Images/937_left.jpg"] = jpeg(64, 48, 1, fundus=True)
    members["preprocessed_images/0_left.jpg"] = jpeg(64, 64, 2, fundus=True)
    return members


def odir_oia_tree(root: Path, size=(2000, 1500)) -> pd.DataFrame:
    """The official OIA-ODIR layout: Training Set/{Annotation/…xlsx, Images/}."""
    df = odir_workbook(root / "Training Set" / "Annotation" / "training annotation (English).xlsx")
    images = root / "Training Set" / "Images"
    images.mkdir(parents=True, exist_ok=True)
    for k, pid in enumerate(df.ID):
        for j, side in enumerate(("left", "right")):
            (images / f"{pid}_{side}.jpg").write_bytes(jpeg(*size, 300 + 2 * k + j, fundus=True))
    return df


# ------------------------------------------------------------------------------------ DermaMNIST


def dermamnist_npz(counts=(14, 7, 7), size=28, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 7).reshape(-1, 1).astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()
