"""Fig. 5 (Sec. 5.3): can the timestep be read linearly from what each router reads?

For a frozen checkpoint the fixed pairs are swept over the t grid. For every
sublayer l the aggregated state h_l that feeds it (block k's attention
aggregator is l = 2k-1, its MLP aggregator l = 2k) is mean-pooled over tokens
to [D], and a ridge regressor maps it back to t. The split is by pair: all t of
a pair fall on the same side, so the test R^2 measures decoding t for images
and noise the probe never saw. Also probed, per sublayer:

    query input   v_{l-1}, what the dynamic query W_q v_{l-1} consumes (Eq. 6);
                  for l = 1 it is v_0 = h_1
    x_t           the raw input latent, flattened (C*H*W features): the paper's baseline line
    x_t pooled    x_t pooled like the hidden states (mean over patches of the
                  patchified latent, p*p*C features)

Block 1's attention input is h_1 = v_0 = PatchEmbed(x_t) + pos, whose token
mean is an affine function of the pooled x_t: its R^2 equals the pooled-x_t
baseline by construction (up to the ridge penalty), at any scale.

Ridge from moments: instead of holding N*K*D pooled features per probe (23 GB
at the paper's 4096 pairs x 11 t x 1152 x 112 probes), each probe accumulates,
per split, the float64 moments n, sum x, sum x x^T, sum y, sum y^2, sum x y
(with x shifted by the first batch's mean for conditioning). Fit and test R^2
are closed-form in them, and equal scikit-learn's StandardScaler + Ridge(alpha)
fitted on the train pairs and scored with r2_score on the test pairs:

    z = (x - mu) / sd          mu, sd: train mean and population std (sd = 1 where 0)
    w = (Z^T Z + alpha I)^-1 Z^T (y - ybar),   y_hat = ybar + w . z
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from dar.diagnostics.pairs import Pairs
from dar.routing.base import Observer

PAPER = {
    "source": "Sec. 5.3 / Fig. 5: DAR-Dynamic (SiT-XL/2), ridge probe of t on pooled aggregator inputs, pair-level split",
    "xt_r2": 0.80,
    "early_blocks": 5,
    "early_r2_min": 0.95,
    "deep": "close to 1.0 throughout the deep stack",
    "claim": "attention and MLP aggregator inputs lie well above the x_t baseline at every depth",
}


class _Moments:
    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sxx = self.sxy = None
        self.sy = self.syy = 0.0

    def add(self, x: Tensor, y: Tensor) -> None:  # x [n, D] shifted, y [n], float64
        if self.sx is None:
            D = x.shape[1]
            self.sx = x.new_zeros(D)
            self.sxx = x.new_zeros(D, D)
            self.sxy = x.new_zeros(D)
        self.n += x.shape[0]
        self.sx += x.sum(0)
        self.sxx += x.T @ x
        self.sxy += x.T @ y
        self.sy += y.sum().item()
        self.syy += (y * y).sum().item()


class RidgeProbe:
    """Train/test moments of (feature, target) for one probed tensor; `r2(alpha)` fits and scores."""

    def __init__(self) -> None:
        self.shift: Tensor | None = None
        self.splits = {"train": _Moments(), "test": _Moments()}

    def add(self, x: Tensor, y: Tensor, test: Tensor) -> None:
        """x [n, D] features, y [n] targets, test [n] bool (True: a held-out pair)."""
        x = x.detach().double()
        y = y.detach().to(x.device).double()
        test = test.to(x.device)
        if self.shift is None:
            self.shift = x.mean(0)
        x = x - self.shift
        for name, mask in (("train", ~test), ("test", test)):
            if mask.any():
                self.splits[name].add(x[mask], y[mask])

    def fit(self, alpha: float) -> tuple[Tensor, Tensor, float]:
        """(w, mu, ybar) in the shifted coordinates; y_hat = ybar + w . (x - shift - mu)."""
        m = self.splits["train"]
        if m.n < 2:
            raise ValueError("ridge probe: fewer than 2 training examples")
        mu, ybar = m.sx / m.n, m.sy / m.n
        cxx = m.sxx - m.n * torch.outer(mu, mu)  # centred Gram
        cxy = m.sxy - m.n * mu * ybar
        sd = (torch.diagonal(cxx).clamp_min(0) / m.n).sqrt()
        sd = torch.where(sd < 10 * torch.finfo(sd.dtype).eps, torch.ones_like(sd), sd)  # as StandardScaler
        czz = cxx / torch.outer(sd, sd)
        eye = torch.eye(czz.shape[0], dtype=czz.dtype, device=czz.device)
        w_std = torch.linalg.solve(czz + alpha * eye, cxy / sd)
        return w_std / sd, mu, ybar

    def r2(self, alpha: float, split: str = "test") -> float:
        """Coefficient of determination of the train-fitted ridge on `split` (sklearn's r2_score)."""
        w, mu, ybar = self.fit(alpha)
        m = self.splits[split]
        if m.n < 2:
            raise ValueError(f"ridge probe: fewer than 2 {split} examples")
        szz = m.sxx - torch.outer(mu, m.sx) - torch.outer(m.sx, mu) + m.n * torch.outer(mu, mu)
        sze = m.sxy - ybar * m.sx - mu * m.sy + m.n * mu * ybar
        see = m.syy - 2 * ybar * m.sy + m.n * ybar**2
        sse = max(see - 2 * torch.dot(w, sze).item() + torch.dot(w, szz @ w).item(), 0.0)
        sst = m.syy - m.sy**2 / m.n
        if sst <= 0:
            raise ValueError(f"ridge probe: the {split} targets are constant; R^2 is undefined")
        return 1.0 - sse / sst


def pair_split(num_pairs: int, test_fraction: float, seed: int = 0) -> Tensor:
    """Bool [num_pairs], True for the held-out pairs; every t of a pair shares its side."""
    if num_pairs < 2:
        raise ValueError(f"a pair-level split needs at least 2 pairs, got {num_pairs}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    n_test = min(num_pairs - 1, max(1, round(num_pairs * test_fraction)))
    order = torch.randperm(num_pairs, generator=torch.Generator().manual_seed(seed))
    test = torch.zeros(num_pairs, dtype=torch.bool)
    test[order[:n_test]] = True
    return test


class PooledInputs(Observer):
    """Token-mean of h_l (the aggregated input of sublayer l) and of v_{l-1} (its dynamic query's input)."""

    def __init__(self, num_sublayers: int) -> None:
        self.L = num_sublayers
        self.features: dict[tuple[str, int], Tensor] = {}

    def on_read(self, l, h, sources, alpha):
        pooled = h.float().mean(dim=1)  # [B, T, D] -> [B, D]
        self.features[("aggregated", l)] = pooled
        if l == 1:
            self.features[("query_input", 1)] = pooled  # h_1 = v_0

    def on_write(self, l, v):
        if l < self.L:
            self.features[("query_input", l + 1)] = v.float().mean(dim=1)


def patch_pool(x: Tensor, patch: int) -> Tensor:
    """Mean over patches of the patchified latent: [B, C, H, W] -> [B, C * patch * patch]."""
    B, C, H, W = x.shape
    return x.float().reshape(B, C, H // patch, patch, W // patch, patch).mean(dim=(2, 4)).reshape(B, -1)


@torch.no_grad()
def timestep_probe(
    model,
    pairs: Pairs,
    ts: list[float],
    batch_size: int,
    device: torch.device | str,
    test_fraction: float = 0.25,
    alpha: float = 1.0,
    seed: int = 0,
) -> dict:
    """Test R^2 of the ridge probe of t per block (attention / MLP aggregator inputs) and of the x_t baselines."""
    L, K = model.routing.num_sublayers, model.depth
    test = pair_split(len(pairs), test_fraction, seed)
    probes: dict = defaultdict(RidgeProbe)
    for t in ts:
        start = 0
        for xt, tt, y, _ in pairs.batches(t, batch_size, device):
            mask = test[start : start + xt.shape[0]]
            start += xt.shape[0]
            with model.routing.observe(PooledInputs(L)) as obs:
                model(xt, tt, y)
            for key, feat in obs.features.items():
                probes[key].add(feat, tt, mask)
            probes["xt"].add(xt.flatten(1), tt, mask)
            probes["xt_pooled"].add(patch_pool(xt, model.patch_size), tt, mask)

    def r2(key, split="test"):
        return probes[key].r2(alpha, split)

    out = {
        "blocks": list(range(1, K + 1)),
        "attn": [r2(("aggregated", 2 * k - 1)) for k in range(1, K + 1)],
        "mlp": [r2(("aggregated", 2 * k)) for k in range(1, K + 1)],
        "attn_query_input": [r2(("query_input", 2 * k - 1)) for k in range(1, K + 1)],
        "mlp_query_input": [r2(("query_input", 2 * k)) for k in range(1, K + 1)],
        "xt": r2("xt"),
        "xt_pooled": r2("xt_pooled"),
        "train_r2": {
            "attn": [r2(("aggregated", 2 * k - 1), "train") for k in range(1, K + 1)],
            "mlp": [r2(("aggregated", 2 * k), "train") for k in range(1, K + 1)],
            "xt": r2("xt", "train"),
            "xt_pooled": r2("xt_pooled", "train"),
        },
        "num_train_pairs": int((~test).sum()),
        "num_test_pairs": int(test.sum()),
        "features": {
            "aggregated": int(model.hidden_size),
            "xt": int(pairs.x1[0].numel()),
            "xt_pooled": int(pairs.x1.shape[1] * model.patch_size**2),
        },
    }
    return out


def summarize(label: str, r: dict) -> list[str]:
    K = len(r["blocks"])
    m = max(1, min(K, round(PAPER["early_blocks"] * K / 28)))
    both = [min(a, b) for a, b in zip(r["attn"], r["mlp"])]
    above = sum(v > r["xt"] for v in both)
    deep = both[K // 2 :]
    return [
        f"{label}: test R^2 of t from x_t (flattened) {r['xt']:.3f}, pooled {r['xt_pooled']:.3f}; "
        f"paper x_t baseline ~{PAPER['xt_r2']}",
        f"{label}: attention / MLP aggregator inputs above the x_t baseline at {above} of {K} blocks "
        f"(min R^2 {min(both):.3f}); paper: above it at every depth",
        f"{label}: min R^2 over blocks 1-{m} {min(both[:m]):.3f} (paper: > {PAPER['early_r2_min']} within the first "
        f"{PAPER['early_blocks']} of 28 blocks), mean over the deep half {sum(deep) / len(deep):.3f} (paper: close to 1.0)",
        f"{label}: block 1's attention input is v_0 = PatchEmbed(x_t) + pos, affine in the pooled x_t: R^2 {r['attn'][0]:.3f} "
        f"vs pooled x_t {r['xt_pooled']:.3f} (equal by construction up to the ridge penalty)",
    ]
