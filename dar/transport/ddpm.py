"""The DDPM objective of DiT / ADM: a discrete Gaussian diffusion with learned variance.

Forward process (Ho et al. 2020, Eq. 4), T = 1000 steps, linear betas from 1e-4 to 0.02
(scaled by 1000 / T for other T, as ADM's "linear" schedule):

    q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s<=t} (1 - beta_s)

Posterior (Ho et al. Eq. 6-7):

    q(x_{t-1} | x_t, x_0) = N(c1_t x_0 + c2_t x_t, beta~_t),
    c1_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t),  c2_t = (1 - abar_{t-1}) sqrt(alpha_t) / (1 - abar_t),
    beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)

The model predicts epsilon and, with learned variance (Nichol & Dhariwal 2021, Eq. 15), an
interpolation v in [-1, 1] between the log variances log beta~_t (clipped at t = 0 to
beta~_1) and log beta_t:

    log Sigma = frac log beta_t + (1 - frac) log beta~_t,   frac = (v + 1) / 2

Training loss, the hybrid of DiT's create_diffusion (learn_sigma, MSE loss type): the epsilon
MSE plus the variational bound term of each sampled t, computed on a stop-gradient copy of
the predicted mean so the bound trains the variance only (Nichol & Dhariwal Sec. 3.1):

    L = mean ||eps - eps_theta||^2 + L_vb,   L_vb = KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) / log 2   (t > 0)
                                                   = -log p(x_0 | x_1) / log 2 (discretised Gaussian; t = 0)

(ADM's RESCALED_MSE would multiply L_vb by T / 1000, which is 1 at T = 1000: the two coincide here.)

Samplers, on a respaced schedule (ADM's space_timesteps: K of the T steps, evenly strided,
with the betas recomputed so that the kept steps have the same abar; the model sees the
original step index):

    ddpm   ancestral sampling, x_{t-1} = mean + exp(log Sigma / 2) z  (no noise at the last step)
    ddim   deterministic DDIM (eta = 0, Song et al. 2021 Eq. 12), and its inversion (`ddim_invert`)

Time here is the integer step t = 0 .. T-1 (t = T-1 is the noise end), the DiT convention;
the timestep embedder takes it as a float. Everything is computed in float64 on the schedule
side and cast to the sample's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

NUM_STEPS = 1000  # DiT / ADM diffusion_steps
BETA_START, BETA_END = 1e-4, 0.02  # the linear schedule at T = 1000

ModelFn = Callable[[Tensor, Tensor], Tensor]  # (x_t, t) -> [B, 2C, ...]: epsilon, then the variance interpolation v


def linear_betas(steps: int = NUM_STEPS) -> np.ndarray:
    scale = 1000 / steps
    return np.linspace(scale * BETA_START, scale * BETA_END, steps, dtype=np.float64)


def space_timesteps(steps: int, count: int) -> list[int]:
    """ADM's space_timesteps for one section: `count` of range(steps), evenly strided, first and last included."""
    if not 1 <= count <= steps:
        raise ValueError(f"cannot take {count} of {steps} diffusion steps")
    if count == 1:
        return [0]
    stride = (steps - 1) / (count - 1)
    return sorted({round(i * stride) for i in range(count)})


@dataclass
class Diffusion:
    """A discrete Gaussian diffusion over `betas`; `timestep_map[i]` is the model's step index of step i."""

    betas: np.ndarray
    timestep_map: np.ndarray

    @classmethod
    def linear(cls, steps: int = NUM_STEPS, respace: int | None = None) -> Diffusion:
        """The linear schedule of `steps` steps, respaced to `respace` of them (DiT samples with 250)."""
        base = linear_betas(steps)
        if respace is None or respace == steps:
            return cls(base, np.arange(steps))
        keep = space_timesteps(steps, respace)
        abar = np.cumprod(1.0 - base)
        new, last = [], 1.0
        for i in keep:
            new.append(1.0 - abar[i] / last)
            last = abar[i]
        return cls(np.asarray(new), np.asarray(keep))

    def __post_init__(self) -> None:
        b = np.asarray(self.betas, dtype=np.float64)
        if b.ndim != 1 or not ((b > 0) & (b <= 1)).all():
            raise ValueError("betas must be a 1-D array in (0, 1]")
        self.betas = b
        self.num_steps = len(b)
        alphas = 1.0 - b
        self.abar = np.cumprod(alphas)
        self.abar_prev = np.append(1.0, self.abar[:-1])
        self.posterior_variance = b * (1.0 - self.abar_prev) / (1.0 - self.abar)
        # log beta~_t, clipped: beta~_0 = 0, so t = 0 takes beta~_1 (ADM)
        self.posterior_log_variance = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.c1 = b * np.sqrt(self.abar_prev) / (1.0 - self.abar)
        self.c2 = (1.0 - self.abar_prev) * np.sqrt(alphas) / (1.0 - self.abar)

    # ------------------------------------------------------------ indexing
    def _at(self, arr: np.ndarray, t: Tensor, x: Tensor) -> Tensor:
        out = torch.as_tensor(arr, dtype=torch.float64, device=t.device)[t.long()].to(x.dtype)
        return out.reshape(-1, *([1] * (x.dim() - 1)))

    def model_t(self, t: Tensor) -> Tensor:
        """The model's step index of step t (the original schedule's, on a respaced one)."""
        return torch.as_tensor(self.timestep_map, device=t.device)[t.long()]

    # ------------------------------------------------------------ forward process
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        return self._at(np.sqrt(self.abar), t, x0) * x0 + self._at(np.sqrt(1.0 - self.abar), t, x0) * noise

    def q_posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log variance) of q(x_{t-1} | x_t, x_0)."""
        mean = self._at(self.c1, t, xt) * x0 + self._at(self.c2, t, xt) * xt
        return mean, self._at(self.posterior_log_variance, t, xt).expand_as(xt)

    def x0_from_eps(self, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self._at(np.sqrt(1.0 / self.abar), t, xt) * xt - self._at(np.sqrt(1.0 / self.abar - 1.0), t, xt) * eps

    def eps_from_x0(self, xt: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        return (self._at(np.sqrt(1.0 / self.abar), t, xt) * xt - x0) / self._at(np.sqrt(1.0 / self.abar - 1.0), t, xt)

    # ------------------------------------------------------------ the model's reverse step
    def p_mean_variance(self, out: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(mean, log variance, predicted x_0) of p(x_{t-1} | x_t) from the model output [eps; v]."""
        C = xt.shape[1]
        if out.shape[1] != 2 * C:
            raise ValueError(
                f"the DDPM objective needs epsilon and the variance interpolation: {2 * C} channels, got {out.shape[1]}"
            )
        eps, v = out[:, :C], out[:, C:]
        frac = (v + 1) / 2
        log_var = frac * self._at(np.log(self.betas), t, xt) + (1 - frac) * self._at(self.posterior_log_variance, t, xt)
        x0 = self.x0_from_eps(xt, t, eps)
        mean, _ = self.q_posterior(x0, xt, t)
        return mean, log_var, x0

    # ------------------------------------------------------------ training
    def training_loss(self, out: Tensor, x0: Tensor, xt: Tensor, t: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-sample (loss, mse, vb) of the hybrid objective for model output `out` at (x_t, t)."""
        C = x0.shape[1]
        mse = _mean_flat((noise - out[:, :C]).pow(2))
        frozen = torch.cat([out[:, :C].detach(), out[:, C:]], dim=1)  # the bound trains the variance only
        vb = self.vb_term(frozen, x0, xt, t)
        return mse + vb, mse, vb

    def vb_term(self, out: Tensor, x0: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """L_{t-1} in bits per dimension: KL to the posterior for t > 0, the decoder NLL at t = 0."""
        true_mean, true_log_var = self.q_posterior(x0, xt, t)
        mean, log_var, _ = self.p_mean_variance(out, xt, t)
        kl = _mean_flat(normal_kl(true_mean, true_log_var, mean, log_var)) / math.log(2.0)
        nll = -_mean_flat(discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    # ------------------------------------------------------------ sampling
    def ddpm_step(self, out: Tensor, xt: Tensor, t: Tensor, z: Tensor) -> Tensor:
        mean, log_var, _ = self.p_mean_variance(out, xt, t)
        nonzero = (t != 0).to(xt.dtype).reshape(-1, *([1] * (xt.dim() - 1)))
        return mean + nonzero * torch.exp(0.5 * log_var) * z

    def ddim_step(self, out: Tensor, xt: Tensor, t: Tensor, eta: float = 0.0, z: Tensor | None = None) -> Tensor:
        C = xt.shape[1]
        x0 = self.x0_from_eps(xt, t, out[:, :C])
        eps = self.eps_from_x0(xt, t, x0)
        ab, ab_prev = self._at(self.abar, t, xt), self._at(self.abar_prev, t, xt)
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
        x = torch.sqrt(ab_prev) * x0 + torch.sqrt(1 - ab_prev - sigma**2) * eps
        if eta > 0:
            nonzero = (t != 0).to(xt.dtype).reshape(-1, *([1] * (xt.dim() - 1)))
            x = x + nonzero * sigma * (torch.randn_like(xt) if z is None else z)
        return x

    def ddim_reverse_step(self, out: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        """Deterministic DDIM from step t to t + 1 (the inversion of ddim_step with eta = 0)."""
        C = xt.shape[1]
        x0 = self.x0_from_eps(xt, t, out[:, :C])
        eps = self.eps_from_x0(xt, t, x0)
        ab_next = self._at(np.append(self.abar[1:], 0.0), t, xt)
        return torch.sqrt(ab_next) * x0 + torch.sqrt(1 - ab_next) * eps

    def sample(
        self, model: ModelFn, noise: Tensor, method: str = "ddpm", noise_fn: Callable[[Tensor], Tensor] | None = None
    ) -> Tensor:
        """x_0 from x_{T-1} = noise by `method` (ddpm | ddim); model gets the original step indices."""
        if method not in ("ddpm", "ddim"):
            raise ValueError(f"unknown DDPM sampler {method!r}; choose ddpm or ddim")
        draw = noise_fn or torch.randn_like
        x = noise
        for i in reversed(range(self.num_steps)):
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            out = model(x, self.model_t(t))
            x = self.ddpm_step(out, x, t, draw(x)) if method == "ddpm" else self.ddim_step(out, x, t)
        return x

    def ddim_invert(self, model: ModelFn, x0: Tensor) -> Tensor:
        """The noise x_{T-1} that deterministic DDIM maps to x0 (run forward through the schedule)."""
        x = x0
        for i in range(self.num_steps):
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            x = self.ddim_reverse_step(model(x, self.model_t(t)), x, t)
        return x


def _mean_flat(x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(1, x.dim())))


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, exp logvar1) || N(mean2, exp logvar2)), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2).pow(2) * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """The tanh approximation of the standard normal CDF that ADM uses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """log-likelihood of x in [-1, 1], discretised to 256 bins, under N(means, exp(log_scales)^2) (ADM's decoder)."""
    centered = x - means
    inv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(delta.clamp(min=1e-12))))
