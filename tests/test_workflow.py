"""The Snakemake workflow end to end: paper-grid dry run, bad grids, smoke DAG, kill and resume."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dar import grid as grid_file

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake(*args, check=True, **kw):
    return subprocess.run([*SNAKEMAKE, *args], cwd=ROOT, capture_output=True, text=True, check=check, **kw)


def job_counts(out: str) -> dict[str, int]:
    block = out.split("Job stats:")[1].split("total")[0]
    rows = [line.split() for line in block.splitlines()[3:] if line.strip()]
    return {r[0]: int(r[1]) for r in rows}


def test_dry_run_of_the_full_paper_grid_through_the_slurm_profile(tmp_path):
    res = snakemake("-n", "--profile", "slurm", "--config", "preset=imagenet256", f"results={tmp_path}")
    counts = job_counts(res.stdout)
    # 10 runs (Table 1: 5, Table 2: +1 explicit, Table 3: 2 REPA, Table 4: +2 chunk sizes); 52 cells share 51 sample files
    assert counts["train"] == 10 and counts["cell"] == 52 and counts["sample"] == 51
    assert counts["fetch_assets"] == 1 and counts["cache_latents"] == 1 and counts["collate"] == 1


def test_the_slurm_profile_separates_launcher_slots_from_the_cpus_each_job_asks_for(tmp_path, monkeypatch):
    """A launcher holds 1 of the profile's `cores` slots; its SLURM job asks for the `cpus` resource per task."""
    import shlex

    from dar import launch

    # submitit's SLURM executor only writes the sbatch text here, but it refuses to exist without an `srun` on PATH
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")

    profile = yaml.safe_load((ROOT / "slurm" / "config.yaml").read_text())
    res = snakemake("-n", "-p", "--profile", "slurm", "--config", "preset=imagenet256", f"results={tmp_path}")
    blocks = [b for b in res.stdout.split("\nrule ")[1:] if b.startswith("train:")]
    assert len(blocks) == 10 and not any("threads:" in b for b in blocks)  # Snakemake prints threads only above 1
    assert profile["cores"] // 1 >= profile["jobs"]  # so `jobs` alone caps the grid
    for block in blocks:
        cmd = shlex.split(next(line for line in block.splitlines() if line.startswith("Shell command:"))[len("Shell command:") :])
        ours = cmd[cmd.index("dar.launch") + 1 : cmd.index("--")]
        args = launch.parser().parse_args(ours)
        text = launch.make_executor(
            args, tmp_path / "sub", "x", launch.tasks_per_node(args)
        )._executor._make_submission_file_text("true", "uid")
        sbatch = {line.split()[1] for line in text.splitlines() if line.startswith("#SBATCH")}
        train = profile["set-resources"]["train"]
        assert f"--cpus-per-task={train['cpus']}" in sbatch and train["cpus"] == 16
        assert {f"--gpus-per-node={train['gpus']}", f"--nodes={train['nodes']}", f"--ntasks-per-node={train['gpus']}"} <= sbatch
        assert f"--partition={train['partition']}" in sbatch


def test_dry_run_of_the_paper_scale_routing_zoo_through_the_slurm_profile(tmp_path):
    res = snakemake("-n", "--profile", "slurm", "--config", "preset=zoo-imagenet256", f"results={tmp_path}")
    counts = job_counts(res.stdout)
    # 11 SiT-XL/2 trainings of 400K iterations (residual, DAR static c4, the nine zoo methods), FID-50K every 100K
    assert counts["train"] == 11 and counts["cell"] == 44 and counts["sample"] == 44


def test_dry_run_of_the_digits_routing_zoo(tmp_path):
    res = snakemake("-n", "--cores", "2", "--config", "preset=zoo", f"results={tmp_path}")
    counts = job_counts(res.stdout)
    # 12 runs (with the width-matched control of mHC) x 3 seeds; one sampling job per run and seed; one cell job
    assert counts["train"] == 36 and counts["sample"] == 36 and counts["cells_zoo"] == 1


def test_dry_run_of_the_default_digits_grid(tmp_path):
    """Three seeds per run; one sampling job per run and seed; one evaluation job per table."""
    res = snakemake("-n", "--cores", "2", "--config", f"results={tmp_path}")
    counts = job_counts(res.stdout)
    assert counts["train"] == 30 and counts["sample"] == 30 and "cell" not in counts
    assert {k: v for k, v in counts.items() if k.startswith("cells_")} == {
        f"cells_{t}": 1 for t in ("table1", "table2", "table3", "table4", "fig1b")
    }
    # one cell as a target reruns its table's job, which writes every cell of the table
    cell = tmp_path / "digits" / "cells" / "table4" / "static-c4_it300_ode_cfg1.0.json"
    assert "cells_table4" in snakemake("-n", "--cores", "2", str(cell), "--config", f"results={tmp_path}").stdout


def write_grid(tmp_path, mutate, name="grid.yaml"):
    data = yaml.safe_load(grid_file.locate("smoke")[0])
    data = copy.deepcopy(data)
    mutate(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_bad_grid_fails_before_any_job(tmp_path):
    grid = write_grid(tmp_path, lambda d: d["tables"]["table2"].update(iterations=[5, 500]))
    res = snakemake("-n", "--cores", "1", "--config", f"preset={grid}", f"results={tmp_path / 'res'}", check=False)
    assert res.returncode != 0
    assert "tables.table2.iterations: 500 is past the length of run 'static-c4'" in res.stdout + res.stderr
    assert not (tmp_path / "res").exists()


@pytest.mark.slow
def test_smoke_preset_end_to_end(tmp_path):
    from dar.plan import Plan

    res_dir = tmp_path / "results"
    run = snakemake("--cores", "2", "--config", "preset=smoke", f"results={res_dir}", check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = pd.read_csv(res_dir / "smoke" / "table.csv")
    assert len(table) == 10 and (table["status"] == "done").all()
    assert table["fid"].notna().all() and (table["feature_space"] == "digits").all()
    cell = json.loads((res_dir / "smoke" / "cells" / "table1" / "static-c4_ode_cfg1.5.json").read_text())
    assert cell["cfg_scale"] == 1.5 and cell["paper"]["fid"] == 2.08 and cell["delta"] == {}
    prot = cell["protocols"][0]
    for key in (
        "checkpoint",
        "iteration",
        "sampler",
        "nfe",
        "cfg_scale",
        "cfg_channels",
        "num_samples",
        "reference",
        "feature_extractor",
    ):
        assert key in prot, key
    # the plan computed, before any job ran, the identities the jobs then recorded
    plan = Plan.load("smoke", results=res_dir)
    for r in plan.runs.values():
        done = json.loads(r.done.read_text())
        assert done["fingerprint"] == r.fingerprint and done["identity"] == r.identity
    for s in plan.samples:
        side = json.loads(s.sidecar.read_text())
        assert side["fingerprint"] == s.fingerprint and side["identity"] == json.loads(json.dumps(s.identity))
    for c in plan.cells:
        assert json.loads(c.path.read_text())["fingerprint"] == c.fingerprint
    again = snakemake("-n", "--cores", "2", "--config", "preset=smoke", f"results={res_dir}")
    assert "Nothing to be done" in again.stdout + again.stderr

    # every training log has a heartbeat per log_every steps; every job's record has its resources
    from dar.jobcost import read_records

    for log in (res_dir / "smoke" / "logs" / "train").glob("*.log"):
        beats = [line for line in log.read_text().splitlines() if " I [dar.train] step " in line]
        assert [b.split(" step ")[1].split(" ")[0] for b in beats] == ["5/10", "10/10"], log
        assert all(" ETA " in b and " s/step " in b and " img/s " in b and " mem " in b for b in beats)
    records = read_records(plan.benchmarks_dir)
    assert records and all(r.resources.get("cluster") == "local" for r in records if r.rule in ("train", "sample"))

    # Snakemake's own report: the workflow description, every figure, the table, the claims and the page
    import zipfile

    zipped = tmp_path / "report.zip"
    rep = snakemake("--cores", "1", "--config", "preset=smoke", f"results={res_dir}", "--report", str(zipped), check=False)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    names = {Path(n).name for n in zipfile.ZipFile(zipped).namelist()}
    figures = {"fig1b", "loss", "fig2", "fig3", "fig5", "chunk_theory", "fig6", "samples_00"}
    assert {f"{f}.png" for f in figures} <= names and {"table.csv", "claims.json", "index.html", "report.html"} <= names

    # a changed learning rate trains new runs in new folders; the finished runs are kept where they are
    grid = write_grid(tmp_path, lambda d: d["train"].update(lr=0.002))
    changed = snakemake("-n", "--cores", "2", "--config", f"preset={grid}", f"results={res_dir}")
    counts = job_counts(changed.stdout)
    assert counts["train"] == 2 and counts["sample"] == 6 and counts["cell"] == 10
    new = Plan.load(str(grid), results=res_dir)
    assert all(new.runs[k].dir != r.dir and r.done.is_file() for k, r in plan.runs.items())
    # another preset on the same results root reuses the shared digits network and reference statistics
    other = write_grid(tmp_path, lambda d: d.update(name="smoke-other"), name="other.yaml")
    shared = [str(plan.digits_net), str(plan.reference)]
    dry = snakemake("-n", *shared, "--cores", "2", "--config", f"preset={other}", f"results={res_dir}")
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.slow
def test_killed_workflow_resumes_training_and_reruns_nothing_finished(tmp_path):
    from dar.plan import Plan

    def longer(d):
        d["runs"] = {"sit": {"routing": "residual", "iterations": 400, "label": "SiT"}}
        d["train"].update(ckpt_every=20, log_every=20)
        d["tables"] = {"table1": {"runs": ["sit"], "samplers": ["ode"], "cfg": [False]}}
        d.pop("diagnostics")  # they compare two runs; this grid has one

    grid = write_grid(tmp_path, longer)
    res_dir = tmp_path / "results"
    plan = Plan.load(str(grid), results=res_dir)
    run = plan.runs[("sit", 0)]
    args = [*SNAKEMAKE, "--cores", "2", "--config", f"preset={grid}", f"results={res_dir}"]
    proc = subprocess.Popen(args, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = run.dir / "checkpoints" / "latest.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not latest.exists():
        time.sleep(0.2)
    assert latest.exists(), "training never checkpointed"
    index = plan.latents_dir / "index.json"
    mtime = index.stat().st_mtime_ns
    os.killpg(proc.pid, signal.SIGKILL)  # the whole workflow: snakemake, launcher, training job
    proc.wait()
    assert not run.done.exists()
    snakemake("--unlock", "--cores", "1", "--config", f"preset={grid}", f"results={res_dir}")
    # jobs killed mid-way (training, and whatever ran beside it) are "incomplete": rerun them
    rerun = snakemake("--cores", "2", "--rerun-incomplete", "--config", f"preset={grid}", f"results={res_dir}", check=False)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    log = (res_dir / "smoke" / "logs" / "train" / f"sit_{run.dir.name}.log").read_text()
    assert "resuming from" in log
    assert index.stat().st_mtime_ns == mtime, "the finished latent cache must not be rebuilt"
    assert "rule cache_latents" not in rerun.stdout + rerun.stderr
