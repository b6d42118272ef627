"""``imbench download <dataset> --out DIR ...``: download, verify and unpack a real dataset into
``resources/raw/<dataset>/``.

The datasets, their options and their recipes come from the registry
(:mod:`imbench.data.registry`; each recipe is ``prepare`` in the dataset's module). The parts:
transport in :mod:`imbench.data.fetch`, archives in :mod:`imbench.data.extract`, staging and content
checks in :mod:`imbench.data.staging`. Every recipe does the same four things:

1. **download** every remote file with pooch into a downloads folder (default
   ``resources/downloads/<dataset>/``, outside the rule's output so that a failed run keeps what it
   fetched). Mirrors are tried in order. Transient failures (connection drops, HTTP 5xx, a
   truncated body) are retried, and an interrupted transfer resumes from its ``.part`` file with an
   HTTP ``Range`` request. A file gets its final name only once it is complete and its checksum
   (where one is known) matches, and never when the server sent an HTML page in its place; pooch
   writes to a temporary name and renames. A metadata file is parsed as soon as it arrives (and
   when an earlier run's copy is reused); one that fails is deleted so that it is fetched again.
2. **verify** what no checksum covers by content: headers, row counts, one-hot labels, and the
   class counts the dataset owners published (these can be switched off for mirrors or miniatures).
   Checksums reported by third parties only (not by the owners) are compared too, but a mismatch is
   a warning followed by the content checks, not an error.
3. **extract** archives safely: every member is checked before anything is written (no absolute
   paths, no ``..``, no links pointing outside, the decompression-bomb limits of :class:`~imbench.data.extract.Limits`
   and the free disk space), links are never created, non-image members are skipped, and members
   are copied in bounded chunks. The extracted image ids must equal the metadata ids exactly.
   Images that do not decode stop the download under ``undecodable="fail"``; by default they are
   reported and left for the index step to exclude and list.
4. **publish**: everything is assembled in a hidden staging folder beside ``--out`` and renamed onto
   it only when all checks pass, so ``--out`` either does not exist or is complete.

Every failure is one :class:`~imbench.data.errors.DownloadError` line naming the URL, file, member
or row and what was expected; the command prints it as ``imbench download <dataset>: error: ...``
and exits with status 2.

:func:`cli_args` turns a dataset's ``download.<dataset>`` configuration section into these options
(the workflow's download rule calls it); the keys are the common ones
(:data:`~imbench.data.registry.COMMON_KEYS`) plus the dataset's own recipe options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import DatasetError, DownloadError
from .fetch import normalise_hash
from .registry import COMMON_KEYS, dataset_names, download_options, get_dataset
from .staging import Options, check_out


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imbench download",
        description="download, verify and unpack a dataset into its raw folder",
    )
    p.add_argument("dataset", choices=dataset_names())
    from ..plugins import add_plugin_arguments

    add_plugin_arguments(p)  # a plug-in's dataset (loaded by main before this parser is built)
    p.add_argument(
        "--out", required=True, type=Path, help="raw folder to create, e.g. resources/raw/ham10000"
    )
    p.add_argument(
        "--downloads",
        type=Path,
        default=None,
        help="where downloaded files are kept (default resources/downloads/<dataset>)",
    )
    p.add_argument(
        "--base-url",
        action="append",
        default=None,
        metavar="URL",
        help="mirror base URL (repeat for several, tried in order); default: the official hosts",
    )
    for opt in download_options().values():  # each dataset's own options
        if opt.type is bool:
            p.add_argument(opt.flag, action="store_true", help=opt.help)
        else:
            p.add_argument(
                opt.flag, type=opt.type, default=opt.default, choices=opt.choices, help=opt.help
            )
    p.add_argument(
        "--hash",
        action="append",
        default=[],
        metavar="NAME=ALG:HEX",
        help="pin a file's checksum (strict), e.g. ISIC_2019_Training_Input.zip=sha256:...",
    )
    p.add_argument(
        "--retries", type=int, default=3, help="extra attempts per URL after a transient failure"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds without data before a retry"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--no-published-counts",
        action="store_true",
        help="skip the comparison with the published row and class counts (mirrors, subsets)",
    )
    p.add_argument("--delete-archives", action="store_true", help="delete archives once extracted")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--undecodable",
        choices=("exclude", "fail"),
        default="exclude",
        help="an image that does not decode: report it and keep going (default; the index step "
        "lists it) or stop",
    )
    return p


def config_keys(dataset: str) -> tuple[str, ...]:
    """The keys allowed in ``download.<dataset>``: the common ones, then the recipe's options."""
    return COMMON_KEYS + tuple(o.name for o in get_dataset(dataset).options)


def cli_args(dataset: str, cfg: dict | None) -> list[str]:
    """Command-line options for ``imbench download <dataset>`` from its config section."""
    if dataset not in dataset_names():
        raise DownloadError(f"download: dataset {dataset!r} is not one of {dataset_names()}")
    cfg = dict(cfg or {})
    allowed = config_keys(dataset)
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise DownloadError(
            f"config key download.{dataset}: unknown key(s) {unknown}; allowed keys: {list(allowed)}"
        )
    args: list[str] = []
    if cfg.get("downloads"):
        args += ["--downloads", str(cfg["downloads"])]
    for url in cfg.get("base_urls") or []:
        args += ["--base-url", str(url)]
    for name, value in (cfg.get("hashes") or {}).items():
        args += ["--hash", f"{name}={value}"]
    for key in ("retries", "timeout"):
        if cfg.get(key) is not None:
            args += [f"--{key}", str(cfg[key])]
    for opt in get_dataset(dataset).options:
        value = cfg.get(opt.name)
        if opt.type is bool:
            if value:
                args.append(opt.flag)
        elif value is not None:
            args += [opt.flag, str(value)]
    if cfg.get("published_counts") is False:
        args.append("--no-published-counts")
    if cfg.get("delete_archives"):
        args.append("--delete-archives")
    return args


def _parse_hashes(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise DownloadError(f"--hash {item!r}: expected NAME=ALG:HEX")
        out[name] = normalise_hash(value, f"--hash {name}")
    return out


def main(argv: list[str] | None = None) -> int:
    from ..plugins import PluginError, preload_job_plugins

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        preload_job_plugins(argv)
    except PluginError as exc:
        print(f"imbench download: error: {exc}", file=sys.stderr)
        return 2
    args = get_args_parser().parse_args(argv)
    spec = get_dataset(args.dataset)
    try:
        opts = Options(
            downloads=args.downloads or Path("resources/downloads") / args.dataset,
            retries=args.retries,
            timeout=args.timeout,
            progress=not args.no_progress,
            hashes=_parse_hashes(args.hash),
            published_counts=not args.no_published_counts,
            delete_archives=args.delete_archives,
            force=args.force,
            undecodable=args.undecodable,
        )
        check_out(args.out, args.force)
        options = {o.name: getattr(args, o.name) for o in spec.options}
        spec.prepare(args.out, opts, tuple(args.base_url or spec.base_urls), **options)
    except (DatasetError, OSError, PluginError) as exc:
        print(f"imbench download {args.dataset}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
