"""The optimiser and the EMA of every training path (the training loop and `train-bench`).

    make_optimizer   AdamW (SiT's recipe: constant lr, no warm-up) with PyTorch's fused
                     implementation wherever it has one (CUDA and CPU): one kernel over every
                     parameter instead of about ten small ops per parameter tensor, which on a
                     0.6M-parameter digits model was an eighth of each step
    ema_update       ema = d * ema + (1 - d) * model, one foreach lerp over the parameter lists

Both compute what the per-tensor forms compute (tests/test_optim.py runs them side by side:
equal within fp32 rounding over many steps), and the optimizer's state dict is the same, so a
checkpoint saved by one resumes under the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


def fused_supported(params: Sequence[Tensor]) -> bool:
    """Whether PyTorch's fused AdamW takes these parameters (floating point, on CPU or CUDA)."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def make_optimizer(
    params: Iterable[Tensor], lr: float, weight_decay: float, betas: Sequence[float], fused: bool | None = None
) -> torch.optim.AdamW:
    """AdamW over `params`; fused=None picks the fused implementation where supported (fused=False: per tensor)."""
    params = list(params)
    if fused is None:
        fused = fused_supported(params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), fused=fused)


def load_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer state, keeping this optimizer's implementation (load_state_dict would take the saved
    groups' `fused` and `foreach` flags too, so a run resumed from an older checkpoint would lose the fused step)."""
    keep = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, flags in zip(opt.param_groups, keep):
        group.update(flags)


@torch.no_grad()
def ema_update(ema: Sequence[Tensor], model: Sequence[Tensor], decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for each pair (the EMA kept in fp32)."""
    torch._foreach_lerp_(list(ema), [p.detach().float() for p in model], 1.0 - decay)
