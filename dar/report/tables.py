"""Tables 1-4 and the Fig. 1b points laid out like the paper's, from the collated table.

Every metric cell of a table is an `Entry`: our value (mean +- std over seeds, n), the
paper's value where the paper gives one (dar/paper.yaml; "n/r" where it does not), and
the signed delta ours - paper as the cell job recorded it (only at the paper's scale;
digits-scale numbers are not comparable and carry no delta). A delta is "within" when
|delta| <= max(rel x |paper|, abs) for the metric's tolerance (TOLERANCE, overridable
per preset under evaluation.tolerance). Cells of the grid without a result are
"pending" with the command that makes them; combinations the preset does not run are
"absent"; rows the paper quotes from other work are "quoted" and show only its numbers.

Layouts (the paper's):
    Table 1  rows: method with ODE / SDE subscript; columns: Iters., Params, then
             w/o and w/ guidance groups of FID, sFID, IS, Prec., Rec.
    Table 2  rows: routing variant; columns: FID at each iteration (ODE, w/o guidance)
    Table 3  rows: REPA, DAR+REPA; columns: FID at each iteration (ODE, w/o guidance)
    Table 4  rows: chunk size S; columns: FID, sFID, IS, Prec., Rec. (ODE, w/o guidance)
    Fig. 1b  rows: run; columns: FID at each iteration (the figure's points)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from dar.paper import paper_data, paper_source, paper_value
from dar.plan import Plan

METRICS = ("fid", "sfid", "is", "precision", "recall")
METRIC_LABELS = {"fid": "FID↓", "sfid": "sFID↓", "is": "IS↑", "precision": "Prec.↑", "recall": "Rec.↑"}
DECIMALS = {"fid": 2, "sfid": 2, "is": 1, "precision": 3, "recall": 3}  # ours
PAPER_DECIMALS = {"fid": 2, "sfid": 2, "is": 1, "precision": 2, "recall": 2}  # as the paper prints them
# |ours - paper| <= max(rel * |paper|, abs) counts as reproduced.
TOLERANCE = {
    "fid": {"rel": 0.10, "abs": 0.5},
    "sfid": {"rel": 0.10, "abs": 0.5},
    "is": {"rel": 0.10, "abs": 5.0},
    "precision": {"rel": 0.0, "abs": 0.02},
    "recall": {"rel": 0.0, "abs": 0.02},
}
TITLES = {
    "table1": "Table 1",
    "table2": "Table 2",
    "table3": "Table 3",
    "table4": "Table 4",
    "fig1b": "Fig. 1b points",
    "zoo": "Routing zoo",
}
SAMPLER_LABELS = {"ode": "ODE", "sde": "SDE"}


# ---------------------------------------------------------------- formatting
def clean(v: Any) -> Any:
    """pandas' missing values (NaN, NA) -> None; numpy scalars -> Python."""
    if v is None:
        return None
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        return v
    return v.item() if hasattr(v, "item") else v


def fmt(metric: str, v: float | None, signed: bool = False) -> str:
    if v is None:
        return ""
    d = DECIMALS[metric]
    if metric == "is" and abs(v) < 10:
        d = 2
    return f"{v:+.{d}f}" if signed else f"{v:.{d}f}"


def fmt_iterations(n: int | None) -> str:
    """1750000 -> 1.75M, 600000 -> 600K, 600 -> 600 (the paper's style)."""
    if n is None:
        return ""
    if n >= 1_000_000 and n % 10_000 == 0:
        return f"{n / 1e6:g}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1000}K"
    return f"{n:,}"


def tolerances(plan: Plan) -> dict[str, dict[str, float]]:
    """TOLERANCE with the preset's evaluation.tolerance overrides ({metric: {rel, abs}})."""
    out = {m: dict(t) for m, t in TOLERANCE.items()}
    for m, t in plan.evaluation.tolerance.items():
        if m not in out or not isinstance(t, dict) or set(t) - {"rel", "abs"}:
            raise ValueError(f"evaluation.tolerance.{m}: expected one of {list(out)} with keys rel / abs, got {t!r}")
        out[m].update({k: float(v) for k, v in t.items()})
    return out


def tolerance_text(tol: dict[str, float]) -> str:
    parts = []
    if tol["rel"]:
        parts.append(f"{tol['rel']:.0%} of the paper's value")
    if tol["abs"]:
        parts.append(f"{tol['abs']:g}")
    return "±" + (" or ±".join(parts) if parts else "0") + (", whichever is larger" if len(parts) > 1 else "")


# --------------------------------------------------------------------- model
@dataclass
class Entry:
    """One metric of one table cell, as shown."""

    metric: str
    status: str  # done | pending | absent | quoted
    cell: str = ""  # the cell's name in the grid ('' when absent)
    table: str = ""
    ours: float | None = None
    std: float | None = None
    n: int = 0
    paper: float | None = None
    delta: float | None = None
    tol: float | None = None
    verdict: str = "none"  # within | outside | none (no delta)
    command: str = ""
    note: str = ""
    delta_expected: bool = False  # the preset is at the paper's scale, so a done cell with a paper value has a delta

    @property
    def anchor(self) -> str:
        return f"cmd-{self.table}-{self.cell}"

    @property
    def ours_text(self) -> str:
        if self.ours is None:
            return ""
        s = fmt(self.metric, self.ours)
        if self.n > 1:
            s += f" ± {fmt(self.metric, self.std or 0.0)}"
        return s

    @property
    def paper_text(self) -> str:
        return "n/r" if self.paper is None else f"{self.paper:.{PAPER_DECIMALS[self.metric]}f}"

    @property
    def delta_text(self) -> str:
        return fmt(self.metric, self.delta, signed=True)


@dataclass
class Row:
    label: str
    sub: str = ""  # ODE / SDE subscript
    kind: str = "ours"  # ours | quoted | paper (a paper row this preset does not run)
    info: list[tuple[str, str]] = field(default_factory=list)  # fixed columns: (main text, small second line)
    entries: list[Entry] = field(default_factory=list)


@dataclass
class TableView:
    key: str
    title: str
    caption: str
    source: str
    fixed: list[str]  # headers of the fixed columns (Method, Iters., ...)
    groups: list[tuple[str, int]]  # column groups over the entries: (label, span)
    columns: list[tuple[str, str]]  # one per entry: (label, small second line)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def entries(self) -> list[Entry]:
        return [e for r in self.rows for e in r.entries]

    def _cells(self, status: str) -> dict[str, Entry]:
        return {e.cell: e for e in self.entries if e.status == status}

    @property
    def pending(self) -> list[Entry]:
        """One entry per pending cell (a cell spans several metrics in Tables 1 and 4)."""
        return list(self._cells("pending").values())

    @property
    def done(self) -> int:
        return len(self._cells("done"))

    @property
    def total(self) -> int:
        return len(self._cells("done")) + len(self._cells("pending"))


# ------------------------------------------------------------------- lookup
class Results:
    """The collated table indexed by (table, run, sampler, cfg, iteration), plus the grid it came from."""

    def __init__(self, plan: Plan, df: pd.DataFrame) -> None:
        self.plan = plan
        self.scale = plan.preset.paper_iteration_scale
        self.tol = tolerances(plan)
        self.comparable = plan.preset.comparable
        self.rows: dict[tuple, dict] = {}
        for rec in df.to_dict(orient="records"):
            rec = {k: clean(v) for k, v in rec.items()}
            key = (rec["table"], rec["run"], rec["sampler"], _bool(rec["cfg"]), int(rec["iteration"]))
            self.rows[key] = rec

    def label(self, run: str) -> str:
        return self.plan.run_defs[run].label if run in self.plan.run_defs else run

    def in_grid(self, table: str) -> bool:
        return table in self.plan.tables

    def runs(self, table: str) -> list[str]:
        return list(self.plan.tables[table].runs) if table in self.plan.tables else []

    def final_iteration(self, run: str) -> int | None:
        return self.plan.run_defs[run].iterations if run in self.plan.run_defs else None

    def entry(self, table: str, run: str, sampler: str, cfg: bool, iteration: int | None, metric: str) -> Entry:
        paper = paper_value(table, run, sampler, cfg, None if iteration is None else iteration * self.scale).get(metric)
        rec = None if iteration is None else self.rows.get((table, run, sampler, cfg, int(iteration)))
        if rec is None:
            why = f"not in the {self.plan.preset.name} grid"
            if run in self.plan.run_defs and iteration is not None and iteration > self.final_iteration(run):
                why = f"past the run's length ({self.final_iteration(run)} iterations)"
            return Entry(metric, "absent", table=table, paper=paper, note=why)
        e = Entry(metric, rec["status"], cell=rec["name"], table=table, paper=paper, delta_expected=self.comparable)
        if rec["status"] != "done":
            e.status, e.command = "pending", rec.get("command") or ""
            if rec["status"] == "stale":
                e.note = "its result was made under an earlier config of the grid; rerun it"
            return e
        e.ours, e.std = rec.get(metric), rec.get(f"{metric}_std")
        e.n = int(rec.get("n_seeds") or 1)
        if rec.get(f"paper_{metric}") is not None:
            e.paper = rec[f"paper_{metric}"]  # what the cell job compared against
        e.delta = rec.get(f"delta_{metric}")
        if e.delta is None and e.paper is not None:
            e.note = (
                f"no delta: {rec.get('feature_space') or self.plan.evaluation.features}-feature metrics are not comparable "
                "with the paper's"
            )
        if e.delta is not None and e.paper is not None:
            t = self.tol[metric]
            e.tol = max(t["rel"] * abs(e.paper), t["abs"])
            e.verdict = "within" if abs(e.delta) <= e.tol else "outside"
        return e


def _bool(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("true", "1", "yes")


def _paper_rows(table: str) -> dict[str, dict]:
    return paper_data().get(table, {}).get("rows", {}) or {}


def _order(res: Results, table: str) -> list[str]:
    """The paper's row order, then runs only this preset has."""
    paper = list(_paper_rows(table))
    return paper + [r for r in res.runs(table) if r not in paper]


def _row_label(res: Results, table: str, run: str) -> str:
    if run in res.plan.run_defs:
        return res.label(run)
    return _paper_rows(table).get(run, {}).get("row", run)


def _absent_note(res: Results, table: str) -> list[str]:
    if res.in_grid(table):
        return []
    name, source = res.plan.preset.name, res.plan.preset.source
    return [f"The {name} grid has no {TITLES[table]} cells (add tables.{table} to {source} to run them)."]


# ------------------------------------------------------------------ Table 1
@cache
def _param_count(model: str, routing: str, input_size: int, in_channels: int, num_classes: int) -> int | None:
    try:
        from dar.params import count_params

        return count_params(model, routing, input_size, in_channels, num_classes)
    except Exception:  # an unknown model or routing must not stop the report
        return None


def our_params(plan: Plan, run: str) -> int | None:
    """Parameter count of a run's model at the preset's data shape (the run's saved arch when it exists)."""
    spec = plan.run_defs[run]
    model = spec.model
    shape = (8, 1, 10) if plan.preset.scale == "digits" else (32, 4, 1000)
    cfg = plan.runs[(run, plan.seeds[0])].dir / "config.json"
    if cfg.is_file():
        arch = json.loads(cfg.read_text()).get("arch", {})
        shape = (arch.get("input_size", shape[0]), arch.get("in_channels", shape[1]), arch.get("num_classes", shape[2]))
    return _param_count(model, spec.routing, *shape)


def table1(res: Results) -> TableView:
    ev = res.plan.evaluation
    spec = res.plan.tables.get("table1")
    view = TableView(
        "table1",
        TITLES["table1"],
        f"System-level comparison, class-conditional generation. Subscripts: ODE (Heun) and SDE (Euler-Maruyama) "
        f"sampling, {ev.nfe} NFE, {ev.num_samples:,} samples per cell; guidance w = {ev.cfg_scale:g}. "
        "Iters. and Params: ours, with the paper's below.",
        paper_source("table1"),
        ["Method", "Iters.", "Params"],
        [("w/o guidance", len(METRICS)), (f"w/ guidance (w = {ev.cfg_scale:g})", len(METRICS))],
        [(METRIC_LABELS[m], "") for m in METRICS] * 2,
        notes=_absent_note(res, "table1"),
    )
    for name, q in (paper_data().get("table1", {}).get("quoted") or {}).items():
        for sampler in ("ode", "sde"):
            if sampler not in q:
                continue
            entries = [
                Entry(m, "quoted", table="table1", paper=q[sampler].get("cfg" if cfg else "nocfg", {}).get(m))
                for cfg in (False, True)
                for m in METRICS
            ]
            info = [(fmt_iterations(q.get("iterations")), ""), (q.get("params", ""), "")]
            view.rows.append(Row(name, SAMPLER_LABELS[sampler], "quoted", info, entries))
    paper_rows = _paper_rows("table1")
    for run in _order(res, "table1"):
        ours = run in res.runs("table1")
        p = paper_rows.get(run, {})
        samplers = [s for s in ("ode", "sde") if s in p or (ours and s in spec.samplers)]
        it = res.final_iteration(run) if ours else None
        n_params = our_params(res.plan, run) if ours else None
        info = [
            (f"{it:,}" if it else "—", f"paper {fmt_iterations(p['iterations'])}" if "iterations" in p else ""),
            (f"{n_params / 1e6:.2f}M" if n_params else "—", f"paper {p['params']}" if "params" in p else ""),
        ]
        for sampler in samplers:
            entries = [res.entry("table1", run, sampler, cfg, it, m) for cfg in (False, True) for m in METRICS]
            view.rows.append(
                Row(_row_label(res, "table1", run), SAMPLER_LABELS[sampler], "ours" if ours else "paper", info, entries)
            )
    return view


# -------------------------------------------------- Tables 2, 3 and Fig. 1b
def curve_table(res: Results, table: str, caption: str, metric: str = "fid") -> TableView:
    """Rows: runs; columns: iterations (ours, the paper's equivalent below); one metric, ODE w/o guidance."""
    spec = res.plan.tables.get(table)
    its = set(spec.iterations or []) if spec else set()
    if spec is not None and spec.iterations is None:
        its |= {res.final_iteration(r) for r in res.runs(table)}
    for row in _paper_rows(table).values():  # the paper's iterations, at this preset's scale
        for v in row.get("ode", {}).get("nocfg", {}).values():
            if isinstance(v, dict):
                its |= {k // res.scale for k in v if k % res.scale == 0}
    its_sorted = sorted(its)
    view = TableView(
        table,
        TITLES[table],
        caption,
        paper_source(table),
        ["Method"],
        [(f"{METRIC_LABELS[metric]} at training iteration (ODE, w/o guidance)", max(len(its_sorted), 1))],
        [(f"{i:,}", f"paper {fmt_iterations(i * res.scale)}" if res.scale != 1 else "") for i in its_sorted],
        notes=_absent_note(res, table),
    )
    for run in _order(res, table):
        ours = run in res.runs(table)
        entries = [res.entry(table, run, "ode", False, i, metric) for i in its_sorted]
        view.rows.append(Row(_row_label(res, table, run), "", "ours" if ours else "paper", [], entries))
    return view


# ------------------------------------------------------------------ Table 4
def table4(res: Results) -> TableView:
    from dar.routing import parse_routing

    spec = res.plan.tables.get("table4")
    view = TableView(
        "table4",
        TITLES["table4"],
        "Chunk size S of Static DAR (ODE, w/o guidance): the aggregator attends over chunk summaries of S sublayers.",
        paper_source("table4"),
        ["Method", "S", "Iters."],
        [("ODE, w/o guidance", len(METRICS))],
        [(METRIC_LABELS[m], "") for m in METRICS],
        notes=_absent_note(res, "table4"),
    )
    for run in _order(res, "table4"):
        ours = run in res.runs("table4")
        routing = res.plan.run_defs[run].routing if run in res.plan.run_defs else ""
        try:
            chunk = str(parse_routing(routing).chunk) if routing.startswith("dar") else "—"
        except ValueError:
            chunk = "—"
        its = (list(spec.iterations or []) or [res.final_iteration(run)]) if ours else [None]
        for it in its:
            entries = [res.entry("table4", run, "ode", False, it, m) for m in METRICS]
            info = [(chunk, ""), (f"{it:,}" if it else "—", f"paper {fmt_iterations(it * res.scale)}" if it else "")]
            view.rows.append(Row(_row_label(res, "table4", run), "", "ours" if ours else "paper", info, entries))
    return view


# --------------------------------------------------------------------- all
def build_tables(plan: Plan, df: pd.DataFrame) -> list[TableView]:
    res = Results(plan, df)
    return [
        table1(res),
        curve_table(res, "table2", "Timestep awareness: Static, Explicit and Dynamic c4 over training."),
        curve_table(res, "table3", "Compatibility with REPA: FID over training without and with DAR."),
        table4(res),
        curve_table(res, "fig1b", "The points of Fig. 1b: FID over training iterations for each run."),
        *(
            [curve_table(res, "zoo", "The routing zoo: every method's FID at matched iterations (mean over seeds).")]
            if res.in_grid("zoo")
            else []
        ),
    ]


def load_table(plan: Plan, path: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """The collated table (CSV) and where it came from. Cells of the grid the CSV lacks (no CSV yet, or
    one written before the grid grew) are collated afresh from their cell JSONs, pending when absent."""
    from dar.collate import collate

    path = Path(path) if path else plan.table_path
    if not path.is_file():
        return collate(plan), f"collated at render time from {plan.root / 'cells'} ({path} does not exist yet)"
    df = pd.read_csv(path)
    have = set(zip(df["table"], df["name"]))
    if all((c.table, c.name) in have for c in plan.cells):
        return df, str(path)
    fresh = collate(plan)
    extra = fresh[[(t, n) not in have for t, n in zip(fresh["table"], fresh["name"])]]
    return pd.concat(
        [df, extra], ignore_index=True
    ), f"{path}, and {len(extra)} cell(s) of the grid it lacks collated at render time"
