"""kernels/bench.py (Fig. 6 benchmark): traffic model, derived numbers, CPU smoke run."""

from __future__ import annotations

import json

import pytest

from kernels import bench


def test_min_bytes_counts_the_slices_of_the_kernel_notes():
    # one slice = one [B, T, D] bf16 tensor = 32 * 256 * 1152 * 2 bytes = 18.87 MB at SiT-XL/2, B = 32
    slice_ = 32 * 256 * 1152 * 2
    assert slice_ == 18_874_368
    assert bench.min_bytes("fwd", "static", 57, 32, 256, 1152, 2) == 58 * slice_  # read N, write h
    assert bench.min_bytes("fwd", "dynamic", 57, 32, 256, 1152, 2) == 59 * slice_  # + the per-token query
    assert bench.min_bytes("bwd", "dynamic", 57, 32, 256, 1152, 2) == 118 * slice_  # one-pass backward
    full = bench.min_bytes("full", "static", 3, 2, 4, 8, 4)
    assert full == bench.min_bytes("fwd", "static", 3, 2, 4, 8, 4) + bench.min_bytes("bwd", "static", 3, 2, 4, 8, 4)


def test_peak_bandwidth_of_known_and_unknown_devices():
    assert bench.peak_bandwidth("NVIDIA H200", None)[0] == 4.8e12
    assert bench.peak_bandwidth("NVIDIA H100 80GB HBM3", None)[0] == 3.35e12
    assert bench.peak_bandwidth("NVIDIA H100 PCIe", None)[0] is None  # not the SXM part: no guess
    assert bench.peak_bandwidth("anything", 2.0)[0] == 2.0e12


def _rec(method, ms, pass_="fwd", N=57, B=32, query="dynamic", frac=None):
    return {"method": method, "pass": pass_, "N": N, "B": B, "query": query, "ms": ms, "fraction_of_peak": frac}


def test_speedups_and_target_check():
    records = [
        _rec("naive", 24.0),
        _rec("compiled", 3.0),
        _rec("fused", 2.0, frac=0.85),
        _rec("naive", 100.0, "bwd"),
        _rec("compiled", 9.0, "bwd"),
        _rec("fused", 10.0, "bwd", frac=0.55),
    ]
    sp = {(s["pass"], s["baseline"], s["method"]): s["speedup"] for s in bench.compute_speedups(records)}
    assert sp[("fwd", "naive", "fused")] == 12.0 and sp[("fwd", "compiled", "fused")] == 1.5
    assert sp[("bwd", "naive", "fused")] == 10.0 and sp[("fwd", "naive", "compiled")] == 8.0
    checks = {c["pass"]: c for c in bench.check_targets(records, bench.compute_speedups(records), 4.8e12)}
    assert checks["fwd"]["bandwidth_met"] and checks["fwd"]["speedup_met"] and checks["fwd"]["faster_than_compiled"]
    assert not checks["bwd"]["bandwidth_met"]  # 55 % < 60 %
    assert checks["bwd"]["speedup_met"]  # 10x >= 8.5x
    assert not checks["bwd"]["faster_than_compiled"]  # 10 ms vs 9 ms


def test_memory_reduction():
    memory = [
        {"method": "naive", "query": "static", "N": 8, "B": 2, "peak_bytes": {"fwd": 1000, "bwd": 400}},
        {"method": "fused", "query": "static", "N": 8, "B": 2, "peak_bytes": {"fwd": 250, "bwd": 100}},
    ]
    red = {r["pass"]: r["reduction"] for r in bench.compute_memory_reduction(memory)}
    assert red == {"fwd": 0.75, "bwd": 0.75}


def test_cpu_smoke_run_writes_a_complete_json_and_no_partial(tmp_path):
    out = tmp_path / "bench" / "kernel.json"
    rc = bench.main(
        ["--device", "cpu", "--out", str(out), "--sources", "1", "3", "--queries", "explicit", "--methods", "naive",
         "--passes", "fwd", "bwd", "--cpu-reps", "2"]
    )  # fmt: skip
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["complete"] and res["mode"] == "cpu-smoke" and res["target_check"] is None
    assert sorted((r["N"], r["pass"]) for r in res["records"]) == [(1, "bwd"), (1, "fwd"), (3, "bwd"), (3, "fwd")]
    for r in res["records"]:
        assert r["ms"] > 0 and r["min_bytes"] == bench.min_bytes(r["pass"], "explicit", r["N"], 2, 16, 64, 2)
    assert not bench.partial_path(out).exists()
    assert list(out.parent.iterdir()) == [out]


def test_compiled_baseline_only_at_the_requested_sources(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "measure", lambda fn, sources, *a: (calls.append(len(sources)) or [], None))
    monkeypatch.setattr(bench, "build_method", lambda name, mode: name)
    bench.main(["--device", "cpu", "--sources", "2", "4", "--queries", "static", "--compiled-sources", "4"])
    assert calls == [2, 4, 4]  # naive at 2 and 4, compiled at 4 only


def test_bad_arguments_are_clear_errors(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--device", "cpu", "--methods", "fused"])
    assert "not benchmarked on CPU" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--device", "cpu", "--sources", "0"])
    assert "must be >= 1" in capsys.readouterr().err
