"""Preprocessing: images/s of ``imbench.data.cache.build_cache`` (decode, resize, write the uint8
cache) with 2 worker processes, at 224 px, squash mode (the workflow's default).

Two sources:

- ``ham``: ``n`` synthetic 600×450 JPEGs (HAM10000's size) from ``imbench.data.synthetic.generate``;
- ``fundus``: fundus-size JPEGs (default 2592×1728, the larger ODIR-5K size; ODIR's photos are about
  2,000–3,000 px wide). Rendering one at that size takes about a second, so ``--fundus-distinct``
  different images are rendered by the same generator and each is written to disk under several
  names until there are ``--n-fundus`` files: every file is still opened and decoded separately.

``build_cache`` is called exactly as ``imbench cache`` calls it (default chunk of 256 images per
task), so images/s includes starting the worker pool and writing ``images.npy`` and ``index.csv``.
With fewer than 2 × 256 images ``build_cache`` gives all work to one process; the defaults use 1024
and 512 images so that both workers are busy. The OS file cache is warm (the JPEGs were just written
or read): disk reads are not measured.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

NAME = "preprocessing"


def fundus_tree(work: Path, n: int, distinct: int, width: int, height: int, seed: int = 0):
    """``n`` JPEG files cycling over ``distinct`` synthetic renders at ``width``×``height``; returns
    (root, index) with the index columns ``build_cache`` reads."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from imbench.data.ham10000 import CLASSES
    from imbench.data.synthetic import render

    root = work / f"fundus_{n}_{distinct}_{width}x{height}_seed{seed}"
    done = root / "index.csv"
    if done.exists():
        return root, pd.read_csv(done, dtype={"image_id": str, "group": str})
    print(
        f"generating {distinct} synthetic {width}×{height} JPEGs, {n} files, in {root} (once) ...",
        flush=True,
    )
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    blobs = []
    for k in range(distinct):
        dx = CLASSES[k % len(CLASSES)]
        pixels = render(
            dx,
            np.random.default_rng([seed, 1, k]),
            np.random.default_rng([seed, 2, k]),
            width,
            height,
            1.0,
        )
        tmp = img_dir / f"render_{k}.tmp.jpg"
        Image.fromarray(pixels).save(tmp, quality=92)
        blobs.append(tmp.read_bytes())
        tmp.unlink()
    rows = []
    for i in range(n):
        k = i % distinct
        name = f"F{i:06d}.jpg"
        (img_dir / name).write_bytes(blobs[k])
        rows.append(
            {
                "image_id": f"F{i:06d}",
                "path": f"images/{name}",
                "label": k % len(CLASSES),
                "label_name": CLASSES[k % len(CLASSES)],
                "group": f"P{i // 2:06d}",
            }
        )
    index = pd.DataFrame(rows)
    index.to_csv(done, index=False)
    return root, index


def time_build(index, root: Path, out: Path, size: int, workers: int, mode: str) -> dict:
    from imbench.data.cache import build_cache

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    build_cache(index, root, out, size=size, mode=mode, workers=workers)
    dt = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return {"images_per_s": round(len(index) / dt, 1), "seconds": round(dt, 3)}


def main(argv=None) -> Path:
    p = benchlib.parser(__doc__.split("\n\n")[0])
    p.add_argument("--n-ham", type=int, default=None, help="600×450 JPEGs (default 1024)")
    p.add_argument(
        "--n-fundus", type=int, default=None, help="fundus-size JPEG files (default 512)"
    )
    p.add_argument(
        "--fundus-distinct", type=int, default=None, help="different fundus renders (default 32)"
    )
    p.add_argument("--fundus-size", type=int, nargs=2, default=(2592, 1728), metavar=("W", "H"))
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--mode", default="squash", choices=("squash", "crop"))
    args = p.parse_args(argv)
    return _main(args, argv if argv is not None else sys.argv[1:])


def _main(args, argv) -> Path:
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if args.quick:
        n_ham, n_fundus, distinct, size, repeats = (
            args.n_ham or 64,
            args.n_fundus or 32,
            2,
            32,
            args.repeats or 1,
        )
        ham_wh, fundus_wh = (60, 45), (259, 173)
    else:
        n_ham, n_fundus = args.n_ham or 1024, args.n_fundus or 512
        distinct, size, repeats = args.fundus_distinct or 32, args.image_size, args.repeats or 5
        ham_wh, fundus_wh = (600, 450), tuple(args.fundus_size)
    ham_root = benchlib.synthetic_jpegs(work, n_ham, *ham_wh)
    ham_index = benchlib.jpeg_index(ham_root)
    fundus_root, fundus_index = fundus_tree(work, n_fundus, distinct, *fundus_wh)
    sources = {
        "ham": (ham_root, ham_index, ham_wh),
        "fundus": (fundus_root, fundus_index, fundus_wh),
    }
    samples, kib = {}, {}
    for key, (root, index, _) in sources.items():
        sizes = [(root / p).stat().st_size for p in index["path"]]
        kib[key] = round(sum(sizes) / len(sizes) / 1024, 1)
        samples[key] = benchlib.repeat(
            lambda root=root, index=index: time_build(
                index, root, work / "preprocessing_out", size, args.workers, args.mode
            ),
            repeats,
            args,
            label=f"{NAME} {key}",
        )
    med = {k: benchlib.median([s["images_per_s"] for s in v]) for k, v in samples.items()}
    figures = [
        {
            "name": f"build_cache, {ham_wh[0]}×{ham_wh[1]} JPEG → {size} px {args.mode}, {args.workers} workers",
            "value": med["ham"],
            "unit": "images/s",
            "target": None if args.quick else 600,
            "op": ">=",
        },
        {
            "name": f"build_cache, {fundus_wh[0]}×{fundus_wh[1]} JPEG → {size} px {args.mode}, {args.workers} workers",
            "value": med["fundus"],
            "unit": "images/s",
        },
    ]
    details = {
        "image_size": size,
        "mode": args.mode,
        "workers": args.workers,
        "ham": {
            "n": n_ham,
            "jpeg": list(ham_wh),
            "jpeg_kib_mean": kib["ham"],
            "images_per_s_median": med["ham"],
            "samples": samples["ham"],
        },
        "fundus": {
            "n": n_fundus,
            "distinct_renders": distinct,
            "jpeg": list(fundus_wh),
            "jpeg_kib_mean": kib["fundus"],
            "images_per_s_median": med["fundus"],
            "samples": samples["fundus"],
        },
    }
    all_samples = samples["ham"] + samples["fundus"]
    return benchlib.write_result(
        NAME, "preprocessing.py", argv, args, figures, details, benchlib.load_summary(all_samples)
    )


if __name__ == "__main__":
    main()
