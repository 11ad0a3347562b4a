"""Figures the report draws itself: Fig. 1b, training loss, Fig. 6 (kernel benchmark).

matplotlib's object API with its Agg canvas (no pyplot, no global backend switch).
Each function returns PNG bytes, or None when there is nothing to draw yet; the page
embeds them as data: URIs so it stays one self-contained file.
"""

from __future__ import annotations

import base64
import io

import pandas as pd
from matplotlib.figure import Figure

from dar.io import read_jsonl
from dar.plan import Plan
from dar.plotting import log_scale, plain_text


def to_png(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def metric_space(plan: Plan, num_samples: int | None = None) -> str:
    """Axis wording for the preset's feature space (digits metrics are never called Inception)."""
    if plan.evaluation.features == "digits":
        return "digits-classifier features, not Inception"
    return "Inception-v3" + (f", {num_samples // 1000:g}K samples" if num_samples else "")


# ------------------------------------------------------------------- Fig. 1b
def fig1b(plan: Plan, df: pd.DataFrame) -> bytes | None:
    """FID over training iterations, one line per run; pending points are left out."""
    if "fid" not in df.columns:
        return None
    done = df[(df["table"] == "fig1b") & (df["status"] == "done")]
    if done.empty:
        return None
    scale = plan.preset.paper_iteration_scale
    n = int(done["num_samples"].iloc[0])
    plain_text()
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    t = plan.tables.get("fig1b")
    for run in t.runs if t else sorted(done["run"].unique()):
        pts = done[done["run"] == run].sort_values("iteration")
        if pts.empty:
            continue
        label = plan.run_defs[run].label if run in plan.run_defs else run
        std = pts["fid_std"] if "fid_std" in pts and (pts.get("n_seeds", pd.Series([1])) > 1).any() else None
        ax.errorbar(pts["iteration"], pts["fid"], yerr=std, marker="o", capsize=3, label=label)
    ax.set_xlabel("training iteration" + (f" (paper's = ours × {scale:,})" if scale != 1 else ""))
    ax.set_ylabel(f"FID ({metric_space(plan, n)})")
    ax.set_title(f"Fig. 1b: FID over training, ODE w/o guidance, {n:,} samples", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return to_png(fig)


# ---------------------------------------------------------------- train loss
def loss_curves(plan: Plan) -> bytes | None:
    """Training loss (flow-matching velocity MSE) against step for every run and seed that has logged."""
    plain_text()
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    seeds = len(plan.seeds)
    drawn, lo, hi = 0, float("inf"), 0.0
    for (_, seed), r in plan.runs.items():
        path = r.dir / "metrics.jsonl"
        if not path.is_file():
            continue
        recs = [x for x in read_jsonl(path) if "step" in x and "loss" in x]
        if not recs:
            continue
        losses = [x["loss"] for x in recs]
        ax.plot([x["step"] for x in recs], losses, label=r.label + (f" (seed {seed})" if seeds > 1 else ""))
        lo, hi = min(lo, min(losses)), max(hi, max(losses))
        drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("training iteration")
    ax.set_ylabel("training loss")
    if lo > 0 and hi / lo > 20:  # long runs: the early loss would flatten the rest
        log_scale(ax)
    ax.set_title("Training loss per run (logged every log_every steps)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    return to_png(fig)


# ------------------------------------------------------------------- Fig. 6
def kernel_bench(bench: dict) -> bytes | None:
    """Latency against the number of sources N per method, forward and backward (Fig. 6's axes)."""
    recs = [r for r in bench.get("records", []) if r.get("pass") in ("fwd", "bwd") and r.get("ms") is not None]
    if not recs:
        return None
    queries = {r["query"] for r in recs}
    query = "dynamic" if "dynamic" in queries else sorted(queries)[0]
    batch = max(r["B"] for r in recs if r["query"] == query)
    smoke = bench.get("mode") == "cpu-smoke"
    paper = bench.get("paper") or {}
    plain_text()
    fig = Figure(figsize=(9.0, 3.6))
    axes = fig.subplots(1, 2)
    for ax, pass_ in zip(axes, ("fwd", "bwd")):
        for method in sorted({r["method"] for r in recs}):
            pts = sorted(
                (r["N"], r["ms"]) for r in recs if (r["query"], r["B"], r["pass"], r["method"]) == (query, batch, pass_, method)
            )
            if pts:
                ax.plot(*zip(*pts), marker="o", label=method)
        if not smoke and paper.get("ms", {}).get(pass_):
            for method, ms in paper["ms"][pass_].items():
                ax.scatter([paper.get("N", 57)], [ms], marker="x", color="black", zorder=3)
                ax.annotate(f"paper {method}", (paper.get("N", 57), ms), fontsize=7, xytext=(4, 2), textcoords="offset points")
        ax.set_xlabel("sources N")
        ax.set_ylabel("latency (ms, median)")
        log_scale(ax)
        ax.set_title({"fwd": "forward", "bwd": "backward"}[pass_], fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    device = bench.get("device", {}).get("name", "?")
    head = "CPU SMOKE NUMBERS, not Fig. 6" if smoke else "Fig. 6"
    fig.suptitle(f"{head}: {query} query, B = {batch}, on {device}", fontsize=10)
    return to_png(fig)
