"""Loss-curve figure of a run (metrics.jsonl -> PNG)."""

from __future__ import annotations

from pathlib import Path

from dar.io import atomic_path


def plot_loss(metrics: str | Path, out: str | Path, title: str = "") -> Path:
    from dar.io import read_jsonl
    from dar.plotting import log_scale, pyplot

    plt = pyplot()
    rows = [r for r in read_jsonl(Path(metrics)) if "step" in r and "loss" in r]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("velocity MSE")
    log_scale(ax)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)
