"""The grid file of a preset: finding it, reading it and validating it.

A preset is a YAML file, `dar/presets/<name>.yaml` (package data, so an installed
wheel has them) or any `.yaml` path given in its place. It lists the training
runs and, per table, which runs / iterations / samplers / guidance settings are
evaluated. `load()` checks it against `dar/presets/grid.schema.yaml` and against
the registries (models, routings, TrainConfig keys), naming the offending key in
every error. Nothing outside dar/plan.py reads the returned dict: the plan
compiles it into typed specs, and every consumer asks the plan.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dar.config import ConfigError

PRESET_DIR = resources.files("dar") / "presets"
DEFAULT_PRESET = "digits"  # workflow/config/config.yaml
DEFAULT_RESULTS = "results"
SCHEMA_NAME = "grid.schema.yaml"
# Run settings the plan sets per run and seed (from runs.<name>.{model, routing, iterations, repa}, seeds, the
# repa: section and the tables); a grid may not set them under train:, where they would be ignored or conflict.
MANAGED_TRAIN_KEYS = {
    "data",
    "out",
    "routing",
    "iterations",
    "milestones",
    "seed",
    "restart",
    "repa",
    "repa_encoder",
    "repa_encoder_weights",
    "repa_lambda",
    "repa_depth",
    "repa_state",
    "repa_projector_dim",
}
WHERE_INSTEAD = {
    "model": "runs.<name>.model (or train.model for every run)",
    "routing": "runs.<name>.routing",
    "iterations": "runs.<name>.iterations",
    "seed": "seeds",
    "repa": "runs.<name>.repa and the repa: section",
}


class GridError(ConfigError):
    """A mistake in the experiment grid; the message starts with the offending key."""


def snakemake_command(
    target: str | Path, preset: str = DEFAULT_PRESET, results: str | Path = DEFAULT_RESULTS, *flags: str
) -> str:
    """The workflow command that (re)makes `target` of a preset: the one spelling every message and page uses."""
    config = [f"preset={preset}"] if preset != DEFAULT_PRESET else []
    if str(results) != DEFAULT_RESULTS:
        config.append(f"results={results}")
    return " ".join(["snakemake", str(target), *flags, "--cores", "2", *(["--config", *config] if config else [])])


def presets() -> list[str]:
    """The names of the presets that ship with the package."""
    return sorted(
        p.name.removesuffix(".yaml") for p in PRESET_DIR.iterdir() if p.name.endswith(".yaml") and p.name != SCHEMA_NAME
    )


def locate(preset: str) -> tuple[str, Path | None]:
    """(text of the grid file, its path on disk when it has one) for a preset name or a .yaml path."""
    if preset.endswith((".yaml", ".yml")):
        path = Path(preset)
        if not path.is_file():
            raise GridError(f"preset: no grid file {path}")
        return path.read_text(), path
    res = PRESET_DIR / f"{preset}.yaml"
    if preset not in presets():
        raise GridError(f"preset: no grid file for {preset!r}; choose one of {presets()} or give a path to a .yaml grid")
    return res.read_text(), Path(str(res))


def load(preset: str) -> tuple[dict[str, Any], str, Path | None]:
    """(validated grid dict, its YAML text, its path) of a preset."""
    text, path = locate(preset)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise GridError(f"preset: {path or preset} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise GridError(f"preset: {path or preset} does not hold a mapping of grid keys")
    validate(data, str(path or preset))
    return data, text, path


def validate(data: dict[str, Any], where: str = "config") -> None:
    import jsonschema

    schema = yaml.safe_load((PRESET_DIR / SCHEMA_NAME).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        key = ".".join(str(p) for p in e.path) or "(top level)"
        raise GridError(f"{key}: {e.message} (in {where}; schema dar/presets/{SCHEMA_NAME})")
    from dar.models import MODELS, SIZES
    from dar.routing import check_routing
    from dar.train.config import TrainConfig

    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    settable = sorted(train_keys - MANAGED_TRAIN_KEYS)

    def check_train_keys(where: str, keys, run_level: bool) -> None:
        for k in keys:
            if k not in train_keys or k in MANAGED_TRAIN_KEYS or (run_level and k == "model"):
                instead = WHERE_INSTEAD.get(k.split("_")[0] if k.startswith("repa") else k)
                hint = f" (set it as {instead})" if instead else ""
                raise GridError(f"{where}.{k}: not a settable TrainConfig key here{hint}; valid: {settable}")

    check_train_keys("train", data["train"], run_level=False)
    for name, r in data["runs"].items():
        check_train_keys(f"runs.{name}.train", r.get("train", {}), run_level=True)
        model = r.get("model", data["train"].get("model", "SiT-T/2"))
        if model not in MODELS:
            raise GridError(f"runs.{name}.model: unknown model {model!r}; registered: {', '.join(MODELS)}")
        size = SIZES[MODELS[model][0]]
        try:
            check_routing(r["routing"], size.hidden_size, size.depth)
        except ValueError as e:
            raise GridError(f"runs.{name}.routing: {e}") from None
    if any(r.get("repa", False) for r in data["runs"].values()) and "repa" not in data:
        raise GridError("repa: runs with repa: true need a top-level repa section (encoder, depth, lambda, ...)")
    for table, spec in data["tables"].items():
        if table == "table1" and "iterations" in spec:
            raise GridError(
                "tables.table1.iterations: Table 1 reports each run at its final iteration; set runs.<name>.iterations"
            )
        for i, run in enumerate(spec["runs"]):
            if run not in data["runs"]:
                raise GridError(
                    f"tables.{table}.runs[{i}]: run {run!r} is not defined under runs (defined: {sorted(data['runs'])})"
                )
            if table == "fig1b":
                continue  # the training curve keeps the iterations each run reaches
            length = data["runs"][run]["iterations"]
            for it in spec.get("iterations", []):
                if it > length:
                    raise GridError(
                        f"tables.{table}.iterations: {it} is past the length of run {run!r} (runs.{run}.iterations = {length})"
                    )
    if "rehearsal" in data:
        for key, present in (("assets_dir", "assets_dir" in data), ("data.root", "root" in data["data"])):
            if present:
                raise GridError(f"{key}: a rehearsal grid makes its assets and data itself (results/<name>/assets); drop the key")
        if (data["data"]["dataset"], data["data"]["encoder"]) != ("imagefolder", "sd-vae"):
            raise GridError("data: a rehearsal runs the paper path: dataset imagefolder with encoder sd-vae")
    elif data["data"]["dataset"] == "imagefolder" and "root" not in data["data"]:
        raise GridError("data.root: dataset imagefolder needs the root of its ImageFolder tree")
    diag = data.get("diagnostics")
    if diag:
        for key, run in [*(("diagnostics.runs", r) for r in diag["runs"]), ("diagnostics.probe_run", diag["probe_run"])]:
            if run not in data["runs"]:
                raise GridError(f"{key}: run {run!r} is not defined under runs (defined: {sorted(data['runs'])})")
