"""Project habits that CI enforces: the conda environment and the pip pins agree."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["slurm"])
    return dict(r.split("==", 1) for r in reqs)


def _conda_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "envs" / "imbench.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return dict(r.split("==", 1) for r in pip if "==" in r)


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    groups = [project["dependencies"], *project["optional-dependencies"].values()]
    loose = [r for g in groups for r in g if "==" not in r]
    assert not loose, f"pyproject.toml: dependencies without an exact pin: {loose}"


def test_conda_environment_matches_the_pins():
    pins, conda = _pins(), _conda_pins()
    assert conda == pins, (
        "envs/imbench.yaml and pyproject.toml disagree: "
        f"only in pyproject {sorted(set(pins.items()) - set(conda.items()))}, "
        f"only in envs/imbench.yaml {sorted(set(conda.items()) - set(pins.items()))}"
    )
