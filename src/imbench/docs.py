"""Tables of the documentation written from the registries: ``python -m imbench.docs``.

docs/methods.md holds two tables that are not edited by hand; each sits between a pair of marker
lines ``<!-- begin generated: NAME -->`` / ``<!-- end generated: NAME -->``:

``method-index``
    every registered method (plug-ins excepted) with its family, parts (loss, sampler, head,
    post-hoc rule), the task kinds where it has a meaning, source and summary;
``parameters``
    every declared parameter of every loss, sampler and post-hoc rule: default and the values
    accepted, as the configuration checks word them (:meth:`imbench.params.Param.expected`).

``python -m imbench.docs`` rewrites them in place (temporary file, then rename);
``python -m imbench.docs --check`` exits with 1 and names the file when it is not in step. A test
runs the check, so a new method or parameter that is not in the documentation fails the tests
until the tables are rewritten.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

from .params import show

#: docs/methods.md of the repository (src/imbench -> docs).
METHODS_DOC = Path(__file__).resolve().parents[2] / "docs" / "methods.md"

_KIND_SHORT = {"multiclass": "mc", "binary": "bin", "multilabel": "ml"}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def method_index() -> list[str]:
    """The ``method-index`` table: one row per registered method, in registration order."""
    from .methods import METHODS, method_kinds
    from .plugins import plugin_file

    lines = [
        "| method | family | loss | sampler | head | post-hoc rule | kinds | source | summary |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in METHODS.items():
        if plugin_file(name):
            continue
        family = f"paper variant of `{m.variant_of}`" if m.variant_of else m.family
        rule = f"`{m.posthoc}` on `{m.base}`" if m.posthoc else "–"
        kinds = ", ".join(_KIND_SHORT[k] for k in method_kinds(name))
        lines.append(
            f"| `{name}` | {family} | `{m.loss}` | `{m.sampler}` | {m.head} | {rule} | {kinds} | "
            f"{_cell(m.source)} | {_cell(m.summary)} |"
        )
    return lines


def parameter_table() -> list[str]:
    """The ``parameters`` table: every declared parameter of the losses, samplers, post-hoc rules,
    second stages and mixing steps."""
    from .methods.tables import (
        LOSS_PARAMS,
        MIXING_PARAMS,
        POSTHOC_PARAMS,
        SAMPLER_PARAMS,
        STAGE2_PARAMS,
    )
    from .plugins import plugin_file

    lines = ["| part | parameter | default | accepted |", "|---|---|---|---|"]
    for part, table in (
        ("loss", LOSS_PARAMS),
        ("sampler", SAMPLER_PARAMS),
        ("post-hoc rule", POSTHOC_PARAMS),
        ("second stage", STAGE2_PARAMS),
        ("mixing", MIXING_PARAMS),
    ):
        for owner, params in table.items():
            if part == "loss" and plugin_file(owner):
                continue
            for key, p in params.items():
                lines.append(f"| {part} `{owner}` | `{key}` | {show(p.default)} | {p.expected()} |")
                for kind, q in p.by_kind.items():
                    lines.append(f"| | | {kind} tasks | {q.expected()} |")
    return lines


TABLES = {"method-index": method_index, "parameters": parameter_table}


def render(text: str, path: str | Path = METHODS_DOC) -> str:
    """``text`` with every generated table replaced by its current content. A table whose markers
    are missing raises one ``ValueError`` naming the file and the marker."""
    for name, make in TABLES.items():
        begin, end = f"<!-- begin generated: {name} -->", f"<!-- end generated: {name} -->"
        pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
        if len(pattern.findall(text)) != 1:
            raise ValueError(f"{path}: expected one pair of lines {begin!r} ... {end!r}")
        block = "\n".join([begin, *make(), end])
        text = pattern.sub(lambda _, block=block: block, text)
    return text


def write(path: str | Path = METHODS_DOC) -> bool:
    """Rewrite the generated tables of ``path``; True when the file changed."""
    path = Path(path)
    old = path.read_text()
    new = render(old, path)
    if new == old:
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(new)
    os.replace(tmp, path)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m imbench.docs [--check] [PATH]``."""
    p = argparse.ArgumentParser(
        prog="python -m imbench.docs",
        description="Write the tables of docs/methods.md from the method registry.",
    )
    p.add_argument("path", nargs="?", type=Path, default=METHODS_DOC)
    p.add_argument("--check", action="store_true", help="only check; exit 1 when not in step")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.check:
            if render(args.path.read_text(), args.path) != args.path.read_text():
                print(
                    f"{args.path}: the generated tables are not in step with the registry; "
                    "run `python -m imbench.docs`",
                    file=sys.stderr,
                )
                return 1
            return 0
        changed = write(args.path)
    except (OSError, ValueError) as exc:
        print(f"imbench.docs: error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.path}: {'rewritten' if changed else 'already in step'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
