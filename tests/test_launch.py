"""The submitit launcher: success, failure with the log path, re-attach instead of a second submit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dar.launch import main as launch_main

ROOT = Path(__file__).resolve().parents[1]
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


def _launcher(folder, name, job, job_args, poll="0.2"):
    cmd = [sys.executable, "-m", "dar.launch", job, "--cluster", "local", "--folder", str(folder), "--name", name, "--poll", poll]
    return subprocess.Popen([*cmd, "--", *job_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def test_two_launchers_started_at_once_submit_one_job(tmp_path):
    procs = [_launcher(tmp_path, "p", "params", PARAMS_JOB[1:]) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(list(tmp_path.glob("*_submitted.pkl"))) == 1, "one job, whichever launcher submitted it"
    assert sum("submitted to local" in o for o in outs) == 1
    assert any("still running; waiting" in o for o in outs), outs


def test_a_killed_controller_never_yields_a_second_trainer(tmp_path):
    from dar.data.cache import CacheConfig
    from dar.data.cache import run as cache_run

    cache_run(CacheConfig(dataset="digits", out=str(tmp_path / "lat")))
    run_dir = tmp_path / "run"
    job = ["--data", str(tmp_path / "lat"), "--out", str(run_dir), "--model", "SiT-T/2", "--global-batch", "16"]
    job += ["--iterations", "60", "--ckpt-every", "5", "--log-every", "5", "--precision", "fp32", "--device", "cpu"]
    first = _launcher(tmp_path / "sub", "train-x", "train", job)
    record, metrics = tmp_path / "sub" / "train-x.job", run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().strip()):
        time.sleep(0.2)
    assert metrics.read_text().strip(), "training never started"
    controller = json.loads(record.read_text())["pid"]
    first.kill()  # the launcher...
    os.kill(controller, signal.SIGKILL)  # ...and the submitit controller recorded for the job: its task runs on
    first.wait()
    second = _launcher(tmp_path / "sub", "train-x", "train", job)
    out = second.communicate(timeout=300)[0]
    assert second.returncode == 0, out
    assert "still running; waiting" in out and "submitted to local" not in out
    assert len(list((tmp_path / "sub").glob("*_submitted.pkl"))) == 1
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(5, 61, 5)), "one trainer: no duplicated or out-of-order metric lines"
    assert (run_dir / "done.json").is_file()


def test_a_killed_job_is_reported_as_killed_not_by_its_last_log_line(tmp_path):
    from dar.data.cache import CacheConfig
    from dar.data.cache import run as cache_run

    cache_run(CacheConfig(dataset="digits", out=str(tmp_path / "lat")))
    job = ["--data", str(tmp_path / "lat"), "--out", str(tmp_path / "run"), "--model", "SiT-T/2", "--global-batch", "16"]
    job += ["--iterations", "100000", "--log-every", "1", "--precision", "fp32", "--device", "cpu"]
    launcher = _launcher(tmp_path / "sub", "train-k", "train", job)
    tasks = tmp_path / "sub" / "train-k.tasks"
    deadline = time.time() + 120
    while time.time() < deadline and not ((tmp_path / "run" / "metrics.jsonl").is_file() and list(tasks.glob("task*.json"))):
        time.sleep(0.2)
    task = json.loads(next(tasks.glob("task*.json")).read_text())
    os.kill(task["pid"], signal.SIGKILL)  # e.g. the kernel's OOM killer
    out = launcher.communicate(timeout=120)[0]
    assert launcher.returncode == 1
    reason = next(line for line in out.splitlines() if "failed:" in line)
    assert "stopped before it finished and left no result" in reason and "killed" in reason, reason
    assert "full log:" in out


def test_requeues_never_repeat_a_restart():
    from dar.launch import without_restart

    assert without_restart(["--out", "r", "--restart", "true", "--lr", "1"]) == ["--out", "r", "--lr", "1", "--restart", "false"]
    assert without_restart(["--restart=true"]) == ["--restart", "false"]
    assert without_restart(["--config", "j.json"]) == ["--config", "j.json", "--restart", "false"]  # a file's restart too


def test_an_earlier_job_with_other_arguments_is_waited_for_then_this_one_runs(tmp_path, capsys):
    from dar.launch import args_digest

    earlier = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    rec = {"job_id": str(earlier.pid), "cluster": "local", "pid": earlier.pid, "args_digest": args_digest("params", ["--other"])}
    (tmp_path / "p.job").write_text(json.dumps(rec))
    assert launch_local(tmp_path, "params", "p", PARAMS_JOB) == 0
    out = capsys.readouterr().out
    assert "it ran other arguments: this one runs after it" in out and "submitted to local" in out
    assert earlier.poll() is not None


def test_a_record_from_another_host_is_an_error_not_a_wait(tmp_path, capsys):
    (tmp_path / "p.job").write_text(json.dumps({"job_id": "1", "cluster": "local", "pid": 1, "host": "elsewhere"}))
    rc = launch_local(tmp_path, "params", "p", PARAMS_JOB)
    err = capsys.readouterr().err
    assert rc == 2 and "records a local job on host elsewhere" in err and "delete that file" in err
