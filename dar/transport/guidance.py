"""Classifier-free guidance as a velocity function for the samplers.

    v = v_uncond + w (v_cond - v_uncond)

on the guided channels; the others keep the conditional velocity. SiT/DiT
guide the first 3 of the 4 latent channels (`channels=3`), REPA guides all
(`channels=None`). An optional guidance interval (lo, hi) in SiT time applies
guidance only for lo <= t <= hi (REPA's interval t_repa <= 0.7 is (0.3, 1.0)
here, since t_sit = 1 - t_repa).

The conditional and unconditional passes run as one batch [x; x] with labels
[y; null], as the reference does, and count as one function evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dar.transport.samplers import VelocityFn

SIT_GUIDED_CHANNELS = 3  # SiT / DiT guide latent channels 0-2 only


def guided_velocity(
    model,
    y: Tensor,
    scale: float = 1.0,
    channels: int | None = SIT_GUIDED_CHANNELS,
    interval: tuple[float, float] | None = None,
) -> VelocityFn:
    """Velocity of `model` for labels y, with CFG of `scale` when scale != 1."""
    if scale == 1.0:
        return lambda x, t: model(x, t, y)
    if channels is not None and channels < 1:
        raise ValueError(f"guided channels must be >= 1 or None (all), got {channels}")
    null = torch.full_like(y, model.null_class)

    def velocity(x: Tensor, t: Tensor) -> Tensor:
        out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = out.chunk(2)
        g = uncond + scale * (cond - uncond)
        if channels is not None and channels < g.shape[1]:
            g = torch.cat([g[:, :channels], cond[:, channels:]], dim=1)
        if interval is not None:
            on = ((t >= interval[0]) & (t <= interval[1])).reshape(-1, *([1] * (x.dim() - 1)))
            g = torch.where(on, g, cond)
        return g

    return velocity
