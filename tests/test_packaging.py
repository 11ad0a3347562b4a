"""Packaging: pyproject.toml and environment.yml list the same packages; the GPU path needs only torch, triton, numpy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
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


# What the model library, the kernel and the GPU checks may import beside the standard library: a lent GPU
# machine (and a user's own DiT codebase) has torch, triton and numpy, not the workflow's packages.
GPU_PATH_MODULES = [
    "dar.models",
    "dar.routing",
    "kernels.dar_aggregate",
    "kernels.bench",
    "kernels.device_check",
    "dar.train.bench",
]
GPU_PATH_ALLOWED = {"torch", "torchgen", "triton", "numpy", "tqdm", "typing_extensions", "cuda", "dar", "kernels"}
GPU_PATH_ALLOWED.add("cython_runtime")  # a module Cython-built extensions register, not a package


def test_model_library_and_gpu_checks_import_only_torch_triton_numpy():
    import json
    import subprocess
    import sys

    code = (
        "import sys; before = set(sys.modules)\n"
        f"for m in {GPU_PATH_MODULES!r}: __import__(m)\n"
        "new = {k.split('.')[0] for k in set(sys.modules) - before}\n"
        "import json; print(json.dumps(sorted(m for m in new if m not in sys.stdlib_module_names and not m.startswith('_'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    imported = set(json.loads(out))
    assert imported - GPU_PATH_ALLOWED == set(), f"{sorted(imported - GPU_PATH_ALLOWED)} imported by the GPU path"
    assert {"torch", "triton", "dar", "kernels"} <= imported


@pytest.mark.slow
def test_a_non_editable_install_finds_its_presets_and_schema(tmp_path):
    """`pip install .` (a wheel, not the checkout): the presets and the grid schema are package data."""
    import subprocess
    import sys
    import sysconfig

    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)], check=True)
    (wheel,) = wheels.glob("dar_repro-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run([*pip, "install", "--no-deps", "--target", site, str(wheel)], check=True)
    # the dependencies come from this environment, as a plain path (its .pth files, the editable finder among them,
    # are not processed from there): `dar` itself can only come from the installed wheel
    (Path(site) / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    where = subprocess.run(
        [python, "-c", "import dar; print(dar.__file__)"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert where.returncode == 0 and where.stdout.startswith(site), where.stdout + where.stderr
    out = subprocess.run(
        [python, "-m", "dar", "cells", "--preset", "smoke", "--table", "table1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "results/smoke/cells/table1/static-c4_ode_cfg1.5.json" in out.stdout
    bad = subprocess.run(
        [python, "-m", "dar", "cells", "--preset", "nope"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    from dar import grid

    shipped = grid.presets()  # the checkout's presets: every one must be in the wheel
    assert "zoo" in shipped and bad.returncode == 2 and f"choose one of {shipped}" in bad.stderr


def test_the_dar_console_script_is_python_m_dar():
    import subprocess
    import sys
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "dar"]
    assert ep.value == "dar.__main__:main"
    script = Path(sys.executable).parent / "dar"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("usage: python -m dar") and "  plan " in out
    bad = subprocess.run([str(script), "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command 'nope'" in bad.stderr
