"""The plan: presets compile to typed runs, sample sets and cells; folders are keyed by fingerprint."""

from __future__ import annotations

import copy
import json
import os

import pytest
import yaml

from dar import grid
from dar.config import from_dict, to_dict
from dar.plan import Plan
from dar.sampling.config import SampleConfig
from dar.train.config import TrainConfig


def preset_file(tmp_path, mutate=None, preset="smoke", name="grid.yaml"):
    data = copy.deepcopy(yaml.safe_load(grid.locate(preset)[0]))
    if mutate:
        mutate(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("preset", ["smoke", "digits", "imagenet256", "rehearsal"])
def test_presets_compile(preset):
    plan = Plan.load(preset)
    assert plan.cells and plan.runs and plan.samples
    for cell in plan.cells:
        for s in cell.samples:
            assert cell.iteration in s.run.milestones, "every cell's iteration is kept as a milestone"
            assert s.path.name.endswith(f"-{s.fingerprint}.npz") and s.run.dir.name.endswith(s.run.fingerprint)
    for r in plan.runs.values():
        assert r.dir == plan.root / "runs" / r.name / f"seed{r.seed}-{r.fingerprint}"


def test_imagenet256_is_the_papers_protocol():
    plan = Plan.load("imagenet256")
    ev = plan.evaluation
    assert (ev.num_samples, ev.nfe, ev.cfg_scale, ev.cfg_channels) == (50000, 250, 1.5, 3)
    sit = plan.runs[("sit", 0)].config
    assert (sit.global_batch, sit.model, sit.lr, sit.precision) == (1024, "SiT-XL/2", 1e-4, "bf16")
    iters = {name: r.iterations for name, r in plan.run_defs.items()}
    assert iters["sit"] == 1_750_000 and iters["static-c4"] == 600_000 and iters["dynamic-c4"] == 500_000
    t1 = [c for c in plan.cells if c.table == "table1"]
    assert len(t1) == 5 * 2 * 2  # runs x {ode, sde} x {w/o, w/ guidance}
    assert {c.cfg_scale for c in t1} == {1.0, 1.5}
    assert {c.iteration for c in plan.cells if c.table == "table4"} == {300_000}
    assert plan.preset.comparable and not Plan.load("digits").preset.comparable


def test_readable_cell_paths_and_shared_samples():
    plan = Plan.load("digits")
    cell = plan.cell("table1", "static-c4_ode_cfg1.5")
    assert str(cell.path) == "results/digits/cells/table1/static-c4_ode_cfg1.5.json"
    # Table 2 at 300 and Table 4 at 300 for static-c4 use the same sample file: one sampling job serves both.
    t2, t4 = plan.cell("table2", "static-c4_it300_ode_cfg1.0"), plan.cell("table4", "static-c4_it300_ode_cfg1.0")
    assert t2.samples[0] is t4.samples[0]
    assert len(plan.samples) < len(plan.cells) * len(plan.seeds)  # one file per (cell, seed) without sharing


def test_cell_describe_is_the_collated_tables_first_columns(tmp_path):
    from dar.collate import collate

    plan = Plan.load("smoke", results=tmp_path)
    cell = plan.cell("table1", "static-c4_ode_cfg1.5")
    ids = ["table", "name", "run", "iteration", "sampler", "cfg", "cfg_scale", "nfe", "num_samples"]
    assert list(cell.describe()) == ids and cell.describe()["cfg_scale"] == 1.5
    df = collate(plan)
    assert list(df.columns[: len(ids) + 1]) == [*ids, "path"] and set(df["status"]) == {"pending"}


RESULT_CHANGING = [
    ("lr", lambda d: d["train"].update(lr=0.002)),
    ("routing", lambda d: d["runs"]["static-c4"].update(routing="dar-static-c8")),
    ("query", lambda d: d["runs"]["static-c4"].update(routing="dar-explicit-c4")),
    ("global_batch", lambda d: d["train"].update(global_batch=32)),
    ("class_dropout", lambda d: d["train"].update(class_dropout=0.2)),
    ("ema_decay", lambda d: d["runs"]["static-c4"].update(train={"ema_decay": 0.5})),
    ("model", lambda d: d["runs"]["static-c4"].update(model="SiT-S/2")),
]
BOOKKEEPING = [
    ("log_every", lambda d: d["train"].update(log_every=1)),
    ("ckpt_every", lambda d: d["train"].update(ckpt_every=2)),
    ("device", lambda d: d["train"].update(device="auto")),
    ("iterations", lambda d: d["runs"]["static-c4"].update(iterations=20)),  # lengthening a run continues it
]


@pytest.mark.parametrize("what, mutate", RESULT_CHANGING, ids=[w for w, _ in RESULT_CHANGING])
def test_a_result_changing_setting_names_a_new_run_folder(tmp_path, what, mutate):
    before, after = Plan.load(preset_file(tmp_path)), Plan.load(preset_file(tmp_path, mutate, name="b.yaml"))
    old, new = before.runs[("static-c4", 0)], after.runs[("static-c4", 0)]
    assert new.dir != old.dir and new.fingerprint != old.fingerprint
    assert new.dir.parent == old.dir.parent, "the old run's folder stays beside the new one"
    cell_old, cell_new = before.cell("table1", "static-c4_ode_cfg1.0"), after.cell("table1", "static-c4_ode_cfg1.0")
    assert cell_new.path == cell_old.path, "cells keep their readable names"
    assert cell_new.samples[0].path != cell_old.samples[0].path and cell_new.fingerprint != cell_old.fingerprint
    assert before.runs[("sit", 0)].dir == after.runs[("sit", 0)].dir or what in ("lr", "global_batch", "class_dropout")


@pytest.mark.parametrize("what, mutate", BOOKKEEPING, ids=[w for w, _ in BOOKKEEPING])
def test_bookkeeping_settings_keep_the_run_folder(tmp_path, what, mutate):
    before, after = Plan.load(preset_file(tmp_path)), Plan.load(preset_file(tmp_path, mutate, name="b.yaml"))
    assert after.runs[("static-c4", 0)].dir == before.runs[("static-c4", 0)].dir


def test_whole_number_floats_in_the_grid_are_the_same_config(tmp_path):
    """YAML's 4.0 passes the schema's 'integer'; it must name the same runs, files and fingerprints as 4."""

    def floats(d):
        d["seeds"] = [0.0]
        d["evaluation"].update(nfe=4.0, num_samples=40.0)
        d["runs"]["static-c4"]["iterations"] = 10.0
        d["tables"]["table2"]["iterations"] = [5.0, 10]

    a, b = Plan.load(preset_file(tmp_path)), Plan.load(preset_file(tmp_path, floats, name="f.yaml"))
    assert [s.path for s in a.samples] == [s.path for s in b.samples]
    assert [c.fingerprint for c in a.cells] == [c.fingerprint for c in b.cells]
    assert {k: r.dir for k, r in a.runs.items()} == {k: r.dir for k, r in b.runs.items()}


def test_seeds_are_separate_runs_and_pair_across_runs(tmp_path):
    plan = Plan.load(preset_file(tmp_path, lambda d: d.update(seeds=[0, 1])))
    a, b = plan.runs[("static-c4", 0)], plan.runs[("static-c4", 1)]
    assert a.dir != b.dir and (a.config.seed, b.config.seed) == (0, 1)
    cell = plan.cell("table1", "sit_ode_cfg1.0")
    assert [s.seed for s in cell.samples] == [0, 1] and len(cell.config.evals) == 2
    # seed k of every run samples with the same sample seed k: paired comparisons
    assert [s.seed for s in plan.cell("table1", "static-c4_ode_cfg1.0").samples] == [0, 1]


def test_sample_settings_change_the_sample_file_not_the_run(tmp_path):
    before = Plan.load(preset_file(tmp_path))
    after = Plan.load(preset_file(tmp_path, lambda d: d["evaluation"].update(cfg_channels=1), name="b.yaml"))
    c0, c1 = before.cell("table1", "sit_ode_cfg1.5"), after.cell("table1", "sit_ode_cfg1.5")
    assert c0.samples[0].run.dir == c1.samples[0].run.dir and c0.samples[0].path != c1.samples[0].path
    batch = Plan.load(preset_file(tmp_path, lambda d: d["evaluation"].update(batch_size=7, shard_size=3), name="c.yaml"))
    assert batch.cell("table1", "sit_ode_cfg1.5").samples[0].path == c0.samples[0].path, "work splits are not identity"


def test_sampling_jobs_group_the_sets_as_the_grid_says(tmp_path):
    """per-set: one job per sample file; per-run: one per run and seed holding all its sets, in the plan's order; the
    marker's name changes with the set list, so a changed grid reruns the job."""
    per_set = Plan.load(preset_file(tmp_path, lambda d: d["evaluation"].update(sample_jobs="per-set"), name="a.yaml"))
    per_run = Plan.load(preset_file(tmp_path, lambda d: d["evaluation"].update(sample_jobs="per-run"), name="b.yaml"))
    assert [j.sets for j in per_set.sample_jobs] == [(s,) for s in per_set.samples]
    assert all(j.marker == j.sets[0].path.with_name(j.sets[0].path.stem + ".done.json") for j in per_set.sample_jobs)
    sampled = {s.run for s in per_run.samples}
    assert len(per_run.sample_jobs) == len(sampled) > 1
    for run in sampled:
        (job,) = [j for j in per_run.sample_jobs if j.run is run]
        assert list(job.sets) == [s for s in per_run.samples if s.run is run]
        assert all(per_run.sample_job_of(s) is job for s in job.sets)
    other = preset_file(tmp_path, lambda d: d["evaluation"].update(sample_jobs="per-run", cfg_scale=2.0), name="c.yaml")
    assert {j.marker for j in Plan.load(other).sample_jobs}.isdisjoint({j.marker for j in per_run.sample_jobs})


def test_job_configs_are_the_plans_typed_configs(tmp_path):
    plan = Plan.load("digits", results=tmp_path)
    written = plan.write_job_configs()
    configs = plan.job_configs()
    assert set(written) == set(configs) and all(p.is_relative_to(tmp_path) for p in written)
    run = plan.runs[("dar-repa", 0)]
    assert from_dict(TrainConfig, json.loads(run.job.read_text())) == run.config
    assert run.config.repa and run.config.repa_encoder_weights == str(plan.digits_net)
    s = plan.samples[0]
    job = plan.sample_job_of(s)
    entry = next(e for e in json.loads(job.job.read_text())["sets"] if e["config"]["out"] == str(s.path))
    assert from_dict(SampleConfig, entry["config"]) == s.config and entry["identity"] == s.identity
    # the one writer rewrites nothing that did not change, so Snakemake reruns nothing
    mtimes = {p: p.stat().st_mtime_ns for p in written}
    assert plan.write_job_configs() == []
    assert {p: p.stat().st_mtime_ns for p in written} == mtimes


def test_train_cli_reads_a_job_config_and_grid_runs_by_name(tmp_path, capsys):
    from dar.train.job import parse

    plan = Plan.load("digits")
    run = plan.runs[("static-c4", 0)]
    path = tmp_path / "job.json"
    path.write_text(json.dumps(to_dict(run.config)))
    cfg, _ = parse(["--config", str(path)])
    assert cfg == run.config and cfg.milestones == [100, 200, 300, 400, 600]
    cfg, _ = parse(["--preset", "digits", "--run", "static-c4", "--seed", "0"])
    assert cfg == run.config
    cfg, _ = parse(["--preset", "digits", "--run", "static-c4", "--lr", "0.01"])
    assert cfg.lr == 0.01 and cfg.out != run.config.out, "an identity override names its own run folder"


def test_shared_assets_do_not_depend_on_the_preset(tmp_path):
    smoke, digits = Plan.load("smoke", results=tmp_path), Plan.load("digits", results=tmp_path)
    assert smoke.digits_net == digits.digits_net == tmp_path / "shared" / "digits_features" / "digits_net.pt"
    assert smoke.reference == digits.reference
    assert smoke.digits_features_job == digits.digits_features_job
    assert smoke.reference_job() == digits.reference_job()


def test_write_only_touches_changed_configs(tmp_path):
    plan = Plan.load(preset_file(tmp_path), results=tmp_path / "r")
    plan.write_job_configs()
    job = plan.runs[("sit", 0)].job
    os.utime(job, ns=(1, 1))
    # the same grid file, edited
    changed = Plan.load(preset_file(tmp_path, lambda d: d["train"].update(log_every=1)), results=tmp_path / "r")
    written = changed.write_job_configs()
    assert job in written and job.stat().st_mtime_ns > 1
    assert all(p.name.endswith(".json") and "train" in str(p) for p in written), "only the training jobs changed"


def test_per_table_grids_group_every_cell_of_a_table_into_one_job(tmp_path):
    per_cell = Plan.load(preset_file(tmp_path, lambda d: d["evaluation"].update(cell_jobs="per-cell"), name="a.yaml"))
    per_table = Plan.load(preset_file(tmp_path, lambda d: d["evaluation"].update(cell_jobs="per-table"), name="b.yaml"))
    assert [j.cells for j in per_cell.cell_jobs] == [(c,) for c in per_cell.cells]
    assert all(j.job == j.cells[0].job for j in per_cell.cell_jobs)
    tables = sorted({c.table for c in per_table.cells})
    assert sorted(j.key for j in per_table.cell_jobs) == tables
    assert sorted(c.path for j in per_table.cell_jobs for c in j.cells) == sorted(c.path for c in per_table.cells)
    for job in per_table.cell_jobs:
        assert {c.table for c in job.cells} == {job.key}
        assert all(per_table.cell_job_of(c) is job for c in job.cells)
        written = per_table.job_configs()[job.job]  # each cell's config as its own job file holds it
        assert written == {"cells": [per_table.job_configs()[c.job] for c in job.cells]}


def test_kernel_bench_methods_reach_the_job_config():
    assert Plan.load("digits").kernel_bench_config["methods"] == ["naive"]  # no torch.compile build on CPU
    assert "methods" not in Plan.load("imagenet256").kernel_bench_config  # every method on the GPU
