"""What each job of a run cost: Snakemake's benchmark records, read once for run-bench and the report.

Every heavy rule writes `<root>/benchmarks/<rule>/<job>.tsv` (workflow/rules/common.smk `bench()`); the
workflow profile (profiles/default/config.yaml) turns on `benchmark-extended`, so each record also holds the
job's resources (cluster, gpus, nodes, cpus) beside its wall time and peak RSS. A record written without them
(an older run) counts as a CPU job.

    GPU-hours of a job = wall time x GPUs per node x nodes (0 for CPU jobs)

Wall time is the launcher's: from the submission to the job's end, so queueing on a cluster is included.
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class JobRecord:
    rule: str
    name: str
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    end: float  # the record's file time: the job's end
    resources: dict = field(default_factory=dict)  # the rule's resources (benchmark-extended), {} if not recorded

    @property
    def start(self) -> float:
        return self.end - self.wall_s

    @property
    def gpus(self) -> int:
        """GPUs the job held: GPUs per node x nodes."""
        return int(self.resources.get("gpus", 0) or 0) * int(self.resources.get("nodes", 1) or 1)

    @property
    def cluster(self) -> str:
        return str(self.resources.get("cluster", "local"))

    @property
    def gpu_hours(self) -> float:
        return self.wall_s * self.gpus / 3600


def _number(row: dict, key: str) -> float:
    try:
        return float(row.get(key, "nan"))
    except (TypeError, ValueError):  # Snakemake writes NA where psutil could not measure
        return float("nan")


def _resources(text: str | None) -> dict:
    """The `resources` column of an extended record: Snakemake writes the rule's resources as a Python dict."""
    if not text:
        return {}
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {}
    return value if isinstance(value, dict) else {}


def read_records(folder: Path) -> list[JobRecord]:
    """Every `<rule>/<job>.tsv` under `folder` (Snakemake's benchmark files: the last row is the latest run)."""
    out = []
    for path in sorted(Path(folder).glob("*/*.tsv")):
        with open(path) as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            continue
        row = rows[-1]
        wall, cpu, rss = (_number(row, key) for key in ("s", "cpu_time", "max_rss"))
        out.append(JobRecord(path.parent.name, path.stem, wall, cpu, rss, path.stat().st_mtime, _resources(row.get("resources"))))
    return out


def stage_breakdown(records: list[JobRecord], cores: int) -> dict:
    """Per rule: jobs, wall, CPU (as recorded), longest job, peak RSS; the run's span and how occupied its cores were."""
    rules: dict[str, dict] = {}
    for r in records:
        s = rules.setdefault(r.rule, {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "longest_s": 0.0, "longest": "", "max_rss_mb": 0.0})
        s["jobs"] += 1
        s["wall_s"] += r.wall_s
        s["cpu_s"] += r.cpu_s if r.cpu_s == r.cpu_s else 0.0
        if r.wall_s > s["longest_s"]:
            s["longest_s"], s["longest"] = r.wall_s, r.name
        if r.max_rss_mb == r.max_rss_mb:
            s["max_rss_mb"] = max(s["max_rss_mb"], r.max_rss_mb)
        s["gpu_h"] = s.get("gpu_h", 0.0) + r.gpu_hours
    span = max(r.end for r in records) - min(r.start for r in records) if records else 0.0
    wall = sum(s["wall_s"] for s in rules.values())
    return {
        "rules": dict(sorted(rules.items(), key=lambda kv: -kv[1]["wall_s"])),
        "jobs": len(records),
        "span_s": span,
        "job_s": wall,
        "gpu_h": sum(r.gpu_hours for r in records),
        "cores": cores,
        "occupied": wall / (span * cores) if span > 0 else 0.0,
    }
