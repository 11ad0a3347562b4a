"""Chunk-size theory (Sec. 5.5, Proposition 1, App. B): the U-shaped cost of chunked aggregation.

Per-aggregator cost of chunk size S for L sublayers (Eq. 8):

    C(S) = log(L / S + S) + alpha log S,        alpha in (0, 1)

the maximum-entropy bound of a softmax over |S_l| ~ L/S + S sources plus the
rate-distortion cost of compressing S outputs into one summary. Its derivative
((1 + alpha) S^2 - (1 - alpha) L) / (S (S^2 + L)) changes sign once, at (Eq. 9)

    S* = sqrt(L (1 - alpha) / (1 + alpha)).

Note on the paper's band: for L = 56, Eq. 9 gives S* = 4.90 at alpha = 0.4 and
3.14 at alpha = 0.7; the quoted [3.7, 4.9] is the band over alpha in [0.4, 0.6]
(S*(0.6) = 3.74). Both are reported; neither changes the conclusion S = 4.
"""

from __future__ import annotations

import math

import numpy as np

from dar.routing.chunks import valid_chunk_sizes

PAPER = {
    "source": "Sec. 5.5, Proposition 1 and App. B (Eq. 8-9); Table 4",
    "num_sublayers": 56,
    "alpha_band": [0.4, 0.7],
    "s_star_band": [3.7, 4.9],
    "chosen_chunk": 4,
    "table4": "FID over S in {1, 4, 8} at 300K iterations is U-shaped with S = 4 best (values not in the text)",
}
ALPHAS = (0.4, 0.5, 0.6, 0.7)  # the curves drawn; the paper's 'realistic range' is [0.4, 0.7]


def cost(S, L: float, alpha: float):
    """Eq. 8 (natural log); S may be a float or an array."""
    S = np.asarray(S, dtype=np.float64)
    return np.log(L / S + S) + alpha * np.log(S)


def s_star(L: float, alpha: float) -> float:
    """Eq. 9: the unique minimiser of Eq. 8 on (0, inf)."""
    if L <= 0 or not 0 < alpha < 1:
        raise ValueError(f"Proposition 1 needs L > 0 and alpha in (0, 1); got L={L}, alpha={alpha}")
    return math.sqrt(L * (1 - alpha) / (1 + alpha))


def numeric_minimiser(L: float, alpha: float) -> float:
    """argmin of Eq. 8 over S in (0, L] by bounded scalar minimisation (checks Eq. 9)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda s: float(cost(s, L, alpha)), bounds=(1e-9, float(L)), method="bounded", options={"xatol": 1e-10})
    return float(res.x)


def band(L: float, alpha_lo: float, alpha_hi: float) -> list[float]:
    """[min, max] of S* over alpha in [alpha_lo, alpha_hi] (S* falls as alpha grows)."""
    return [s_star(L, alpha_hi), s_star(L, alpha_lo)]


def measured_points(cells: list[dict]) -> list[dict]:
    """Table 4 cells (their result JSON) -> [{"chunk", "fid", "run", ...}] sorted by chunk; non-DAR cells are skipped."""
    from dar.routing import parse_routing

    out = []
    for c in cells:
        spec = parse_routing(c["routing"])
        if spec.kind != "dar":
            continue
        fid = c["metrics"]["fid"]
        out.append(
            {
                "chunk": spec.chunk,
                "fid": fid["mean"],
                "fid_std": fid.get("std", 0.0),
                "n_seeds": fid.get("n", 1),
                "run": c.get("run"),
                "label": c.get("label"),
                "iteration": c.get("iteration"),
                "feature_space": c.get("feature_space"),
                "paper_fid": c.get("paper", {}).get("fid"),
            }
        )
    return sorted(out, key=lambda p: p["chunk"])


def theory(L: int, alpha_band: tuple[float, float] = (0.4, 0.7), cells: list[dict] | None = None) -> dict:
    """Everything the chunk-theory figure shows, for a model with L sublayers."""
    lo, hi = alpha_band
    alphas = sorted({*ALPHAS, lo, hi})
    grid = np.geomspace(1.0, float(L), 200)
    chunks = valid_chunk_sizes(L)
    out = {
        "num_sublayers": L,
        "alpha_band": [lo, hi],
        "s_star_band": band(L, lo, hi),
        "s_star": {f"{a:g}": s_star(L, a) for a in alphas},
        "numeric_check": {f"{a:g}": {"closed_form": s_star(L, a), "numeric": numeric_minimiser(L, a)} for a in alphas},
        "valid_chunk_sizes": chunks,
        "best_valid_chunk": {f"{a:g}": min(chunks, key=lambda s, a=a: float(cost(s, L, a))) for a in alphas},
        "curve": {"S": grid.tolist(), "cost": {f"{a:g}": cost(grid, L, a).tolist() for a in alphas}},
        "paper_depth": {
            "num_sublayers": PAPER["num_sublayers"],
            "s_star_band": band(PAPER["num_sublayers"], lo, hi),
            "s_star_band_alpha_0.4_0.6": band(PAPER["num_sublayers"], 0.4, 0.6),
        },
        "measured": measured_points(cells or []),
    }
    return out


def summarize(r: dict) -> list[str]:
    lo, hi = r["alpha_band"]
    b = r["s_star_band"]
    p = r["paper_depth"]
    p6 = p["s_star_band_alpha_0.4_0.6"]
    lines = [
        f"L = {r['num_sublayers']} sublayers: S* in [{b[0]:.2f}, {b[1]:.2f}] over alpha in [{lo:g}, {hi:g}] "
        f"(Eq. 9); best valid chunk size per alpha {r['best_valid_chunk']}",
        f"paper depth L = {p['num_sublayers']}: Eq. 9 gives [{p['s_star_band'][0]:.2f}, {p['s_star_band'][1]:.2f}] over "
        f"alpha in [{lo:g}, {hi:g}]; the paper quotes [{PAPER['s_star_band'][0]}, {PAPER['s_star_band'][1]}], "
        f"which is the band over alpha in [0.4, 0.6] ([{p6[0]:.2f}, {p6[1]:.2f}])",
    ]
    worst = max(abs(v["closed_form"] - v["numeric"]) for v in r["numeric_check"].values())
    lines.append(f"closed form vs numeric minimisation of Eq. 8: max |difference| {worst:.1e}")
    if r["measured"]:
        pts = ", ".join(f"S={m['chunk']}: FID {m['fid']:.2f}" for m in r["measured"])
        best = min(r["measured"], key=lambda m: m["fid"])["chunk"]
        lines.append(f"measured Table 4 ({r['measured'][0]['feature_space']} features): {pts}; best S = {best} (paper: S = 4)")
    else:
        lines.append("measured Table 4: no cell results yet (the figure shows the theory only)")
    return lines
