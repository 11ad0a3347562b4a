"""`python -m dar sample-sets --config jobs/sample/<job>.json`: the sample sets of one sampling job, in one process.

The workflow groups sample sets into sampling jobs (dar.plan.SampleJob; the grid's
`evaluation.sample_jobs`): one set per job at the paper's scale, every set of a
run's seed per job at digits scale, where a set takes seconds and starting a
process (Python, torch, the launcher) took as long as drawing it. Each set is
drawn by the one sampling implementation, `dar.sampling.job.run`, exactly as
`python -m dar sample --config` draws it alone: the same file, sidecar and
shards, the same per-sample random streams (so the samples do not depend on the
grouping; tests/test_sampling.py compares the two). A set whose file the job
makes is checked against the identity the grid expects for it before the job
goes on. The job's marker (its `out`), written last and atomically, lists every
set it drew with the file's sha256; a killed job leaves no marker, and its rerun
draws the sets again (a set's own shards resume).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from dar import logs
from dar.config import ConfigError, from_dict
from dar.fingerprint import IdentityMismatch, differences, fingerprint
from dar.io import write_json
from dar.provenance import file_sha256
from dar.sampling.config import SampleConfig

log = logs.get("sample")


@dataclass
class SampleSetsConfig:
    out: str  # the job's marker
    sets: list[tuple[SampleConfig, dict]]  # each set's config and the identity its file must record


def load(path: str | Path) -> SampleSetsConfig:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"sampling job config {path} is not valid JSON: {e}") from None
    unknown = sorted(set(data) - {"out", "sets"})
    if unknown or "out" not in data or not data.get("sets"):
        raise ConfigError(
            f"sampling job config {path}: needs 'out' (the job's marker) and a non-empty 'sets' list"
            + (f"; unknown key(s) {unknown}" if unknown else "")
            + " (the workflow writes these files: results/<preset>/jobs/sample/)"
        )
    sets = []
    for i, entry in enumerate(data["sets"]):
        if set(entry) != {"config", "identity"}:
            raise ConfigError(f"sampling job config {path}: sets[{i}] needs exactly 'config' and 'identity'")
        sets.append((from_dict(SampleConfig, entry["config"], where=f"sets[{i}]"), entry["identity"]))
    return SampleSetsConfig(out=data["out"], sets=sets)


def check_identity(cfg: SampleConfig, expected: dict) -> dict:
    """The sidecar the set's file was written with, which must record the identity the grid expects."""
    sidecar = json.loads(Path(cfg.out + ".json").read_text())
    if differences(sidecar.get("identity"), expected):
        raise IdentityMismatch(
            "sample file",
            cfg.out,
            {"identity": sidecar.get("identity")},
            {"identity": expected},
            ["the checkpoint's run differs from the grid's: rerun its training job, then this sampling job"],
        )
    return sidecar


def run(cfg: SampleSetsConfig) -> list[dict]:
    from dar.sampling.job import run as draw

    for set_cfg, _ in cfg.sets:
        set_cfg.validate()  # every set's checkpoint exists before the first is drawn
    drawn = []
    # the job's progress in samples over all its sets (a set's own progress is logged by the sampler)
    progress = logs.Progress(sum(c.num_samples for c, _ in cfg.sets), "job", unit="img", log=log, every_s=math.inf, tty=False)
    for i, (set_cfg, identity) in enumerate(cfg.sets):
        t0 = time.perf_counter()
        out = draw(set_cfg)
        check_identity(set_cfg, identity)
        sec = time.perf_counter() - t0
        progress.update(set_cfg.num_samples)
        log.info("set %d/%d %s in %.1f s | %s", i + 1, len(cfg.sets), out.name, sec, progress.line())
        drawn.append({"path": str(out), "fingerprint": fingerprint(identity), "sha256": file_sha256(out), "seconds": sec})
    write_json(cfg.out, {"sets": drawn})
    progress.close()
    return drawn


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar sample-sets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", required=True, help="the sampling job's config (results/<preset>/jobs/sample/<job>.json)")
    p.add_argument("--dry-run", action="store_true", help="list the sets and exit")
    args = p.parse_args(argv)
    cfg = load(args.config)
    if args.dry_run:
        for set_cfg, _ in cfg.sets:
            print(f"{set_cfg.out}  ({set_cfg.num_samples} samples, {set_cfg.sampler}, cfg {set_cfg.cfg_scale:g})")
        return 0
    drawn = run(cfg)
    log.info("%d set(s) drawn; marker %s", len(drawn), cfg.out)
    return 0
