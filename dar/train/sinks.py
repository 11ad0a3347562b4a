"""Where a training run's metric records go: `metrics.jsonl` always, TensorBoard scalars on request.

A sink takes one record per `log_every` steps (a dict with `step` and numbers: loss, grad_norm, lr,
sec_per_step, images_per_s, mem_gb, routing statistics, REPA's align_loss) and is written by rank 0 only.

    JSONLSink         <run>/metrics.jsonl, one JSON object per line (the report and the loss plot read it)
    TensorBoardSink   <run>/tensorboard/ event files (`--tensorboard`, needs the tensorboard package)

Both resume cleanly: on a resume from step s, the JSONL file drops the lines logged after s (they were logged
by the killed job past its last checkpoint) and TensorBoard purges its events after s.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Protocol

from dar import logs
from dar.config import ConfigError
from dar.errors import DiskFullError
from dar.io import atomic_path, free_bytes, is_disk_full

log = logs.get("train")

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsSink(Protocol):
    def write(self, record: dict) -> None: ...

    def close(self) -> None: ...


class JSONLSink:
    """metrics.jsonl: each record in one write, so a killed job leaves at most one torn last line."""

    def __init__(self, run_dir: Path, resume_step: int) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        trim_jsonl(self.path, resume_step)

    def write(self, record: dict) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
        except OSError as e:
            if is_disk_full(e):
                raise DiskFullError(self.path, free_bytes(self.path)) from e
            raise

    def close(self) -> None:
        pass


class TensorBoardSink:
    """Scalars under <run>/tensorboard, one tag per numeric field (train/loss, train/grad_norm, ...)."""

    def __init__(self, run_dir: Path, resume_step: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigError(
                f"--tensorboard needs the tensorboard package ({e}); install it (pip install tensorboard, or the "
                "project's dev extra: pip install -e '.[dev]') or leave --tensorboard off (metrics.jsonl is always written)"
            ) from None
        self.dir = Path(run_dir) / TENSORBOARD_DIR
        # purge_step: events logged past the resume point by a killed job are dropped, as in metrics.jsonl
        self.writer = SummaryWriter(log_dir=str(self.dir), purge_step=resume_step + 1 if resume_step else None)

    def write(self, record: dict) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Sinks:
    """Every sink of a run, written together."""

    def __init__(self, sinks: list[MetricsSink]) -> None:
        self.sinks = sinks

    def write(self, record: dict) -> None:
        for s in self.sinks:
            s.write(record)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


def open_sinks(run_dir: Path, resume_step: int, tensorboard: bool = False) -> Sinks:
    sinks: list[MetricsSink] = [JSONLSink(run_dir, resume_step)]
    if tensorboard:
        sinks.append(TensorBoardSink(run_dir, resume_step))
    return Sinks(sinks)


def trim_jsonl(path: Path, step: int) -> None:
    """On resume, drop metric lines logged after the checkpoint so the curve has no duplicates; a line cut short
    (a job killed or a disk filled mid-write) is dropped with a warning naming the file and line."""
    if not path.is_file():
        return
    keep = []
    for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s line %d is cut short (%r...); dropped", path, i, line[:40])
            continue
        if isinstance(rec, dict) and rec.get("step", step + 1) <= step:
            keep.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in keep))
