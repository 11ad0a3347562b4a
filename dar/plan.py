"""The plan: a grid preset compiled once into typed specs of every job, with their paths and fingerprints.

    plan = Plan.load("digits")               # dar/presets/digits.yaml (dar/grid.py validates it)
    plan.runs[("static-c4", 0)]              # Run: its TrainConfig, identity, fingerprint, folder
    plan.samples                             # SampleSet: its SampleConfig, identity, fingerprint, file
    plan.cells                               # Cell: its sample sets, its CellConfig, its result file
    plan.diagnostics                         # Diagnostic per figure (Figs. 2, 3, 5, chunk-size theory)
    plan.write_job_configs()                 # the one writer of job config files (the workflow calls it)

Config flows one way: grid -> this compiler -> one resolved config file per job
(`jobs/...json`, read by the job through `--config` and nothing else) -> artefacts
that record the identity and fingerprint they were made under (dar/fingerprint.py)
-> cells -> collated table -> report. Every path and name is made here.

Layout under <results>/<preset>/ (a fingerprint is 12 hex digits):

    jobs/<kind>/<name>.json                        the resolved config of every job
    latents/<cache fp>/                            latent cache (dar.data.cache)
    runs/<run>/seed<k>-<run fp>/                   training run: checkpoints/, metrics.jsonl, done.json
    samples/<run>/seed<k>/it<i>_<sampler>_nfe<n>_cfg<w>_n<N>-<sample fp>.npz    (+ .json sidecar)
    evals/<table>/<cell>/seed<k>.json              per-seed metrics
    cells/<table>/<cell>.json                      a table cell over its seeds (readable name: the target users ask for)
    diagnostics/<figure>.json, bench/kernel.json, table.csv, logs/
    benchmarks/<rule>/<job>.tsv                    Snakemake's benchmark record of every job (wall time, max RSS)

and under <results>/shared/ what every preset shares (never keyed by preset): the digits
feature network and the digits reference statistics, their job configs and submitit logs.

A run's fingerprint hashes what changes its weights (TrainConfig.identity: model,
routing, hyper-parameters, seed, data; not the run length, paths or intervals), so
a changed config names a new run folder and trains it, and finished runs under the
old config stay where they are. A sample set's fingerprint hashes its checkpoint's
identity (run fingerprint, iteration) and the sampling settings; a cell's hashes its
sample sets and the evaluation's reference and feature space.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dar import grid as grid_file
from dar.cell import CellConfig, cell_identity
from dar.config import from_dict, to_dict
from dar.data.cache import CacheConfig
from dar.fingerprint import fingerprint
from dar.grid import GridError
from dar.io import write_json_if_changed
from dar.metrics.digits_net import WEIGHTS_NAME
from dar.paper import comparable_scale
from dar.sampling.config import SampleConfig
from dar.train.config import TrainConfig

TABLES = ("table1", "table2", "table3", "table4", "fig1b", "zoo")
SHARED = "shared"  # <results>/shared: assets every preset shares
SAMPLE_JOBS = ("per-set", "per-run")  # evaluation.sample_jobs: how sample sets are grouped into sampling jobs
CELL_JOBS = ("per-cell", "per-table")  # evaluation.cell_jobs: how table cells are grouped into evaluation jobs
BENCHMARKS = "benchmarks"  # <root>/benchmarks/<rule>/<job>.tsv: Snakemake's per-job wall time and memory
DIAGNOSTIC_FIGURES = ("fig2", "fig3", "fig5", "chunk_theory")
CHECKPOINT_FIGURES = ("fig2", "fig3", "fig5")
DINOV2_WEIGHTS = "dinov2_vitb14_pretrain.pth"
VAE_FOLDER = "sd-vae-ft-ema"


def fmt_cfg(scale: float) -> str:
    return f"{scale:.1f}" if float(scale).is_integer() else f"{scale:g}"


# --------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class Preset:
    name: str
    scale: str  # digits | imagenet256: what the numbers mean
    description: str
    paper_iteration_scale: int  # paper iteration = ours x this
    text: str  # the grid file as written (the report shows it)
    source: str  # where it was read from

    @property
    def comparable(self) -> bool:
        """Whether this preset's numbers are comparable with the paper's (deltas, verdicts against the paper)."""
        return comparable_scale(self.scale)


@dataclass(frozen=True)
class Evaluation:
    features: str  # digits | inception
    reference: str  # digits-train, or the ADM reference batch's file name in assets_dir
    num_samples: int
    fig1b_num_samples: int
    nfe: int
    cfg_scale: float
    cfg_channels: int | None
    batch_size: int
    shard_size: int
    tolerance: dict
    adm_cross_check: bool  # FID/sFID also by the ADM evaluator's sqrtm, recorded beside them
    sample_jobs: str  # per-set: one sampling job per sample file; per-run: one per run and seed, drawing all its sets
    cell_jobs: str  # per-cell: one evaluation job per cell; per-table: one per table, evaluating all its cells


@dataclass(frozen=True)
class Table:
    name: str
    runs: tuple[str, ...]
    iterations: tuple[int, ...] | None  # None: each run's final iteration
    samplers: tuple[str, ...]
    cfg: tuple[bool, ...]


@dataclass(frozen=True)
class RunDef:
    """One entry of the grid's runs (trained once per seed)."""

    name: str
    label: str
    model: str
    routing: str
    iterations: int
    repa: bool


@dataclass(frozen=True, eq=False)
class Run:
    """One training job: a run of the grid at one seed."""

    name: str
    seed: int
    label: str
    config: TrainConfig
    identity: dict
    fingerprint: str
    job: Path  # its job config file

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def routing(self) -> str:
        return self.config.routing

    @property
    def iterations(self) -> int:
        return self.config.iterations

    @property
    def milestones(self) -> tuple[int, ...]:
        return tuple(self.config.milestones)

    @property
    def repa(self) -> bool:
        return self.config.repa

    @property
    def dir(self) -> Path:
        return Path(self.config.out)

    @property
    def done(self) -> Path:
        return self.dir / "done.json"

    def checkpoint(self, iteration: int) -> Path:
        from dar.train.checkpoint import milestone_path

        return milestone_path(self.dir, iteration)

    def checkpoint_identity(self, iteration: int) -> dict:
        """The identity dar.train.checkpoint.checkpoint_identity reads off this run's checkpoint at `iteration`."""
        return {"run": self.fingerprint, "iteration": iteration}


@dataclass(frozen=True, eq=False)
class SampleSet:
    """One sample file: N samples of one checkpoint under one sampler and guidance setting."""

    run: Run
    iteration: int
    config: SampleConfig
    identity: dict
    fingerprint: str

    @property
    def path(self) -> Path:
        return Path(self.config.out)

    @property
    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    @property
    def seed(self) -> int:
        return self.config.seed


@dataclass(frozen=True, eq=False)
class SampleJob:
    """One sampling job: the sample sets one process draws, in order (dar.sampling.sets). Per-set grids (the paper's
    scale: each set is hours of GPU time) give each set its own job; per-run grids (digits: seconds per set) draw
    every set of a run's seed in one process, loading torch and the model once instead of once per set.

    Its output is a marker, samples/<run>/seed<k>/<key>.done.json, written after every set of the job is: the key
    is the set's file stem (per-set) or `sets-<fingerprint of the sets>` (per-run), so a changed set list names a
    new marker and reruns the job."""

    run: Run
    key: str
    sets: tuple[SampleSet, ...]
    job: Path

    @property
    def marker(self) -> Path:
        return self.run_samples_dir / f"{self.key}.done.json"

    @property
    def run_samples_dir(self) -> Path:
        return self.sets[0].path.parent

    def config(self) -> dict:
        """The job's resolved config: each set's SampleConfig and the identity its file must record."""
        return {"out": str(self.marker), "sets": [{"config": to_dict(s.config), "identity": s.identity} for s in self.sets]}


@dataclass(frozen=True, eq=False)
class Cell:
    """One table cell (or Fig. 1b point): metrics of one run's milestone over the seeds."""

    table: str
    name: str
    run: str
    label: str
    iteration: int
    sampler: str
    cfg: bool
    cfg_scale: float
    nfe: int
    num_samples: int
    seeds: tuple[int, ...]
    samples: tuple[SampleSet, ...]
    config: CellConfig
    fingerprint: str
    job: Path

    @property
    def path(self) -> Path:
        return Path(self.config.out)

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


@dataclass(frozen=True, eq=False)
class CellJob:
    """One evaluation job: the cells one process evaluates, in order (dar/cellgroup.py). Per-cell grids (the paper's
    scale: a cell is minutes of Inception features on a GPU) give each cell its own job (`python -m dar cell`, the
    workflow's `cell` rule); per-table grids (digits: a cell evaluates in about a second, while starting a process
    that imports torch and torch-fidelity took five) evaluate every cell of a table in one process, a rule
    `cells_<table>` whose outputs are the table's cell JSONs. Either way each cell's JSON is what `python -m dar
    cell` writes for it alone."""

    key: str  # the table (per-table), or <table>/<name> (per-cell)
    cells: tuple[Cell, ...]
    job: Path

    def config(self) -> dict:
        return {"cells": [to_dict(c.config) for c in self.cells]}


@dataclass(frozen=True, eq=False)
class Diagnostic:
    figure: str
    config: Any  # dar.diagnostics.job.DiagnoseConfig
    inputs: tuple[str, ...]  # files that must exist first (the Table 4 cells; chunk-size theory)
    needs: tuple[str, ...]  # files named by fingerprint that must exist first (the cache, done.json of its runs)
    runs: tuple[tuple[str, Run, int], ...]  # (role, run, iteration) of a checkpoint figure
    job: Path

    @property
    def path(self) -> Path:
        return Path(self.config.out)

    @property
    def png(self) -> Path:
        return self.path.with_suffix(".png")


@dataclass(frozen=True)
class SharedJob:
    """A job whose output every preset shares (the digits feature network, reference statistics)."""

    name: str
    command: str  # the `python -m dar` command
    config: dict  # its flags as argparse dests (dar.config.parse_with_config)
    output: Path
    job: Path


# --------------------------------------------------------------------------- the plan
class Plan:
    def __init__(self, preset_arg: str, data: dict[str, Any], text: str, source: str, results: str | Path = "results") -> None:
        self._data = data  # the validated grid; private: every consumer asks the typed specs below
        self.preset_arg = preset_arg  # how the preset was named (name or path): for rerun commands
        self.results = Path(results)
        self.preset = Preset(
            name=data["name"],
            scale=data["scale"],
            description=data.get("description", ""),
            paper_iteration_scale=int(data.get("paper_iteration_scale", 1)),
            text=text,
            source=source,
        )
        self.root = self.results / self.preset.name
        self.shared_root = self.results / SHARED
        # every number from the grid is typed here (the schema's 'integer' admits 4.0, which would hash apart from 4)
        self.seeds = tuple(int(x) for x in data["seeds"])
        ev = data["evaluation"]
        self.evaluation = Evaluation(
            features=ev["features"],
            reference=ev.get("reference", "digits-train"),
            num_samples=int(ev["num_samples"]),
            fig1b_num_samples=int(ev.get("fig1b_num_samples", ev["num_samples"])),
            nfe=int(ev["nfe"]),
            cfg_scale=float(ev["cfg_scale"]),
            cfg_channels=None if ev.get("cfg_channels", 3) is None else int(ev.get("cfg_channels", 3)),
            batch_size=int(ev.get("batch_size", 64)),
            shard_size=int(ev.get("shard_size", 1000)),
            tolerance=dict(ev.get("tolerance") or {}),
            adm_cross_check=bool(ev.get("adm_cross_check", True)),
            sample_jobs=ev.get("sample_jobs", SAMPLE_JOBS[0]),
            cell_jobs=ev.get("cell_jobs", CELL_JOBS[0]),
        )
        # a rehearsal makes random-weight stand-ins of every asset and its data under results/<name>/assets
        self.rehearsal = dict(data["rehearsal"]) if "rehearsal" in data else None
        self.assets_dir = self.root / "assets" if self.rehearsal is not None else Path(data.get("assets_dir", "assets"))
        self.tables = {
            name: Table(
                name,
                tuple(spec["runs"]),
                tuple(int(i) for i in spec["iterations"]) if "iterations" in spec else None,
                tuple(spec.get("samplers", ["ode"])),
                tuple(spec.get("cfg", [False])),
            )
            for name, spec in data["tables"].items()
        }
        default_model = data["train"].get("model", "SiT-T/2")
        self.run_defs = {
            name: RunDef(
                name,
                r.get("label", name),
                r.get("model", default_model),
                r["routing"],
                int(r["iterations"]),
                r.get("repa", False),
            )
            for name, r in data["runs"].items()
        }
        self.kernel_bench_device = data.get("kernel_bench", {}).get("device", "cuda")
        self.kernel_bench_methods = tuple(data.get("kernel_bench", {}).get("methods", ()))
        self.cache = self._cache_config()
        self.cache_fingerprint = fingerprint(self.cache.identity())
        self._diag = data.get("diagnostics") or None
        self._cell_keys = self._cell_keys_of_tables()
        self.runs: dict[tuple[str, int], Run] = {
            (name, seed): self._run(name, seed) for name in self.run_defs for seed in self.seeds
        }
        self.samples: list[SampleSet] = []
        self._samples_by_path: dict[Path, SampleSet] = {}
        self.cells: list[Cell] = [self._cell(*key) for key in self._cell_keys]
        self.sample_jobs: list[SampleJob] = self._sample_jobs()
        self._sample_job_of = {s.path: job for job in self.sample_jobs for s in job.sets}
        self.cell_jobs: list[CellJob] = self._cell_jobs()
        self.diagnostics: dict[str, Diagnostic] = {**(self._diagnostics() if self._diag else {}), **self._zoo_diagnostics()}

    @classmethod
    def load(cls, preset: str, results: str | Path = "results") -> Plan:
        data, text, path = grid_file.load(preset)
        return cls(preset, data, text, str(path) if path else preset, results)

    # ------------------------------------------------------------------ paths
    @property
    def latents_dir(self) -> Path:
        return self.root / "latents" / self.cache_fingerprint

    @property
    def table_path(self) -> Path:
        return self.root / "table.csv"

    @property
    def claims_path(self) -> Path:
        """The paper's claims judged on this preset's cells and diagnostics (python -m dar claims)."""
        return self.root / "claims.json"

    @property
    def kernel_bench(self) -> Path:
        return self.root / "bench" / "kernel.json"

    @property
    def run_bench(self) -> Path:
        """python -m dar run-bench's JSON: the stage breakdown and measured step times (the report's plan source)."""
        return self.root / "bench" / "run-bench.json"

    @property
    def report_page(self) -> Path:
        return Path("reports") / self.preset.name / "index.html"

    @property
    def report_figures(self) -> Path:
        """The page's figures as PNG files (python -m dar report --figures), the ones `snakemake --report` shows."""
        return self.report_page.parent / "figures"

    @property
    def submitit(self) -> Path:
        return self.root / "submitit"

    @property
    def digits_net(self) -> Path:
        """Weights of the digits feature network (shared by every digits-scale preset)."""
        return self.shared_root / "digits_features" / WEIGHTS_NAME

    @property
    def reference(self) -> Path:
        """Reference statistics: cached from a dataset (digits, shared) or the ADM reference batch (inception)."""
        if self.evaluation.features == "digits":
            return self.shared_root / "reference" / f"{self.evaluation.reference}.npz"
        return self.assets_dir / self.evaluation.reference

    @property
    def assets_marker(self) -> Path:
        """Made once every asset is in assets_dir (fetched, or for a rehearsal made as stand-ins)."""
        return self.assets_dir / ".fetched"

    @property
    def rehearsal_assets_config(self) -> dict:
        """The `python -m dar rehearsal-assets` settings of a rehearsal preset."""
        r = self.rehearsal or {}
        return {"dest": str(self.assets_dir), "vae": r.get("vae", "narrow"), "classes": int(r.get("classes", 4)),
                "per_class": int(r.get("per_class", 24))}  # fmt: skip

    @property
    def vae(self) -> Path:
        return self.assets_dir / VAE_FOLDER

    @property
    def needs_images(self) -> bool:
        """The latent cache keeps clean images when a run trains with REPA (its encoder reads them)."""
        return any(r.repa for r in self.run_defs.values())

    @property
    def needs_assets(self) -> bool:
        """Whether any job reads the fetched pretrained assets (VAE, Inception, ADM batch, DINOv2)."""
        repa_dinov2 = self.needs_images and self._data.get("repa", {}).get("encoder") == "dinov2"
        return self.cache.encoder == "sd-vae" or self.evaluation.features == "inception" or repa_dinov2

    @property
    def repa_encoder(self) -> str | None:
        return self._data["repa"].get("encoder", "dinov2") if "repa" in self._data else None

    @property
    def repa_weights(self) -> Path | None:
        """Weights of REPA's frozen encoder: the digits network, or DINOv2 ViT-B/14 from the assets."""
        if self.repa_encoder is None:
            return None
        return self.digits_net if self.repa_encoder == "digits" else self.assets_dir / DINOV2_WEIGHTS

    def job_path(self, kind: str, name: str) -> Path:
        return self.root / "jobs" / kind / f"{name}.json"

    @property
    def benchmarks_dir(self) -> Path:
        """Snakemake's `benchmark:` records of this preset's jobs, one folder per rule (dar.runbench reads them)."""
        return self.root / BENCHMARKS

    @property
    def shared_benchmarks_dir(self) -> Path:
        return self.shared_root / BENCHMARKS

    def sample_job(self, marker: str | Path) -> SampleJob:
        for job in self.sample_jobs:
            if job.marker == Path(marker):
                return job
        raise GridError(f"{marker} is not a sampling job of the {self.preset.name} grid as it is now")

    def sample_job_of(self, sample_set: SampleSet) -> SampleJob:
        """The sampling job that draws `sample_set`."""
        return self._sample_job_of[sample_set.path]

    def run_by_dir(self, folder: str | Path) -> Run:
        for r in self.runs.values():
            if r.dir == Path(folder):
                return r
        raise GridError(
            f"{folder} is not a run folder of the {self.preset.name} grid as it is now (a run of an earlier config "
            f"keeps its folder; list the current ones with python -m dar cells --preset {self.preset_arg} --runs)"
        )

    def cell(self, table: str, name: str) -> Cell:
        for c in self.cells:
            if c.table == table and c.name == name:
                return c
        raise GridError(
            f"no cell {table}/{name} in preset {self.preset.name}; list them with: python -m dar cells --preset {self.preset_arg}"
        )

    def rerun_command(self, target: str | Path, *flags: str) -> str:
        return grid_file.snakemake_command(target, self.preset_arg, self.results, *flags)

    # ------------------------------------------------------------------ compile
    def _cache_config(self) -> CacheConfig:
        d = self._data["data"]
        kw: dict[str, Any] = {k: d[k] for k in ("dataset", "encoder", "root", "image_size", "shard_size", "batch_size") if k in d}
        if self.rehearsal is not None:
            kw["root"] = str(self.assets_dir / "imagefolder")
        kw["store_images"] = any(r.get("repa", False) for r in self._data["runs"].values())
        if d["encoder"] == "sd-vae":
            kw["vae_path"] = str(self.assets_dir / VAE_FOLDER)
        cfg = from_dict(CacheConfig, kw, where="data")
        return from_dict(CacheConfig, {**to_dict(cfg), "out": str(self.root / "latents" / fingerprint(cfg.identity()))})

    def _cell_keys_of_tables(self) -> list[tuple]:
        out = []
        for table in TABLES:
            spec = self.tables.get(table)
            if not spec:
                continue
            for run in spec.runs:
                length = self.run_defs[run].iterations
                its = [length] if spec.iterations is None else [i for i in spec.iterations if i <= length]
                for it in its:
                    for sampler in spec.samplers:
                        for cfg in spec.cfg:
                            out.append((table, run, it, sampler, cfg))
        return out

    def _milestones(self, name: str) -> list[int]:
        needed = {it for t, run, it, _, _ in self._cell_keys if run == name} | {self.run_defs[name].iterations}
        if self._diag:
            if name in self._diag["runs"] and self._diag.get("iteration"):
                it = int(self._diag["iteration"])
                if it > self.run_defs[name].iterations:
                    raise GridError(
                        f"diagnostics.iteration: {it} is past the length of run {name!r} (runs.{name}.iterations = "
                        f"{self.run_defs[name].iterations}); choose a step both runs reach, or drop the key"
                    )
                needed.add(it)
        return sorted(needed)

    def train_config(self, name: str, seed: int, **overrides: Any) -> TrainConfig:
        """The resolved TrainConfig of run `name` at `seed` (its folder named by its fingerprint), with overrides."""
        if name not in self.run_defs:
            raise GridError(f"run: {name!r} is not a run of preset {self.preset.name} (runs: {sorted(self.run_defs)})")
        d, r = self._data, self._data["runs"][name]
        kw = {**d["train"], **r.get("train", {})}
        kw.update(
            model=self.run_defs[name].model,
            routing=r["routing"],
            iterations=self.run_defs[name].iterations,
            milestones=self._milestones(name),
            seed=seed,
            data=str(self.latents_dir),
        )
        if r.get("repa", False):
            rp = d["repa"]
            kw.update(repa=True, repa_encoder=self.repa_encoder, repa_encoder_weights=str(self.repa_weights))
            for key in ("depth", "lambda", "projector_dim", "state"):
                if key in rp:
                    kw[f"repa_{key}"] = rp[key]
        kw.update(overrides)
        cfg = from_dict(TrainConfig, kw, where=f"runs.{name}")
        cfg.validate()
        if "out" not in overrides:
            fp = fingerprint(cfg.identity(self.cache.data_identity()))
            cfg.out = str(self.root / "runs" / name / f"seed{seed}-{fp}")
        return cfg

    def _run(self, name: str, seed: int) -> Run:
        cfg = self.train_config(name, seed)
        identity = cfg.identity(self.cache.data_identity())
        return Run(
            name,
            seed,
            self.run_defs[name].label,
            cfg,
            identity,
            fingerprint(identity),
            self.job_path("train", f"{name}_seed{seed}"),
        )

    def _sample_set(self, run: Run, iteration: int, sampler: str, cfg_scale: float, num_samples: int) -> SampleSet:
        ev = self.evaluation
        cfg = from_dict(
            SampleConfig,
            dict(
                checkpoint=str(run.checkpoint(iteration)),
                sampler=sampler,
                nfe=ev.nfe,
                cfg_scale=cfg_scale,
                cfg_channels=ev.cfg_channels,
                num_samples=num_samples,
                seed=run.seed,
                batch_size=ev.batch_size,
                shard_size=ev.shard_size,
                device=run.config.device,
            ),
            where="evaluation",
        )
        identity = cfg.identity(run.checkpoint_identity(iteration))
        fp = fingerprint(identity)
        stem = f"it{iteration:07d}_{sampler}_nfe{ev.nfe}_cfg{fmt_cfg(cfg_scale)}_n{num_samples}-{fp}"
        cfg.out = str(self.root / "samples" / run.name / f"seed{run.seed}" / f"{stem}.npz")
        path = Path(cfg.out)
        if path not in self._samples_by_path:  # one sampling job serves every cell that needs the file
            s = SampleSet(run, iteration, cfg, identity, fp)
            self._samples_by_path[path] = s
            self.samples.append(s)
        return self._samples_by_path[path]

    def _sample_jobs(self) -> list[SampleJob]:
        """Group the sample sets into sampling jobs (evaluation.sample_jobs), in the plan's order."""
        groups: dict[tuple, list[SampleSet]] = {}
        for s in self.samples:
            key = (s.run.name, s.run.seed) if self.evaluation.sample_jobs == "per-run" else (s.path,)
            groups.setdefault(key, []).append(s)
        jobs = []
        for sets in groups.values():
            run = sets[0].run
            per_set = self.evaluation.sample_jobs == "per-set"
            key = sets[0].path.stem if per_set else "sets-" + fingerprint([s.fingerprint for s in sets])
            jobs.append(SampleJob(run, key, tuple(sets), self.job_path("sample", f"{run.name}_seed{run.seed}_{key}")))
        return jobs

    def _cell_jobs(self) -> list[CellJob]:
        """Group the cells into evaluation jobs (evaluation.cell_jobs), in the plan's order."""
        if self.evaluation.cell_jobs == "per-cell":
            return [CellJob(f"{c.table}/{c.name}", (c,), c.job) for c in self.cells]
        tables: dict[str, list[Cell]] = {}
        for c in self.cells:
            tables.setdefault(c.table, []).append(c)
        return [CellJob(t, tuple(cells), self.job_path("cell", f"{t}.cells")) for t, cells in tables.items()]

    def cell_job_of(self, cell: Cell) -> CellJob:
        return next(j for j in self.cell_jobs if cell in j.cells)

    def _cell(self, table: str, run: str, iteration: int, sampler: str, cfg: bool) -> Cell:
        ev = self.evaluation
        scale = ev.cfg_scale if cfg else 1.0
        name = (
            f"{run}_{sampler}_cfg{fmt_cfg(scale)}" if table == "table1" else f"{run}_it{iteration}_{sampler}_cfg{fmt_cfg(scale)}"
        )
        n = ev.fig1b_num_samples if table == "fig1b" else ev.num_samples
        sets = tuple(self._sample_set(self.runs[(run, s)], iteration, sampler, scale, n) for s in self.seeds)
        rd = self.run_defs[run]
        config = from_dict(
            CellConfig,
            dict(
                table=table,
                name=name,
                out=str(self.root / "cells" / table / f"{name}.json"),
                preset=self.preset.name,
                scale=self.preset.scale,
                run=run,
                label=rd.label,
                cfg=cfg,
                paper_iteration=iteration * self.preset.paper_iteration_scale,
                expect={"model": rd.model, "routing": rd.routing, "iteration": iteration},
                seeds=list(self.seeds),
                samples=[str(s.path) for s in sets],
                sample_identities=[s.identity for s in sets],
                evals=[str(self.root / "evals" / table / name / f"seed{s}.json") for s in self.seeds],
                features=ev.features,
                reference=str(self.reference),
                reference_name=ev.reference,
                weights=str(self.digits_net) if ev.features == "digits" else None,
                assets_dir=None if ev.features == "digits" else str(self.assets_dir),
                num_samples=n,
                feature_cache=str(self.shared_root / "reference-features") if ev.features == "inception" else None,
                adm_cross_check=ev.adm_cross_check,
                workflow_preset=self.preset_arg,
                workflow_results=str(self.results),
            ),
            where=f"tables.{table}",
        )
        return Cell(
            table, name, run, rd.label, iteration, sampler, cfg, scale, ev.nfe, n, self.seeds, sets, config,
            fingerprint(cell_identity(config)), self.job_path("cell", f"{table}/{name}"),
        )  # fmt: skip

    def _diagnostics(self) -> dict[str, Diagnostic]:
        from dar.diagnostics.job import DiagnoseConfig

        diag, seed = self._diag, self.seeds[0]
        out_dir = self.root / "diagnostics"
        device = diag.get("device", self._data["train"].get("device", "auto"))
        common = {"num_samples": diag["num_samples"], "t_grid": diag["t_grid"], "device": device, "data": str(self.latents_dir)}
        common.update({k: diag[k] for k in ("batch_size", "seed", "probe_alpha", "test_fraction", "layers") if k in diag})
        out = {}
        for figure in CHECKPOINT_FIGURES:
            if figure == "fig5":
                wanted = [("probe", diag["probe_run"], None)]
            else:
                wanted = [(role, run, diag.get("iteration")) for role, run in zip(("baseline", "dar"), diag["runs"])]
            runs = tuple((role, self.runs[(name, seed)], it or self.runs[(name, seed)].iterations) for role, name, it in wanted)
            kw = {**common, "figure": figure, "out": str(out_dir / f"{figure}.json")}
            kw.update({role: str(run.checkpoint(it)) for role, run, it in runs})
            needs = (str(self.latents_dir / "index.json"), *(str(run.done) for _, run, _ in runs))
            out[figure] = Diagnostic(figure, from_dict(DiagnoseConfig, kw), (), needs, runs, self.job_path("diagnose", figure))
        # chunk-size theory: L from the Table 4 runs' model (else the DAR run's); shows the Table 4 FIDs
        t4 = self.tables.get("table4")
        model = self.run_defs[t4.runs[0]].model if t4 else self.run_defs[diag["runs"][-1]].model
        cells = [str(c.path) for c in self.cells if c.table == "table4"]
        kw = {"figure": "chunk_theory", "model": model, "cells": cells, "out": str(out_dir / "chunk_theory.json")}
        out["chunk_theory"] = Diagnostic(
            "chunk_theory", from_dict(DiagnoseConfig, kw), tuple(cells), (), (), self.job_path("diagnose", "chunk_theory")
        )
        return out

    def _zoo_diagnostics(self) -> dict[str, Diagnostic]:
        """zoo_flow: Fig. 2's statistics for every run of the zoo table (first seed, its final milestone), with the
        diagnostics section's pairs settings when the preset has one."""
        from dar.diagnostics.job import DiagnoseConfig

        spec = self.tables.get("zoo")
        if not spec:
            return {}
        diag, seed = self._diag or {}, self.seeds[0]
        runs = tuple(("method", self.runs[(name, seed)], self.runs[(name, seed)].iterations) for name in spec.runs)
        kw = {
            "figure": "zoo_flow",
            "out": str(self.root / "diagnostics" / "zoo_flow.json"),
            "checkpoints": [str(run.checkpoint(it)) for _, run, it in runs],
            "labels": [run.label for _, run, _ in runs],
            "data": str(self.latents_dir),
            "device": diag.get("device", self._data["train"].get("device", "auto")),
        }
        kw.update({k: diag[k] for k in ("num_samples", "t_grid", "batch_size", "seed") if k in diag})
        needs = (str(self.latents_dir / "index.json"), *(str(run.done) for _, run, _ in runs))
        cfg = from_dict(DiagnoseConfig, kw, where="tables.zoo")
        return {"zoo_flow": Diagnostic("zoo_flow", cfg, (), needs, runs, self.job_path("diagnose", "zoo_flow"))}

    # ------------------------------------------------------------------ shared jobs
    @property
    def digits_features_job(self) -> SharedJob:
        out = self.digits_net.parent
        return SharedJob(
            "digits-features",
            "digits-features",
            {"out": str(out)},
            self.digits_net,
            self.shared_root / "jobs" / "digits_features.json",
        )

    def reference_job(self) -> SharedJob:
        cfg = {
            "dataset": self.evaluation.reference,
            "out": str(self.reference),
            "features": "digits",
            "weights": str(self.digits_net),
        }
        return SharedJob(
            f"reference-{self.evaluation.reference}", "reference-stats", cfg, self.reference,
            self.shared_root / "jobs" / f"reference_{self.evaluation.reference}.json",
        )  # fmt: skip

    @property
    def kernel_bench_config(self) -> dict:
        methods = {"methods": list(self.kernel_bench_methods)} if self.kernel_bench_methods else {}
        return {"device": self.kernel_bench_device, "out": str(self.kernel_bench), **methods}

    # ------------------------------------------------------------------ job configs
    def job_configs(self) -> dict[Path, dict]:
        """Every job's resolved config, by the file it is written to."""
        out: dict[Path, dict] = {self.job_path("cache_latents", "cache"): to_dict(self.cache)}
        out.update({r.job: to_dict(r.config) for r in self.runs.values()})
        out.update({j.job: j.config() for j in self.sample_jobs})
        out.update({c.job: to_dict(c.config) for c in self.cells})
        if self.evaluation.cell_jobs == "per-table":
            out.update({j.job: j.config() for j in self.cell_jobs})
        out.update({d.job: to_dict(d.config) for d in self.diagnostics.values()})
        out[self.job_path("kernel_bench", "kernel_bench")] = self.kernel_bench_config
        if self.rehearsal is not None:
            out[self.job_path("rehearsal_assets", "assets")] = self.rehearsal_assets_config
        if self.evaluation.features == "digits" or self.repa_encoder == "digits":
            out[self.digits_features_job.job] = self.digits_features_job.config
        if self.evaluation.features == "digits":
            out[self.reference_job().job] = self.reference_job().config
        return out

    def write_job_configs(self) -> list[Path]:
        """Write every job config whose content changed (atomically); unchanged files keep their mtime, so
        Snakemake reruns exactly the jobs whose config changed. Returns the files written."""
        return [path for path, cfg in self.job_configs().items() if write_json_if_changed(path, cfg)]


def load_for_cli(preset: str, results: str | Path) -> Plan | None:
    """Plan.load for a command's main(): on a bad grid, print it to stderr and return None (exit status 2)."""
    try:
        return Plan.load(preset, results=results)
    except GridError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
