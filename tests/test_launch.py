"""The submitit launcher: success, failure with the log path, re-attach instead of a second submit."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from dar.launch import main as launch_main

PARAMS_JOB = ["--", "--models", "SiT-T/2", "--routings", "residual", "--input-size", "8", "--in-channels", "1"]


def launch_local(tmp_path, job: str, name: str, job_args: list[str]) -> int:
    return launch_main([job, "--cluster", "local", "--folder", str(tmp_path), "--name", name, "--poll", "0.2", *job_args])


def test_local_job_runs_and_streams_its_log(tmp_path, capsys):
    rc = launch_local(tmp_path, "params", "p", PARAMS_JOB)
    out = capsys.readouterr().out
    assert rc == 0 and "SiT-T/2" in out and "finished" in out
    assert not (tmp_path / "p.job").exists(), "the job record is removed once the job is done"


def test_failed_job_exits_nonzero_and_names_its_log(tmp_path, capsys):
    job = ["--", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--device", "cpu"]
    rc = launch_local(tmp_path, "train", "bad", job)
    err = capsys.readouterr().err
    assert rc == 1 and "failed" in err and "full log:" in err and str(tmp_path) in err


def test_unknown_job_and_multinode_local_are_rejected(tmp_path, capsys):
    assert launch_main(["trian", "--folder", str(tmp_path)]) == 2
    assert "unknown job 'trian'" in capsys.readouterr().err
    assert launch_main(["train", "--nodes", "2", "--folder", str(tmp_path)]) == 2
    assert "one node" in capsys.readouterr().err


def test_waits_for_a_still_running_earlier_job_instead_of_running_twice(tmp_path, capsys):
    earlier = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    (tmp_path / "p.job").write_text(json.dumps({"job_id": str(earlier.pid), "cluster": "local", "pid": earlier.pid}))
    t0 = time.time()
    rc = launch_local(tmp_path, "params", "p", PARAMS_JOB)
    assert rc == 0 and earlier.poll() is not None
    assert time.time() - t0 >= 2.0
    assert "still running; waiting" in capsys.readouterr().out
