"""ODE and SDE samplers for the linear path (SiT time: t = 0 noise -> t = 1 data).

    ode-euler   fixed-step Euler, NFE = steps
    ode-heun    fixed-step Heun (2nd order), NFE = 2 x steps; 250 NFE = 125 steps,
                which is what the SiT authors used for their ODE numbers
    ode-dopri5  adaptive Dormand-Prince (torchdiffeq), atol 1e-6, rtol 1e-3 as the
                SiT reference; NFE is whatever the solver needs
    sde-em      Euler-Maruyama for dx = [v + w s] dt + sqrt(2 w) dW with SiT's
                "sigma" diffusion w(t) = norm * (1 - t) and the score s of
                `path.score_from_velocity`; grid linspace(0, 1 - 0.04, NFE): NFE-1
                stochastic steps, then one noise-free "Mean" step of 0.04 to t = 1

`ode` and `sde` are the paper's two protocols at 250 NFE (Heun and EM).
Every sampler counts the function evaluations it makes (`SampleResult.nfe`).

The velocity function is `f(x, t)` with x [B, ...] and t [B]; classifier-free
guidance is applied by wrapping the model (see `guidance.py`), so a guided
call counts as one evaluation, as in the literature.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from dar.transport.path import T_DATA, T_NOISE

VelocityFn = Callable[[Tensor, Tensor], Tensor]
NoiseFn = Callable[[Tensor], Tensor]  # returns standard normal noise shaped like its argument

METHODS = ("euler", "heun", "dopri5", "em")


@dataclass(frozen=True)
class SamplerSpec:
    kind: str  # "ode" or "sde"
    method: str  # euler | heun | dopri5 (ode), em (sde)
    nfe: int = 250  # function evaluations (fixed-step methods); dopri5 ignores it
    atol: float = 1e-6  # dopri5
    rtol: float = 1e-3  # dopri5
    last_step_size: float = 0.04  # sde-em: size of the final noise-free step
    diffusion_norm: float = 1.0  # sde-em: w(t) = diffusion_norm * (1 - t)

    def __post_init__(self) -> None:
        valid = {"ode": ("euler", "heun", "dopri5"), "sde": ("em",)}
        if self.kind not in valid or self.method not in valid[self.kind]:
            raise ValueError(f"unknown sampler {self.kind}-{self.method}; choose one of {sorted(SAMPLERS)}")
        if self.method == "heun" and (self.nfe < 2 or self.nfe % 2):
            raise ValueError(f"ode-heun makes 2 evaluations per step, so NFE must be even and >= 2, got {self.nfe}")
        if self.method in ("euler", "em") and self.nfe < 1:
            raise ValueError(f"{self.name} needs NFE >= 1, got {self.nfe}")
        if self.method == "em" and not 0 < self.last_step_size < 1:
            raise ValueError(f"sde-em last_step_size must be in (0, 1), got {self.last_step_size}")

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.method}"


SAMPLERS: dict[str, SamplerSpec] = {
    "ode": SamplerSpec("ode", "heun"),
    "sde": SamplerSpec("sde", "em"),
    "ode-euler": SamplerSpec("ode", "euler"),
    "ode-heun": SamplerSpec("ode", "heun"),
    "ode-dopri5": SamplerSpec("ode", "dopri5"),
    "sde-em": SamplerSpec("sde", "em"),
}


def get_sampler(name: str, nfe: int | None = None) -> SamplerSpec:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    spec = SAMPLERS[name]
    if nfe is not None:
        spec = SamplerSpec(spec.kind, spec.method, nfe, spec.atol, spec.rtol, spec.last_step_size, spec.diffusion_norm)
    return spec


@dataclass
class SampleResult:
    x: Tensor  # samples at t = 1
    nfe: int  # function evaluations made


class _Counted:
    def __init__(self, fn: VelocityFn) -> None:
        self.fn = fn
        self.nfe = 0

    def __call__(self, x: Tensor, t: float | Tensor) -> Tensor:
        self.nfe += 1
        tb = torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32) if not torch.is_tensor(t) else t
        return self.fn(x, tb)


@torch.no_grad()
def sample(
    spec: SamplerSpec,
    velocity: VelocityFn,
    z: Tensor,
    noise: NoiseFn | None = None,
) -> SampleResult:
    """Integrate from noise z (t = 0) to data (t = 1).

    `noise(x)` draws the SDE's Brownian increments (standard normal, shaped
    like x); pass per-sample generators through it for seeds that do not
    depend on the batch. Defaults to torch.randn_like.
    """
    f = _Counted(velocity)
    if spec.method == "euler":
        x = _euler(f, z, spec.nfe)
    elif spec.method == "heun":
        x = _heun(f, z, spec.nfe // 2)
    elif spec.method == "dopri5":
        x = _dopri5(f, z, spec.atol, spec.rtol)
    else:
        x = _euler_maruyama(f, z, spec, noise or torch.randn_like)
    return SampleResult(x, f.nfe)


def _grid(n: int, end: float = T_DATA) -> list[float]:
    return torch.linspace(T_NOISE, end, n + 1, dtype=torch.float64).tolist()


def _euler(f: _Counted, x: Tensor, steps: int) -> Tensor:
    ts = _grid(steps)
    for t0, t1 in itertools.pairwise(ts):
        x = x + (t1 - t0) * f(x, t0)
    return x


def _heun(f: _Counted, x: Tensor, steps: int) -> Tensor:
    ts = _grid(steps)
    for t0, t1 in itertools.pairwise(ts):
        dt = t1 - t0
        d0 = f(x, t0)
        x_pred = x + dt * d0
        x = x + 0.5 * dt * (d0 + f(x_pred, t1))  # trapezoidal corrector
    return x


def _dopri5(f: _Counted, x: Tensor, atol: float, rtol: float) -> Tensor:
    from torchdiffeq import odeint

    t = torch.tensor([T_NOISE, T_DATA], dtype=torch.float64 if x.dtype == torch.float64 else torch.float32, device=x.device)
    return odeint(lambda tt, xx: f(xx, float(tt)), x, t, method="dopri5", atol=atol, rtol=rtol)[-1]


def _euler_maruyama(f: _Counted, x: Tensor, spec: SamplerSpec, noise: NoiseFn) -> Tensor:
    # Grid of NFE points ending at 1 - last_step: NFE - 1 stochastic steps.
    ts = torch.linspace(T_NOISE, T_DATA - spec.last_step_size, spec.nfe, dtype=torch.float64).tolist()

    def drift(x: Tensor, t: float) -> Tensor:
        v = f(x, t)
        # w(t) * score = norm (1 - t) (t v - x) / (1 - t) = norm (t v - x): no division near t = 1.
        return v + spec.diffusion_norm * (t * v - x)

    for t0, t1 in itertools.pairwise(ts):
        dt = t1 - t0
        w = spec.diffusion_norm * (1 - t0)
        x = x + drift(x, t0) * dt + (2 * w * dt) ** 0.5 * noise(x)
    return x + drift(x, ts[-1]) * spec.last_step_size  # "Mean" last step, no noise
