"""pyproject.toml and environment.yml must list the same packages with the same pins."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pip = [r for r in pip if not r.startswith("-e")]
    assert {_name(r): r.replace(" ", "") for r in reqs} == {_name(r): r.replace(" ", "") for r in pip}


def test_torch_pins_admit_the_local_builds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {_name(r): r for r in project["dependencies"]}
    assert "2.14.1" in deps["torch"] and "0.29.1" in deps["torchvision"]
