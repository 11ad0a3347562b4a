"""`python -m dar claims`: the paper's claims, one verdict each, from a preset's cells and diagnostics.

    python -m dar claims --preset digits      # results/digits/claims.json (the report's first section)

Each claim quotes the paper (`../shared/seeds`, sections named) and says what of ours it is judged by.
Table claims are paired comparisons over training seeds (dar/stats.py states the interval and the rule):
the claimed-better run against the other, one comparison per cell pair (same table, sampler and guidance,
and the same iteration where the paper compares at matched iterations), each a t-interval of the per-seed
FID difference at a Bonferroni-adjusted confidence, so that a claim's verdict keeps a 5% family-wise error.
Diagnostic claims (Figs. 2, 3, 5) are measured on one checkpoint and judged by thresholds stated with them.
A claim whose cells or diagnostics are missing, stale or unreadable says `no data` and names the command
that makes them. Verdicts carry the scale: at digits scale they say whether the finding reproduces there;
at imagenet256 scale the paper's own numbers stand beside ours.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from dar import stats
from dar.config import to_dict
from dar.diagnostics.flow import early_blocks
from dar.fingerprint import differences
from dar.io import write_json
from dar.plan import Cell, Plan, load_for_cli

METRIC = "fid"  # lower is better; the statistic of every table claim
VERSION = 2  # of claims.json: a report re-judges a file of another version


@dataclass(frozen=True)
class Comparison:
    """`better` is claimed to reach a lower FID than `other` on the cells of `table` they share."""

    table: str
    better: str  # grid run names (the paper's row keys, as in dar/paper.yaml)
    other: str
    matched: bool = True  # False: pair the cells by sampler and guidance only (Table 1: each run at its final iteration)


@dataclass(frozen=True)
class Claim:
    key: str
    title: str
    source: str  # section / figure / table of the paper
    quote: str  # the paper's words ("..." marks a cut)
    comparisons: tuple[Comparison, ...] = ()
    diagnostic: str | None = None  # a key of DIAGNOSTIC_CHECKS: judged on that diagnostic instead


CLAIMS = (
    Claim(
        "better-and-faster",
        "DAR (Static c4) beats SiT: a lower FID with fewer iterations (Table 1) and at matched iterations (Fig. 1b)",
        "Sec. 5.2, Table 1, Fig. 1b",
        "Compared to the vanilla SiT-XL/2 baseline trained for 1.75M iterations, the static variant of DAR achieves a "
        "substantially better FID of 6.92 (SDE) without CFG, while training for only 600K iterations. ... (Sec. 1) "
        "DAR consistently outperforms vanilla SiT in our experiments ... while matching the baseline’s converged "
        "quality in roughly 8.75× fewer training iterations.",
        (Comparison("table1", "static-c4", "sit", matched=False), Comparison("fig1b", "static-c4", "sit")),
    ),
    Claim(
        "not-parameters",
        "The gain is not the parameter count: Dynamic c4 beats the width-matched SiT-Plus",
        "Sec. 5.2, Table 1",
        "To rule out the possibility that these gains arise simply from increased model size, we further train "
        "SiT-Plus, a widened SiT-XL/2 matched to the 752 M parameter count of dynamic c4. Despite using 2× the "
        "training budget, SiT-Plus still trails DAR by a wide margin, confirming that the gains of DAR cannot be "
        "explained simply by parameter scaling.",
        (Comparison("table1", "dynamic-c4", "sit-plus", matched=False),),
    ),
    Claim(
        "not-skips",
        "The gain is not U-Net-like skips: Static c4 beats the skip routing",
        "Sec. 5.2, Table 1",
        "The gap is informative: hand-designed skip topologies wire shallow and deep layers together at predetermined "
        "depths and with fixed, time-invariant fusion weights, whereas DAR replaces these manual choices with learned "
        "and timestep-adaptive aggregation.",
        (Comparison("table1", "static-c4", "skip", matched=False),),
    ),
    Claim(
        "timestep-awareness",
        "Timestep-aware queries (explicit, dynamic) beat the timestep-blind static query",
        "Sec. 5.3, Table 2",
        "Both timestep-aware variants substantially outperform the timestep-blind baseline at matched compute. This "
        "supports the view that timestep awareness—regardless of how it is injected—is the key ingredient.",
        (Comparison("table2", "explicit-c4", "static-c4"), Comparison("table2", "dynamic-c4", "static-c4")),
    ),
    Claim(
        "repa-compounds",
        "DAR+REPA beats REPA at 100K and 200K iterations",
        "Sec. 5.4, Table 3",
        "Stacking DAR on top of REPA improves FID from 9.89 to 7.09 at 100K iterations and from 6.89 to 5.92 at 200K iterations.",
        (Comparison("table3", "dar-repa", "repa"),),
    ),
    Claim(
        "chunk-size-u-shape",
        "FID is U-shaped in the chunk size S, lowest near S = 4",
        "Sec. 5.5, Table 4",
        "Tab. 4 reports a sweep of S ∈ {1, 4, 8} on DAR under matched compute (300K iterations) and reveals a clear "
        "U-shaped pattern with S = 4 at the bottom.",
        (Comparison("table4", "static-c4", "static-c1"), Comparison("table4", "static-c4", "static-c8")),
    ),
    Claim(
        "residual-symptoms",
        "Residual routing inflates forward RMS, decays gradients after the early blocks and makes deep blocks redundant",
        "Sec. 3, Fig. 2",
        "The forward hidden-state magnitude grows monotonically from ∼15.5 at block 1 to ∼1576 at block 28 ... The "
        "backward gradient magnitude drops sharply after the first five blocks ... later blocks are lower by more "
        "than an order of magnitude ... The per-token cosine similarity between consecutive block outputs stays "
        "above 0.9 throughout the deep stack.",
        diagnostic="fig2-residual",
    ),
    Claim(
        "dar-tightens-symptoms",
        "DAR tightens the three symptoms",
        "Sec. 1, Fig. 2",
        "Quantitatively, the three dilution symptoms identified by our diagnosis tighten in lockstep with these FID "
        "gains, linking the diagnostic findings to the observed performance gains.",
        diagnostic="fig2-dar",
    ),
    Claim(
        "routing-changes-with-t",
        "The residual baseline's source preferences change with the timestep",
        "Sec. 3, Fig. 3",
        "Although the baseline never sees a router during training, its counterfactual importance map already varies "
        "systematically along t at both depths, with the preferred sources at high noise differing visibly from "
        "those at low noise",
        diagnostic="fig3",
    ),
    Claim(
        "t-linearly-decodable",
        "The timestep is linearly decodable from the router's inputs at every depth",
        "Sec. 5.3, Fig. 5",
        "Both the attention and MLP aggregator inputs sit well above the raw input latents x_t baseline (R^2 ≈ 0.80) "
        "at every depth, exceed 0.95 within the first five blocks, and remain close to 1.0 throughout the deep stack.",
        diagnostic="fig5",
    ),
)

# Thresholds of the diagnostic claims (each stated on the page beside its value).
MONOTONE_RHO = 0.9  # Fig. 2: Spearman correlation of RMS(z_k) with k at or above this is "grows monotonically"
MIN_INFLATION = 2.0  # Fig. 2: last / first block RMS at least this (the paper: ~100x over 28 blocks)
GRAD_DECAY = 10.0  # Fig. 2: early / deep gradient RMS at least this ("more than an order of magnitude")
REDUNDANT_COS = 0.9  # Fig. 2: every deep-half cosine of consecutive blocks above this ("above 0.9 throughout")
RANK_CHANGE = 0.5  # Fig. 3: median Spearman correlation (t = 0 vs t = 1) below this is "changes with t"
RANK_SAME = 0.9  # ... above this the preference does not change
EARLY_R2 = 0.95  # Fig. 5: "exceed 0.95 within the first five blocks"
DEEP_R2 = 0.95  # Fig. 5: "close to 1.0 throughout the deep stack": every deep-half block at or above this
FAMILY_ERROR = 1 - stats.CONFIDENCE  # a claim's k comparisons each at confidence 1 - FAMILY_ERROR / k (Bonferroni)


class NoData(Exception):
    """A comparison or diagnostic that cannot be judged: the message says why and what makes the data."""


def read_cells(plan: Plan) -> dict[tuple, dict]:
    """The done cells of the plan (JSON recording the fingerprint the grid has now), keyed by
    (table, run, iteration, sampler, cfg). Unreadable, stale or malformed files are left out (no data)."""
    out = {}
    for cell in plan.cells:
        try:
            res = json.loads(cell.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(res, dict) and res.get("fingerprint") == cell.fingerprint:
            out[_key(cell)] = res
    return out


def _key(cell: Cell) -> tuple:
    return (cell.table, cell.run, cell.iteration, cell.sampler, cell.cfg)


def pairs(plan: Plan, comp: Comparison) -> list[tuple[Cell, Cell]]:
    """The (better, other) cells of the comparison: same sampler and guidance, and the same iteration if matched."""

    def match(c: Cell) -> tuple:
        return (c.iteration, c.sampler, c.cfg) if comp.matched else (c.sampler, c.cfg)

    others: dict[tuple, Cell] = {}
    for c in plan.cells:
        if c.table == comp.table and c.run == comp.other:
            if match(c) in others:
                raise ValueError(f"{comp.table}: run {comp.other} has several cells for {match(c)}; pair them by iteration")
            others[match(c)] = c
    return [(c, others[match(c)]) for c in plan.cells if c.table == comp.table and c.run == comp.better and match(c) in others]


def _values(res: dict, cell: Cell) -> list[float]:
    try:
        values = [float(v) for v in res["metrics"][METRIC]["values"]]
    except (KeyError, TypeError, ValueError):
        raise NoData(f"{cell.path} records no per-seed {METRIC} values") from None
    if len(values) != len(res.get("seeds", [])) or not all(math.isfinite(v) for v in values):
        raise NoData(f"{cell.path}: {METRIC} values {values} are not one finite value per seed")
    return values


def compare_pair(plan: Plan, cells: dict[tuple, dict], comp: Comparison, a: Cell, b: Cell, confidence: float) -> dict:
    """One paired comparison of two cells over their seeds (a NoData when a cell is missing or unusable)."""
    for c in (a, b):
        if _key(c) not in cells:
            raise NoData(plan.rerun_command(c.path, *(["--force"] if c.path.is_file() else [])))
    ra, rb = cells[_key(a)], cells[_key(b)]
    if ra.get("seeds") != rb.get("seeds"):
        raise NoData(f"{a.path} and {b.path} were made over other seeds ({ra.get('seeds')} vs {rb.get('seeds')})")
    va, vb = _values(ra, a), _values(rb, b)
    effect = stats.paired_effect(va, vb, confidence)
    pa, pb = (r.get("paper", {}).get(METRIC) if isinstance(r.get("paper"), dict) else None for r in (ra, rb))
    return {
        "iterations": [a.iteration, b.iteration],
        "sampler": a.sampler,
        "cfg": a.cfg,
        "names": [a.name, b.name],
        "seeds": ra["seeds"],
        "values": [va, vb],
        "effect": effect.to_dict(),
        "paper": [pa, pb] if pa is not None and pb is not None else None,
        "paper_effect": pa - pb if pa is not None and pb is not None else None,
        "verdict": stats.verdict(effect, lower_is_better=True),
    }


def judge_comparisons(plan: Plan, cells: dict[tuple, dict], claim: Claim) -> list[dict]:
    """Every cell pair of the claim's comparisons, at the claim's Bonferroni-adjusted confidence."""
    found, out = [], []
    for comp in claim.comparisons:
        base = {"table": comp.table, "better": comp.better, "other": comp.other, "metric": METRIC}
        try:
            found.append((comp, base, pairs(plan, comp)))
        except ValueError as e:
            out.append({**base, "verdict": stats.NO_DATA, "needs": str(e)})
    k = sum(len(p) for _, _, p in found)
    confidence = 1 - FAMILY_ERROR / max(1, k)
    for comp, base, cell_pairs in found:
        if not cell_pairs:
            out.append({**base, "verdict": stats.NO_DATA, "needs": f"a grid with {comp.table} cells of both runs"})
        for a, b in cell_pairs:
            try:
                out.append({**base, **compare_pair(plan, cells, comp, a, b, confidence)})
            except (NoData, ValueError) as e:
                out.append({**base, "names": [a.name, b.name], "verdict": stats.NO_DATA, "needs": str(e)})
    return out


def iterations_to_match(plan: Plan, cells: dict[tuple, dict], fast: str = "static-c4", slow: str = "sit") -> dict | None:
    """Fig. 1b: per seed, the first iteration at which `fast` reaches `slow`'s FID at its last Fig. 1b point,
    linearly interpolated between milestones, and the ratio (the paper: 8.75x). Reached already at the first
    milestone, it is an upper bound (`at_most`). None when the grid has no such curves."""
    curve = {run: sorted((c for c in plan.cells if c.table == "fig1b" and c.run == run and c.sampler == "ode"
                          and not c.cfg), key=lambda c: c.iteration) for run in (fast, slow)}  # fmt: skip
    if not curve[fast] or not curve[slow]:
        return None
    target_cell = curve[slow][-1]
    missing = [c for c in (*curve[fast], target_cell) if _key(c) not in cells]
    base = {"fast": fast, "slow": slow, "slow_iteration": target_cell.iteration, "paper_speedup": 8.75}
    if missing:
        return {**base, "needs": plan.rerun_command(missing[0].path)}
    try:
        targets = _values(cells[_key(target_cell)], target_cell)
        fast_values = [_values(cells[_key(c)], c) for c in curve[fast]]
    except NoData as e:
        return {**base, "needs": str(e)}
    its = [c.iteration for c in curve[fast]]
    reached, at_most = [], []
    for k, target in enumerate(targets):
        ys = [v[k] for v in fast_values]
        hit = None
        for i, y in enumerate(ys):
            if y <= target:  # linear between the milestone above the target and the one at or below it
                hit = float(its[0]) if i == 0 else its[i - 1] + (ys[i - 1] - target) / (ys[i - 1] - y) * (its[i] - its[i - 1])
                break
        reached.append(hit)
        at_most.append(hit is not None and hit == its[0])
    return {
        **base,
        "slow_fid": targets,
        "fast_iterations_to_match": reached,  # None: not reached by its last Fig. 1b point
        "at_most": at_most,  # reached at the first milestone: the true iteration is at most this (speedup at least)
        "fast_last_iteration": its[-1],
        "speedup": [target_cell.iteration / h if h is not None and h > 0 else None for h in reached],
    }


# ---------------------------------------------------------------- diagnostics


def _check(name: str, value: float, ok: bool, rule: str) -> dict:
    return {"check": name, "value": value, "ok": bool(ok), "rule": rule}


def _spearman(a: list[float], b: list[float]) -> float:
    from dar.diagnostics.importance import _rank_corr

    return _rank_corr(a, b)


def _fig2_parts(result: dict, role: str) -> dict:
    s = result["ours"][role]["at_t"]
    rms, grad, cos = s["rms"], s["grad_rms"], s["cos"]
    m = early_blocks(len(grad))
    early, deep = statistics.fmean(grad[:m]), statistics.fmean(grad[m:])
    return {
        "monotone": _spearman(list(range(len(rms))), rms),
        "inflation": rms[-1] / rms[0],
        "grad_decay": early / deep if deep > 0 else math.inf,
        "deep_cos_min": min(cos[len(cos) // 2 :]),
        "early_blocks": m,
    }


def fig2_residual_checks(result: dict) -> list[dict]:
    """The three symptoms of the residual baseline at the figure's t, with the paper's words as thresholds."""
    r = _fig2_parts(result, "baseline")
    return [
        _check("Spearman correlation of RMS(z_k) with block k", r["monotone"], r["monotone"] >= MONOTONE_RHO,
               f">= {MONOTONE_RHO} (grows monotonically)"),
        _check("RMS inflation, last / first block", r["inflation"], r["inflation"] >= MIN_INFLATION,
               f">= {MIN_INFLATION} (the paper: ~100 over 28 blocks)"),
        _check(f"gradient RMS, mean over blocks 1-{r['early_blocks']} / mean over the rest", r["grad_decay"],
               r["grad_decay"] >= GRAD_DECAY, f">= {GRAD_DECAY:g} (more than an order of magnitude)"),
        _check("smallest cosine of consecutive blocks in the deep half", r["deep_cos_min"],
               r["deep_cos_min"] > REDUNDANT_COS, f"> {REDUNDANT_COS} (above 0.9 throughout the deep stack)"),
    ]  # fmt: skip


def fig2_dar_checks(result: dict) -> list[dict]:
    """Each symptom smaller under DAR than under the residual baseline (same pairs, same t)."""
    r, d = _fig2_parts(result, "baseline"), _fig2_parts(result, "dar")
    return [
        _check("DAR RMS inflation, last / first block", d["inflation"], d["inflation"] < r["inflation"],
               f"< residual's {r['inflation']:.3g}"),
        _check("DAR gradient RMS, early / rest", d["grad_decay"], d["grad_decay"] < r["grad_decay"],
               f"< residual's {r['grad_decay']:.3g}"),
        _check("DAR smallest deep-half cosine", d["deep_cos_min"], d["deep_cos_min"] < r["deep_cos_min"],
               f"< residual's {r['deep_cos_min']:.3g}"),
    ]  # fmt: skip


def fig3_checks(result: dict) -> list[dict]:
    """The residual baseline's gate-gradient ranking of sources at the noise end against the data end."""
    layers = result["ours"]["baseline"]["layers"]
    rhos = []
    for m in layers.values():
        first, last = [row[0] for row in m["values"]], [row[-1] for row in m["values"]]
        rho = _spearman(first, last)
        if rho == rho:  # defined (3 or more sources, not constant)
            rhos.append(rho)
    if not rhos:
        raise NoData("no sublayer with 3 or more sources: the rank correlation is undefined")
    med = statistics.median(rhos)
    return [
        _check(
            f"median Spearman correlation of source importance, t = 0 vs t = 1, over {len(rhos)} sublayers",
            med,
            med < RANK_CHANGE,
            f"< {RANK_CHANGE} (above {RANK_SAME}: does not change; no noise floor is measured)",
        )
    ]


def fig5_checks(result: dict) -> list[dict]:
    """Block 1's attention input is affine in the pooled x_t (equal R^2 by construction), so the baseline
    comparison starts at block 2, and the early window holds at least block 2; the baseline is the better of the
    flattened and pooled x_t probes (the flattened one overfits with few pairs)."""
    r = result["ours"]
    both = [min(a, b) for a, b in zip(r["attn"], r["mlp"])]
    K, baseline = len(both), max(r["xt"], r["xt_pooled"])
    m = max(2, early_blocks(K))  # the paper's "first five" of 28 blocks; at least one past block 1's tie
    deep = both[K // 2 :]
    above = sum(v > baseline for v in both[1:])
    return [
        _check(f"blocks 2-{K} whose attention and MLP inputs beat the x_t baseline ({baseline:.3g})", above,
               above == K - 1, f"= all {K - 1}"),
        _check(f"largest R^2 within blocks 1-{m}", max(both[:m]), max(both[:m]) > EARLY_R2, f"> {EARLY_R2}"),
        _check("smallest R^2 in the deep half", min(deep), min(deep) >= DEEP_R2, f">= {DEEP_R2} (close to 1.0)"),
    ]  # fmt: skip


# figure key -> (diagnostics JSON, checks)
DIAGNOSTIC_CHECKS = {
    "fig2-residual": ("fig2", fig2_residual_checks),
    "fig2-dar": ("fig2", fig2_dar_checks),
    "fig3": ("fig3", fig3_checks),
    "fig5": ("fig5", fig5_checks),
}


def diagnostic_verdict(key: str, checks: list[dict]) -> str:
    """All thresholds met: holds; fewer than half met: does not hold (Fig. 3: above RANK_SAME); else inconclusive."""
    if not checks:
        return stats.NO_DATA
    ok = sum(c["ok"] for c in checks)
    if ok == len(checks):
        return stats.HOLDS
    if key == "fig3":
        return stats.FAILS if checks[0]["value"] > RANK_SAME else stats.INCONCLUSIVE
    return stats.FAILS if ok * 2 < len(checks) else stats.INCONCLUSIVE


def judge_diagnostic(plan: Plan, key: str) -> dict:
    figure, checks_of = DIAGNOSTIC_CHECKS[key]
    diag = plan.diagnostics.get(figure)
    if diag is None:
        return {"verdict": stats.NO_DATA, "needs": f"a preset with a diagnostics section ({plan.preset.name} has none)"}
    base = {"figure": figure, "path": str(diag.path)}
    try:
        result = json.loads(diag.path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {**base, "verdict": stats.NO_DATA, "needs": plan.rerun_command(diag.path)}
    force = plan.rerun_command(diag.path, "--force")
    if not isinstance(result, dict) or differences(result.get("config"), to_dict(diag.config)):
        return {**base, "verdict": stats.NO_DATA, "needs": f"{force} (made under another config: stale)"}
    try:
        checks = checks_of(result)
    except NoData as e:
        return {**base, "verdict": stats.NO_DATA, "needs": str(e)}
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as e:  # an older or partial JSON
        return {**base, "verdict": stats.NO_DATA, "needs": f"{force} (its JSON lacks {e})"}
    return {
        **base,
        "checks": checks,
        "seeds": [plan.seeds[0]],
        "note": f"one checkpoint (seed {plan.seeds[0]}): thresholds, no interval",
        "verdict": diagnostic_verdict(key, checks),
    }


# ---------------------------------------------------------------- all claims


def scale_note(plan: Plan) -> str:
    scale = plan.preset.scale
    if scale == "rehearsal":
        return "rehearsal: random-weight stand-ins; these verdicts only show that the claims machinery ran and mean nothing"
    if scale == "imagenet256":
        return "at the paper's scale (ImageNet 256, Inception features): the paper's numbers stand beside ours"
    return f"at {scale} scale: whether the finding reproduces there, not a check of the paper's ImageNet numbers"


def evaluate(plan: Plan) -> dict:
    cells = read_cells(plan)
    out = []
    for claim in CLAIMS:
        entry = {"key": claim.key, "title": claim.title, "source": claim.source, "quote": claim.quote}
        if claim.diagnostic:
            entry.update(kind="diagnostic", **judge_diagnostic(plan, claim.diagnostic))
        else:
            comps = judge_comparisons(plan, cells, claim)
            entry.update(kind="paired", comparisons=comps, verdict=stats.combine([c["verdict"] for c in comps]))
            if any(c.table == "fig1b" for c in claim.comparisons):
                entry["iterations_to_match"] = iterations_to_match(plan, cells)
        out.append(entry)
    return {
        "version": VERSION,
        "preset": plan.preset.name,
        "scale": plan.preset.scale,
        "scale_note": scale_note(plan),
        "seeds": list(plan.seeds),
        "metric": METRIC,
        "rule": stats.RULE,
        "claims": out,
        "counts": {v: sum(c["verdict"] == v for c in out) for v in stats.VERDICTS},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dar claims", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="digits", help="grid preset (default: digits)")
    p.add_argument("--results", default="results", help="results root (default: results)")
    p.add_argument("--out", default=None, help="JSON to write (default: results/<preset>/claims.json)")
    args = p.parse_args(argv)
    plan = load_for_cli(args.preset, args.results)
    if plan is None:
        return 2
    result = evaluate(plan)
    out = Path(args.out) if args.out else plan.claims_path
    write_json(out, result)
    print(f"[claims] {out}: {result['scale_note']}; seeds {result['seeds']}")
    for c in result["claims"]:
        print(f"  {c['verdict']:<14} {c['source']:<28} {c['title']}")
    return 0
