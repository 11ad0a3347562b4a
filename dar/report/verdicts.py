"""The claims section of the report: claims.json (dar/claims.py) as rows a reader scans, verdict first."""

from __future__ import annotations

import json
from pathlib import Path

from dar import claims as claims_mod
from dar import stats
from dar.plan import Plan

VERDICT_CLASS = {stats.HOLDS: "holds", stats.FAILS: "fails", stats.INCONCLUSIVE: "inconclusive", stats.NO_DATA: "nodata"}


def load(plan: Plan, path: str | Path | None = None) -> tuple[dict, list[dict], str]:
    """(claims, rows, source): claims.json when it is of this version and renders, else judged now from the cells."""
    path = Path(path) if path else plan.claims_path
    if path.is_file():
        try:
            result = json.loads(path.read_text())
            if result.get("version") == claims_mod.VERSION:
                return result, rows(plan, result), str(path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
            pass  # unreadable, another version or partial: judged afresh below
    result = claims_mod.evaluate(plan)
    return result, rows(plan, result), "judged at render time (python -m dar claims writes claims.json)"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:+.3g}" if abs(x) < 1e4 else f"{x:+.3e}"


def _label(plan: Plan, run: str) -> str:
    rd = plan.run_defs.get(run)
    return rd.label if rd else run


def _line(text: str, effect: str = "", verdict: str = "", paper: str = "", needs: str = "", seeds: str = "") -> dict:
    return {"text": text, "effect": effect, "verdict": verdict, "paper": paper, "needs": needs, "seeds": seeds,
            "css": VERDICT_CLASS.get(verdict, "")}  # fmt: skip


def comparison_line(plan: Plan, c: dict) -> dict:
    a, b = _label(plan, c["better"]), _label(plan, c["other"])
    if "effect" not in c:
        where = f" ({' vs '.join(c['names'])})" if c.get("names") else ""
        return _line(f"{a} − {b}, {c['metric'].upper()}, {c['table']}{where}", "no data", c["verdict"], "-", c.get("needs", ""))
    i, j = c["iterations"]
    at = f"iteration {i}" if i == j else f"iterations {i} vs {j}"
    e = c["effect"]
    if e["low"] is None:
        effect = f"{_num(e['mean'])} (n = {e['n']}: no interval)"
    else:
        effect = f"{_num(e['mean'])} [{_num(e['low'])}, {_num(e['high'])}] ({e['confidence']:.1%}, n = {e['n']})"
    seeds = ", ".join(f"{x:.4g} / {y:.4g}" for x, y in zip(*c["values"]))
    return _line(
        f"{a} − {b}, {c['metric'].upper()}, {c['table']} {c['sampler'].upper()}{' w/ CFG' if c['cfg'] else ''} at {at}",
        effect,
        c["verdict"],
        f"{_num(c['paper_effect'])} ({c['paper'][0]:g} vs {c['paper'][1]:g})" if c.get("paper") else "n/r",
        seeds=f"per seed {a} / {b}: {seeds}",
    )


def check_line(c: dict) -> dict:
    v = c["value"]
    value = f"{v:.4g}" if isinstance(v, float) else str(v)
    return _line(c["check"], f"{value} (rule {c['rule']})", stats.HOLDS if c["ok"] else stats.FAILS, "-")


def match_line(plan: Plan, m: dict) -> dict:
    fast, slow = _label(plan, m["fast"]), _label(plan, m["slow"])
    text = f"iterations for {fast} to reach {slow}'s FID at iteration {m['slow_iteration']} (Fig. 1b, ODE; not judged)"
    if "needs" in m:
        return _line(text, "no data", "", f"{m['paper_speedup']}x fewer", m["needs"])

    def one(h: float | None, r: float | None, bound: bool) -> str:
        if h is None:
            return f"not by {m['fast_last_iteration']}"
        return f"≤ {h:.0f} (≥ {r:.2f}x)" if bound else f"{h:.0f} ({r:.2f}x)"

    per_seed = ", ".join(one(h, r, b) for h, r, b in zip(m["fast_iterations_to_match"], m["speedup"], m["at_most"]))
    return _line(text, f"per seed: {per_seed}", "", f"{m['paper_speedup']}x fewer")


def rows(plan: Plan, result: dict) -> list[dict]:
    out = []
    for c in result["claims"]:
        if c["kind"] == "paired":
            lines = [comparison_line(plan, x) for x in c["comparisons"]]
            if c.get("iterations_to_match"):
                lines.append(match_line(plan, c["iterations_to_match"]))
        elif c["verdict"] == stats.NO_DATA:
            lines = [_line(c.get("figure", "diagnostic"), "no data", stats.NO_DATA, "-", c.get("needs", ""))]
        else:
            lines = [check_line(x) for x in c["checks"]] + [_line(c["note"])]
        out.append({**c, "css": VERDICT_CLASS[c["verdict"]], "lines": lines})
    return out


def counts(result: dict) -> list[tuple[str, int, str]]:
    """(verdict, how many claims, css class) for the legend."""
    return [(v, result["counts"].get(v, 0), VERDICT_CLASS[v]) for v in stats.VERDICTS]
