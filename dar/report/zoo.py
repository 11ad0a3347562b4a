"""The report's "Routing zoo" section: every method of the preset's `zoo` table side by side.

Per method (one run of tables.zoo; the first run is the baseline, the residual SiT):

    params, +params      the model's parameters and their overhead over the baseline's (dar/params.py)
    +FLOPs               extra FLOPs of one forward of one sample (dar/flops.py)
    step time            measured seconds per training step relative to the baseline: python -m dar run-bench's
                         isolated step times when results/<preset>/bench/run-bench.json has the routing, else the
                         train jobs' Snakemake records (wall time / iterations, mean over seeds; it includes
                         start-up and checkpointing, so it is an upper bound of the step time)
    FID at each milestone  mean over seeds with a t-interval (dar/stats.py), ODE without guidance
    vs baseline          the paired per-seed FID difference at the last milestone, its t-interval at the
                         Bonferroni-adjusted confidence 1 - 0.05 / k for k methods, and the verdict of
                         dar/stats.py's rule (`holds` = lower FID than the baseline)

and two figures: FID against iterations and FID against measured compute (iteration x measured seconds
per step on this machine).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from dar import stats
from dar.claims import FAMILY_ERROR, read_cells
from dar.jobcost import read_records
from dar.plan import Plan
from dar.plotting import line_style, plain_text
from dar.report import figures

TABLE = "zoo"


@dataclass
class Method:
    run: str
    label: str
    routing: str
    model: str
    width: int | None  # hidden size of a width-matched control
    params: int | None = None
    flops: int | None = None
    extra_params: float | None = None  # relative to the baseline
    extra_flops: float | None = None
    step_s: float | None = None
    step_ratio: float | None = None
    step_source: str = ""
    fid: dict[int, tuple[float, float | None, int]] = field(default_factory=dict)  # it -> (mean, half-width, seeds)
    effect: dict | None = None  # paired difference to the baseline at the last milestone
    verdict: str = stats.NO_DATA


def _mean_interval(values: list[float]) -> tuple[float, float | None]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, stats.t_quantile((1 + stats.CONFIDENCE) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def _fid_values(res: dict) -> list[float] | None:
    try:
        values = [float(v) for v in res["metrics"]["fid"]["values"]]
    except (KeyError, TypeError, ValueError):
        return None
    return values if values and all(math.isfinite(v) for v in values) else None


def _bench_steps(plan: Plan) -> dict[tuple[str, str], float]:
    try:
        rows = json.loads(plan.run_bench.read_text()).get("steps") or []
    except (OSError, ValueError):
        return {}
    return {(r["model"], r["routing"], r.get("width_match")): float(r["sec_per_step"]) for r in rows if "sec_per_step" in r}


def _train_seconds(plan: Plan) -> dict[str, float]:
    """Mean wall seconds per training step of each run, from its train jobs' benchmark records."""
    per_run: dict[str, list[float]] = {}
    for rec in read_records(plan.benchmarks_dir):
        if rec.rule != "train":
            continue
        run = rec.name.rsplit("_seed", 1)[0]
        if run in plan.run_defs and math.isfinite(rec.wall_s):
            per_run.setdefault(run, []).append(rec.wall_s / plan.run_defs[run].iterations)
    return {run: statistics.fmean(v) for run, v in per_run.items()}


def methods(plan: Plan) -> list[Method]:
    from dar.models.matched import matched_width
    from dar.params import routing_row
    from dar.runbench import data_shape

    spec = plan.tables[TABLE]
    size, channels, classes = data_shape(plan)
    arch = dict(input_size=size, in_channels=channels, num_classes=classes)
    cells = read_cells(plan)
    bench, trained = _bench_steps(plan), _train_seconds(plan)
    out = []
    for run in spec.runs:
        rd = plan.run_defs[run]
        match = plan.train_config(run, plan.seeds[0]).width_match
        width = matched_width(rd.model, match, **arch) if match else None
        m = Method(run, rd.label, rd.routing, rd.model, width)
        row = routing_row(rd.model, rd.routing, {**arch, **({"hidden_size": width} if width else {})}, None)
        m.params = row["params"]
        m.flops = row["flops"]
        if (rd.model, rd.routing, match) in bench:
            m.step_s, m.step_source = bench[(rd.model, rd.routing, match)], "run-bench"
        elif run in trained:
            m.step_s, m.step_source = trained[run], "train jobs"
        for c in plan.cells:
            if c.table == TABLE and c.run == run and c.sampler == "ode" and not c.cfg:
                res = cells.get((c.table, c.run, c.iteration, c.sampler, c.cfg))
                values = _fid_values(res) if res else None
                if values:
                    m.fid[c.iteration] = (*_mean_interval(values), len(values))
        out.append(m)
    base = out[0]
    same_source = {m.step_source for m in out if m.step_s} == {base.step_source}
    for m in out:
        m.extra_params = m.params / base.params - 1
        m.extra_flops = m.flops / base.flops - 1
        if m.step_s and base.step_s and (same_source or m.step_source == base.step_source):
            m.step_ratio = m.step_s / base.step_s
    _judge(plan, cells, out)
    return out


def _judge(plan: Plan, cells: dict, out: list[Method]) -> None:
    """Each method against the baseline at the last milestone: paired over seeds, Bonferroni over the methods."""
    last = max(plan.tables[TABLE].iterations or [plan.run_defs[out[0].run].iterations])
    k = max(1, len(out) - 1)
    confidence = 1 - FAMILY_ERROR / k
    key = lambda run: (TABLE, run, last, "ode", False)  # noqa: E731
    base = cells.get(key(out[0].run))
    for m in out[1:]:
        res = cells.get(key(m.run))
        if not res or not base or res.get("seeds") != base.get("seeds"):
            continue
        a, b = _fid_values(res), _fid_values(base)
        if not a or not b or len(a) != len(b):
            continue
        effect = stats.paired_effect(a, b, confidence)
        m.effect = {"iteration": last, **effect.to_dict()}
        m.verdict = stats.verdict(effect)


# --------------------------------------------------------------------- figures
def _curves(plan: Plan, rows: list[Method], x_of, xlabel: str, title: str) -> bytes | None:
    """FID (mean over seeds, t-interval) against x_of(method, iteration), one line per method; None: nothing to draw."""
    plain_text()
    fig = Figure(figsize=(6.8, 4.0))
    ax = fig.add_subplot()
    drawn = 0
    for i, m in enumerate(rows):
        pts = sorted(m.fid.items())
        xs = [x_of(m, it) for it, _ in pts]
        if not pts or any(x is None for x in xs):
            continue
        ys = [v[0] for _, v in pts]
        err = [v[1] if v[1] is not None else 0.0 for _, v in pts]
        style = "--" if m is rows[0] else "-"
        ax.errorbar(xs, ys, yerr=err, **line_style(i), ms=3.5, capsize=2, ls=style, lw=1.2, label=m.label)
        drawn += 1
    if not drawn:
        return None
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_ylabel(f"FID ({figures.metric_space(plan)})")
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    return figures.to_png(fig)


def fid_over_iterations(plan: Plan, rows: list[Method]) -> bytes | None:
    return _curves(
        plan, rows, lambda m, it: it, "training iteration (every method: the same iterations and batch)",
        "Routing zoo: FID over training, ODE w/o guidance (mean over seeds, 95% t-interval)",
    )  # fmt: skip


def fid_over_compute(plan: Plan, rows: list[Method]) -> bytes | None:
    return _curves(
        plan, rows, lambda m, it: None if m.step_s is None else it * m.step_s / 60,
        "measured training compute on this machine (minutes: iteration x seconds per step)",
        "Routing zoo: FID against measured compute",
    )  # fmt: skip


# --------------------------------------------------------------------- page
def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:+.2f}%"


def section(plan: Plan, df: pd.DataFrame) -> dict | None:
    """The section's context for the template (None when the preset has no zoo table)."""
    if TABLE not in plan.tables:
        return None
    rows = methods(plan)
    its = sorted({it for m in rows for it in m.fid} | set(plan.tables[TABLE].iterations or []))
    table = []
    for m in rows:
        fid = []
        for it in its:
            v = m.fid.get(it)
            fid.append("pending" if v is None else f"{v[0]:.1f}" + ("" if v[1] is None else f" ± {v[1]:.1f}"))
        effect = ""
        if m.effect:
            lo, hi = m.effect["low"], m.effect["high"]
            effect = f"{m.effect['mean']:+.1f}" + ("" if lo is None else f" [{lo:+.1f}, {hi:+.1f}]")
        table.append(
            {
                "label": m.label,
                "routing": m.routing + (f" (width {m.width})" if m.width else ""),
                "params": f"{m.params / 1e6:.3f}M",
                "extra_params": "baseline" if m is rows[0] else _pct(m.extra_params),
                "extra_flops": "baseline" if m is rows[0] else _pct(m.extra_flops),
                "step": "" if m.step_ratio is None else f"{m.step_ratio:.2f}×",
                "step_source": m.step_source,
                "fid": fid,
                "effect": effect,
                "verdict": "" if m is rows[0] else m.verdict,
            }
        )
    images = {}
    for key, fn in (("zoo_fid", fid_over_iterations), ("zoo_compute", fid_over_compute)):
        png = fn(plan, rows)
        if png:
            images[key] = figures.data_uri(png)
    flow, flow_lines = plan.diagnostics.get("zoo_flow"), []
    if flow is not None and flow.png.is_file():
        images["zoo_flow"] = figures.data_uri(flow.png.read_bytes())
        try:
            flow_lines = list(json.loads(flow.path.read_text()).get("summary") or [])
        except (OSError, ValueError):
            flow_lines = [f"{flow.path} could not be read"]
    k = max(1, len(rows) - 1)
    return {
        "baseline": rows[0].label,
        "iterations": its,
        "last": its[-1] if its else None,
        "rows": table,
        "images": images,
        "confidence": 1 - FAMILY_ERROR / k,
        "seeds": list(plan.seeds),
        "rule": stats.RULE,
        "flow_lines": flow_lines,
        "flow_command": None if flow is None or flow.png.is_file() else plan.rerun_command(flow.path),
    }
