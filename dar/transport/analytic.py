"""Exact velocity field of the linear path for Gaussian data: a known-answer model.

For data x1 ~ N(mu, diag(sigma^2)) and noise x0 ~ N(0, I), the interpolant
x_t = t x1 + (1 - t) x0 is Gaussian with mean m_t = t mu and variance
s_t^2 = t^2 sigma^2 + (1 - t)^2, and the marginal velocity E[x1 - x0 | x_t] is

    v(x, t) = mu + (t sigma^2 - (1 - t)) / s_t^2 * (x - t mu).

Its ODE flow maps z ~ N(0, I) at t = 0 to mu + sigma z at t = 1 exactly
(the standardised coordinate (x - m_t) / s_t is conserved). Samplers and the
evaluation pipeline are tested against it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dar.transport.path import expand_t


class GaussianVelocity:
    """Callable v(x, t) for per-dimension Gaussian data; also usable as a SiT-like model(x, t, y)."""

    def __init__(self, mu: float | Tensor, sigma: float | Tensor) -> None:
        self.mu = torch.as_tensor(mu, dtype=torch.float64)
        self.sigma = torch.as_tensor(sigma, dtype=torch.float64)

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.mu.to(x.device, x.dtype), self.sigma.to(x.device, x.dtype)

    def __call__(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        mu, sigma = self._params(x)
        tt = expand_t(t, x).to(x.dtype)
        var_t = tt**2 * sigma**2 + (1 - tt) ** 2
        return mu + (tt * sigma**2 - (1 - tt)) / var_t * (x - tt * mu)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        """grad log p_t(x) = -(x - t mu) / s_t^2."""
        mu, sigma = self._params(x)
        tt = expand_t(t, x).to(x.dtype)
        return -(x - tt * mu) / (tt**2 * sigma**2 + (1 - tt) ** 2)

    def flow_map(self, z: Tensor) -> Tensor:
        """Exact ODE solution at t = 1 from z at t = 0."""
        mu, sigma = self._params(z)
        return mu + sigma * z
