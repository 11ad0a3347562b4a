"""`python -m dar cell`: evaluate one table cell over its seeds and write its result JSON.

    python -m dar cell --preset digits --table table1 --name static-c4_ode_cfg1.5

For every seed of the cell, the seed's sample file is evaluated with
`python -m dar evaluate` (FID, sFID, IS, precision, recall; per-seed JSON under
results/<preset>/evals/); the cell JSON then holds each metric's per-seed
values, mean, std and n, the paper's value for the cell where the paper gives
one, the signed delta (only where the scale is the paper's), and the protocol
of every seed. This is the job behind `snakemake <cell path> --force`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from dar.grid import Cell, Grid, GridError
from dar.io import write_json
from dar.paper import paper_source, paper_value
from dar.provenance import git_commit

# our metric key -> the paper's
METRIC_KEYS = {"fid": "fid", "sfid": "sfid", "is_mean": "is", "precision": "precision", "recall": "recall"}


def summarize(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "values": values,
    }


def cell_result(grid: Grid, cell: Cell, evals: list[dict]) -> dict:
    metrics = {paper_key: summarize([e["metrics"][ours] for e in evals]) for ours, paper_key in METRIC_KEYS.items()}
    scale = grid.data["scale"]
    it_scale = grid.data.get("paper_iteration_scale", 1)
    paper = paper_value(cell.table, cell.run, cell.sampler, cell.cfg, cell.iteration * it_scale)
    comparable = scale == "imagenet256"
    delta = {k: metrics[k]["mean"] - v for k, v in paper.items() if k in metrics} if comparable else {}
    return {
        **cell.describe(),
        "label": grid.data["runs"][cell.run].get("label", cell.run),
        "routing": grid.data["runs"][cell.run]["routing"],
        "model": grid.runs[(cell.run, cell.seeds[0])].model,
        "seeds": list(cell.seeds),
        "preset": grid.preset,
        "scale": scale,
        "feature_space": evals[0].get("feature_space", grid.features),
        "metrics": metrics,
        "paper": paper,
        "paper_source": paper_source(cell.table),
        "paper_iteration": cell.iteration * it_scale,
        "delta": delta,
        "delta_note": ""
        if comparable
        else f"no delta: {scale}-scale metrics are not comparable with the paper's ImageNet numbers",
        "protocols": [e.get("protocol", {}) for e in evals],
        "git_commit": git_commit(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar cell", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="digits", help="grid preset (default: digits)")
    p.add_argument("--table", required=True, help="table1..table4 or fig1b")
    p.add_argument("--name", required=True, help="cell name (python -m dar cells lists them)")
    p.add_argument("--results", default="results", help="results root (default: results)")
    p.add_argument("--device", default=None, help="feature-extraction device (default: cuda if available)")
    args = p.parse_args(argv)
    try:
        grid = Grid.load(args.preset, results=args.results)
        cell = grid.cell(args.table, args.name)
    except GridError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from dar.metrics.evaluate import main as evaluate_main

    evals = []
    for key in cell.sample_keys():
        out = grid.eval_path(cell, key.seed)
        cmd = [
            "--samples",
            str(grid.samples_path(key)),
            "--reference",
            str(grid.reference),
            "--num-samples",
            str(cell.num_samples),
            "--out",
            str(out),
            "--features",
            grid.features,
        ]
        cmd += ["--weights", str(grid.digits_net)] if grid.features == "digits" else ["--assets-dir", str(grid.assets_dir)]
        if args.device:
            cmd += ["--device", args.device]
        rc = evaluate_main(cmd)
        if rc:
            print(f"error: evaluating seed {key.seed} of {cell.table}/{cell.name} failed (status {rc})", file=sys.stderr)
            return rc
        evals.append(json.loads(out.read_text()))
    result = cell_result(grid, cell, evals)
    path = grid.cell_path(cell)
    write_json(path, result)
    m = result["metrics"]
    print(
        f"[cell] {path}: FID {m['fid']['mean']:.3f} sFID {m['sfid']['mean']:.3f} IS {m['is']['mean']:.2f} "
        f"P {m['precision']['mean']:.3f} R {m['recall']['mean']:.3f} ({result['feature_space']} features, n={m['fid']['n']})"
    )
    return 0
