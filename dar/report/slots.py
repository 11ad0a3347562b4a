"""Figure slots: each shows its figure and key numbers when the file that feeds it exists,
and otherwise the command that produces it.

    report-drawn   Fig. 1b (fig1b cells), training loss (runs/*/metrics.jsonl),
                   Fig. 6 (bench/kernel.json, via figures.py)
    job-drawn      Figs. 2, 3, 5 and the chunk-size theory curve: results/<preset>/diagnostics/<figure>.json
                   with a PNG beside it (written by `python -m dar diagnose`)
    sample grids   a PNG beside a sample file (`python -m dar sample --grid`), or, at digits scale,
                   the first 100 samples of a small .npz drawn here with dar.sampling.save_grid
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dar.plan import Plan
from dar.report import figures

# figure key -> (title, what it shows); the key names results/<preset>/diagnostics/<key>.json
DIAGNOSTICS = {
    "fig2": ("Fig. 2", "diagnostic of cross-layer information flow in the trained models"),
    "fig3": ("Fig. 3", "diagnostic of the learned routing weights across layers"),
    "fig5": ("Fig. 5", "diagnostic of routing across timesteps"),
    "chunk_theory": ("Chunk-size theory", "the chunk-size theory curve against the measured chunk sizes (Table 4)"),
}
TEXT_KEYS = ("title", "caption", "description")
MAX_NPZ_BYTES = 32 << 20  # sample files drawn into a grid here; larger ones need the job's own --grid PNG


@dataclass
class Slot:
    key: str
    title: str
    what: str
    image: str | None = None  # data: URI
    numbers: list[tuple[str, str]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # a diagnostics JSON's summary lines (ours against the paper)
    source: str = ""  # the file that fed it
    commands: list[str] = field(default_factory=list)  # what produces it (shown while it is empty)
    notes: list[str] = field(default_factory=list)

    @property
    def filled(self) -> bool:
        return bool(self.image or self.numbers or self.lines)


def snakemake(plan: Plan, target: str | Path) -> str:
    """The command that makes `target` (dar.plan.Plan.rerun_command)."""
    return plan.rerun_command(target)


def number_text(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:,}" if isinstance(v, int) else (f"{v:.4g}" if math.isfinite(v) else str(v))


def key_numbers(d: dict, limit: int = 16) -> list[tuple[str, str]]:
    """A diagnostics JSON's headline numbers: its 'summary' mapping, else its top-level scalars."""
    if isinstance(d.get("summary"), list):
        return []  # summary lines instead (summary_lines)
    src = d["summary"] if isinstance(d.get("summary"), dict) else d
    out = []
    for k, v in src.items():
        if k in TEXT_KEYS:
            continue
        if isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) <= 160):
            out.append((str(k), number_text(v)))
    return out[:limit]


def summary_lines(d: dict, limit: int = 12) -> list[str]:
    """The 'summary' of a diagnostics JSON when it is a list of lines (dar/diagnostics/job.py's layout)."""
    s = d.get("summary")
    return [str(x) for x in s[:limit]] if isinstance(s, list) else []


def read_json(path: Path) -> tuple[dict | None, str]:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return None, f"{path} could not be read: {e}"
    return (d, "") if isinstance(d, dict) else (None, f"{path} is not a JSON object")


# ------------------------------------------------------------- diagnostics
def diagnostics(plan: Plan) -> list[Slot]:
    out = []
    for key, (title, what) in DIAGNOSTICS.items():
        path = plan.diagnostics[key].path if key in plan.diagnostics else plan.root / "diagnostics" / f"{key}.json"
        png = path.with_suffix(".png")
        slot = Slot(key, title, what, source=str(path), commands=[snakemake(plan, path)])
        if key not in plan.diagnostics:
            slot.commands = []
            slot.notes.append(f"the {plan.preset.name} grid has no diagnostics section (diagnostics: in {plan.preset.source})")
        if path.is_file():
            d, err = read_json(path)
            if d is None:
                slot.notes.append(err)
            else:
                slot.numbers, slot.lines = key_numbers(d), summary_lines(d)
                slot.what = next((str(d[k]) for k in TEXT_KEYS if isinstance(d.get(k), str)), what)
                paper = d.get("paper")
                if isinstance(paper, dict) and isinstance(paper.get("source"), str):
                    slot.notes.append(f"Paper: {paper['source']}")
        if png.is_file():
            slot.image = figures.data_uri(png.read_bytes())
        elif path.is_file():
            slot.notes.append(f"no figure beside it ({png} does not exist)")
        out.append(slot)
    return out


# ------------------------------------------------------------------ Fig. 6
def kernel_slot(plan: Plan, path: Path) -> Slot:
    slot = Slot(
        "fig6",
        "Fig. 6",
        "latency of DAR's aggregation against the number of sources N: fused Triton kernel, naive PyTorch, torch.compile",
        source=str(path),
        commands=[snakemake(plan, path)],
    )
    if not path.is_file():
        return slot
    bench, err = read_json(path)
    if bench is None:
        slot.notes.append(err)
        return slot
    png = figures.kernel_bench(bench)
    slot.image = figures.data_uri(png) if png else None
    if bench.get("note"):
        slot.notes.append(str(bench["note"]))
    dev = bench.get("device", {})
    slot.numbers = [("mode", str(bench.get("mode", "?"))), ("device", str(dev.get("name", "?")))]
    slot.numbers.append(("peak bandwidth", str(dev.get("peak_bandwidth_source", "?"))))
    speedups = bench.get("speedups", [])
    if speedups:
        n_max = max(s["N"] for s in speedups)
        for s in speedups:
            if s["N"] == n_max and s["B"] == max(x["B"] for x in speedups) and s["pass"] in ("fwd", "bwd"):
                name = f"{s['method']} vs {s['baseline']}, {s['query']}, {s['pass']}, N={s['N']}, B={s['B']}"
                slot.numbers.append((name, f"{s['speedup']:.2f}× faster"))
    reductions = bench.get("memory_reduction") or []
    for m in reductions:
        if m["N"] == max(x["N"] for x in reductions) and m["reduction"] is not None:
            name = f"fused peak memory vs {m['baseline']}, {m['query']}, {m['pass']}, N={m['N']}, B={m['B']}"
            slot.numbers.append((name, f"{m['reduction']:.1%} less"))
    for t in bench.get("target_check") or []:
        met = {k: t[k] for k in ("bandwidth_met", "speedup_met", "faster_than_compiled")}
        frac = "n/a" if t["fraction_of_peak"] is None else f"{t['fraction_of_peak']:.0%} of peak"
        slot.numbers.append((f"target check, {t['query']}, {t['pass']}, B={t['B']}", f"{frac}; {met}"))
    paper = bench.get("paper") or {}
    for pass_, ms in (paper.get("ms") or {}).items():
        slot.numbers.append((f"paper {pass_} (ms)", ", ".join(f"{k} {v:g}" for k, v in ms.items())))
    for pass_, x in (paper.get("speedup_over_naive") or {}).items():
        slot.numbers.append((f"paper speed-up over naive, {pass_}", f"{x:g}×"))
    for pass_, x in (paper.get("memory_reduction") or {}).items():
        slot.numbers.append((f"paper memory reduction, {pass_}", f"{x:.1%}"))
    if paper.get("source"):
        slot.notes.append(f"Paper: {paper['source']}; {paper.get('device', '')}")
    return slot


# --------------------------------------------------------- report-drawn
def fig1b_slot(plan: Plan, df: pd.DataFrame) -> Slot:
    slot = Slot("fig1b", "Fig. 1b", "FID over training iterations for each run (pending points are left out)")
    png = figures.fig1b(plan, df)
    slot.image = figures.data_uri(png) if png else None
    pending = df[(df["table"] == "fig1b") & (df["status"] != "done")]
    if "fig1b" not in plan.tables:
        slot.notes.append(f"the {plan.preset.name} grid has no Fig. 1b points (tables.fig1b)")
    elif len(pending):
        slot.notes.append(f"{len(pending)} point(s) pending: their commands are listed under the Fig. 1b points table")
        slot.commands = [str(c) for c in pending["command"].dropna()][:3]
    return slot


def loss_slot(plan: Plan) -> Slot:
    slot = Slot("loss", "Training loss", "flow-matching loss of every training run, from its metrics.jsonl")
    png = figures.loss_curves(plan)
    slot.image = figures.data_uri(png) if png else None
    if not png:
        slot.commands = [snakemake(plan, r.done) for r in list(plan.runs.values())[:3]]
    return slot


# ---------------------------------------------------------- sample grids
def sample_grids(plan: Plan, limit: int = 24) -> list[tuple[str, str]]:
    """(caption, data URI) for the Table 1 cells' samples (first seed), or every cell's when there is no Table 1."""
    import numpy as np

    from dar.sampling import save_grid

    cells = [c for c in plan.cells if c.table == "table1"] or plan.cells
    sets = [s for c in cells for s in c.samples if s.seed == plan.seeds[0]]
    sets = list(dict.fromkeys(sets))  # a sample file may serve several cells
    out = []
    for k in sets[:limit]:
        npz = k.path
        png = npz.with_suffix(".png")
        c = k.config
        caption = f"{k.run.label}, it {k.iteration:,}, {c.sampler.upper()}, cfg {c.cfg_scale:g}, NFE {c.nfe}, seed {k.seed}"
        if png.is_file():
            out.append((caption, figures.data_uri(png.read_bytes())))
        elif plan.preset.scale == "digits" and npz.is_file() and npz.stat().st_size <= MAX_NPZ_BYTES:
            with np.load(npz) as f:
                images = f["arr_0"][:100]
            with tempfile.TemporaryDirectory() as tmp:
                path = save_grid(images, Path(tmp) / "grid.png", ncol=10, upscale=4 if images.shape[1] <= 32 else 1)
                out.append((caption, figures.data_uri(path.read_bytes())))
    return out
