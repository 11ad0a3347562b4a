"""`python -m dar run-bench --preset digits`: where a preset's run spends its time, and each routing's step time.

    python -m dar run-bench --preset digits                 # after `snakemake --cores 2`
    python -m dar run-bench --preset digits --no-steps      # the stage breakdown only

1. Stage breakdown: every job's Snakemake `benchmark:` record (results/<preset>/benchmarks/<rule>/,
   and results/shared/benchmarks/ for the assets every preset shares), summed per rule: jobs, wall
   seconds, CPU seconds, the longest job and the largest peak RSS; then the run's span, from the
   first job's start to the last job's end (each record's file time minus its wall time), and the
   CPU seconds of all jobs over span x cores, the share of the machine the run kept busy.
2. Step times: one optimizer step (forward, backward, AdamW, EMA; dar.train.bench) of every
   (model, routing) of the preset's runs at the preset's batch, on this machine's CPU with one
   thread per job as the workflow's rules run them (`--threads`), residual first and each
   routing's time relative to it. REPA runs are timed without REPA's encoder and loss.

A benchmark, not a test: the numbers depend on the machine and its load. Record them with the
date and the machine (README, Measured).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dar.io import write_json
from dar.plan import Plan, load_for_cli


@dataclass(frozen=True)
class JobRecord:
    rule: str
    name: str
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    end: float  # the record's file time: the job's end

    @property
    def start(self) -> float:
        return self.end - self.wall_s


def _number(row: dict, key: str) -> float:
    try:
        return float(row.get(key, "nan"))
    except ValueError:  # Snakemake writes NA where psutil could not measure
        return float("nan")


def read_records(folder: Path) -> list[JobRecord]:
    """Every `<rule>/<job>.tsv` under `folder` (Snakemake's benchmark files: the last row is the latest run)."""
    out = []
    for path in sorted(folder.glob("*/*.tsv")):
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]
        wall, cpu, rss = (_number(row, key) for key in ("s", "cpu_time", "max_rss"))
        out.append(JobRecord(path.parent.name, path.stem, wall, cpu, rss, path.stat().st_mtime))
    return out


def stage_breakdown(records: list[JobRecord], cores: int) -> dict:
    """Per rule: jobs, wall, CPU, longest job, peak RSS; and the run's span and busy share."""
    rules: dict[str, dict] = {}
    for r in records:
        s = rules.setdefault(r.rule, {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "longest_s": 0.0, "longest": "", "max_rss_mb": 0.0})
        s["jobs"] += 1
        s["wall_s"] += r.wall_s
        s["cpu_s"] += r.cpu_s if r.cpu_s == r.cpu_s else 0.0
        if r.wall_s > s["longest_s"]:
            s["longest_s"], s["longest"] = r.wall_s, r.name
        if r.max_rss_mb == r.max_rss_mb:
            s["max_rss_mb"] = max(s["max_rss_mb"], r.max_rss_mb)
    span = max(r.end for r in records) - min(r.start for r in records) if records else 0.0
    cpu = sum(s["cpu_s"] for s in rules.values())
    return {
        "rules": dict(sorted(rules.items(), key=lambda kv: -kv[1]["wall_s"])),
        "jobs": len(records),
        "span_s": span,
        "cpu_s": cpu,
        "cores": cores,
        "busy": cpu / (span * cores) if span > 0 else 0.0,
    }


def print_breakdown(b: dict) -> None:
    print(f"{'rule':<16} {'jobs':>5} {'wall s':>9} {'CPU s':>9} {'mean s':>8} {'peak RSS MB':>12}  longest job")
    for rule, s in b["rules"].items():
        print(
            f"{rule:<16} {s['jobs']:>5} {s['wall_s']:>9.1f} {s['cpu_s']:>9.1f} {s['wall_s'] / s['jobs']:>8.1f} "
            f"{s['max_rss_mb']:>12.0f}  {s['longest']} ({s['longest_s']:.1f} s)"
        )
    m, sec = divmod(b["span_s"], 60)
    print(
        f"{b['jobs']} jobs; span {int(m)} min {sec:.0f} s from the first job's start to the last job's end; "
        f"{b['cpu_s']:.0f} CPU s = {b['busy']:.0%} of {b['cores']} cores over the span"
    )


def data_shape(plan: Plan) -> tuple[int, int, int]:
    """(input size, channels, classes) of the preset's latents: its cache's index, or digits' 8 x 8 x 1, 10 classes."""
    index = plan.latents_dir / "index.json"
    if index.is_file():
        d = json.loads(index.read_text())
        c, h, _ = d["latent_shape"]
        return h, c, int(d["num_classes"])
    if plan.cache.dataset == "digits":
        return 8, 1, 10
    raise SystemExit(f"error: no latent cache at {index} to read the latent shape from; run the cache_latents job first")


def step_times(plan: Plan, steps: int, warmup: int, threads: int) -> list[dict]:
    import torch

    from dar.train.bench import bench_one

    torch.set_num_threads(threads)
    size, channels, classes = data_shape(plan)
    seen, rows = set(), []
    pairs = sorted({(r.model, r.routing, r.config.global_batch) for r in plan.runs.values()}, key=lambda p: p[1] != "residual")
    for model, routing, batch in pairs:
        if (model, routing) in seen:
            continue
        seen.add((model, routing))
        row = bench_one(model, routing, batch, steps, warmup, "fp32", torch.device("cpu"), size, channels, classes, "torch")
        rows.append(row)
    return rows


def print_steps(rows: list[dict], threads: int) -> None:
    base = next((r["sec_per_step"] for r in rows if r["routing"] == "residual"), None)
    print(f"\nstep time on this CPU, {threads} thread(s), fp32 (forward, backward, AdamW, EMA):")
    for r in rows:
        rel = f"{r['sec_per_step'] / base:5.2f}x residual" if base else ""
        print(f"  {r['model']:<12} {r['routing']:<22} batch {r['batch']:<4} {r['sec_per_step'] * 1e3:7.1f} ms/step  {rel}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar run-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="digits", help="preset name or grid file (default: digits)")
    p.add_argument("--results", default="results", help="results root the workflow wrote (default: results)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores the run had (default: this machine's)")
    p.add_argument("--no-steps", action="store_true", help="skip the step-time benchmark")
    p.add_argument("--steps", type=int, default=20, help="timed steps per routing (default: 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default: 5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, as each workflow job has (default: 1)")
    p.add_argument("--out", help="also write everything as JSON here")
    args = p.parse_args(argv)
    plan = load_for_cli(args.preset, args.results)
    if plan is None:
        return 2
    records = read_records(plan.benchmarks_dir) + read_records(plan.shared_benchmarks_dir)
    out: dict = {"preset": plan.preset.name}
    if records:
        out["stages"] = stage_breakdown(records, args.cores)
        print(f"stage breakdown of {plan.root} (Snakemake benchmark records):")
        print_breakdown(out["stages"])
    else:
        print(f"no benchmark records under {plan.benchmarks_dir}: run the workflow first ({plan.rerun_command('all')})")
    if not args.no_steps:
        out["steps"] = step_times(plan, args.steps, args.warmup, args.threads)
        print_steps(out["steps"], args.threads)
    if args.out:
        from dar.provenance import environment

        write_json(args.out, {**out, "environment": environment()})
    return 0
