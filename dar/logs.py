"""Job logging: one configuration for every `python -m dar` job, training heartbeats, progress with an ETA.

Every job logs through the standard `logging` module under the `dar` logger, configured once by
`python -m dar` (dar/__main__.py) with `configure()`:

    2026-12-03T18:20:01Z I [dar.train] step 150/1750 (8.6%) | loss 0.6954 | grad 0.924 | 0.106 s/step | ...

* timestamps in UTC (cluster logs from several time zones line up);
* rank 0 only by default: other ranks log warnings and errors, each line tagged with its rank
  (DAR_LOG_ALL_RANKS=1 lets every rank log everything);
* the level from `--log-level` anywhere on the command line, else DAR_LOG_LEVEL, else INFO.

Long loops report through `Progress`: a tqdm bar on an interactive terminal, otherwise (SLURM and
Snakemake log files) one line every `every_s` seconds and one at the end, each with the rate and the ETA.
A training job writes one heartbeat line per `log_every` steps (`heartbeat()`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time

LOGGER = "dar"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LEVEL_ENV = "DAR_LOG_LEVEL"
ALL_RANKS_ENV = "DAR_LOG_ALL_RANKS"
PROGRESS_ENV = "DAR_PROGRESS_EVERY_S"  # seconds between progress lines in log files
PROGRESS_EVERY_S = 30.0


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", self.converter(record.created))


class _Stderr(logging.StreamHandler):
    """A handler on whatever sys.stderr is when a line is written (pytest and notebooks swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def rank_of_process() -> int:
    """The process's global rank from torchrun / submitit's environment (0 outside distributed jobs)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def check_level(level: str) -> str:
    name = str(level).upper()
    if name not in LEVELS:
        from dar.errors import HarnessError

        raise HarnessError(f"log level {level!r} is not one of {', '.join(LEVELS)} (--log-level or {LEVEL_ENV})")
    return name


def configure(level: str | None = None, rank: int | None = None, stream=None) -> logging.Logger:
    """Set up the `dar` logger for this process (idempotent: a second call replaces the first's handler).

    level: DEBUG | INFO | WARNING | ERROR (default: DAR_LOG_LEVEL, else INFO). rank: this process's global rank
    (default: $RANK); ranks other than 0 log WARNING and above unless DAR_LOG_ALL_RANKS=1."""
    name = check_level(level or os.environ.get(LEVEL_ENV) or "INFO")
    rank = rank_of_process() if rank is None else rank
    logger = logging.getLogger(LOGGER)
    for h in list(logger.handlers):
        if getattr(h, "_dar", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler._dar = True  # type: ignore[attr-defined]
    tag = f" rank{rank}" if rank else ""
    handler.setFormatter(_UTCFormatter(f"%(asctime)s %(levelname).1s [%(name)s{tag}] %(message)s"))
    logger.addHandler(handler)
    quiet = rank != 0 and os.environ.get(ALL_RANKS_ENV, "0") != "1"
    logger.setLevel(max(logging.getLevelName(name), logging.WARNING) if quiet else logging.getLevelName(name))
    return logger


def get(name: str) -> logging.Logger:
    """The logger of one part of the harness, e.g. get("train") -> `dar.train`."""
    return logging.getLogger(f"{LOGGER}.{name}")


def pop_level(argv: list[str]) -> str | None:
    """Remove `--log-level X` / `--log-level=X` from argv (anywhere on the line) and return X."""
    for i, a in enumerate(argv):
        if a.startswith("--log-level="):
            del argv[i]
            return check_level(a.split("=", 1)[1])
        if a == "--log-level":
            if i + 1 >= len(argv):
                from dar.errors import HarnessError

                raise HarnessError(f"--log-level needs a value: one of {', '.join(LEVELS)}")
            value = argv[i + 1]
            del argv[i : i + 2]
            return check_level(value)
    return None


def duration(seconds: float) -> str:
    """A short human duration: 45s, 3m05s, 2h04m, 3d04h ('?' when unknown)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def eta_seconds(done: int, total: int, seconds_per_unit: float) -> float:
    """Seconds left for `total - done` more units at the given rate (0 when done, inf for an unknown rate)."""
    left = max(total - done, 0)
    if left == 0:
        return 0.0
    if not math.isfinite(seconds_per_unit) or seconds_per_unit <= 0:
        return math.inf
    return left * seconds_per_unit


def heartbeat(step: int, total: int, metrics: dict, eta_s: float) -> str:
    """One training status line: step / total, loss, grad norm, s/step, images/s, peak memory and the ETA.

    metrics: a metrics.jsonl record (loss, grad_norm, sec_per_step, images_per_s, mem_gb; align_loss and the
    routing statistics when present)."""
    parts = [f"step {step}/{total} ({100 * step / max(total, 1):.1f}%)", f"loss {metrics['loss']:.4f}"]
    if "align_loss" in metrics:
        parts.append(f"align {metrics['align_loss']:.4f}")
    parts += [
        f"grad {metrics['grad_norm']:.3g}",
        f"{metrics['sec_per_step']:.3f} s/step",
        f"{metrics['images_per_s']:.0f} img/s",
        f"mem {metrics['mem_gb']:.2f} GB",
    ]
    if "routing_entropy" in metrics:
        parts.append(f"route H {metrics['routing_entropy']:.3f}")
    parts.append(f"ETA {duration(eta_s)}")
    return " | ".join(parts)


class Progress:
    """Progress of a long loop: tqdm on an interactive terminal, else a log line every `every_s` seconds.

        with Progress(5000, "sample", unit="img", log=logs.get("sample")) as p:
            for batch in ...: p.update(len(batch))

    Each line: `<what> 1200/5000 img (24%) | 51.3 img/s | elapsed 23s | ETA 1m14s`; the last one says `done`."""

    def __init__(
        self,
        total: int,
        what: str,
        unit: str = "img",
        log: logging.Logger | None = None,
        every_s: float | None = None,
        tty: bool | None = None,
        clock=time.perf_counter,
    ) -> None:
        self.total, self.what, self.unit = int(total), what, unit
        self.log = log or get("progress")
        self.every_s = float(os.environ.get(PROGRESS_ENV, PROGRESS_EVERY_S)) if every_s is None else every_s
        self.clock = clock
        self.done = 0
        self.t0 = self.t_last = clock()
        self.bar = None
        if (sys.stderr.isatty() if tty is None else tty) and self.total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=what, unit=unit, leave=False)

    def line(self, final: bool = False) -> str:
        elapsed = self.clock() - self.t0
        rate = self.done / elapsed if elapsed > 0 else math.nan
        per_unit = 1 / rate if rate and math.isfinite(rate) and rate > 0 else math.inf
        pct = 100 * self.done / self.total if self.total else 100.0
        tail = "done" if final else f"ETA {duration(eta_seconds(self.done, self.total, per_unit))}"
        rate_s = f"{rate:.1f} {self.unit}/s" if math.isfinite(rate) else f"? {self.unit}/s"
        return f"{self.what} {self.done}/{self.total} {self.unit} ({pct:.0f}%) | {rate_s} | elapsed {duration(elapsed)} | {tail}"

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = self.clock()
        if now - self.t_last >= self.every_s and self.done < self.total:
            self.t_last = now
            self.log.info(self.line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.total > 0:
            self.log.info(self.line(final=True))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        elif self.bar is not None:
            self.bar.close()
