"""What the report's provenance section shows: the resolved grid, every training run, the
protocol of every cell and seed, package versions and commits, and run times per job.

Read from the workflow's files only (results/<preset>/...): cell JSONs (protocols),
runs/<run>/seed<k>/{config.json, metrics.jsonl, done.json}, benchmarks/<rule>/<job>.tsv (Snakemake's
record of each job's wall time, peak memory and resources: dar/jobcost.py).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd
import yaml

from dar.io import read_jsonl
from dar.paper import paper_data
from dar.plan import Plan
from dar.provenance import git_commit, package_versions


def resolved_config(plan: Plan) -> str:
    """The grid file as written (its source is shown beside it)."""
    return plan.preset.text


def short(sha: str | None, n: int = 12) -> str:
    return (sha or "")[:n]


# --------------------------------------------------------------- training runs
@dataclass
class RunInfo:
    run: str
    seed: int
    label: str
    model: str
    routing: str
    iterations: int
    status: str  # done | started | not started
    step: int | None = None
    sec_per_step: float | None = None
    final_loss: float | None = None
    config: str = ""  # the run's resolved TrainConfig (config.json), as YAML
    fingerprint: str = ""  # its identity's hash: the run folder's name ends with it


def training_runs(plan: Plan) -> list[RunInfo]:
    out = []
    for (run, seed), r in plan.runs.items():
        d = r.dir
        info = RunInfo(run, seed, r.label, r.model, r.routing, r.iterations, "not started", fingerprint=r.fingerprint)
        if (d / "config.json").is_file():
            info.status = "started"
            cfg = json.loads((d / "config.json").read_text())
            info.config = yaml.safe_dump(cfg.get("config", cfg), sort_keys=True)
        if (d / "metrics.jsonl").is_file():
            recs = read_jsonl(d / "metrics.jsonl")
            if recs:
                info.step, info.final_loss = recs[-1].get("step"), recs[-1].get("loss")
                times = [x["sec_per_step"] for x in recs if isinstance(x.get("sec_per_step"), (int, float))]
                info.sec_per_step = statistics.median(times) if times else None
        if (d / "done.json").is_file():
            info.status = "done"
        out.append(info)
    return out


# ------------------------------------------------------------ cell protocols
@dataclass
class Protocol:
    """One seed of one done cell: everything users ask about when numbers differ."""

    table: str
    cell: str
    seed: object
    model: str = ""
    routing: str = ""
    iteration: object = ""
    sampler: str = ""
    nfe: str = ""
    cfg_scale: object = ""
    cfg_channels: object = ""
    num_samples: object = ""
    reference: str = ""
    reference_sha256: str = ""
    metric: str = ""  # feature extractor and its weights
    metric_sha256: str = ""
    torch_fidelity: str = ""
    git_commit: str = ""
    sample_seconds: float | None = None


def cell_protocols(plan: Plan, df: pd.DataFrame) -> tuple[list[Protocol], list[dict], list[str]]:
    """Protocol rows, the recorded environments, and notes about cell files that could not be read."""
    rows, envs, notes = [], [], []
    done = df[df["status"] == "done"] if "status" in df.columns else df.iloc[0:0]
    for rec in done.to_dict(orient="records"):
        path = plan.cell(rec["table"], rec["name"]).path
        try:
            cell = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            notes.append(f"{path}: {e}")
            continue
        for i, p in enumerate(cell.get("protocols") or [{}]):
            fe = p.get("feature_extractor", {})
            ref = p.get("reference", {})
            nfe = p.get("nfe_used") or [p.get("nfe", cell.get("nfe"))]
            rows.append(
                Protocol(
                    table=cell["table"],
                    cell=cell["name"],
                    seed=p.get("seed", cell.get("seeds", ["?"])[i] if i < len(cell.get("seeds", [])) else "?"),
                    model=p.get("model", cell.get("model", "")),
                    routing=p.get("routing", cell.get("routing", "")),
                    iteration=p.get("iteration", cell.get("iteration", "")),
                    sampler=p.get("sampler", cell.get("sampler", "")),
                    nfe=", ".join(str(x) for x in nfe),
                    cfg_scale=p.get("cfg_scale", cell.get("cfg_scale", "")),
                    cfg_channels=p.get("cfg_channels", ""),
                    num_samples=p.get("num_samples", cell.get("num_samples", "")),
                    reference=str(ref.get("path", "")),
                    reference_sha256=str(ref.get("sha256", "")),
                    metric=f"{fe.get('name', '?')} ({fe.get('feature_space', cell.get('feature_space', '?'))} features)",
                    metric_sha256=str(fe.get("weights_sha256", "")),
                    torch_fidelity=str(p.get("torch_fidelity", "")),
                    git_commit=str(p.get("git_commit", cell.get("git_commit", ""))),
                    sample_seconds=p.get("wall_seconds_last_rank"),
                )
            )
            if p.get("environment"):
                envs.append(p["environment"])
    return rows, envs, notes


# ------------------------------------------------------------------ versions
@dataclass
class Package:
    name: str
    here: str  # where the report was rendered
    recorded: list[str] = field(default_factory=list)  # versions the cells' jobs ran with

    @property
    def differs(self) -> bool:
        return bool(self.recorded) and set(self.recorded) != {self.here}


def package_table(envs: list[dict]) -> list[Package]:
    here = package_versions()
    names = list(here) + sorted({k for e in envs for k in e.get("packages", {})} - set(here))
    return [
        Package(n, here.get(n, "not installed"), sorted({e["packages"][n] for e in envs if n in e.get("packages", {})}))
        for n in names
    ]


def commits(protocols: list[Protocol]) -> dict[str, object]:
    recorded = sorted({p.git_commit for p in protocols if p.git_commit})
    return {
        "render": git_commit(),
        "cells": recorded,
        "dirty": any(c.endswith("-dirty") for c in recorded),
    }


# ------------------------------------------------------------------ job costs
@dataclass
class JobCost:
    rule: str
    name: str  # the record's file name under results/<preset>/benchmarks/<rule>/
    started: str  # UTC
    seconds: float
    max_rss_mb: float
    cluster: str
    gpus: int
    gpu_hours: float
    planned_seconds: float | None = None  # the compute plan's wall time for this job (training jobs)


def plan_source(plan: Plan):
    """The compute plan the report shows beside what was spent, and where its step times come from: run-bench's
    measured step times when the preset has them (results/<preset>/bench/run-bench.json), else the paper's stated
    step time at paper scale; None at digits scale without a measurement."""
    from dar import planner

    try:
        if plan.run_bench.is_file():
            return planner.make_plan(plan, bench=planner.read_bench(plan.run_bench), max_gpus=None)
        if plan.preset.scale != "digits":
            c = paper_data()["compute"]
            batch = next(iter(plan.runs.values())).config.global_batch
            stated = planner.stated_throughput(
                c["sec_per_step"], planner.profile_gpus("train"), batch, f"paper App. C.2: {c['sec_per_step']:g} s/step"
            )
            return planner.make_plan(plan, stated=stated)
    except planner.PlanError:
        return None
    return None


def job_costs(plan: Plan) -> tuple[list[JobCost], dict, str]:
    """Every job's cost from its Snakemake benchmark record (dar/jobcost.py), the per-rule sums, and the plan's
    source (or why there is none). Training jobs carry the compute plan's wall time beside the spent one."""
    from dar.jobcost import read_records, stage_breakdown

    records = read_records(plan.benchmarks_dir) + read_records(plan.shared_benchmarks_dir)
    cp = plan_source(plan)
    planned = {}
    if cp is not None:
        for t in cp.trains:
            planned[f"{t.run}_{plan.runs[(t.run, t.seed)].dir.name}"] = t.wall_s
    rows = [
        JobCost(
            r.rule,
            r.name,
            datetime.fromtimestamp(r.start, timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            r.wall_s,
            r.max_rss_mb,
            r.cluster,
            r.gpus,
            r.gpu_hours,
            planned.get(r.name) if r.rule == "train" else None,
        )
        for r in sorted(records, key=lambda r: r.start)
    ]
    if cp is not None:
        source = cp.trains[0].source if cp.trains else ""
    elif plan.preset.scale == "digits":
        source = f"none yet: python -m dar run-bench --preset {plan.preset_arg} writes {plan.run_bench}, the plan's step times"
    else:
        source = "none"
    return rows, (stage_breakdown(records, cores=1) if records else {}), source


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"
