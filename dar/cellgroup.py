"""`python -m dar cell-group --config jobs/cell/<table>.cells.json`: every cell of one evaluation job, in one process.

The workflow groups table cells into evaluation jobs (dar.plan.CellJob; the grid's `evaluation.cell_jobs`):
one cell per job at the paper's scale, every cell of a table per job at digits scale, where a cell evaluates
in about a second and starting a process that imports torch and torch-fidelity took five. Each cell is
evaluated by the one cell implementation, `dar.cell.run`, exactly as `python -m dar cell --config` evaluates it
alone: the same checks of its samples, the same per-seed evaluation files and the same cell JSON (tests compare
the two). A cell that cannot be evaluated does not stop the others; the job then fails naming every such cell,
and Snakemake removes the job's outputs, so no table is left half made.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from dar import logs
from dar.cell import CellConfig, print_result
from dar.config import ConfigError, from_dict
from dar.errors import HarnessError

log = logs.get("cell")


@dataclass
class CellGroupConfig:
    cells: list[CellConfig]


def load(path: str | Path) -> CellGroupConfig:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"evaluation job config {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or set(data) != {"cells"} or not data["cells"]:
        raise ConfigError(
            f"evaluation job config {path}: needs exactly one key, 'cells', a non-empty list of cell configs "
            "(the workflow writes these files: results/<preset>/jobs/cell/<table>.cells.json)"
        )
    return CellGroupConfig([from_dict(CellConfig, c, where=f"cells[{i}]") for i, c in enumerate(data["cells"])])


def run(cfg: CellGroupConfig) -> list[dict]:
    from dar.cell import run as evaluate_cell

    for cell in cfg.cells:
        cell.validate()
    results, failed = [], []
    progress = logs.Progress(len(cfg.cells), "evaluation job", unit="cells", log=log, every_s=math.inf, tty=False)
    for i, cell in enumerate(cfg.cells):
        t0 = time.perf_counter()
        try:
            result = evaluate_cell(cell)
        except (HarnessError, FileNotFoundError, ValueError) as e:
            log.error("%d/%d %s/%s: %s", i + 1, len(cfg.cells), cell.table, cell.name, e)
            failed.append(f"{cell.table}/{cell.name}: {e}")
            progress.update(1)
            continue
        print_result(cell, result)
        progress.update(1)
        log.info("%s/%s in %.1f s | %s", cell.table, cell.name, time.perf_counter() - t0, progress.line())
        results.append(result)
    if failed:
        raise ConfigError(f"{len(failed)} of {len(cfg.cells)} cells could not be evaluated:\n  " + "\n  ".join(failed))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar cell-group", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", required=True, help="the evaluation job's config (results/<preset>/jobs/cell/<table>.cells.json)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    args = p.parse_args(argv)
    cfg = load(args.config)
    if args.dry_run:
        for cell in cfg.cells:
            print(f"{cell.out}  ({len(cell.seeds)} seed(s), {cell.num_samples} samples each)")
        return 0
    results = run(cfg)
    log.info("%d cell(s) evaluated", len(results))
    return 0
