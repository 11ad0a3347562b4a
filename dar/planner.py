"""`python -m dar plan`: what a grid will cost before it runs: GPU-hours and wall time per job and in total.

    python -m dar plan --preset imagenet256                                   # the paper's 0.59 s/step (App. C.2)
    python -m dar plan --preset imagenet256 --from-bench results/bench/train-bench-h100.json --max-gpus 256
    python -m dar plan --preset imagenet256 --step-time 0.8 --step-gpus 8 --gpus-per-job 16
    python -m dar plan --preset digits --from-bench results/digits/runbench.json

Every number says where it comes from. The arithmetic (each assumption is printed under the table):

* training   wall = iterations x s/step at the job's GPUs; GPU-hours = wall x GPUs.
             s/step: measured (a train-bench or run-bench JSON: per (model, routing) images/s per GPU, so
             s/step = global batch / (GPUs x images/s), perfect data-parallel scaling), or stated
             (--step-time S measured on --step-gpus G GPUs, scaled by G / GPUs; the same for every run).
* sampling   GPU-seconds = samples x NFE x (2 with guidance) / forward images/s per GPU, a forward taken as a
             third of a training image (forward + backward ~ 3 forwards).
* evaluation GPU-seconds = samples x seeds / --eval-images-per-s (feature extraction; assumed 1000 img/s).
* wall time of the grid: each (run, seed) is one chain, training then its sampling, on job slots of
  --max-gpus / GPUs-per-job; chains are placed longest first (LPT), evaluation comes after.

Job sizes (GPUs per training and sampling job) come from the SLURM profile (slurm/config.yaml) at paper scale,
and are one CPU job each at digits scale; --gpus-per-job and --sample-gpus override them.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from dar.errors import HarnessError
from dar.logs import duration
from dar.paper import paper_data
from dar.plan import Plan

PROFILE = Path(__file__).resolve().parents[1] / "slurm" / "config.yaml"
FORWARDS_PER_TRAIN_IMAGE = 3.0  # forward + backward ~ 3 forwards: sampling runs 3x a training step's images/s
EVAL_IMAGES_PER_S = 1000.0  # Inception / digits features per second on one GPU (assumed; CPU figures differ)


class PlanError(HarnessError, ValueError):
    """No step time for a run, or an unreadable bench file."""


@dataclass(frozen=True)
class Throughput:
    """Training images per second per device of one (model, routing), and where the number comes from."""

    images_per_s: float
    source: str


@dataclass(frozen=True)
class TrainCost:
    run: str
    seed: int
    model: str
    routing: str
    iterations: int
    gpus: int
    sec_per_step: float
    wall_s: float
    gpu_h: float
    source: str


@dataclass(frozen=True)
class SampleCost:
    run: str
    seed: int
    sets: int
    images: int  # samples x NFE x (2 with guidance): forward images
    gpus: int
    gpu_s: float
    wall_s: float
    source: str


@dataclass(frozen=True)
class ComputePlan:
    preset: str
    trains: list[TrainCost]
    samples: list[SampleCost]
    eval_gpu_s: float
    eval_cells: int
    max_gpus: int
    train_gpus: int
    wall_s: float
    notes: list[str]

    @property
    def train_gpu_h(self) -> float:
        return sum(t.gpu_h for t in self.trains)

    @property
    def sample_gpu_h(self) -> float:
        return sum(s.gpu_s for s in self.samples) / 3600

    @property
    def eval_gpu_h(self) -> float:
        return self.eval_gpu_s / 3600

    @property
    def total_gpu_h(self) -> float:
        return self.train_gpu_h + self.sample_gpu_h + self.eval_gpu_h

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(train_gpu_h=self.train_gpu_h, sample_gpu_h=self.sample_gpu_h, eval_gpu_h=self.eval_gpu_h)
        d["total_gpu_h"] = self.total_gpu_h
        return d


# ----------------------------------------------------------------------------- arithmetic


def step_seconds(global_batch: int, gpus: int, images_per_s_per_gpu: float) -> float:
    """Seconds per optimizer step of `global_batch` images on `gpus` devices (perfect data-parallel scaling)."""
    return global_batch / (max(gpus, 1) * images_per_s_per_gpu)


def stated_throughput(step_time: float, step_gpus: int, global_batch: int, source: str) -> Throughput:
    """A stated step time (seconds per step of the global batch on `step_gpus` devices) as images/s per device."""
    return Throughput(global_batch / (step_time * max(step_gpus, 1)), source)


def sample_gpu_seconds(num_samples: int, nfe: int, guided: bool, train_images_per_s: float) -> float:
    """Device-seconds to draw num_samples at nfe evaluations (guidance doubles the batch of each evaluation)."""
    return num_samples * nfe * (2 if guided else 1) / (FORWARDS_PER_TRAIN_IMAGE * train_images_per_s)


def lpt_makespan(durations: list[float], slots: int) -> float:
    """Wall time of independent jobs on `slots` identical slots, placed longest first (LPT: at most 4/3 of optimal)."""
    if not durations:
        return 0.0
    heap = [0.0] * max(min(slots, len(durations)), 1)
    for d in sorted(durations, reverse=True):
        heapq.heappush(heap, heapq.heappop(heap) + d)
    return max(heap)


# ----------------------------------------------------------------------------- inputs


def profile_gpus(rule: str) -> int:
    """GPUs per job of a rule in the SLURM profile (gpus per node x nodes); 8 if the profile is not at hand."""
    try:
        res = yaml.safe_load(PROFILE.read_text())["set-resources"][rule]
    except (OSError, KeyError, TypeError):
        return 8
    return int(res.get("gpus", 0)) * int(res.get("nodes", 1))


def read_bench(path: str | Path) -> dict[tuple[str, str], Throughput]:
    """(model, routing) -> images/s per device from a train-bench JSON ({"rows"}) or a run-bench JSON ({"steps"})."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(
            f"--from-bench {path}: cannot read it as JSON ({e}); give a train-bench or run-bench --out file"
        ) from None
    rows = data.get("rows") or data.get("steps") if isinstance(data, dict) else None
    if not rows:
        raise PlanError(f"--from-bench {path}: no step times in it (expected the 'rows' of train-bench or 'steps' of run-bench)")
    device = (data.get("environment") or {}).get("device", "unknown device")
    out = {}
    for r in rows:
        if r.get("width_match"):
            continue  # a width-matched control's row: the (model, routing) key is the unwidened model's
        out[(r["model"], r["routing"])] = Throughput(
            float(r["images_per_s"]), f"measured: {path.name}, batch {r['batch']} on {device}"
        )
    return out


# ----------------------------------------------------------------------------- the plan


def make_plan(
    plan: Plan,
    bench: dict[tuple[str, str], Throughput] | None = None,
    stated: Throughput | None = None,
    gpus_per_job: int | None = None,
    sample_gpus: int | None = None,
    max_gpus: int | None = None,
    eval_images_per_s: float = EVAL_IMAGES_PER_S,
) -> ComputePlan:
    digits = plan.preset.scale == "digits"
    train_gpus = gpus_per_job if gpus_per_job is not None else (0 if digits else profile_gpus("train"))
    samp_gpus = sample_gpus if sample_gpus is not None else (0 if digits else profile_gpus("sample"))
    notes = []
    trains, throughput = [], {}
    missing = set()
    for (name, seed), run in sorted(plan.runs.items()):
        tp = (bench or {}).get((run.model, run.routing)) or stated
        if tp is None:
            missing.add((run.model, run.routing))
            continue
        throughput[(name, seed)] = tp
        sec = step_seconds(run.config.global_batch, train_gpus, tp.images_per_s)
        wall = run.iterations * sec
        gpu_h = wall * max(train_gpus, 1) / 3600
        trains.append(TrainCost(name, seed, run.model, run.routing, run.iterations, train_gpus, sec, wall, gpu_h, tp.source))
    if missing:
        pairs = ", ".join(f"{m} {r}" for m, r in sorted(missing))
        raise PlanError(
            f"no step time for {pairs}: measure them (python -m dar train-bench --model M --routing R --out FILE, then "
            "--from-bench FILE) or state one (--step-time S --step-gpus G)"
        )
    by_run: dict[tuple[str, int], list] = {}
    for s in plan.samples:
        by_run.setdefault((s.run.name, s.seed), []).append(s)
    samples = []
    for key, sets in sorted(by_run.items()):
        tp = throughput[key]
        images = sum(s.config.num_samples * s.config.nfe * (2 if s.config.cfg_scale > 1 else 1) for s in sets)
        gpu_s = sum(sample_gpu_seconds(s.config.num_samples, s.config.nfe, s.config.cfg_scale > 1, tp.images_per_s) for s in sets)
        samples.append(SampleCost(key[0], key[1], len(sets), images, samp_gpus, gpu_s, gpu_s / max(samp_gpus, 1), tp.source))
    eval_images = sum(c.num_samples * len(c.seeds) for c in plan.cells)
    eval_gpu_s = eval_images / eval_images_per_s
    devices = max(train_gpus, 1)
    cap = max_gpus if max_gpus else devices * len(trains)
    slots = max(cap // devices, 1)
    chains = {(t.run, t.seed): t.wall_s for t in trains}
    for s in samples:
        chains[(s.run, s.seed)] += s.wall_s
    wall = lpt_makespan(list(chains.values()), slots) + eval_gpu_s / max(cap, 1)
    if train_gpus:
        each = f"{train_gpus} GPU(s) per training job, {samp_gpus} per sampling job"
        per = "GPU"
    else:
        each, per = "one CPU process per job (a job's threads, as the workflow runs it)", "process"
    notes.append(f"devices: {each}")
    notes.append(f"training: s/step = global batch / (devices x measured or stated img/s per {per}): linear scaling")
    notes.append(
        f"sampling: a forward = 1/{FORWARDS_PER_TRAIN_IMAGE:g} of a training image (estimate); guidance doubles each evaluation"
    )
    notes.append(f"evaluation: {eval_images_per_s:g} images/s per {per} (assumed) over {eval_images} images")
    notes.append(
        f"wall time: {slots} job slot(s) of {devices} device(s) ({cap} in all); each run's seed trains, then samples; "
        "longest first (LPT); evaluation after"
    )
    return ComputePlan(plan.preset.name, trains, samples, eval_gpu_s, len(plan.cells), cap, train_gpus, wall, notes)


# ----------------------------------------------------------------------------- printing


def print_plan(cp: ComputePlan) -> None:
    unit = "GPU-h" if cp.train_gpus else "job-h"
    print(f"compute plan of preset {cp.preset}")
    print()
    hdr = f"{'run':<14} {'seed':>4} {'routing':<20} {'iters':>9} {'devs':>4} {'s/step':>8} {'wall':>8} {unit:>9}  source"
    print(hdr)
    print("-" * len(hdr))
    for t in cp.trains:
        print(
            f"{t.run:<14} {t.seed:>4} {t.routing:<20} {t.iterations:>9} {max(t.gpus, 1):>4} {t.sec_per_step:>8.3f} "
            f"{duration(t.wall_s):>8} {t.gpu_h:>9.1f}  {t.source}"
        )
    print()
    print(f"{'sampling':<14} {'seed':>4} {'sets':>5} {'forward images':>15} {'wall':>8} {unit:>9}")
    for s in cp.samples:
        print(f"{s.run:<14} {s.seed:>4} {s.sets:>5} {s.images:>15.3g} {duration(s.wall_s):>8} {s.gpu_s / 3600:>9.1f}")
    print()
    print(f"training   {cp.train_gpu_h:>10.1f} {unit}  ({len(cp.trains)} jobs)")
    print(f"sampling   {cp.sample_gpu_h:>10.1f} {unit}  ({sum(s.sets for s in cp.samples)} sample sets)")
    print(f"evaluation {cp.eval_gpu_h:>10.1f} {unit}  ({cp.eval_cells} cells)")
    print(f"total      {cp.total_gpu_h:>10.1f} {unit}; wall time about {duration(cp.wall_s)} on {cp.max_gpus} device(s)")
    print()
    for n in cp.notes:
        print(f"  * {n}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar plan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="digits", help="grid preset (dar/presets/<name>.yaml or a .yaml path; default: digits)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from-bench", help="train-bench / run-bench JSON with measured step times per (model, routing)")
    src.add_argument("--step-time", type=float, help="stated seconds per training step (the global batch), every run")
    p.add_argument(
        "--step-gpus", type=int, default=None, help="GPUs the stated step time was measured on (default: --gpus-per-job)"
    )
    p.add_argument("--gpus-per-job", type=int, default=None, help="GPUs per training job (default: the SLURM profile's)")
    p.add_argument("--sample-gpus", type=int, default=None, help="GPUs per sampling job (default: the SLURM profile's)")
    p.add_argument("--max-gpus", type=int, default=None, help="GPUs the grid may hold at once (default: every job at once)")
    p.add_argument("--eval-images-per-s", type=float, default=EVAL_IMAGES_PER_S, help="feature extraction rate per GPU")
    p.add_argument("--json", help="also write the plan as JSON here")
    p.add_argument("--results", default="results", help="results root (default: results)")
    args = p.parse_args(argv)
    try:
        plan = Plan.load(args.preset, results=args.results)
        digits = plan.preset.scale == "digits"
        gpus = args.gpus_per_job if args.gpus_per_job is not None else (0 if digits else profile_gpus("train"))
        bench = read_bench(args.from_bench) if args.from_bench else None
        stated = None
        batch = next(iter(plan.runs.values())).config.global_batch
        if args.step_time is not None:
            if not args.step_time > 0:
                raise PlanError(f"--step-time {args.step_time}: must be > 0 seconds")
            g = args.step_gpus or gpus
            stated = stated_throughput(args.step_time, g, batch, f"stated: {args.step_time:g} s/step on {g or 1} device(s)")
        elif bench is None and not digits:
            c = paper_data()["compute"]
            stated = stated_throughput(
                c["sec_per_step"], gpus, batch, f"paper App. C.2: {c['sec_per_step']:g} s/step ({c['routing']}, {c['gpu']})"
            )
        elif bench is None:
            raise PlanError(
                "digits scale has no stated step time: give --from-bench FILE (python -m dar run-bench --preset digits "
                "--out FILE, or train-bench --out FILE) or --step-time S"
            )
        cp = make_plan(plan, bench, stated, args.gpus_per_job, args.sample_gpus, args.max_gpus, args.eval_images_per_s)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if stated is not None and stated.source.startswith("paper"):
        cp.notes.insert(
            0,
            "step time: the paper's one figure for Static c4, applied to every run; its GPU count is not stated, taken "
            "as the training job's. Measure your own: python -m dar train-bench --out FILE",
        )
    print_plan(cp)
    if args.json:
        from dar.io import write_json

        write_json(args.json, cp.to_dict())
    return 0 if all(math.isfinite(t.wall_s) for t in cp.trains) else 1
