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
* Re-attach: the job id is stored in `<folder>/<name>.job`; a launcher that is
  restarted while its job is still queued or running waits for that job
  instead of submitting a second copy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import submitit

DISTRIBUTED_JOBS = {"train", "sample", "cache-latents"}  # one task per GPU; the others run as one task
REQUEUE_JOBS = {"train"}
ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "REQUEUE_HOLD"}


class DarJob:
    """Picklable callable: runs `python -m dar <job> <args>` inside the submitit task."""

    def __init__(self, job: str, args: list[str], threads: int = 0) -> None:
        self.job = job
        self.args = list(args)
        self.threads = threads

    def __call__(self) -> int:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)  # the CPUs the job was given, not every core of the host
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            os.environ.setdefault("LOCAL_RANK", str(env.local_rank))
        from dar.__main__ import main

        rc = main([self.job, *self.args])
        if rc:
            raise RuntimeError(f"`python -m dar {self.job}` exited with status {rc} (see the messages above in this log)")
        return 0


class CheckpointableDarJob(DarJob, submitit.helpers.Checkpointable):
    """On timeout/preemption submitit calls checkpoint(), which requeues this same call: the rerun resumes."""


def _job_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.job"


def _alive(pid: int) -> bool:
    """True while `pid` runs; an exited process that its parent has not reaped (a zombie) counts as dead."""
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
    return state not in ("Z", "X")


def _reattach(folder: Path, name: str, cluster: str):
    """A still-active job submitted by an earlier launcher for the same name, or None."""
    path = _job_file(folder, name)
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if rec.get("cluster") != cluster:
        return None
    if cluster == "slurm":
        job = submitit.SlurmJob(folder=folder, job_id=rec["job_id"], tasks=tuple(range(rec.get("num_tasks", 1))))
        state = job.state
        if state.split(" ")[0] in ACTIVE_SLURM_STATES:
            print(f"[launch] re-attaching to SLURM job {rec['job_id']} ({state}) instead of submitting a second copy", flush=True)
            return job
        return None
    if cluster == "local" and _alive(int(rec.get("pid", -1))):
        print(f"[launch] an earlier local run of {name} (pid {rec['pid']}) is still running; waiting for it to exit", flush=True)
        while _alive(int(rec["pid"])):
            time.sleep(2)
    return None


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


def submit(args: argparse.Namespace, job_args: list[str]) -> int:
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = args.name or args.job
    tasks = (args.tasks or max(args.gpus, 1)) if args.job in DISTRIBUTED_JOBS else 1
    fn_cls = CheckpointableDarJob if args.job in REQUEUE_JOBS else DarJob
    fn = fn_cls(args.job, job_args, threads=args.cpus)
    if args.cluster == "local" and args.nodes > 1:
        print("error: the local cluster runs on one node; use --nodes 1 or --cluster slurm", file=sys.stderr)
        return 2

    job = _reattach(folder, name, args.cluster)
    if job is None:
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
        job = ex.submit(fn)
        rec = {"job_id": str(job.job_id), "cluster": args.cluster, "num_tasks": tasks * args.nodes}
        if args.cluster == "local":
            rec["pid"] = int(job.job_id)
        if args.cluster != "debug":
            _job_file(folder, name).write_text(json.dumps(rec))
        print(
            f"[launch] {args.job} submitted to {args.cluster} as job {job.job_id} ({tasks * args.nodes} task(s)); "
            f"log: {job.paths.stdout}",
            flush=True,
        )

    printed: dict[str, int] = {}
    try:
        while not job.done():
            _stream(job, printed)
            time.sleep(args.poll)
        _stream(job, printed)
        job.results()
    except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError, RuntimeError) as e:
        _stream(job, printed)
        print(
            f"[launch] job {job.job_id} ({args.job}) failed: {str(e).strip().splitlines()[-1] if str(e).strip() else e}",
            file=sys.stderr,
        )
        print(f"[launch] full log: {job.paths.stdout}", file=sys.stderr)
        return 1
    finally:
        if args.cluster != "debug" and job.done():
            _job_file(folder, name).unlink(missing_ok=True)
    print(f"[launch] {args.job} job {job.job_id} finished", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        i = argv.index("--")
        ours, job_args = argv[:i], argv[i + 1 :]
    else:
        ours, job_args = argv, []
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
    args = p.parse_args(ours)
    from dar.__main__ import COMMANDS

    if args.job not in COMMANDS:
        print(f"error: unknown job {args.job!r}; jobs: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return submit(args, job_args)


if __name__ == "__main__":
    sys.exit(main())
