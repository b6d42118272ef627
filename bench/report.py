"""Write the results table of BENCHMARKS.md from bench/results/*.json.

The table sits between the markers ``<!-- bench-table:start -->`` and ``<!-- bench-table:end -->``;
the rest of BENCHMARKS.md (method notes, load conditions, recommendations) is left as it is. One
row per figure: the figure, its value and target, the command that produced it, the machine, the
date (UTC) and the load while it was measured. Results of ``--quick`` runs are skipped.

    python bench/report.py                 # rewrite the table in BENCHMARKS.md
    python bench/report.py --print         # print the table only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib  # noqa: E402

START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
ORDER = [
    "loop_overhead_threads_auto_resnet18",
    "loop_overhead_threads_auto_resnet50",
    "loop_overhead",
    "loop_overhead_resnet18_run2",
    "loop_overhead_resnet50",
    "loop_overhead_cuda",
    "plain_loop",
    "plain_loop_resnet50",
    "checkpoint_cost",
    "loader_throughput",
    "loader_throughput_cuda",
    "loader_throughput_standard",
    "loader_throughput_standard_cuda",
    "input_contention",
    "preprocessing",
    "planning",
]


def _fmt(value, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "×":
        return f"{value:.1f}×"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:,.0f} {unit}"


def _target(f: dict) -> str:
    if f.get("target") is None:
        return ""
    t = f["target"]
    shown = _fmt(t, f["unit"]) if f["unit"] != "images/s" else f"{t:,} images/s"
    return f"{f.get('op', '>=').replace('>=', '≥').replace('<=', '≤')} {shown} " + (
        "✅" if f.get("met") else "❌"
    )


def _load(r: dict) -> str:
    ld = r.get("load", {})
    l1 = ld.get("load1_before") or []
    parts = []
    if l1:
        parts.append(f"load1 {min(l1):.2f}–{max(l1):.2f}")
    if ld.get("foreign_cores_median") is not None:
        parts.append(
            f"others {ld['foreign_cores_median']:.2f} cores (max {ld['foreign_cores_max']:.2f})"
        )
    if ld.get("disturbed_repeats_kept"):
        parts.append(f"{ld['disturbed_repeats_kept']}/{ld['repeats']} repeats disturbed")
    parts.append(f"n={ld.get('repeats')}")
    return "; ".join(parts)


def rows(results_dir: Path) -> list[str]:
    found = []
    for path in sorted(results_dir.glob("*.json")):
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        if r.get("quick") or "figures" not in r:
            continue
        found.append((path.stem, r))
    found.sort(key=lambda x: (ORDER.index(x[0]) if x[0] in ORDER else len(ORDER), x[0]))
    out = [
        "| Figure | Value | Target | Command | Machine | Date (UTC) | Load while measured (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for _stem, r in found:
        machine = benchlib.describe(r.get("machine", {}))
        date = r.get("date", "")[:16].replace("T", " ")
        for f in r["figures"]:
            out.append(
                f"| {f['name']} | {_fmt(f.get('value'), f['unit'])} | {_target(f)} | `{r['command']}` | "
                f"{machine} | {date} | {_load(r)} |"
            )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=benchlib.RESULTS)
    p.add_argument("--file", type=Path, default=benchlib.REPO / "BENCHMARKS.md")
    p.add_argument("--print", action="store_true", help="print the table, write nothing")
    args = p.parse_args(argv)
    table = "\n".join(rows(args.results))
    if args.print:
        print(table)
        return 0
    text = args.file.read_text() if args.file.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        raise SystemExit(f"{args.file}: markers {START} / {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.file.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    print(f"updated the table in {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
