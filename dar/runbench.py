"""`python -m dar run-bench --preset digits`: where a preset's run spends its time, and each routing's step time.

    python -m dar run-bench --preset digits                 # after `snakemake --cores 2`
    python -m dar run-bench --preset digits --no-steps      # the stage breakdown only
    python -m dar run-bench --preset digits --allocator     # and the allocator comparison

1. Stage breakdown: every job's Snakemake `benchmark:` record (results/<preset>/benchmarks/<rule>/,
   and results/shared/benchmarks/ for the assets every preset shares), summed per rule: jobs, wall
   seconds and their share, the longest job and the largest peak RSS; then the run's span, from the
   first job's start to the last job's end (each record's file time minus its wall time).
2. Step times: one optimizer step (forward, backward, AdamW, EMA; dar.train.bench) of every
   (model, routing) of the preset's runs at the preset's batch, on this machine's CPU with one
   thread per job as the workflow's rules run them (`--threads`), residual first and each
   routing's time relative to it. REPA runs are timed without REPA's encoder and loss.
3. Sampler forwards: one no-grad forward of each (model, routing) at the preset's sampling batch,
   per sample (a sample file costs num_samples x NFE of these, twice with guidance).
4. `--allocator`: the residual model's sampler forward in two fresh processes, with glibc's
   default allocator settings and with dar.allocator's, and the minor page faults of each.

The job counts are Snakemake's; their wall seconds, summed per rule, over the span times the
cores give the share of the span that the job slots were occupied. (The records' CPU seconds
miss the work of jobs that the local submitit cluster runs outside the launcher's process tree,
so they are not summed.)

A benchmark, not a test: the numbers depend on the machine and its load. Record them with the
date and the machine (README, Measured).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from dar.io import write_json
from dar.jobcost import read_records, stage_breakdown
from dar.plan import Plan, load_for_cli


def print_breakdown(b: dict) -> None:
    print(f"{'rule':<16} {'jobs':>5} {'wall s':>9} {'share':>6} {'mean s':>8} {'peak RSS MB':>12}  longest job")
    for rule, s in b["rules"].items():
        share = s["wall_s"] / b["job_s"] if b["job_s"] else 0.0
        print(
            f"{rule:<16} {s['jobs']:>5} {s['wall_s']:>9.1f} {share:>6.0%} {s['wall_s'] / s['jobs']:>8.1f} "
            f"{s['max_rss_mb']:>12.0f}  {s['longest']} ({s['longest_s']:.1f} s)"
        )
    m, sec = divmod(b["span_s"], 60)
    print(
        f"{b['jobs']} jobs; span {int(m)} min {sec:.0f} s from the first job's start to the last job's end; "
        f"{b['job_s']:.0f} job-seconds = {b['occupied']:.0%} of {b['cores']} cores over the span"
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


def residual_first(pair: tuple) -> tuple:
    """Sort key of (model, routing, ...): by model, each model's residual first."""
    return pair[0], pair[1] != "residual", pair[1]


def step_times(plan: Plan, steps: int, warmup: int, threads: int) -> list[dict]:
    import torch

    from dar.train.bench import bench_one

    torch.set_num_threads(threads)
    size, channels, classes = data_shape(plan)
    from dar.models.matched import matched_width

    seen, rows = set(), []
    runs = {(r.model, r.routing, r.config.width_match or "", r.config.global_batch) for r in plan.runs.values()}
    for model, routing, match, batch in sorted(runs, key=lambda p: (p[0], p[1] != "residual" or bool(p[2]), p[1], p[2])):
        if (model, routing, match) in seen:
            continue
        seen.add((model, routing, match))
        width = matched_width(model, match, input_size=size, in_channels=channels, num_classes=classes) if match else None
        cpu = torch.device("cpu")
        row = bench_one(model, routing, batch, steps, warmup, "fp32", cpu, size, channels, classes, "torch", hidden_size=width)
        if match:
            row.update(width_match=match, hidden_size=width)
        rows.append(row)
    return rows


def print_relative(rows: list[dict], key: str, scale: float, unit: str, title: str) -> None:
    """One line per (model, routing): rows[key] x scale in `unit`, and its ratio to the same model's residual."""
    base = {r["model"]: r[key] for r in rows if r["routing"] == "residual" and not r.get("width_match")}
    print(f"\n{title}, vs the model's residual:")
    for r in rows:
        rel = f"{r[key] / base[r['model']]:5.2f}x residual" if r["model"] in base else ""
        name = r["routing"] + (f" w{r['hidden_size']}" if r.get("width_match") else "")  # w68: a width-matched control
        print(f"  {r['model']:<12} {name:<22} batch {r['batch']:<4} {r[key] * scale:7.1f} {unit}  {rel}")


def print_steps(rows: list[dict], threads: int) -> None:
    title = f"step time on this CPU, {threads} thread(s), fp32 (forward, backward, AdamW, EMA)"
    print_relative(rows, "sec_per_step", 1e3, "ms/step", title)


def forward_one(
    model_name: str, routing: str, batch: int, shape: tuple[int, int, int], samples: int = 2000, repeats: int = 5
) -> dict:
    """Microseconds per sample of a no-grad sampler forward (the best of `repeats` timings of `samples` samples' worth),
    with the minor page faults per forward."""
    import resource

    import torch

    from dar.models import build_model

    size, channels, classes = shape
    torch.manual_seed(0)
    model = build_model(model_name, routing, input_size=size, in_channels=channels, num_classes=classes).eval()
    x, t = torch.randn(batch, channels, size, size), torch.rand(batch)
    y = torch.randint(0, classes, (batch,))
    n = max(1, samples // batch)
    best, faults = float("inf"), 0
    with torch.no_grad():
        for _ in range(3):
            model(x, t, y)
        for _ in range(repeats):
            f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time()
            for _ in range(n):
                model(x, t, y)
            best = min(best, (time.process_time() - t0) / (n * batch))
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    per = {"us_per_sample": best * 1e6, "faults_per_forward": faults / n}
    return {"model": model_name, "routing": routing, "batch": batch, **per}


def forward_times(plan: Plan, threads: int, samples: int = 2000) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    shape = data_shape(plan)
    pairs = sorted({(r.model, r.routing) for r in plan.runs.values()}, key=residual_first)
    return [forward_one(m, r, plan.evaluation.batch_size, shape, samples) for m, r in pairs]


def print_forwards(rows: list[dict], threads: int) -> None:
    title = f"sampler forward on this CPU, {threads} thread(s), fp32, no grad, per sample"
    print_relative(rows, "us_per_sample", 1.0, "us/sample", title)


def allocator_ab(plan: Plan, threads: int, samples: int = 2000) -> list[dict]:
    """The residual sampler forward at the sampling batch and at 5x it, in fresh processes (glibc reads its settings
    once): the default allocator settings, then dar.allocator's."""
    model = next(r.model for r in plan.runs.values() if r.routing == "residual")
    rows = []
    for setting in ("default", "tuned"):
        for batch in (plan.evaluation.batch_size, 5 * plan.evaluation.batch_size):
            code = (
                "import json, sys, torch; from dar import allocator; from dar.runbench import forward_one\n"
                f"{'allocator.tune()' if setting == 'tuned' else 'pass'}; torch.set_num_threads({threads})\n"
                f"print(json.dumps(forward_one({model!r}, 'residual', {batch}, {tuple(data_shape(plan))!r}, {samples})))"
            )
            env = {**os.environ, "DAR_MALLOC": "default" if setting == "default" else ""}
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
            rows.append({"allocator": setting, **json.loads(out.strip().splitlines()[-1])})
    return rows


def print_allocator(rows: list[dict]) -> None:
    print("\nallocator (residual sampler forward, fresh process each):")
    for r in rows:
        print(
            f"  {r['allocator']:<8} batch {r['batch']:<4} {r['us_per_sample']:7.1f} us/sample  "
            f"{r['faults_per_forward']:8.0f} minor page faults per forward"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar run-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="digits", help="preset name or grid file (default: digits)")
    p.add_argument("--results", default="results", help="results root the workflow wrote (default: results)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores the run had (default: this machine's)")
    p.add_argument("--no-steps", action="store_true", help="skip the step-time and sampler-forward benchmarks")
    p.add_argument("--allocator", action="store_true", help="also compare glibc's default allocator with dar.allocator's")
    p.add_argument("--steps", type=int, default=20, help="timed steps per routing (default: 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default: 5)")
    p.add_argument("--forward-samples", type=int, default=2000, help="samples per sampler-forward timing (default: 2000)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, as each workflow job has (default: 1)")
    p.add_argument("--out", help="write everything as JSON here (default: results/<preset>/bench/run-bench.json)")
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
        out["forwards"] = forward_times(plan, args.threads, args.forward_samples)
        print_forwards(out["forwards"], args.threads)
    if args.allocator:
        out["allocator"] = allocator_ab(plan, args.threads, args.forward_samples)
        print_allocator(out["allocator"])
    from dar.provenance import environment

    path = args.out or plan.run_bench
    write_json(path, {**out, "environment": environment()})
    print(f"wrote {path} (python -m dar plan --from-bench reads its step times; so does the report's cost table)")
    return 0
