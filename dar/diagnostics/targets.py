"""The diagnostics in the experiment grid: their targets, the checkpoints they read and their job flags.

A preset's `diagnostics` section (schema: workflow/schemas/config.schema.yaml)
names the runs; workflow/rules/diagnostics.smk asks this module for paths and
flags, as the other rules ask dar.grid:

    results/<preset>/diagnostics/{fig2,fig3,fig5,chunk_theory}.json   (+ .png beside each)

    fig2, fig3     diagnostics.runs = [residual baseline, DAR run], at diagnostics.iteration
                   (default: each run's final milestone); the first seed of the preset
    fig5           diagnostics.probe_run at its final milestone
    chunk_theory   no checkpoint; L from the Table 4 runs' model; reads the Table 4 cells

Run names are checked here, when a diagnostics target is requested, so a grid
edited for another purpose (e.g. with runs removed) still parses.
"""

from __future__ import annotations

from pathlib import Path

from dar.grid import Grid, GridError

FIGURES = ("fig2", "fig3", "fig5", "chunk_theory")
CHECKPOINT_FIGURES = ("fig2", "fig3", "fig5")


def section(grid: Grid) -> dict:
    diag = grid.data.get("diagnostics")
    if not diag:
        raise GridError(f"diagnostics: preset {grid.preset} has no diagnostics section (see workflow/config/smoke.yaml)")
    return diag


def targets(grid: Grid) -> list[str]:
    """Every diagnostics JSON of the preset (none without a diagnostics section); each has its PNG beside it."""
    if not grid.data.get("diagnostics"):
        return []
    return [str(result_path(grid, f)) for f in FIGURES]


def result_path(grid: Grid, figure: str) -> Path:
    return grid.root / "diagnostics" / f"{figure}.json"


def figure_runs(grid: Grid, figure: str) -> list[tuple[str, str, int]]:
    """[(role, run, iteration)] of a checkpoint diagnostic, checked against the grid."""
    diag = section(grid)
    if figure == "fig5":
        wanted = [("probe", diag["probe_run"], None)]
    elif figure in ("fig2", "fig3"):
        wanted = [(role, run, diag.get("iteration")) for role, run in zip(("baseline", "dar"), diag["runs"])]
    else:
        raise GridError(f"diagnostics: {figure!r} reads no checkpoint; checkpoint figures are {CHECKPOINT_FIGURES}")
    seed = grid.data["seeds"][0]
    out = []
    for role, run, iteration in wanted:
        if run not in grid.data["runs"]:
            raise GridError(f"diagnostics: run {run!r} is not defined under runs (defined: {sorted(grid.data['runs'])})")
        r = grid.runs[(run, seed)]
        it = iteration or r.iterations
        if it not in r.milestones:
            raise GridError(
                f"diagnostics.iteration: {it} is not a milestone of run {run!r} (milestones {list(r.milestones)}); "
                "choose one of them or drop the key to use each run's final checkpoint"
            )
        out.append((role, run, it))
    return out


def figure_inputs(grid: Grid, figure: str) -> dict[str, str]:
    """Snakemake inputs: the latent cache index and each run's done.json (its checkpoints exist once it is done)."""
    seed = grid.data["seeds"][0]
    ins = {"index": str(grid.latents_dir / "index.json")}
    for role, run, _ in figure_runs(grid, figure):
        ins[role] = str(grid.run_dir(run, seed) / "done.json")
    return ins


def figure_args(grid: Grid, figure: str) -> list[str]:
    """`python -m dar diagnose` flags of a checkpoint figure (without --out)."""
    diag = section(grid)
    seed = grid.data["seeds"][0]
    device = diag.get("device", grid.data["train"].get("device", "auto"))
    args = ["--figure", figure, "--data", str(grid.latents_dir), "--num-samples", str(diag["num_samples"])]
    args += ["--t-grid", str(diag["t_grid"]), "--device", device]
    for role, run, it in figure_runs(grid, figure):
        args += [f"--{role}", str(grid.checkpoint(run, seed, it))]
    for key in ("batch_size", "seed", "probe_alpha", "test_fraction"):
        if key in diag:
            args += [f"--{key.replace('_', '-')}", str(diag[key])]
    if diag.get("layers"):
        args += ["--layers", ",".join(map(str, diag["layers"]))]
    return args


def chunk_theory_inputs(grid: Grid) -> list[str]:
    """The Table 4 cell results when the preset has a table4 (the figure shows their FIDs), else nothing."""
    return [str(grid.cell_path(c)) for c in grid.cells if c.table == "table4"]


def chunk_theory_args(grid: Grid) -> list[str]:
    """L comes from the model of the Table 4 runs, else of the diagnostics' DAR run, else the preset's default model."""
    seed = grid.data["seeds"][0]
    runs = grid.data["tables"].get("table4", {}).get("runs") or grid.data.get("diagnostics", {}).get("runs", [])[-1:]
    runs = [r for r in runs if r in grid.data["runs"]]
    model = grid.runs[(runs[0], seed)].model if runs else grid.data["train"].get("model", "SiT-T/2")
    args = ["--figure", "chunk_theory", "--model", model]
    cells = chunk_theory_inputs(grid)
    if cells:
        args += ["--cells", ",".join(cells)]
    return args
