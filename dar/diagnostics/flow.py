"""Fig. 2 (Sec. 3): forward magnitude, backward gradient magnitude and redundancy across depth.

For block k = 1..K the block output z_k is what the stream hands on after block k:

    residual   the residual stream after block k's MLP (the state sublayer 2k+1 reads;
               for k = K, the head's input)
    DAR        the aggregated state passed to block k+1 (the read of sublayer 2k+1;
               for k = K, the final aggregate that feeds the head)

i.e. the result of `stream.read(2k + 1)` and, for k = K, `stream.read_final()`,
for any routing. Statistics, each averaged over the batch and the tokens:

    rms[k]       mean_{b,n} sqrt(mean_d z_k[b, n, d]^2)
    grad_rms[k]  the same for dL/dz_k, L the velocity MSE of SiT training
                 (mean over the N pairs and every latent dimension, so it scales as 1/N)
    cos[k]       mean_{b,n} cos(z_k[b, n], z_{k+1}[b, n]),  k = 1..K-1
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dar.diagnostics.pairs import Pairs
from dar.routing.base import Observer

# What the paper reports (Sec. 3, Fig. 2): SiT-XL/2 at 600K iterations, 4096 ImageNet samples, t = 1.0.
PAPER = {
    "source": "Sec. 3 / Fig. 2: SiT-XL/2 (28 blocks) and DAR static c4, both at 600K iterations, 4096 ImageNet samples, t = 1.0",
    "depth": 28,
    "t": 1.0,
    "num_samples": 4096,
    "iteration": 600000,
    "baseline": {
        "rms_first_block": 15.5,
        "rms_last_block": 1576.0,
        "rms_inflation": round(1576.0 / 15.5, 1),
        "grad_rms_early": 5e-7,
        "grad_drop_after_block": 5,
        "grad_deep_vs_early": "more than an order of magnitude lower, close to zero in the deep stack",
        "cos_deep_min": 0.9,
    },
    "dar": "plotted only; the text gives no numbers",
}


class BlockStates(Observer):
    """Keeps the live block outputs z_1..z_K of one forward pass (see the module docstring)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.z: dict[int, Tensor] = {}

    def on_read(self, l, h, sources, alpha):
        if l % 2 == 1 and l > 1:  # sublayer 2k+1 reads z_k
            self.z[(l - 1) // 2] = h

    def on_final(self, h, sources, alpha):
        self.z[self.depth] = h

    def states(self) -> list[Tensor]:
        missing = [k for k in range(1, self.depth + 1) if k not in self.z]
        if missing:
            raise RuntimeError(f"block outputs {missing} were never read; is the model's routing a dar.routing.Stream?")
        return [self.z[k] for k in range(1, self.depth + 1)]


def token_rms(z: Tensor) -> Tensor:
    """Per-token RMS over features: [B, T, D] -> [B, T]."""
    return z.float().pow(2).mean(dim=-1).sqrt()


def token_cosine(a: Tensor, b: Tensor) -> Tensor:
    """Per-token cosine similarity: two [B, T, D] -> [B, T]."""
    return F.cosine_similarity(a.float(), b.float(), dim=-1, eps=1e-12)


def velocity_loss_sum(v: Tensor, ut: Tensor) -> Tensor:
    """Sum over the batch of the per-sample velocity MSE (mean over C, H, W)."""
    return (v.float() - ut.float()).pow(2).mean(dim=tuple(range(1, v.dim()))).sum()


def flow_stats(model, pairs: Pairs, ts: list[float], batch_size: int, device: torch.device | str) -> dict:
    """Fig. 2 statistics of `model` at every t of `ts`: {"t", "loss", "rms", "grad_rms", "cos"}, each [len(ts)][blocks]."""
    K, n = model.depth, len(pairs)
    out: dict[str, list] = {"t": list(ts), "loss": [], "rms": [], "grad_rms": [], "cos": []}
    for t in ts:
        rms = torch.zeros(K, dtype=torch.float64)
        grad = torch.zeros(K, dtype=torch.float64)
        cos = torch.zeros(K - 1, dtype=torch.float64)
        tokens, loss_total = 0, 0.0
        for xt, tt, y, ut in pairs.batches(t, batch_size, device):
            with model.routing.observe(BlockStates(K)) as obs:
                v = model(xt, tt, y)
            loss = velocity_loss_sum(v, ut) / n  # this batch's share of the mean over all N pairs
            zs = obs.states()
            grads = torch.autograd.grad(loss, zs)
            with torch.no_grad():
                for k in range(K):
                    rms[k] += token_rms(zs[k]).sum().item()
                    grad[k] += token_rms(grads[k]).sum().item()
                    if k < K - 1:
                        cos[k] += token_cosine(zs[k], zs[k + 1]).sum().item()
            tokens += zs[0].shape[0] * zs[0].shape[1]
            loss_total += loss.item()
        out["loss"].append(loss_total)
        out["rms"].append((rms / tokens).tolist())
        out["grad_rms"].append((grad / tokens).tolist())
        out["cos"].append((cos / tokens).tolist())
    return out


def at_t(stats: dict, t: float) -> dict:
    """The statistics at the grid time nearest to t: {"t", "loss", "rms", "grad_rms", "cos"} with [blocks] lists."""
    i = min(range(len(stats["t"])), key=lambda j: abs(stats["t"][j] - t))
    return {"t": stats["t"][i], **{k: stats[k][i] for k in ("loss", "rms", "grad_rms", "cos")}}


def early_blocks(depth: int) -> int:
    """The paper's 'first five of 28 blocks' scaled to `depth` (at least 1, at most depth - 1)."""
    return max(1, min(depth - 1, round(5 * depth / 28)))


def summarize(label: str, s: dict) -> list[str]:
    """Short lines comparing one model's statistics (at one t, from `at_t`) with the paper's baseline."""
    rms, grad, cos = s["rms"], s["grad_rms"], s["cos"]
    K = len(rms)
    m = early_blocks(K)
    early, deep = sum(grad[:m]) / m, sum(grad[m:]) / (K - m)
    deep_cos = cos[(K - 1) // 2 :] or cos
    p = PAPER["baseline"]
    return [
        f"{label}, t={s['t']:g}: RMS(z_k) {rms[0]:.3g} at block 1 -> {rms[-1]:.3g} at block {K} "
        f"(x{rms[-1] / rms[0]:.3g}); paper SiT-XL/2: ~{p['rms_first_block']} -> ~{p['rms_last_block']:.0f} "
        f"(x~{p['rms_inflation']:.0f})",
        f"{label}, t={s['t']:g}: RMS(dL/dz_k) mean {early:.3g} over blocks 1-{m}, {deep:.3g} over blocks {m + 1}-{K} "
        f"(early/deep x{early / deep:.3g}); paper: ~{p['grad_rms_early']:g} early, >10x lower after block "
        f"{p['grad_drop_after_block']}",
        f"{label}, t={s['t']:g}: cos(z_k, z_k+1) in the deep half min {min(deep_cos):.3f}, mean "
        f"{sum(deep_cos) / len(deep_cos):.3f}; paper baseline: > {p['cos_deep_min']} throughout the deep stack",
    ]
