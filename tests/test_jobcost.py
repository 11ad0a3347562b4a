"""Job costs from Snakemake benchmark records (dar/jobcost.py): extended records carry resources -> GPU-hours."""

from __future__ import annotations

import os

from dar.jobcost import read_records, stage_breakdown

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
EXTENDED = "\tjobid\trule_name\twildcards\tparams\tthreads\tcpu_usage\tresources\tinput_size_mb"


def write(folder, rule, name, wall, rss, end, resources=None):
    """A record as Snakemake writes it; with `resources`, as --benchmark-extended writes it (a Python dict)."""
    path = folder / rule / f"{name}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    row = f"{wall}\t0:00:00\t{rss}\t0\t0\t0\t0\t0\t0\t1.0"
    if resources is None:
        path.write_text(f"{HEADER}\n{row}\n")
    else:
        path.write_text(f"{HEADER}{EXTENDED}\n{row}\t3\t{rule}\t{{}}\t{{}}\t1\t0.0\t{resources!r}\t{{}}\n")
    os.utime(path, (end, end))


def test_gpu_hours_are_wall_time_times_the_gpus_held(tmp_path):
    write(tmp_path, "train", "sit_seed0", 7200.0, 4000.0, end=10_000.0, resources={"cluster": "slurm", "gpus": 8, "nodes": 4})
    write(tmp_path, "sample", "sit_seed0", 1800.0, 2000.0, end=12_000.0, resources={"cluster": "slurm", "gpus": 8, "nodes": 1})
    write(tmp_path, "cell", "table1", 60.0, 900.0, end=12_100.0, resources={"cluster": "local", "gpus": 0, "nodes": 1})
    write(tmp_path, "report", "report", 5.0, 500.0, end=12_200.0)  # a plain record: a CPU job
    recs = {r.rule: r for r in read_records(tmp_path)}
    assert (recs["train"].gpus, recs["train"].gpu_hours, recs["train"].cluster) == (32, 64.0, "slurm")
    assert (recs["sample"].gpus, recs["sample"].gpu_hours) == (8, 4.0)
    assert (recs["cell"].gpus, recs["cell"].gpu_hours, recs["report"].gpus, recs["report"].cluster) == (0, 0.0, 0, "local")
    b = stage_breakdown(list(recs.values()), cores=1)
    assert b["gpu_h"] == 68.0 and b["rules"]["train"]["gpu_h"] == 64.0


def test_an_unreadable_resources_column_counts_as_a_cpu_job(tmp_path):
    write(tmp_path, "train", "x", 10.0, 1.0, end=100.0, resources="not a dict")
    (r,) = read_records(tmp_path)
    assert r.resources == {} and r.gpu_hours == 0.0 and r.wall_s == 10.0
