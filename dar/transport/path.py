"""Linear interpolant with velocity prediction (SiT's default transport).

Convention (SiT): t in [0, 1], t = 0 is noise and t = 1 is data,

    x_t = t * x1 + (1 - t) * x0,    x0 ~ N(0, I) noise, x1 data
    u_t = d x_t / dt = x1 - x0      (the velocity target)

and the training loss is the plain MSE between the model's velocity and u_t,
averaged over all dimensions, with t ~ U(0, 1). REPA's code uses the reverse
convention (t = 1 noise); convert with `t_sit = 1 - t_repa` at that boundary.

This module is the one place for these definitions: training, samplers
(through `score_from_velocity`) and the diagnostics import them.
"""

from __future__ import annotations

import torch
from torch import Tensor

T_NOISE = 0.0  # time of the noise end of the path
T_DATA = 1.0  # time of the data end of the path


def expand_t(t: Tensor, x: Tensor) -> Tensor:
    """[B] -> [B, 1, 1, ...] broadcastable against x."""
    return t.reshape(-1, *([1] * (x.dim() - 1)))


def interpolate(x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Returns (x_t, u_t) for noise x0, data x1 and times t [B]."""
    tt = expand_t(t, x1)
    return tt * x1 + (1 - tt) * x0, x1 - x0


def sample_t(batch: int, device: torch.device | str, generator: torch.Generator | None = None) -> Tensor:
    """t ~ U(0, 1), one per sample."""
    return torch.rand(batch, device=device, generator=generator)


def flow_matching_loss(model, x1: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample velocity MSE [B] (mean over all non-batch dims).

    The mean over the batch is the SiT training loss. Noise and times come
    from `generator` when given (deterministic tests), else the global RNG.
    """
    t = sample_t(x1.shape[0], x1.device, generator)
    x0 = torch.randn(x1.shape, device=x1.device, dtype=x1.dtype, generator=generator)
    xt, ut = interpolate(x0, x1, t)
    v = model(xt, t, y)
    return (v.float() - ut.float()).pow(2).mean(dim=tuple(range(1, x1.dim())))


def score_from_velocity(v: Tensor, x: Tensor, t: Tensor) -> Tensor:
    """Score of p_t from the velocity: grad log p_t(x) = (t v - x) / (1 - t).

    From x_t = t x1 + (1 - t) x0: E[x0 | x_t] = x_t - t v, and the score of the
    Gaussian-smoothed marginal is -E[x0 | x_t] / (1 - t). Undefined at t = 1.
    """
    tt = expand_t(t, x)
    return (tt * v - x) / (1 - tt)
