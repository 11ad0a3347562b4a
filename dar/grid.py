"""The experiment grid: presets -> training runs, sample files and table cells, with their paths.

A preset (workflow/config/<preset>.yaml, schema workflow/schemas/config.schema.yaml)
lists training runs and, per table, which runs / iterations / samplers / guidance
settings are evaluated. This module expands it into:

    Run        results/<preset>/runs/<run>/seed<k>/            (done.json when finished)
    SampleKey  results/<preset>/samples/<run>/seed<k>/it<iter>_<sampler>_nfe<n>_cfg<w>_n<N>.npz
    Cell       results/<preset>/cells/<table>/<name>.json       (metrics over seeds + protocol)

One training run serves every cell that names it: its milestones are the
iterations its cells need. The Snakefile, `python -m dar cells` and the report
all read the grid through this module, so paths and names exist in one place.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from dar.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "workflow" / "config"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
TABLES = ("table1", "table2", "table3", "table4", "fig1b")


class GridError(ConfigError):
    """A mistake in the experiment grid; the message starts with the offending key."""


def fmt_cfg(scale: float) -> str:
    return f"{scale:.1f}" if float(scale).is_integer() else f"{scale:g}"


@dataclass(frozen=True)
class Run:
    name: str
    seed: int
    model: str
    routing: str
    iterations: int
    milestones: tuple[int, ...]
    train: dict = dataclasses.field(hash=False, compare=False)
    label: str = ""
    repa: bool = False


@dataclass(frozen=True)
class SampleKey:
    run: str
    seed: int
    iteration: int
    sampler: str
    nfe: int
    cfg_scale: float
    num_samples: int

    @property
    def stem(self) -> str:
        return f"it{self.iteration:07d}_{self.sampler}_nfe{self.nfe}_cfg{fmt_cfg(self.cfg_scale)}_n{self.num_samples}"


@dataclass(frozen=True)
class Cell:
    table: str
    name: str
    run: str
    iteration: int
    sampler: str
    cfg: bool
    cfg_scale: float
    nfe: int
    num_samples: int
    seeds: tuple[int, ...]

    def describe(self) -> dict[str, Any]:
        """The fields that identify the cell: in its result JSON and the first columns of the collated table."""
        return {
            "table": self.table,
            "name": self.name,
            "run": self.run,
            "iteration": self.iteration,
            "sampler": self.sampler,
            "cfg": self.cfg,
            "cfg_scale": self.cfg_scale,
            "nfe": self.nfe,
            "num_samples": self.num_samples,
        }

    def sample_keys(self) -> list[SampleKey]:
        return [
            SampleKey(self.run, s, self.iteration, self.sampler, self.nfe, self.cfg_scale, self.num_samples) for s in self.seeds
        ]


class Grid:
    def __init__(self, preset: str, data: dict[str, Any], results: str | Path = "results") -> None:
        self.preset = preset
        self.data = data
        self.results = Path(results)
        self.root = self.results / data["name"]

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, preset: str, results: str | Path = "results", config_dir: str | Path = CONFIG_DIR) -> Grid:
        path = Path(preset) if preset.endswith((".yaml", ".yml")) else Path(config_dir) / f"{preset}.yaml"
        if not path.is_file():
            choices = sorted(p.stem for p in Path(config_dir).glob("*.yaml") if p.stem != "config")
            raise GridError(f"preset: no grid file {path}; choose one of {choices}")
        data = yaml.safe_load(path.read_text())
        grid = cls(preset, data, results)
        grid.validate(str(path))
        return grid

    def validate(self, where: str = "config") -> None:
        import jsonschema

        schema = yaml.safe_load(SCHEMA.read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(self.data), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            key = ".".join(str(p) for p in e.path) or "(top level)"
            raise GridError(f"{key}: {e.message} (in {where}; schema {SCHEMA.relative_to(REPO)})")
        from dar.models import MODELS, SIZES
        from dar.routing import parse_routing
        from dar.routing.chunks import check_chunk_size
        from dar.train.config import TrainConfig

        train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
        managed = {"data", "out", "routing", "iterations", "milestones", "seed"}
        for k in self.data["train"]:
            if k not in train_keys or k in managed:
                raise GridError(f"train.{k}: not a settable TrainConfig key; valid: {sorted(train_keys - managed)}")
        for name, r in self.data["runs"].items():
            for k in r.get("train", {}):
                if k not in train_keys or k in managed:
                    raise GridError(
                        f"runs.{name}.train.{k}: not a settable TrainConfig key; valid: {sorted(train_keys - managed)}"
                    )
            model = r.get("model", self.data["train"].get("model", "SiT-T/2"))
            if model not in MODELS:
                raise GridError(f"runs.{name}.model: unknown model {model!r}; registered: {', '.join(MODELS)}")
            try:
                spec = parse_routing(r["routing"])
                if spec.kind == "dar":
                    check_chunk_size(spec.chunk, 2 * SIZES[MODELS[model][0]].depth)
            except ValueError as e:
                raise GridError(f"runs.{name}.routing: {e}") from None
        if self.needs_images and "repa" not in self.data:
            raise GridError("repa: runs with repa: true need a top-level repa section (encoder, depth, lambda, ...)")
        for table, spec in self.data["tables"].items():
            for i, run in enumerate(spec["runs"]):
                if run not in self.data["runs"]:
                    raise GridError(
                        f"tables.{table}.runs[{i}]: run {run!r} is not defined under runs (defined: {sorted(self.data['runs'])})"
                    )
                if table == "fig1b":
                    continue  # the training curve keeps the iterations each run reaches
                length = self.data["runs"][run]["iterations"]
                for it in spec.get("iterations", []):
                    if it > length:
                        raise GridError(
                            f"tables.{table}.iterations: {it} is past the length of run {run!r} "
                            f"(runs.{run}.iterations = {length})"
                        )

    # ------------------------------------------------------------------- runs
    @cached_property
    def cells(self) -> list[Cell]:
        ev, out = self.data["evaluation"], []
        seeds = tuple(self.data["seeds"])
        for table in TABLES:
            spec = self.data["tables"].get(table)
            if not spec:
                continue
            samplers = spec.get("samplers", ["ode"])
            cfgs = spec.get("cfg", [False])
            n = ev.get("fig1b_num_samples", ev["num_samples"]) if table == "fig1b" else ev["num_samples"]
            for run in spec["runs"]:
                length = self.data["runs"][run]["iterations"]
                its = [length] if "iterations" not in spec else [i for i in spec["iterations"] if i <= length]
                for it in its:
                    for sampler in samplers:
                        for cfg in cfgs:
                            scale = float(ev["cfg_scale"]) if cfg else 1.0
                            if table == "table1":
                                name = f"{run}_{sampler}_cfg{fmt_cfg(scale)}"
                            else:
                                name = f"{run}_it{it}_{sampler}_cfg{fmt_cfg(scale)}"
                            out.append(Cell(table, name, run, it, sampler, cfg, scale, ev["nfe"], n, seeds))
        return out

    @cached_property
    def runs(self) -> dict[tuple[str, int], Run]:
        needed: dict[str, set[int]] = {}
        for c in self.cells:
            needed.setdefault(c.run, set()).add(c.iteration)
        out = {}
        for name, r in self.data["runs"].items():
            train = {**self.data["train"], **r.get("train", {})}
            if "model" in r:
                train["model"] = r["model"]
            milestones = tuple(sorted(needed.get(name, set()) | {r["iterations"]}))
            for seed in self.data["seeds"]:
                out[(name, seed)] = Run(
                    name,
                    seed,
                    train.get("model", "SiT-T/2"),
                    r["routing"],
                    r["iterations"],
                    milestones,
                    train,
                    r.get("label", name),
                    r.get("repa", False),
                )
        return out

    # ------------------------------------------------------------------ paths
    def run_dir(self, run: str, seed: int) -> Path:
        return self.root / "runs" / run / f"seed{seed}"

    def checkpoint(self, run: str, seed: int, iteration: int) -> Path:
        return self.run_dir(run, seed) / "checkpoints" / f"step_{iteration:07d}.pt"

    def samples_path(self, key: SampleKey) -> Path:
        return self.root / "samples" / key.run / f"seed{key.seed}" / f"{key.stem}.npz"

    def cell_path(self, cell: Cell) -> Path:
        return self.root / "cells" / cell.table / f"{cell.name}.json"

    def cell(self, table: str, name: str) -> Cell:
        for c in self.cells:
            if c.table == table and c.name == name:
                return c
        raise GridError(
            f"no cell {table}/{name} in preset {self.preset}; list them with: python -m dar cells --preset {self.preset}"
        )

    @property
    def latents_dir(self) -> Path:
        return self.root / "latents"

    @property
    def assets_dir(self) -> Path:
        return Path(self.data.get("assets_dir", "assets"))

    @property
    def features(self) -> str:
        return self.data["evaluation"]["features"]

    @property
    def digits_net(self) -> Path:
        """Weights of the digits feature network (shared by every digits-scale preset)."""
        return self.results / "digits_features" / "digits_net.pt"

    @property
    def reference(self) -> Path:
        """Reference statistics: cached from a dataset (digits) or the ADM reference batch (inception)."""
        ref = self.data["evaluation"].get("reference", "digits-train")
        if self.features == "digits":
            return self.root / "reference" / f"{ref}.npz"
        return self.assets_dir / ref

    def eval_path(self, cell: Cell, seed: int) -> Path:
        return self.root / "evals" / cell.table / cell.name / f"seed{seed}.json"

    @property
    def table_path(self) -> Path:
        return self.root / "table.csv"

    def sample_keys(self) -> list[SampleKey]:
        return sorted({k for c in self.cells for k in c.sample_keys()}, key=lambda k: (k.run, k.seed, k.stem))

    # ------------------------------------------------------------- job flags
    @property
    def needs_images(self) -> bool:
        """The latent cache keeps clean images when a run trains with REPA (its encoder reads them)."""
        return any(r.get("repa", False) for r in self.data["runs"].values())

    @property
    def repa_weights(self) -> Path:
        """Weights of REPA's frozen encoder: the digits network, or DINOv2 ViT-B/14 from the assets."""
        enc = self.data.get("repa", {}).get("encoder", "dinov2")
        return self.digits_net if enc == "digits" else self.assets_dir / "dinov2_vitb14_pretrain.pth"

    def train_args(self, run: str, seed: int) -> list[str]:
        r = self.runs[(run, seed)]
        flags = {
            **r.train,
            "routing": r.routing,
            "iterations": r.iterations,
            "milestones": ",".join(map(str, r.milestones)),
            "seed": seed,
        }
        if r.repa:
            rp = self.data.get("repa", {})
            flags.update(repa=True, repa_encoder=rp.get("encoder", "dinov2"), repa_encoder_weights=self.repa_weights)
            for key in ("depth", "lambda", "projector_dim", "state"):
                if key in rp:
                    flags[f"repa_{key}"] = rp[key]
        flags.update(data=str(self.latents_dir), out=str(self.run_dir(run, seed)))
        return [item for k, v in flags.items() for item in (f"--{k.replace('_', '-')}", _flag(v))]

    def sample_args(self, key: SampleKey) -> list[str]:
        ev = self.data["evaluation"]
        ch = ev.get("cfg_channels", 3)
        flags = {
            "checkpoint": self.checkpoint(key.run, key.seed, key.iteration),
            "out": self.samples_path(key),
            "sampler": key.sampler,
            "nfe": key.nfe,
            "cfg_scale": key.cfg_scale,
            "cfg_channels": "none" if ch is None else ch,
            "num_samples": key.num_samples,
            "seed": key.seed,
            "batch_size": ev.get("batch_size", 64),
            "shard_size": ev.get("shard_size", 1000),
        }
        if self.data["train"].get("device"):
            flags["device"] = self.data["train"]["device"]
        return [item for k, v in flags.items() for item in (f"--{k.replace('_', '-')}", _flag(v))]


def load_for_cli(preset: str, results: str | Path) -> Grid | None:
    """Grid.load for a command's main(): on a GridError, print it to stderr and return None (exit status 2)."""
    try:
        return Grid.load(preset, results=results)
    except GridError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def _flag(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar cells", description="Every table cell of a preset, its target path and the command that (re)makes it."
    )
    p.add_argument("--preset", default="digits", help="grid file workflow/config/<preset>.yaml (default: digits)")
    p.add_argument("--table", help="only this table (table1..table4, fig1b)")
    p.add_argument("--runs", action="store_true", help="list the training runs instead")
    args = p.parse_args(argv)
    try:
        grid = Grid.load(args.preset)
    except GridError as e:
        print(f"error: {e}")
        return 2
    if args.runs:
        for (name, seed), r in grid.runs.items():
            print(
                f"{name:<12} seed {seed}  {r.model:<12} {r.routing:<18} {r.iterations:>8} it  "
                f"milestones {list(r.milestones)}  -> {grid.run_dir(name, seed)}"
            )
        return 0
    for c in grid.cells:
        if args.table and c.table != args.table:
            continue
        path = grid.cell_path(c)
        print(
            f"{c.table:<7} {c.name:<34} {path}\n        rerun: snakemake {path} --force --cores 2"
            + (f" --config preset={args.preset}" if args.preset != "digits" else "")
        )
    return 0
