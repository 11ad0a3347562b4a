"""The PNG of each diagnostic, drawn from its result JSON (matplotlib, Agg backend).

Each function takes the figure's result dict (the layout `dar.diagnostics.job`
writes) and the PNG path, so a figure can be redrawn from its JSON alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dar.io import atomic_path
from dar.plotting import line_style, log_scale

COLORS = {"baseline": "tab:blue", "dar": "tab:orange", "probe": "tab:green"}


def _pyplot():
    from dar.plotting import pyplot

    return pyplot()


def _save(fig, out: str | Path) -> Path:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    _pyplot().close(fig)
    return Path(out)


def _finish(fig, result: dict, out: str | Path) -> Path:
    """The result's title over the whole figure, tight layout, PNG."""
    fig.suptitle(result["title"], fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def _heatmap(fig, ax, values: np.ndarray, ts: list[float], ylabels: list, title: str, ylabel: str, **kw):
    """values [rows, t]; t along x, rows along y (row 0 at the bottom), with colour bar and labels; returns the colour bar."""
    im = ax.imshow(values, aspect="auto", origin="lower", interpolation="nearest", **kw)
    step = max(1, len(ts) // 6)
    ax.set_xticks(range(0, len(ts), step), [f"{t:g}" for t in ts[::step]])
    ystep = max(1, len(ylabels) // 10)
    ax.set_yticks(range(0, len(ylabels), ystep), [str(v) for v in ylabels[::ystep]])
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("t (0 noise, 1 data)")
    ax.set_ylabel(ylabel)
    return cbar


# ---------------------------------------------------------------------------
# Fig. 2
# ---------------------------------------------------------------------------


def plot_fig2(result: dict, out: str | Path) -> Path:
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    roles = list(result["ours"])
    fig, axes = plt.subplots(1 + len(roles), 3, figsize=(13, 3.3 * (1 + len(roles))), dpi=110, squeeze=False)
    t_ref = result["protocol"]["t_reference"]
    titles = ("forward RMS(z_k)", "gradient RMS(dL/dz_k)", "cos(z_k, z_k+1)")
    for role in roles:
        r = result["ours"][role]
        s = r["at_t"]
        K = len(s["rms"])
        blocks = np.arange(1, K + 1)
        kw = dict(color=COLORS.get(role), marker="o", ms=3, lw=1.4, label=r["label"])
        axes[0, 0].plot(blocks, s["rms"], **kw)
        axes[0, 1].plot(blocks, s["grad_rms"], **kw)
        axes[0, 2].plot(blocks[:-1], s["cos"], **kw)
    p = result["paper"]["baseline"]
    notes = (
        f"paper SiT-XL/2: ~{p['rms_first_block']} -> ~{p['rms_last_block']:.0f} over 28 blocks",
        f"paper: ~{p['grad_rms_early']:g} early, >10x lower after block {p['grad_drop_after_block']}",
        f"paper: > {p['cos_deep_min']} in the deep stack",
    )
    for j, title in enumerate(titles):
        ax = axes[0, j]
        ax.set_title(f"{title} at t = {t_ref:g}\n({notes[j]})", fontsize=9)
        ax.legend(fontsize=7)
        ax.set_xlabel("block k" if j < 2 else "block k (pair k, k+1)")
        ax.grid(alpha=0.3)
        values = [v for line in ax.get_lines() for v in line.get_ydata()]
        if j < 2 and min(values) > 0 and max(values) / min(values) > 30:  # log scale over 1.5 decades or more
            log_scale(ax)
        else:
            ax.ticklabel_format(axis="y", useOffset=False)
    # rows 2..: each model's statistics over the t grid, one colour scale per statistic
    stats = ("rms", "grad_rms", "cos")
    for j, stat in enumerate(stats):
        arrays = {role: np.asarray(result["ours"][role]["over_t"][stat]).T for role in roles}  # [blocks, t]
        lo = min(a.min() for a in arrays.values())
        hi = max(a.max() for a in arrays.values())
        for i, role in enumerate(roles, start=1):
            ax = axes[i, j]
            over = result["ours"][role]["over_t"]
            a = arrays[role]
            ylabels = list(range(1, a.shape[0] + 1))
            if stat == "cos":
                cmap_kw = dict(cmap="viridis", vmin=lo, vmax=hi)
            else:
                cmap_kw = dict(cmap="magma", norm=LogNorm(vmin=max(lo, 1e-30), vmax=hi))
            title = f"{result['ours'][role]['label']}: {titles[j]}"
            cbar = _heatmap(fig, ax, a, over["t"], ylabels, title, "block k", **cmap_kw)
            if stat == "cos":
                cbar.formatter.set_useOffset(False)
                cbar.update_ticks()
    return _finish(fig, result, out)


# ---------------------------------------------------------------------------
# Fig. 3
# ---------------------------------------------------------------------------


def plot_fig3(result: dict, out: str | Path) -> Path:
    plt = _pyplot()
    roles = list(result["ours"])
    layers = result["protocol"]["layers"]
    fig, axes = plt.subplots(len(roles), len(layers), figsize=(4.6 * len(layers), 3.6 * len(roles)), dpi=110, squeeze=False)
    for i, role in enumerate(roles):
        r = result["ours"][role]
        for j, l in enumerate(layers):
            ax = axes[i, j]
            m = r["layers"][str(l)]
            vals = np.asarray(m["values"])  # [sources, t]
            ylabels = [f"v{s}" for s in m["sources"]]
            if r["kind"] == "gate_gradient":
                shown = -vals / np.maximum(np.abs(vals).max(axis=0, keepdims=True), 1e-30)  # per-t normalised -dL/dg
                cmap_kw = dict(cmap="RdBu_r", vmin=-1, vmax=1)
                cb = "-dL/dg (each t column / its max |.|)"
                note = ""
            else:  # colours span this map's range, so small shifts with t stay visible; the title gives the range
                shown = vals
                cmap_kw = dict(cmap="viridis", vmin=vals.min(), vmax=max(vals.max(), vals.min() + 1e-6))
                cb = "alpha (mean over pairs and tokens)"
                note = f"\nalpha in [{vals.min():.3f}, {vals.max():.3f}], uniform {1 / vals.shape[0]:.3f}"
            block, kind = (l + 1) // 2, "attn" if l % 2 else "MLP"
            title = f"{r['label']}: sublayer {l} (block {block} {kind}){note}"
            _heatmap(fig, ax, shown, r["t"], ylabels, title, "source", **cmap_kw).set_label(cb, fontsize=7)
    return _finish(fig, result, out)


# ---------------------------------------------------------------------------
# Fig. 5
# ---------------------------------------------------------------------------


def plot_fig5(result: dict, out: str | Path) -> Path:
    plt = _pyplot()
    r = result["ours"]
    blocks = r["blocks"]
    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=120)
    ax.plot(blocks, r["attn"], marker="o", ms=3, color="tab:blue", label="attention aggregator input h_{2k-1}")
    ax.plot(blocks, r["mlp"], marker="s", ms=3, color="tab:red", label="MLP aggregator input h_{2k}")
    qkw = dict(ls="--", lw=1.0, marker="x", ms=4, alpha=0.7)
    ax.plot(blocks, r["attn_query_input"], color="tab:cyan", label="attention query input v_{2k-2}", **qkw)
    ax.plot(blocks, r["mlp_query_input"], color="tab:orange", label="MLP query input v_{2k-1}", **qkw)
    ax.axhline(r["xt"], color="0.3", lw=1.2, label=f"x_t flattened ({r['xt']:.2f})")
    ax.axhline(r["xt_pooled"], color="0.3", lw=1.0, ls=":", label=f"x_t pooled ({r['xt_pooled']:.2f})")
    ax.axhline(result["paper"]["xt_r2"], color="tab:purple", lw=0.8, ls="-.", label="paper: x_t baseline ~0.80")
    values = [*r["attn"], *r["mlp"], *r["attn_query_input"], *r["mlp_query_input"], r["xt"], r["xt_pooled"]]
    ax.set_ylim(min(0.0, min(values) - 0.05), 1.02)
    ax.set_xlabel("block k")
    ax.set_ylabel("test R^2 (ridge probe of t)")
    ax.set_title(result["title"], fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------
# Chunk-size theory
# ---------------------------------------------------------------------------


def plot_chunk_theory(result: dict, out: str | Path) -> Path:
    from dar.diagnostics.chunk_theory import s_star

    plt = _pyplot()
    r = result["ours"]
    L = r["num_sublayers"]
    lo, hi = r["alpha_band"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    S = np.asarray(r["curve"]["S"])
    cmap = plt.get_cmap("viridis")
    alphas = sorted(r["curve"]["cost"], key=float)
    for i, a in enumerate(alphas):
        c = np.asarray(r["curve"]["cost"][a])
        color = cmap(i / max(1, len(alphas) - 1))
        ax.plot(S, c - c.min(), color=color, lw=1.4, label=f"alpha = {a}")
        ax.plot([r["s_star"][a]], [0.0], marker="v", color=color, ms=7)
    ax.axvspan(*r["s_star_band"], color="tab:orange", alpha=0.15, label=f"S* band, alpha in [{lo:g}, {hi:g}]")
    for s in r["valid_chunk_sizes"]:
        ax.axvline(s, color="0.85", lw=0.8, zorder=0)
    ax.set_xscale("log")
    ax.set_xticks(r["valid_chunk_sizes"], [str(s) for s in r["valid_chunk_sizes"]])
    ax.set_xlabel("chunk size S")
    ax.set_ylabel("cost C(S) - min C  (Eq. 8)")
    ax.set_title(f"Eq. 8 for this model's L = {L} sublayers", fontsize=9)
    if r["measured"]:
        tx = ax.twinx()
        pts = r["measured"]
        tx.plot([p["chunk"] for p in pts], [p["fid"] for p in pts], "k-o", ms=5, label="measured FID (Table 4)")
        tx.set_ylabel(f"FID ({pts[0]['feature_space']} features)")
        fids = [p["fid"] for p in pts]
        span = max(max(fids) - min(fids), 1e-3)
        tx.set_ylim(min(fids) - 0.1 * span, max(fids) + 1.2 * span)  # the FID line in the lower half, legends above
        tx.legend(fontsize=7, loc="upper center")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)

    Ls = np.arange(2, max(L, 56) * 2 + 1)
    bx.fill_between(Ls, [s_star(x, hi) for x in Ls], [s_star(x, lo) for x in Ls], color="tab:orange", alpha=0.25)
    bx.plot(Ls, [s_star(x, 0.5 * (lo + hi)) for x in Ls], color="tab:orange", lw=1.2, label=f"S* (Eq. 9), alpha {lo:g}-{hi:g}")
    pb = result["paper"]["s_star_band"]
    bx.errorbar(
        [56],
        [np.mean(pb)],
        yerr=[[np.mean(pb) - pb[0]], [pb[1] - np.mean(pb)]],
        fmt="ks",
        ms=4,
        capsize=4,
        label="paper's band, L = 56",
    )
    bx.errorbar(
        [L],
        [np.mean(r["s_star_band"])],
        yerr=[[np.mean(r["s_star_band"]) - r["s_star_band"][0]], [r["s_star_band"][1] - np.mean(r["s_star_band"])]],
        fmt="o",
        color="tab:blue",
        ms=4,
        capsize=4,
        label=f"this model, L = {L}",
    )
    bx.set_xlabel("sublayers L")
    bx.set_ylabel("optimal chunk size S*")
    bx.set_title("S* grows as sqrt(L)", fontsize=9)
    bx.grid(alpha=0.3)
    bx.legend(fontsize=7)
    return _finish(fig, result, out)


def plot_zoo_flow(result: dict, out: str | Path) -> Path:
    """Fig. 2's three panels with one line per method (the baseline dashed)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=110)
    titles = ("forward RMS(z_k)", "gradient RMS(dL/dz_k)", "cos(z_k, z_k+1)")
    for i, m in enumerate(result["ours"]["methods"]):
        K = len(m["rms"])
        blocks = np.arange(1, K + 1)
        kw = dict(**line_style(i), ms=3, lw=1.1, ls="--" if i == 0 else "-", label=m["label"])
        axes[0].plot(blocks, m["rms"], **kw)
        axes[1].plot(blocks, m["grad_rms"], **kw)
        axes[2].plot(blocks[:-1], m["cos"], **kw)
    for j, ax in enumerate(axes):
        ax.set_title(f"{titles[j]} at t = {result['protocol']['t_reference']:g}", fontsize=9)
        ax.set_xlabel("block k" if j < 2 else "block k (pair k, k+1)")
        ax.grid(alpha=0.3)
        values = [v for line in ax.get_lines() for v in line.get_ydata()]
        if j < 2 and values and min(values) > 0 and max(values) / min(values) > 30:
            log_scale(ax)
    axes[2].legend(fontsize=6.5, ncol=1, loc="best")
    return _finish(fig, result, out)


PLOTS = {"fig2": plot_fig2, "fig3": plot_fig3, "fig5": plot_fig5, "chunk_theory": plot_chunk_theory, "zoo_flow": plot_zoo_flow}
