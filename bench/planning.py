"""Planning: wall time of ``snakemake -n`` (a dry run: the DAG is built, nothing runs) for the
largest configured grid, from the repository root with ``--configfile``.

The grid: ``experiments/all.yaml`` when it exists, otherwise one written by this script from the
registries: every real task (every task of ``imbench.data.tasks.TASKS`` but the generated
``synthetic*`` ones) × the paper models (EfficientNetV2-S, ResNet-50, DenseNet-121 under their timm
names) × every method × 3 seeds, under the ``standard`` protocol. The config used is copied into
the result.

Wall time is that of the whole ``snakemake`` process (interpreter start, imports, config checks,
DAG, the printed plan, captured through a pipe). The script checks that the dry run created nothing
under ``results/``. To show where the time goes it also times, in separate repeats, the same dry run
with ``--quiet`` (no per-job listing) and the ``imbench`` imports of the workflow files in a fresh
interpreter (``PLANNING_IMPORTS``); ``--no-breakdown`` skips those.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

NAME = "planning"
PAPER_MODELS = ["tf_efficientnetv2_s", "resnet50", "densenet121"]
# What workflow/rules/common.smk imports while planning (none of them imports torch or timm).
PLANNING_IMPORTS = (
    "imbench.config",
    "imbench.aggregate",
    "imbench.data.tasks",
    "imbench.methods",
    "imbench.protocols",
    "imbench.data.download",
)


def largest_grid(experiment: str = "bench_planning") -> dict:
    from imbench.data.tasks import TASKS
    from imbench.methods import METHODS

    return {
        "experiment": experiment,
        "tasks": [t for t, task in TASKS.items() if not task.dataset.startswith("synthetic")],
        "models": list(PAPER_MODELS),
        "methods": list(METHODS),
        "seeds": [0, 1, 2],
        "protocol": "standard",
    }


def quick_grid() -> dict:
    return {
        "experiment": "bench_planning_quick",
        "tasks": ["synthetic"],
        "models": ["test_resnet"],
        "methods": ["ce", "thresholding"],
        "seeds": [0],
        "protocol": "demo",
    }


def snapshot(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def dry_run(snakemake: str, configfile: Path, *extra: str) -> dict:
    cmd = [snakemake, "-n", "--configfile", str(configfile), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=benchlib.REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    m = re.search(r"^total\s+(\d+)\s*$", text, flags=re.M)
    return {"seconds": round(wall, 3), "jobs": int(m.group(1)) if m else None}


def time_imports() -> dict:
    code = "import " + ", ".join(PLANNING_IMPORTS)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=benchlib.REPO, check=True)
    return {"seconds": round(time.perf_counter() - t0, 3)}


def main(argv=None) -> Path:
    p = benchlib.parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--configfile",
        type=Path,
        default=None,
        help="grid to plan (default: experiments/all.yaml if present, else the generated largest grid)",
    )
    p.add_argument(
        "--snakemake",
        default=str(Path(sys.executable).with_name("snakemake")),
        help="snakemake executable",
    )
    p.add_argument(
        "--no-breakdown",
        action="store_true",
        help="skip the extra timings (--quiet dry run, imports) that show where the time goes",
    )
    args = p.parse_args(argv)
    return _main(args, argv if argv is not None else sys.argv[1:])


def _main(args, argv) -> Path:
    import yaml

    args.work_dir.mkdir(parents=True, exist_ok=True)
    all_yaml = benchlib.REPO / "experiments" / "all.yaml"
    if args.configfile:
        configfile, source = args.configfile.resolve(), str(args.configfile)
    elif args.quick:
        configfile, source = args.work_dir / "planning_quick.yaml", "generated quick grid"
        configfile.write_text(yaml.safe_dump(quick_grid(), sort_keys=False))
    elif all_yaml.exists():
        configfile, source = all_yaml, "experiments/all.yaml"
    else:
        configfile, source = (
            args.work_dir / "planning_all.yaml",
            "generated largest grid (bench/planning.py)",
        )
        configfile.write_text(yaml.safe_dump(largest_grid(), sort_keys=False))
    config = yaml.safe_load(configfile.read_text())
    cells = (
        len(config["tasks"]) * len(config["models"]) * len(config["methods"]) * len(config["seeds"])
    )
    results = benchlib.REPO / "results"
    before = snapshot(results)
    exp_dir = results / str(config.get("experiment"))
    exp_existed = exp_dir.exists()
    snakemake = args.snakemake if os.path.exists(args.snakemake) else "snakemake"
    samples = benchlib.repeat(
        lambda: dry_run(snakemake, configfile),
        args.repeats or (1 if args.quick else 5),
        args,
        label=NAME,
    )
    extra_samples, import_samples = [], []
    if not args.quick and not args.no_breakdown:
        # Where the time goes: the same dry run without the per-job listing, and the imports of the
        # workflow files.
        extra_samples = benchlib.repeat(
            lambda: dry_run(snakemake, configfile, "--quiet"),
            args.repeats or 5,
            args,
            label=f"{NAME} --quiet",
        )
        import_samples = benchlib.repeat(
            lambda: time_imports(), args.repeats or 5, args, label=f"{NAME} imports"
        )
    created = sorted(snapshot(results) - before)
    secs = benchlib.median([s["seconds"] for s in samples])
    figures = [
        {
            "name": f"snakemake -n, largest grid ({len(config['tasks'])} tasks × {len(config['models'])} "
            f"models × {len(config['methods'])} methods × {len(config['seeds'])} seeds, "
            f"{samples[0]['jobs']} jobs)"
            if not args.quick
            else "snakemake -n, quick grid",
            "value": secs,
            "unit": "s",
            "target": None if args.quick else 20,
            "op": "<=",
        }
    ]
    if extra_samples:
        figures.append(
            {
                "name": "same, with --quiet (no per-job listing)",
                "value": benchlib.median([s["seconds"] for s in extra_samples]),
                "unit": "s",
            }
        )
        figures.append(
            {
                "name": "of which: the workflow's `imbench` imports in a fresh interpreter",
                "value": benchlib.median([s["seconds"] for s in import_samples]),
                "unit": "s",
            }
        )
    details = {
        "config_source": source,
        "config": config,
        "grid_cells": cells,
        "jobs": samples[0]["jobs"],
        "created_under_results": created[:20],
        "n_created_under_results": len(created),
        "experiment_dir_existed_before": exp_existed,
        "samples": samples,
        "quiet_samples": extra_samples,
        "import_samples": import_samples,
    }
    if created:
        print(f"WARNING: the dry run created {len(created)} path(s) under results/: {created[:5]}")
    return benchlib.write_result(
        NAME, "planning.py", argv, args, figures, details, benchlib.load_summary(samples)
    )


if __name__ == "__main__":
    main()
