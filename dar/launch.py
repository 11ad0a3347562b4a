"""`python -m dar.launch <job> [options] -- <job args>`: run a `python -m dar <job>` through submitit.

    python -m dar.launch train --cluster slurm --gpus 8 --nodes 4 --time-min 4320 \\
        --partition gpu --name train-static-c4 -- --preset imagenet256 --routing dar-static-c4 ...

Snakemake's heavy rules call this; the cluster and the job's size come from
the rule's resources (set by the profile in slurm/), never from its params.
The launcher submits the job, streams its log, waits, and exits non-zero with
the path of the job's log if the job fails.

* Clusters: `slurm`; `local` (a subprocess with the same code path, timeouts
  and requeue); `debug` (in this process, for tests and pdb).
* Multi-GPU / multi-node: one task per GPU; each task exports RANK,
  WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT from submitit's job
  environment before the job starts, so the job's torch.distributed init sees them.
* Training jobs are `submitit.helpers.Checkpointable`: on a SLURM timeout or
  preemption the job is requeued and, since resuming is rerunning, continues
  from its newest checkpoint.
* One job per name: the check for an earlier job, the submission and the
  record `<folder>/<name>.job` happen under a lock (`<name>.lock`), so two
  launchers started at once submit once. A launcher restarted while its job is
  still active re-attaches to it instead of submitting a second copy; active
  means queued or running in `sacct`/`squeue` on SLURM, and locally that the
  job's submitit controller or any of its tasks still runs (each task records
  its pid and start time in `<name>.tasks/`): killing the controller leaves the
  tasks running, and the relaunch waits for them. The jobs themselves also hold
  a lock on their output folder (a training run folder's `.lock`).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import submitit
import submitit.local.local

from dar.errors import HarnessError
from dar.io import write_json
from dar.lock import FileLock

DISTRIBUTED_JOBS = {"train", "sample", "sample-sets", "cache-latents"}  # one task per GPU; the others run as one task
REQUEUE_JOBS = {"train"}
ACTIVE_SLURM_STATES = {
    "PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD", "PREEMPTED",
}  # fmt: skip
UNKNOWN_GRACE_S = 900  # sacct may not list a job yet (submitit says UNKNOWN): active for this long after submission


class LaunchError(HarnessError):
    """The launcher cannot tell whether an earlier submission still runs."""


class DarJob:
    """Picklable callable: runs `python -m dar <job> <args>` inside the submitit task."""

    def __init__(self, job: str, args: list[str], threads: int = 0, tasks_dir: str | None = None) -> None:
        self.job = job
        self.args = list(args)
        self.threads = threads
        self.tasks_dir = tasks_dir  # where each task records its pid (local liveness, see _local_alive)

    def __call__(self) -> int:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)  # the CPUs the job was given, not every core of the host
        env = submitit.JobEnvironment()
        if self.tasks_dir:
            write_json(Path(self.tasks_dir) / f"task{env.global_rank}.json", _process_record(os.getpid()))
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            os.environ.setdefault("LOCAL_RANK", str(env.local_rank))
        from dar.__main__ import main

        rc = main([self.job, *self.args])
        if rc:
            raise RuntimeError(f"`python -m dar {self.job}` exited with status {rc} (see the messages above in this log)")
        return 0


class CheckpointableDarJob(DarJob, submitit.helpers.Checkpointable):
    """On timeout/preemption submitit calls checkpoint(), which requeues this call: the rerun resumes. A --restart
    given to the first run is not given again (it would set the run aside on every requeue)."""

    def checkpoint(self, *args, **kwargs):
        resumed = CheckpointableDarJob(self.job, without_restart(self.args), self.threads, self.tasks_dir)
        return submitit.helpers.DelayedSubmission(resumed)


def without_restart(args: list[str]) -> list[str]:
    """The job's arguments with --restart dropped and `--restart false` added (which also overrides a config file's)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--restart":
            skip = True
        elif not a.startswith("--restart="):
            out.append(a)
    return [*out, "--restart", "false"]


def args_digest(job: str, job_args: list[str]) -> str:
    """What a submission runs: the job, its arguments and the content of its --config file. A launcher re-attaches
    only to an earlier submission of the same digest; one of a changed config is waited for, then run again."""
    h = hashlib.sha256(json.dumps([job, job_args]).encode())
    for flag, value in itertools.pairwise(job_args):
        if flag == "--config" and Path(value).is_file():
            h.update(Path(value).read_bytes())
    return h.hexdigest()[:16]


def _job_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.job"


def _tasks_dir(folder: Path, name: str) -> Path:
    return folder / f"{name}.tasks"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with the pid, it names
    one process, so a recycled pid is never taken for the job's."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _process_record(pid: int) -> dict:
    return {"pid": pid, "start": _start_time(pid), "host": socket.gethostname()}


def _alive(pid: int, start: str | None = None) -> bool:
    """True while `pid` runs (and, given `start`, is the process that started then); a zombie counts as dead."""
    if pid <= 0:  # kill(0 or -1, 0) would ask about a whole process group or every process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    if state in ("Z", "X"):
        return False
    return start is None or _start_time(pid) in (None, start)


def _local_alive(folder: Path, name: str, rec: dict) -> bool:
    """A local job is alive while its submitit controller or any of its tasks runs: a killed controller leaves
    its tasks running, and they still own the job's outputs."""
    host = rec.get("host", socket.gethostname())
    if host != socket.gethostname():
        raise LaunchError(
            f"{_job_file(folder, name)} records a local job on host {host}, whose processes cannot be seen from "
            f"{socket.gethostname()}: if it still runs there, wait for it or stop it there; then delete that file and rerun"
        )
    if _alive(int(rec.get("pid", -1)), rec.get("start")):
        return True
    for path in sorted(_tasks_dir(folder, name).glob("task*.json")):
        try:
            task = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if _alive(int(task["pid"]), task.get("start")):
            return True
    return False


def _slurm_active(job, rec: dict) -> str | None:
    """The job's SLURM state while it is queued or running (sacct via submitit), else None."""
    state = job.state
    word = state.split(" ")[0]
    if word in ACTIVE_SLURM_STATES or (word == "UNKNOWN" and time.time() - rec.get("submitted", 0) < UNKNOWN_GRACE_S):
        return state
    return None


def _reattach(folder: Path, name: str, cluster: str, digest: str):
    """An earlier submission of the same name and digest that is still active, to wait for instead of submitting.

    SLURM: re-attach while sacct says the job is queued or running. Local: wait while its controller or any of
    its tasks runs; if it then leaves a result, that result is this launch's result. An earlier submission with
    other arguments or another config (an edited grid) is waited for while it runs, then this one is submitted.
    """
    path = _job_file(folder, name)
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if rec.get("cluster") != cluster or cluster == "debug":
        return None
    same = rec.get("args_digest") == digest
    if cluster == "slurm":
        job = submitit.SlurmJob(folder=folder, job_id=rec["job_id"], tasks=tuple(range(rec.get("num_tasks", 1))))
        state = _slurm_active(job, rec)
        if state and same:
            print(f"[launch] re-attaching to SLURM job {rec['job_id']} ({state}) instead of submitting a second copy", flush=True)
            return job
        if state:
            print(
                f"[launch] SLURM job {rec['job_id']} of {name} ran other arguments ({state}); waiting for it to end", flush=True
            )
            while _slurm_active(job, rec):
                time.sleep(10)
        return None
    if not _local_alive(folder, name, rec):
        # nothing of it runs: a job that finished before this launcher came is not this launch's result (its
        # outputs may have been deleted since, e.g. by Snakemake rerunning an incomplete job), so run it again
        return None
    print(
        f"[launch] an earlier local run of {name} (job {rec['job_id']}) is still running; waiting for it to end "
        + ("instead of starting a second copy" if same else "(it ran other arguments: this one runs after it)"),
        flush=True,
    )
    while _local_alive(folder, name, rec):
        time.sleep(2)
    if not same:
        return None
    job = submitit.local.local.LocalJob(folder=folder, job_id=rec["job_id"], tasks=tuple(range(rec.get("num_tasks", 1))))
    # it ended while this launcher waited for it: its result, if it left one, is this launch's result (a result
    # file older than the submission belongs to an earlier job whose controller had the same pid)
    result = job.paths.result_pickle
    return job if result.exists() and result.stat().st_mtime >= rec.get("submitted", 0) else None


def _stream(job, printed: dict[str, int]) -> None:
    """Print what the job's stdout gained since the last call."""
    try:
        path = Path(job.paths.stdout)
        if path.is_file():
            with open(path, errors="replace") as f:
                f.seek(printed.get("out", 0))
                chunk = f.read()
                printed["out"] = f.tell()
            if chunk:
                sys.stdout.write(chunk)
                sys.stdout.flush()
    except OSError:
        pass


def make_executor(args: argparse.Namespace, folder: Path, name: str, tasks: int) -> submitit.AutoExecutor:
    """The submitit executor of one job: `tasks` tasks per node with --cpus CPUs each (SLURM --cpus-per-task)."""
    ctor = {"slurm_max_num_timeout": args.max_requeues} if args.cluster == "slurm" else {}  # submitit's default: 3
    ex = submitit.AutoExecutor(folder=folder, cluster=args.cluster, **ctor)
    params = dict(
        name=name,
        timeout_min=int(args.time_min),
        nodes=args.nodes,
        tasks_per_node=tasks,
        gpus_per_node=args.gpus,
        cpus_per_task=args.cpus,
        stderr_to_stdout=True,
    )
    if args.mem_gb:
        params["mem_gb"] = args.mem_gb
    if args.cluster == "slurm":
        if args.partition:
            params["slurm_partition"] = args.partition
        if args.account:
            params["slurm_account"] = args.account
    ex.update_parameters(**params)
    return ex


def tasks_per_node(args: argparse.Namespace) -> int:
    """Distributed jobs run one task per GPU (or --tasks); the others one task."""
    return (args.tasks or max(args.gpus, 1)) if args.job in DISTRIBUTED_JOBS else 1


def submit(args: argparse.Namespace, job_args: list[str]) -> int:
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = args.name or args.job
    tasks = tasks_per_node(args)
    if args.cluster == "local" and args.nodes > 1:
        print("error: the local cluster runs on one node; use --nodes 1 or --cluster slurm", file=sys.stderr)
        return 2
    fn_cls = CheckpointableDarJob if args.job in REQUEUE_JOBS else DarJob
    tasks_dir = _tasks_dir(folder, name)
    fn = fn_cls(args.job, job_args, threads=args.cpus, tasks_dir=str(tasks_dir) if args.cluster == "local" else None)

    # One submission per job name: check -> submit -> record under a lock, so two launchers started at once
    # for the same job give one job (the second re-attaches to it).
    digest = args_digest(args.job, job_args)
    lock = folder / f"{name}.lock"
    with FileLock(lock, on_wait=lambda holder: print(f"[launch] waiting for {lock}, held by {holder}", flush=True)):
        job = _reattach(folder, name, args.cluster, digest)
        if job is None:
            ex = make_executor(args, folder, name, tasks)
            shutil.rmtree(tasks_dir, ignore_errors=True)
            submitted = time.time()
            job = ex.submit(fn)
            rec = {"job_id": str(job.job_id), "cluster": args.cluster, "num_tasks": tasks * args.nodes, "submitted": submitted}
            rec["args_digest"] = digest
            if args.cluster == "local":
                rec.update(_process_record(int(job.job_id)))
            if args.cluster != "debug":
                write_json(_job_file(folder, name), rec)
            print(
                f"[launch] {args.job} submitted to {args.cluster} as job {job.job_id} ({tasks * args.nodes} task(s)); "
                f"log: {job.paths.stdout}",
                flush=True,
            )

    rec = {"host": socket.gethostname(), "pid": -1}
    printed: dict[str, int] = {}
    try:
        # locally, also wait for the tasks: a killed controller leaves them running
        while not job.done() or (args.cluster == "local" and _local_alive(folder, name, rec)):
            _stream(job, printed)
            time.sleep(args.poll)
        _stream(job, printed)
        job.results()
    except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError, RuntimeError) as e:
        _stream(job, printed)
        print(f"[launch] job {job.job_id} ({args.job}) failed: {failure_reason(e, job)}", file=sys.stderr)
        print(f"[launch] full log: {job.paths.stdout}", file=sys.stderr)
        return 1
    finally:
        if args.cluster != "debug" and job.done() and not (args.cluster == "local" and _local_alive(folder, name, rec)):
            _forget(folder, name, str(job.job_id))
    print(f"[launch] {args.job} job {job.job_id} finished", flush=True)
    return 0


def _forget(folder: Path, name: str, job_id: str) -> None:
    """Remove the job's record, under the lock and only if it is still this job's (a newer launcher may own it)."""
    path = _job_file(folder, name)
    with FileLock(folder / f"{name}.lock"):
        try:
            if json.loads(path.read_text()).get("job_id") == job_id:
                path.unlink()
        except (OSError, json.JSONDecodeError):
            pass


def failure_reason(e: BaseException, job) -> str:
    """One line on why a job failed: the `error:` line the job printed; for a job that never finished (killed by a
    signal, the scheduler, out of time or memory) that, with its state; else the exception's last line."""
    try:
        text = Path(job.paths.stdout).read_text(errors="replace")
        errors = [line.strip() for line in text.splitlines() if line.startswith("error: ")]
        if errors:
            return errors[-1]
    except OSError:
        pass
    if isinstance(e, submitit.core.utils.UncompletedJobError):
        try:
            state = job.state
        except Exception:
            state = "unknown"
        return (
            f"the job stopped before it finished and left no result (state: {state}): it was killed (a signal, "
            "the scheduler, out of memory or time) or its process died; nothing it had not finished counts as done"
        )
    msg = str(e).strip()
    return msg.splitlines()[-1] if msg else type(e).__name__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        i = argv.index("--")
        ours, job_args = argv[:i], argv[i + 1 :]
    else:
        ours, job_args = argv, []
    args = parser().parse_args(ours)
    from dar.__main__ import COMMANDS

    if args.job not in COMMANDS:
        print(f"error: unknown job {args.job!r}; jobs: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return submit(args, job_args)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dar.launch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("job", help="a `python -m dar` command: train, sample, cell, cache-latents, ...")
    p.add_argument("--cluster", choices=["local", "slurm", "debug"], default="local", help="where the job runs (default: local)")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per node; distributed jobs run one task per GPU (default: 0)")
    p.add_argument("--tasks", type=int, default=0, help="processes per node for distributed jobs; 0 = one per GPU (default: 0)")
    p.add_argument("--nodes", type=int, default=1, help="nodes (default: 1)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs per task (default: 2)")
    p.add_argument("--mem-gb", type=float, default=0, help="memory per node in GB, 0 = cluster default (default: 0)")
    p.add_argument("--time-min", type=int, default=60, help="time limit in minutes; training requeues past it (default: 60)")
    p.add_argument("--partition", default="", help="SLURM partition (default: cluster default)")
    p.add_argument("--account", default="", help="SLURM account (default: none)")
    p.add_argument("--folder", default="results/submitit", help="submitit logs and job records (shared filesystem on a cluster)")
    p.add_argument("--name", default="", help="job name; also the key for re-attaching (default: the job)")
    p.add_argument(
        "--max-requeues", type=int, default=1000, help="timeouts/preemptions a training job may be requeued after (default: 1000)"
    )
    p.add_argument("--poll", type=float, default=2.0, help="seconds between log polls (default: 2)")
    return p


if __name__ == "__main__":
    sys.exit(main())
