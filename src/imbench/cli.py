"""Command-line interface: one sub-command per pipeline stage.

Every Snakemake rule is a one-line call of one of these, so any stage also runs by hand
(``snakemake -p`` prints the exact command of each job).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path


def _json_arg(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def get_args_parser() -> argparse.ArgumentParser:
    from .plugins import add_plugin_arguments

    p = argparse.ArgumentParser(prog="imbench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="generate the embedded synthetic dataset (HAM10000 format)")
    s.add_argument("--out", required=True, type=Path, help="output folder")
    s.add_argument("--n-images", type=int, default=2000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--width", type=int, default=80)
    s.add_argument("--height", type=int, default=60)
    s.add_argument("--noise", type=float, default=1.0, help="class-overlap scale (1 = default)")
    s.add_argument(
        "--second-lesion-fraction",
        type=float,
        default=0.0,
        help="share of lesions shown with a second lesion of another class (multi-label variant)",
    )

    sub.add_parser(
        "download",
        help="download, verify and unpack a dataset (imbench download --help)",
        add_help=False,
    )

    sub.add_parser(
        "explain",
        help="t-SNE of penultimate features and Grad-CAM examples (imbench explain --help)",
        add_help=False,
    )

    sub.add_parser(
        "plan",
        help="cell count and estimated GPU-hours of a grid (imbench plan --help)",
        add_help=False,
    )
    sub.add_parser(
        "weights",
        help="pre-fetch pretrained weights into the local caches (imbench weights --help)",
        add_help=False,
    )

    s = sub.add_parser(
        "index", help="normalised index of a task: image_id, path, label, label_name, group"
    )
    s.add_argument("--task", required=True)
    s.add_argument("--raw", required=True, type=Path, help="the dataset's raw folder")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument(
        "--exclusions",
        type=Path,
        default=None,
        help="CSV of the images left out of the index, with the reason (empty when none)",
    )
    s.add_argument(
        "--undecodable",
        choices=("exclude", "fail"),
        default="exclude",
        help="an image that does not decode: leave it out and list it (default) or stop",
    )
    s.add_argument("--workers", type=int, default=None, help="processes decoding the images")
    add_plugin_arguments(s)  # a plug-in's dataset

    s = sub.add_parser("split", help="grouped stratified train/val/test split")
    s.add_argument("--index", required=True, type=Path)
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.70, 0.15, 0.15),
        metavar=("TRAIN", "VAL", "TEST"),
    )
    s.add_argument(
        "--cv-folds",
        type=int,
        default=0,
        help="also assign the non-test images to this many cross-validation folds (column cv_fold)",
    )
    s.add_argument(
        "--ungrouped",
        action="store_true",
        help="image-level stratified split, as the papers (config split.grouped: false); "
        "it lets one lesion's or patient's images fall into several splits",
    )

    s = sub.add_parser(
        "imbalance", help="subsample a split's training images to an imbalance ratio"
    )
    s.add_argument("--split", required=True, type=Path, help="the base split CSV")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--task", required=True, help="the task (or its variant <task>@rho<ratio>)")
    s.add_argument("--ratio", required=True, help="imbalance ratio n_max / n_min (≥ 1)")
    s.add_argument("--seed", type=int, default=0)
    add_plugin_arguments(s)  # a plug-in's dataset

    s = sub.add_parser("cache", help="decode + resize every image once into a uint8 array")
    s.add_argument("--index", required=True, type=Path, help="index CSV of the task")
    s.add_argument("--raw", required=True, type=Path, help="folder the index paths are relative to")
    s.add_argument("--out-dir", required=True, type=Path)
    s.add_argument("--size", required=True, type=int)
    s.add_argument("--mode", default="squash", choices=("squash", "crop"))
    s.add_argument("--workers", type=int, default=None)

    s = sub.add_parser("train", help="train one cell")
    s.add_argument("--task", required=True)
    s.add_argument("--cache-dir", required=True, type=Path)
    s.add_argument(
        "--split", required=True, type=Path, help="split CSV (same rows as the cache index)"
    )
    s.add_argument("--model", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--seed", required=True, type=int)
    s.add_argument(
        "--fold",
        type=int,
        default=None,
        help="cross-validation fold to hold out for validation (needs a split with cv_fold)",
    )
    s.add_argument(
        "--settings", type=_json_arg, default={}, help="JSON object of training settings"
    )
    s.add_argument("--threads", type=int, default=None, help="CPU threads (overrides the settings)")
    add_plugin_arguments(s)  # recorded in run.json
    s.add_argument("--out-dir", required=True, type=Path)

    s = sub.add_parser("ensemble", help="one cell from its cross-validation fold models")
    s.add_argument(
        "--folds", required=True, type=Path, nargs="+", help="the fold folders (fold0 fold1 ...)"
    )
    s.add_argument("--out-dir", required=True, type=Path)

    s = sub.add_parser("posthoc", help="apply a post-hoc method to another cell's predictions")
    s.add_argument("--method", required=True)
    s.add_argument("--base-dir", required=True, type=Path)
    s.add_argument("--out-dir", required=True, type=Path)
    s.add_argument("--params", type=_json_arg, default={}, help="JSON object of method parameters")

    s = sub.add_parser(
        "decouple", help="second stage (crt, lws, tau_norm) on another cell's trained network"
    )
    s.add_argument("--method", required=True)
    s.add_argument("--base-dir", required=True, type=Path, help="the first-stage (ce) cell")
    s.add_argument("--cache-dir", required=True, type=Path)
    s.add_argument("--split", required=True, type=Path)
    s.add_argument("--seed", required=True, type=int)
    s.add_argument("--out-dir", required=True, type=Path)
    s.add_argument("--params", type=_json_arg, default={}, help="JSON object of method parameters")
    s.add_argument("--threads", type=int, default=None, help="CPU threads")
    add_plugin_arguments(s)  # a plug-in's dataset or model family

    s = sub.add_parser("evaluate", help="metrics of one cell from its saved predictions")
    s.add_argument("--cell-dir", required=True, type=Path)
    s.add_argument(
        "--split",
        type=Path,
        default=None,
        help="split CSV the predictions must cover (default: the split_file of run.json)",
    )
    s.add_argument("--out", type=Path, default=None)
    s.add_argument("--n-boot", type=int, default=1000)
    s.add_argument("--boot-seed", type=int, default=0)

    s = sub.add_parser("aggregate", help="tables and figures of an experiment")
    s.add_argument("--experiment", required=True)
    s.add_argument("--results", required=True, type=Path, help="the experiment's results folder")
    s.add_argument(
        "--metrics", required=True, type=Path, nargs="+", help="metrics.json files of the cells"
    )
    s.add_argument(
        "--settings", type=_json_arg, default={}, help="JSON object of aggregation settings"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["download"]:  # its own parser: imbench download <dataset> --out DIR ...
        from .data.download import main as download_main

        return download_main(argv[1:])
    if argv[:1] == ["explain"]:  # its own parser: imbench explain --cells ... --out-dir DIR
        from .explain import main as explain_main

        return explain_main(argv[1:])
    if argv[:1] == ["plan"]:  # imbench plan --configfile experiments/x.yaml
        from .plan import main as plan_main

        return plan_main(argv[1:])
    if argv[:1] == ["weights"]:  # imbench weights --models NAME ... (pre-fetch pretrained weights)
        from .models import main as weights_main

        return weights_main(argv[1:])
    args = get_args_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except (ValueError, OSError) as exc:  # bad input, missing file, full disk: one line naming it
        print(f"imbench {args.command}: error: {_described(exc)}", file=sys.stderr)
        return 2


def _described(exc: BaseException) -> BaseException:
    """A file-system error without a file name came from writing the standard output (a job's log,
    redirected by the workflow): name that file."""
    from .io import disk_error

    if isinstance(exc, OSError) and not exc.filename and disk_error(exc, "") is not None:
        try:
            target = os.readlink("/proc/self/fd/1")
        except OSError:
            target = "the standard output"
        return disk_error(exc, target)
    return exc


def _dispatch(args) -> int:
    plugins = []
    if getattr(args, "plugins", None):  # index, imbalance, train, decouple: before anything else
        from .plugins import load_job_plugins

        plugins = load_job_plugins(args.plugins, args.plugin_sha256)
    if args.command == "synth":
        from .data.synthetic import generate

        meta = generate(
            args.out,
            n_images=args.n_images,
            seed=args.seed,
            width=args.width,
            height=args.height,
            noise=args.noise,
            second_lesion_fraction=args.second_lesion_fraction,
        )
        print(f"wrote {len(meta)} images of {meta.lesion_id.nunique()} lesions to {args.out}")
    elif args.command == "index":
        from .data.tasks import build_task_index
        from .io import remove_orphans, write_csv

        for path in (args.out, args.exclusions):  # temporary files of a killed run
            if path:
                remove_orphans(path)
        index, exclusions = build_task_index(args.task, args.raw, args.undecodable, args.workers)
        if args.exclusions:
            write_csv(args.exclusions, exclusions)
        write_csv(args.out, index)
        print(
            f"{args.task}: {len(index)} images, {index.group.nunique()} groups; "
            f"class counts {index.label_name.value_counts().to_dict()}; {len(exclusions)} image(s) left out"
            + (f", listed in {args.exclusions}" if args.exclusions else "")
        )
    elif args.command == "split":
        import warnings

        import pandas as pd

        from .data.split import add_cv_folds, make_split, write_split_record
        from .io import read_csv, write_csv

        index = read_csv(args.index, dtype={"image_id": str, "group": str})
        if "official_split" in index.columns:
            # A dataset with its own published split (DermaMNIST): used as it is, for comparability
            # with published numbers; the task's note says whether it leaks groups.
            out = index.assign(
                split=index["official_split"].replace({"valid": "val", "validation": "val"}),
                grouped=False,
            )
            bad = sorted(set(out.split) - {"train", "val", "test"})
            if bad:
                raise ValueError(
                    f"{args.index}: official_split values {bad} are not train/val/test"
                )
            print("using the dataset's official split (not grouped)")
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = make_split(
                    index, tuple(args.fractions), seed=args.seed, grouped=not args.ungrouped
                )
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)
        if args.cv_folds:
            out = add_cv_folds(
                out, args.cv_folds, seed=args.seed, grouped=bool(out["grouped"].iloc[0])
            )
        write_csv(args.out, out)
        write_split_record(
            args.out,
            args.index,
            args.seed,
            args.fractions,
            args.cv_folds,
            official="official_split" in index.columns,
            grouped=bool(out["grouped"].iloc[0]),
        )
        print(pd.crosstab(out.label_name, out.split, margins=True).to_string())
        if args.cv_folds:
            print(pd.crosstab(out.label_name, out.cv_fold, margins=True).to_string())
    elif args.command == "imbalance":
        from .data.imbalance import write_imbalanced_split

        rec = write_imbalanced_split(args.split, args.out, args.ratio, args.seed, args.task)
        print(
            f"{args.task}: training images {rec['n_train_before']} -> {rec['n_train']}; "
            f"per class {rec['train_counts_before']} -> {rec['train_counts']} "
            f"(ratio asked {rec['ratio']:g}, achieved {rec['achieved_ratio']:.4g})"
        )
    elif args.command == "cache":
        import pandas as pd

        from .data.cache import build_cache

        index = pd.read_csv(args.index, dtype={"image_id": str, "group": str})
        path = build_cache(index, args.raw, args.out_dir, args.size, args.mode, args.workers)
        print(f"cached {len(index)} images at {args.size} px ({args.mode}) in {path}")
    elif args.command == "train":
        from .train import Settings, memory_key, train_cell

        settings = Settings.from_dict(args.settings)
        if args.threads:
            settings.threads = args.threads
        from .gpu import gpu_lease

        def log(message):
            print(message, flush=True)

        # On a machine with several GPUs each training job leases one (see imbench.gpu).
        # IMBENCH_GPU_SLOTS=auto sizes its slots from peaks measured under the memory key.
        lease = (
            gpu_lease(log=log, memory_key=memory_key(args.model, settings))
            if settings.device != "cpu"
            else contextlib.nullcontext()
        )
        with lease:
            run = train_cell(
                args.task,
                args.cache_dir,
                args.split,
                args.model,
                args.method,
                args.seed,
                settings,
                args.out_dir,
                log=log,
                fold=args.fold,
                plugins=plugins,
            )
        print(
            f"best epoch {run['best_epoch']} val macro-F1 {run['best_val_macro_f1']:.4f}; "
            f"{run['timings']['train_images_per_second']} images/s"
        )
    elif args.command == "ensemble":
        from .ensemble import ensemble_folds

        run = ensemble_folds(args.folds, args.out_dir)
        print(f"ensemble of {len(args.folds)} fold models: best epochs {run['fold_best_epochs']}")
    elif args.command == "posthoc":
        from .evaluate import run_posthoc

        run = run_posthoc(args.method, args.base_dir, args.out_dir, **args.params)
        print(f"{args.method}: decision rule {json.dumps(run['decision_rule'])}")
    elif args.command == "decouple":
        from .decouple import run_decouple
        from .gpu import gpu_lease

        def log(message):
            print(message, flush=True)

        from .io import read_json

        # The network's forward pass runs on the base cell's device setting (auto: a GPU when
        # there is one); on a machine with several GPUs the job leases one, as training does.
        device = read_json(args.base_dir / "run.json").get("settings", {}).get("device")
        lease = gpu_lease(log=log) if device != "cpu" else contextlib.nullcontext()
        with lease:
            run_decouple(
                args.method,
                args.base_dir,
                args.cache_dir,
                args.split,
                args.seed,
                args.out_dir,
                params=args.params,
                threads=args.threads,
                log=log,
            )
        print(f"{args.method}: second stage on {args.base_dir} written to {args.out_dir}")
    elif args.command == "evaluate":
        from .evaluate import evaluate_cell

        res = evaluate_cell(
            args.cell_dir, args.out, n_boot=args.n_boot, boot_seed=args.boot_seed, split=args.split
        )
        head = res["headline"]
        print(f"test {head} {res['test']['scalars'][head]}")
    elif args.command == "aggregate":
        from .aggregate import aggregate

        aggregate(args.experiment, args.results, args.metrics, **args.settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
