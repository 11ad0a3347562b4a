"""The claims section of the report: claims.json (dar/claims.py) as rows a reader scans, verdict first."""

from __future__ import annotations

import json
from pathlib import Path

from dar import claims as claims_mod
from dar import stats
from dar.plan import Plan

VERDICT_CLASS = {stats.HOLDS: "holds", stats.FAILS: "fails", stats.INCONCLUSIVE: "inconclusive", stats.NO_DATA: "nodata"}


def load(plan: Plan, path: str | Path | None = None) -> tuple[dict, str]:
    """claims.json when it exists and is readable, else the claims judged now from the cells on disk."""
    path = Path(path) if path else plan.claims_path
    if path.is_file():
        try:
            return json.loads(path.read_text()), str(path)
        except json.JSONDecodeError:
            pass
    return claims_mod.evaluate(plan), "judged at render time (python -m dar claims writes claims.json)"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:+.{digits}g}" if abs(x) < 1e4 else f"{x:+.3e}"


def _label(plan: Plan, run: str) -> str:
    rd = plan.run_defs.get(run)
    return rd.label if rd else run


def comparison_line(plan: Plan, c: dict) -> dict:
    a, b = _label(plan, c["better"]), _label(plan, c["other"])
    head = f"{a} − {b}, {c['metric'].upper()}, {c['table']}"
    if c["verdict"] == stats.NO_DATA:
        return {
            "text": head,
            "effect": "no data",
            "needs": c.get("needs", ""),
            "verdict": c["verdict"],
            "paper": "-",
            "seeds": "",
        }
    cells = c["cells"]
    its = sorted({tuple(x["iterations"]) for x in cells})
    where = ", ".join(f"{i}" if i == j else f"{i} vs {j}" for i, j in its)
    settings = sorted({f"{x['sampler']}{' cfg' if x['cfg'] else ''}" for x in cells})
    e = c["effect"]
    if e["low"] is None:
        effect = f"{_num(e['mean'])} (n = {e['n']}: no interval)"
    else:
        effect = f"{_num(e['mean'])} [{_num(e['low'])}, {_num(e['high'])}] (n = {e['n']})"
    seeds = ", ".join(f"{x:.4g} / {y:.4g}" for x, y in zip(c["values"][c["better"]], c["values"][c["other"]]))
    return {
        "text": f"{head} at iteration {where} ({', '.join(settings)}; mean over {len(cells)} cell(s))",
        "effect": effect,
        "seeds": f"per seed {a} / {b}: {seeds}",
        "verdict": c["verdict"],
        "paper": _num(c.get("paper_effect")) if c.get("paper_effect") is not None else "n/r",
        "needs": "",
    }


def check_line(c: dict) -> dict:
    v = c["value"]
    value = f"{v:.4g}" if isinstance(v, float) else str(v)
    return {"text": c["check"], "effect": f"{value} (rule {c['rule']})", "verdict": stats.HOLDS if c["ok"] else stats.FAILS,
            "paper": "-", "needs": "", "seeds": ""}  # fmt: skip


def match_line(plan: Plan, m: dict) -> dict:
    fast, slow = _label(plan, m["fast"]), _label(plan, m["slow"])
    per_seed = ", ".join(
        f"{h:.0f} ({r:.2f}x)" if h else f"not by {m['fast_last_iteration']}"
        for h, r in zip(m["fast_iterations_to_match"], m["speedup"])
    )
    return {
        "text": f"iterations for {fast} to reach {slow}'s FID at iteration {m['slow_iteration']} (Fig. 1b, ODE)",
        "effect": f"per seed: {per_seed}",
        "verdict": "",
        "paper": f"{m['paper_speedup']}x fewer",
        "needs": "",
        "seeds": "",
    }


def rows(plan: Plan, result: dict) -> list[dict]:
    out = []
    for c in result["claims"]:
        if c["kind"] == "paired":
            lines = [comparison_line(plan, x) for x in c["comparisons"]]
            if c.get("iterations_to_match"):
                lines.append(match_line(plan, c["iterations_to_match"]))
        else:
            lines = [check_line(x) for x in c.get("checks", [])]
            if c["verdict"] == stats.NO_DATA:
                lines = [{"text": f"{c.get('figure', 'diagnostic')}", "effect": "no data", "needs": c.get("needs", ""),
                          "verdict": stats.NO_DATA, "paper": "-", "seeds": ""}]  # fmt: skip
            elif c.get("note"):
                lines.append({"text": c["note"], "effect": "", "verdict": "", "paper": "", "needs": "", "seeds": ""})
        for line in lines:
            line["css"] = VERDICT_CLASS.get(line["verdict"], "")
        out.append({**c, "css": VERDICT_CLASS[c["verdict"]], "lines": lines})
    return out


def counts(result: dict) -> list[tuple[str, int, str]]:
    """(verdict, how many claims, css class) for the legend."""
    return [(v, result["counts"].get(v, 0), VERDICT_CLASS[v]) for v in stats.VERDICTS]
