"""kernels/aot.py: the fused kernels compile for sm_90 without a GPU, without spills, pipelined.

The compile runs in a subprocess with TRITON_INTERPRET unset: tests/test_kernels.py sets
it for this session, and interpreter functions cannot be compiled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kernels.aot import SM_LIMITS, programs_per_sm


def run_aot(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-m", "dar", "kernel-compile", *args], env=env, capture_output=True, text=True)


def test_programs_per_sm_known_answers():
    # 128 registers x 32 threads x 8 warps = 32768 of 65536 registers -> 2 programs.
    assert programs_per_sm(128, 1024, 8, 90) == 2
    # 65 registers x 32 threads = 2080 per warp, allocated as 2304 (units of 256): 65536 // 2304 = 28, not 31.
    assert programs_per_sm(65, 0, 1, 90) == 28
    # The resident-block limit: 32 per SM however small the program.
    assert programs_per_sm(16, 0, 1, 90) == 32
    # Shared memory bounds it: 100 KiB per program, 227 KiB per SM -> 2.
    assert programs_per_sm(32, 100 * 1024, 4, 90) == 2
    # The warp limit: 64 warps per SM / 16 warps -> 4 even with few registers.
    assert programs_per_sm(16, 0, 16, 90) == 4
    # More shared memory than an SM has -> 0 (does not fit).
    assert programs_per_sm(32, SM_LIMITS[80][0] + 1, 4, 80) == 0


def test_kernels_compile_for_sm90_without_spills(tmp_path):
    out = tmp_path / "aot.json"
    proc = run_aot("--arch", "90", "--dim", "1152", "100", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = json.loads(out.read_text())["cases"]
    # 2 kernels x 3 query kinds x 3 source-dtype mixes x 2 hidden sizes.
    assert len(cases) == 36
    for c in cases:
        name = f"{c['kernel']} {c['query']} {c['dtypes']} D={c['D']}"
        assert c["ok"] and c["error"] is None, name
        assert c["spill_bytes"] == 0, name
        assert c["pipelined"], f"{name}: the loop over sources is not software-pipelined"
        assert 0 < c["registers"] <= 255 and c["programs_per_sm"] >= 1, name


def test_interpreter_mode_is_a_clear_usage_error():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "dar", "kernel-compile", "--kernels", "fwd"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "unset it" in proc.stderr


@pytest.mark.parametrize("bad", [["--arch", "75"], ["--queries", "diagonal"]])
def test_bad_arguments(bad):
    proc = run_aot(*bad)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
