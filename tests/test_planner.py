"""The compute planner (dar/planner.py): its arithmetic on known answers, its inputs and its command."""

from __future__ import annotations

import json

import pytest

from dar.plan import Plan
from dar.planner import (
    PlanError,
    Throughput,
    lpt_makespan,
    main,
    make_plan,
    profile_gpus,
    read_bench,
    sample_gpu_seconds,
    stated_throughput,
    step_seconds,
)


def test_step_time_scales_linearly_with_devices():
    assert step_seconds(1024, 32, 54.0) == pytest.approx(1024 / (32 * 54.0))
    assert step_seconds(64, 0, 640.0) == pytest.approx(0.1)  # a CPU job counts as one device
    tp = stated_throughput(0.59, 8, 1024, "stated")
    assert tp.images_per_s == pytest.approx(1024 / (0.59 * 8))
    assert step_seconds(1024, 8, tp.images_per_s) == pytest.approx(0.59)  # back on its own GPUs: the stated time
    assert step_seconds(1024, 32, tp.images_per_s) == pytest.approx(0.59 / 4)


def test_sampling_cost_counts_evaluations_and_guidance():
    # 50K samples x 250 NFE at 3 x 54 forward img/s: the paper's cell on one GPU
    assert sample_gpu_seconds(50_000, 250, False, 54.0) == pytest.approx(50_000 * 250 / 162.0)
    assert sample_gpu_seconds(50_000, 250, True, 54.0) == pytest.approx(2 * 50_000 * 250 / 162.0)


@pytest.mark.parametrize(
    "jobs, slots, makespan", [([3, 3, 2, 2, 2], 2, 7), ([3, 3, 2, 2, 2], 5, 3), ([5, 1, 1, 1], 2, 5), ([], 4, 0), ([4], 9, 4)]
)
def test_longest_first_makespan(jobs, slots, makespan):
    assert lpt_makespan([float(j) for j in jobs], slots) == pytest.approx(makespan)


def test_the_smoke_plan_by_hand(tmp_path):
    plan = Plan.load("smoke", results=tmp_path)
    tp = Throughput(160.0, "stated")
    cp = make_plan(plan, stated=tp, max_gpus=1)
    # global batch 16 at 160 img/s: 0.1 s/step, 10 steps per run
    assert [(t.run, t.sec_per_step, t.wall_s) for t in cp.trains] == [
        ("sit", pytest.approx(0.1), pytest.approx(1.0)),
        ("static-c4", pytest.approx(0.1), pytest.approx(1.0)),
    ]
    # per run: two unguided sets and one guided, 40 samples x 4 NFE: 640 forward images at 480 img/s
    assert [(s.sets, s.images) for s in cp.samples] == [(3, 640), (3, 640)]
    assert [s.gpu_s for s in cp.samples] == [pytest.approx(4 / 3)] * 2
    eval_s = 40 * len(plan.cells) / 1000
    assert cp.eval_gpu_s == pytest.approx(eval_s)
    assert cp.wall_s == pytest.approx(2 * (1 + 4 / 3) + eval_s)  # one slot: the two chains one after the other
    assert make_plan(plan, stated=tp, max_gpus=2).wall_s == pytest.approx(1 + 4 / 3 + eval_s / 2)
    assert cp.total_gpu_h == pytest.approx((2 * 1.0 + 2 * 4 / 3 + eval_s) / 3600)
    on8 = make_plan(plan, stated=tp, gpus_per_job=8, sample_gpus=8)
    assert on8.trains[0].sec_per_step == pytest.approx(16 / (8 * 160)) and on8.train_gpu_h == pytest.approx(cp.train_gpu_h)


def test_measured_step_times_are_per_model_and_routing(tmp_path):
    bench = tmp_path / "bench.json"
    rows = [
        {"model": "SiT-T/2", "routing": "residual", "batch": 16, "images_per_s": 320.0, "sec_per_step": 0.05},
        {"model": "SiT-T/2", "routing": "dar-static-c4", "batch": 16, "images_per_s": 160.0, "sec_per_step": 0.1},
    ]
    bench.write_text(json.dumps({"rows": rows, "environment": {"device": "NVIDIA H100"}}))
    cp = make_plan(Plan.load("smoke", results=tmp_path), bench=read_bench(bench))
    assert {t.routing: t.sec_per_step for t in cp.trains} == {
        "residual": pytest.approx(0.05),
        "dar-static-c4": pytest.approx(0.1),
    }
    assert cp.trains[0].source == "measured: bench.json, batch 16 on NVIDIA H100"
    bench.write_text(json.dumps({"rows": rows[:1]}))
    with pytest.raises(PlanError, match=r"no step time for SiT-T/2 dar-static-c4: measure them \(python -m dar train-bench"):
        make_plan(Plan.load("smoke", results=tmp_path), bench=read_bench(bench))
    bench.write_text("{not json")
    with pytest.raises(PlanError, match="cannot read it as JSON"):
        read_bench(bench)


def test_the_paper_grid_plan_prints_without_flags(tmp_path, capsys):
    assert main(["--preset", "imagenet256", "--results", str(tmp_path), "--json", str(tmp_path / "plan.json")]) == 0
    out = capsys.readouterr().out
    assert "paper App. C.2: 0.59 s/step (dar-static-c4, H20)" in out and "total" in out
    plan = json.loads((tmp_path / "plan.json").read_text())
    sit = next(t for t in plan["trains"] if t["run"] == "sit")
    # the paper's 0.59 s/step taken on the training job's GPUs (the profile's): 1.75M steps x 0.59 s x G GPUs
    gpus = profile_gpus("train")  # slurm/config.yaml: 8 GPUs x 4 nodes
    assert sit["sec_per_step"] == pytest.approx(0.59) and sit["gpus"] == gpus == 32
    assert sit["gpu_h"] == pytest.approx(1_750_000 * 0.59 * gpus / 3600)
    assert plan["total_gpu_h"] == pytest.approx(plan["train_gpu_h"] + plan["sample_gpu_h"] + plan["eval_gpu_h"])


def test_digits_needs_a_step_time_source(tmp_path, capsys):
    assert main(["--preset", "digits", "--results", str(tmp_path)]) == 2
    assert "digits scale has no stated step time: give --from-bench FILE" in capsys.readouterr().err
    assert main(["--preset", "digits", "--results", str(tmp_path), "--step-time", "0"]) == 2
    assert "--step-time 0.0: must be > 0" in capsys.readouterr().err
