"""The run benchmark's stage breakdown (python -m dar run-bench) on hand-written Snakemake benchmark records."""

from __future__ import annotations

import os

from dar.__main__ import main as dar_main
from dar.jobcost import read_records, stage_breakdown
from dar.plan import Plan

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def record(folder, rule, name, wall, cpu, rss, end):
    path = folder / rule / f"{name}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{wall}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t0\t{cpu}\n")
    os.utime(path, (end, end))


def test_stage_breakdown_sums_rules_and_measures_the_span(tmp_path):
    record(tmp_path, "train", "sit_seed0", 100.0, 90.0, 300.0, end=1100.0)  # 1000 .. 1100
    record(tmp_path, "train", "sit_seed1", 50.0, 45.0, 500.0, end=1060.0)  # 1010 .. 1060
    record(tmp_path, "sample", "sit_seed0", 40.0, 38.0, 200.0, end=1140.0)  # 1100 .. 1140
    b = stage_breakdown(read_records(tmp_path), cores=2)
    assert list(b["rules"]) == ["train", "sample"], "largest wall time first"
    t = b["rules"]["train"]
    assert (t["jobs"], t["wall_s"], t["cpu_s"], t["longest"], t["max_rss_mb"]) == (2, 150.0, 135.0, "sit_seed0", 500.0)
    assert b["span_s"] == 140.0 and b["jobs"] == 3
    assert b["job_s"] == 190.0 and abs(b["occupied"] - 190.0 / 280.0) < 1e-12


def test_run_bench_prints_the_breakdown_and_step_times(tmp_path, capsys):
    plan = Plan.load("smoke", results=tmp_path)
    record(plan.benchmarks_dir, "cell", "table1_sit", 3.0, 2.0, 100.0, end=2000.0)
    args = ["--steps", "1", "--warmup", "0", "--forward-samples", "8"]
    assert dar_main(["run-bench", "--preset", "smoke", "--results", str(tmp_path), *args]) == 0
    out = capsys.readouterr().out
    assert "cell" in out and "1 jobs; span 0 min 3 s" in out
    routings = {r.routing for r in plan.runs.values()}
    assert "residual" in routings and all(r in out for r in routings) and "1.00x residual" in out
    assert "sampler forward" in out and "us/sample" in out


def test_allocator_comparison_runs_both_settings_in_fresh_processes(tmp_path):
    from dar.runbench import allocator_ab

    rows = allocator_ab(Plan.load("smoke", results=tmp_path), threads=1, samples=8)
    assert [r["allocator"] for r in rows] == ["default", "default", "tuned", "tuned"]
    assert all(r["us_per_sample"] > 0 and r["faults_per_forward"] >= 0 for r in rows)
