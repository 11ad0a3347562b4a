"""`python -m dar cells`: every table cell of a preset, its target path and the command that (re)makes it.

python -m dar cells                              # the digits grid
python -m dar cells --preset imagenet256 --table table1
python -m dar cells --preset smoke --runs        # the training runs, their fingerprints and folders
"""

from __future__ import annotations

import argparse
import sys

from dar.grid import GridError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar cells", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="digits", help="grid preset: dar/presets/<name>.yaml or a .yaml path (default: digits)")
    p.add_argument("--results", default="results", help="results root (default: results)")
    p.add_argument("--table", help="only this table (table1..table4, fig1b, zoo)")
    p.add_argument("--runs", action="store_true", help="list the training runs instead")
    args = p.parse_args(argv)
    from dar.plan import TABLES, Plan

    if args.table and args.table not in TABLES:
        print(f"error: --table {args.table!r} is not one of {', '.join(TABLES)}", file=sys.stderr)
        return 2
    try:
        plan = Plan.load(args.preset, results=args.results)
    except GridError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.runs:
        for r in plan.runs.values():
            print(
                f"{r.name:<12} seed {r.seed}  {r.model:<12} {r.routing:<20} {r.iterations:>8} it  "
                f"milestones {list(r.milestones)}  fingerprint {r.fingerprint}  -> {r.dir}"
            )
        return 0
    cells = [c for c in plan.cells if not args.table or c.table == args.table]
    if not cells:
        print(f"the {plan.preset.name} grid has no {args.table} cells (tables.{args.table} in {plan.preset.source})")
    for c in cells:
        print(f"{c.table:<7} {c.name:<34} {c.path}\n        rerun: {plan.rerun_command(c.path, '--force')}")
    if plan.evaluation.cell_jobs == "per-table":
        print("(evaluation.cell_jobs: per-table: one job evaluates every cell of a table, so a rerun remakes its whole table)")
    return 0
