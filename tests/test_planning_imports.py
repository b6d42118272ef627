"""Planning (`snakemake -n`) imports neither torch, timm, torchvision, matplotlib nor scikit-learn.

Importing them costs seconds on every Snakemake start; only jobs need them. Two checks, each in a
fresh interpreter: the `imbench` imports of the workflow files plus the calls the workflow makes at
planning time, and a real dry run of the workflow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "torchvision", "matplotlib", "sklearn")
WORKFLOW_FILES = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
IMPORT_LINE = re.compile(
    r"^\s*((?:from\s+imbench[\w.]*\s+import\s+.+)|(?:import\s+imbench[\w.]*.*))$"
)


def workflow_imports() -> list[str]:
    """Every one-line `import imbench...` / `from imbench... import ...` of the workflow files."""
    lines = []
    for path in WORKFLOW_FILES:
        for line in path.read_text().splitlines():
            m = IMPORT_LINE.match(line)
            if m:
                lines.append(m.group(1).split("#")[0].strip())
    return list(dict.fromkeys(lines))


def heavy_imported(code: str, cwd: Path = ROOT) -> list[str]:
    """Run ``code`` in a fresh interpreter; the modules of HEAVY it left imported."""
    report = f"\nimport sys\nprint('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    proc = subprocess.run(
        [sys.executable, "-c", code + report], capture_output=True, text=True, cwd=cwd, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("HEAVY=")][-1]
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def test_workflow_imports_are_found():
    imports = workflow_imports()
    assert any("imbench.config" in line for line in imports)
    assert len(imports) >= 5


def test_planning_imports_and_calls_are_light():
    configs = [ROOT / "config.yaml", *sorted((ROOT / "experiments").glob("*.yaml"))]
    code = (
        "\n".join(workflow_imports())
        + "\n"
        + textwrap.dedent(f"""
        import copy, yaml
        from imbench.aggregate import explain_figure_names, figure_names
        from imbench.config import check_config
        from imbench.data.download import cli_args
        from imbench.methods import get_method, resolve_params
        from imbench.protocols import resolved_dict

        base = yaml.safe_load(open({str(ROOT / "config.yaml")!r}))
        for path in {[str(p) for p in configs]!r}:
            config = copy.deepcopy(base)
            config.update(yaml.safe_load(open(path)))
            check_config(config)
            resolved_dict(config["protocol"], config.get("protocol_overrides"))
            for task in config["tasks"]:
                figure_names(task)
                explain_figure_names(task)
                for method in config["methods"]:
                    get_method(method).trains
                    for model in config["models"]:
                        resolve_params(method, (config.get("method_params") or {{}}).get(method, {{}}), task, model)
            for dataset, cfg in (config.get("download") or {{}}).items():
                cli_args(dataset, cfg or {{}})
    """)
    )
    heavy = heavy_imported(code)
    if heavy:
        culprits = {line: h for line in workflow_imports() if (h := heavy_imported(line))}
        raise AssertionError(
            f"planning imports {heavy}; workflow imports that pull them: {culprits or 'none'} "
            f"(else a call made while planning)"
        )


def test_dry_run_imports_no_heavy_module(tmp_path):
    config = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    # Every model-name form, and the explain figures on (their names are planned too).
    config["models"] = [
        "test_resnet",
        "resnet50.tv_in1k",
        "efficientnet_v2_s.torchvision",
        "le2020_resnet50",
    ]
    config["explain"] = {"enabled": True}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    args = [
        "snakemake",
        "-n",
        "--quiet",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        "config.yaml",
    ]
    # Snakemake in this interpreter; the check runs when it exits.
    code = textwrap.dedent(f"""
        import atexit, sys
        def _report():
            print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules), flush=True)
        atexit.register(_report)
        sys.argv = {args!r}
        from snakemake.cli import main
        main()
    """)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    heavy = [x for x in proc.stdout.splitlines() if x.startswith("HEAVY=")]
    assert heavy, text[-3000:]
    assert heavy[-1] == "HEAVY=", f"planning imported {heavy[-1].removeprefix('HEAVY=')}"
