"""kernels/device_check.py: the time-boxed stage runner and its summary."""

from __future__ import annotations

import io
import json
import sys
import time

import pytest
import torch

from kernels import bench
from kernels import device_check as dc

PY = sys.executable


def test_a_stage_past_its_cap_is_killed_with_its_children_and_the_budget_skips_the_rest():
    # the stage starts a child that would outlive it; killing the process group ends both
    sleeper = "import subprocess, time; subprocess.Popen(['sleep', '60']); print('started', flush=True); time.sleep(60)"
    stages = [
        dc.Stage("slow", 1.0, [PY, "-c", sleeper]),
        dc.Stage("fails", 10, [PY, "-c", "import sys, time; time.sleep(1); print('boom'); sys.exit(3)"]),
        dc.Stage("late", 10, [PY, "-c", "print('never')"]),
    ]
    log = io.StringIO()
    t0 = time.monotonic()
    res = dc.run_stages(stages, budget_s=3.0, min_stage_s=1.2, log=log, echo=lambda m: None)
    assert time.monotonic() - t0 < 15
    assert [r.status for r in res] == ["timed out", "failed", "skipped"]
    assert res[0].returncode is None and "started" in res[0].output
    assert res[1].returncode == 3 and "boom" in res[1].output
    assert "budget" in res[2].note and "never" not in log.getvalue()
    assert "===== slow: timed out" in log.getvalue() and "===== late: skipped" in log.getvalue()


def test_a_missing_program_is_a_failed_stage_not_a_crash():
    res = dc.run_stage(dc.Stage("x", 5, ["/nonexistent/program"]), 5, io.StringIO())
    assert res.status == "failed" and "cannot start" in res.note


def test_train_summary_ratios_and_the_step_target():
    residual = {"args": {"backend": "triton"}, "rows": [
        {"model": "SiT-XL/2", "batch": 32, "precision": "bf16", "routing": "residual", "sec_per_step": 0.200},
        {"model": "SiT-XL/2", "batch": 32, "precision": "bf16", "routing": "dar-static-c4", "sec_per_step": 0.210},
    ]}  # fmt: skip
    reference = {"args": {"backend": "torch"}, "rows": [
        {"model": "SiT-XL/2", "batch": 32, "precision": "bf16", "routing": "dar-static-c4", "sec_per_step": 0.300},
    ]}  # fmt: skip
    s = dc.summarize_train(residual, reference)
    rows = {(r["routing"], r["backend"]): r for r in s["rows"]}
    assert rows[("dar-static-c4", "triton")]["ratio_to_residual"] == pytest.approx(1.05)
    assert rows[("dar-static-c4", "triton")]["target_met"] is True
    assert rows[("dar-static-c4", "torch")]["ratio_to_residual"] == pytest.approx(1.5)
    assert "target" not in rows[("dar-static-c4", "torch")]  # the target is the fused kernel's
    assert dc.summarize_train(None, None) is None


def test_kernel_summary_at_n57_from_bench_output():
    recs = []
    for method, fwd, bwd in (("naive", 23.0, 116.0), ("compiled", 4.0, 20.0), ("fused", 2.0, 10.0)):
        for p, ms in (("fwd", fwd), ("bwd", bwd)):
            recs.append({"method": method, "query": "dynamic", "N": 57, "B": 32, "pass": p, "ms": ms, "fraction_of_peak": 0.5})
    recs.append({"method": "fused", "query": "dynamic", "N": 2, "B": 32, "pass": "fwd", "ms": 0.1, "fraction_of_peak": 0.3})
    memory = [{"method": m, "query": "dynamic", "N": 57, "B": 32, "peak_bytes": {"fwd": f, "bwd": b}}
              for m, f, b in (("naive", 1000, 800), ("fused", 200, 200))]  # fmt: skip
    out = bench.assemble(False, {"name": "GPU", "peak_bandwidth_bytes_per_s": None}, {}, recs, memory, [], complete=False)
    s = dc.summarize_kernel(out)
    fwd = s["at_N"]["dynamic B=32"]["fwd"]
    assert s["N"] == 57 and s["complete"] is False
    assert fwd["speedup_vs_naive"] == 11.5 and fwd["speedup_vs_compiled"] == 2.0 and fwd["fused"]["ms"] == 2.0
    assert fwd["memory_reduction_vs_naive"] == pytest.approx(0.8)
    assert s["at_N"]["dynamic B=32"]["bwd"]["speedup_vs_naive"] == 11.6
    lines = dc.summary_lines({"stages": [], "env": None, "tests": None, "kernel": s, "train": None, "sweep": None})
    assert any("dynamic B=32 fwd: naive 23.000 ms" in ln and "vs naive 11.50x" in ln and "-80.0%" in ln for ln in lines)


def test_sweep_summary_best_and_default():
    sweep = [
        {"block_rows": 1, "num_warps": 4, "stages": 2, "default": False, "fwd_ms": 1.0, "bwd_ms": 3.0},
        {"block_rows": 2, "num_warps": 8, "stages": 4, "default": True, "fwd_ms": 1.5, "bwd_ms": 2.0},
        {"block_rows": 4, "num_warps": 16, "stages": 4, "default": False, "error": "OutOfResources"},
    ]
    s = dc.summarize_sweep({"sweep": sweep})
    assert s["timed"] == 2 and s["best"]["fwd"]["block_rows"] == 1 and s["best"]["bwd"]["block_rows"] == 2
    assert s["default"]["fwd_ms"] == 1.5


def test_junit_summary(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1">'
        '<testcase classname="t" name="a"/><testcase classname="t" name="b"><failure/></testcase>'
        '<testcase classname="t" name="c"><skipped/></testcase><testcase classname="t" name="d"/>'
        "</testsuite></testsuites>"
    )
    assert dc.summarize_tests(xml) == {"tests": 4, "failures": 1, "errors": 0, "skipped": 1, "passed": 2, "failed": ["t::b"]}
    assert dc.summarize_tests(tmp_path / "missing.xml") is None


def test_smoke_run_end_to_end(tmp_path, capsys):
    rc = dc.main(["--smoke", "--out", str(tmp_path), "--stages", "env", "kernel", "train"])
    out = capsys.readouterr().out
    assert rc == 0, out
    s = json.loads((tmp_path / "summary.json").read_text())
    assert [st["status"] for st in s["stages"]] == ["ok", "ok", "ok"]
    assert s["env"]["torch"] == torch.__version__
    assert s["kernel"]["N"] == 4 and s["kernel"]["complete"]
    assert [r["routing"] for r in s["train"]["rows"]] == ["residual", "dar-static-c4"]
    assert "===== device-check summary" in out and "residual [torch]" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device_check.log", "kernel.json", "summary.json", "train.json"]


def test_without_cuda_it_says_to_use_smoke(capsys):
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    assert dc.main(["--out", "unused"]) == 2
    assert "--smoke" in capsys.readouterr().err


def test_gpu_plan_fits_what_the_device_tool_brings_back(tmp_path):
    """At most 8 files come back from a lent machine: the stages write no more than that."""
    stages = dc.plan(tmp_path, smoke=False, junit=tmp_path / "j.xml")
    assert [s.name for s in stages] == ["env", "tests", "kernel", "train", "train_torch", "sweep", "zoo"]
    files = {a for s in stages for a in s.argv if a.startswith(str(tmp_path)) and a.endswith(".json")}
    files |= {str(bench.partial_path(tmp_path / "kernel.json")), "device_check.log", "summary.json"}
    assert len(files) <= 8
