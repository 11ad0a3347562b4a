"""Linear path, loss and samplers against the exact Gaussian velocity field."""

from __future__ import annotations

import pytest
import torch

from dar.transport import SAMPLERS, get_sampler, guided_velocity, interpolate, sample, score_from_velocity
from dar.transport.analytic import GaussianVelocity
from dar.transport.path import flow_matching_loss

MU, SIGMA = 1.5, 0.5


def noise(n=20000, d=2, seed=0):
    return torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_interpolant_endpoints_and_target():
    x0, x1 = noise(4, 3, 1), noise(4, 3, 2)
    xt, ut = interpolate(x0, x1, torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(xt, x0)  # t = 0 is noise
    xt, _ = interpolate(x0, x1, torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(xt, x1)  # t = 1 is data
    torch.testing.assert_close(ut, x1 - x0)


def test_score_from_velocity_matches_gaussian_score():
    field = GaussianVelocity(MU, SIGMA)
    x = noise(100, 3)
    t = torch.linspace(0.01, 0.95, 100, dtype=torch.float64)
    torch.testing.assert_close(score_from_velocity(field(x, t), x, t), field.score(x, t))


def test_loss_of_zero_model_and_exact_field():
    """E|x1 - x0|^2 = mu^2 + sigma^2 + 1 per dim for the zero model; the exact field does better."""
    g = torch.Generator().manual_seed(0)
    x1 = MU + SIGMA * torch.randn(40000, 1, 2, 2, dtype=torch.float64, generator=g)
    y = torch.zeros(40000, dtype=torch.long)
    zero = flow_matching_loss(lambda x, t, y: torch.zeros_like(x), x1, y, generator=torch.Generator().manual_seed(1))
    assert zero.mean().item() == pytest.approx(MU**2 + SIGMA**2 + 1, rel=0.02)
    field = GaussianVelocity(MU, SIGMA)
    exact = flow_matching_loss(field, x1, y, generator=torch.Generator().manual_seed(1)).mean()
    off = flow_matching_loss(lambda x, t, y: field(x, t) + 0.2, x1, y, generator=torch.Generator().manual_seed(1)).mean()
    assert exact < off < zero.mean()
    assert (off - exact).item() == pytest.approx(0.04, rel=0.05)  # MSE decomposition: bias^2 adds exactly


@pytest.mark.parametrize("name, nfe, tol", [("ode-euler", 250, 2e-2), ("ode-heun", 250, 1e-4), ("ode-dopri5", None, 5e-2)])
def test_ode_samplers_follow_the_exact_flow_map(name, nfe, tol):
    field, z = GaussianVelocity(MU, SIGMA), noise(2000)
    res = sample(get_sampler(name, nfe), field, z)
    assert (res.x - field.flow_map(z)).abs().max().item() < tol
    if nfe is not None:
        assert res.nfe == nfe
    else:
        assert res.nfe > 0


def test_dopri5_converges_at_tight_tolerance():
    from dar.transport.samplers import SamplerSpec

    field, z = GaussianVelocity(MU, SIGMA), noise(500)
    res = sample(SamplerSpec("ode", "dopri5", atol=1e-10, rtol=1e-10), field, z)
    assert (res.x - field.flow_map(z)).abs().max().item() < 1e-6


def test_heun_beats_euler_at_equal_nfe():
    field, z = GaussianVelocity(MU, SIGMA), noise(500)
    exact = field.flow_map(z)
    for nfe in (10, 20, 50):
        err_euler = (sample(get_sampler("ode-euler", nfe), field, z).x - exact).abs().max()
        err_heun = (sample(get_sampler("ode-heun", nfe), field, z).x - exact).abs().max()
        assert err_heun < err_euler / 5, (nfe, err_heun, err_euler)


@pytest.mark.parametrize("name", ["ode", "sde"])
def test_paper_samplers_recover_data_distribution(name):
    """250 NFE, the paper's protocol: sample mean and std within sampling error of (mu, sigma)."""
    n = 20000
    field, z = GaussianVelocity(MU, SIGMA), noise(n)
    g = torch.Generator().manual_seed(5)
    res = sample(SAMPLERS[name], field, z, noise=lambda x: torch.randn(x.shape, dtype=x.dtype, generator=g))
    assert res.nfe == 250
    se_mean, se_std = SIGMA / n**0.5, SIGMA / (2 * n) ** 0.5
    assert abs(res.x.mean().item() - MU) < 5 * se_mean + 1e-3
    assert abs(res.x.std().item() - SIGMA) < 5 * se_std + 2e-3


def test_sde_is_stochastic_and_ode_is_not():
    field, z = GaussianVelocity(MU, SIGMA), noise(100)
    a = sample(SAMPLERS["sde"], field, z).x
    b = sample(SAMPLERS["sde"], field, z).x
    assert not torch.allclose(a, b)
    torch.testing.assert_close(sample(SAMPLERS["ode"], field, z).x, sample(SAMPLERS["ode"], field, z).x)


def test_sampler_spec_errors():
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("ode-rk4")
    with pytest.raises(ValueError, match="NFE must be even"):
        get_sampler("ode-heun", 251)


class FakeModel:
    """cond output = 2 (label >= 0 and not null), uncond output = 1, per channel; counts calls."""

    null_class = 10

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t, y):
        self.calls += 1
        out = torch.ones_like(x)
        out[y != self.null_class] = 2.0
        return out


def test_cfg_guides_only_the_first_channels():
    m = FakeModel()
    x = torch.zeros(2, 4, 2, 2)
    y = torch.tensor([3, 7])
    v = guided_velocity(m, y, scale=1.5, channels=3)(x, torch.full((2,), 0.5))
    # guided: 1 + 1.5 (2 - 1) = 2.5 on channels 0-2; channel 3 keeps the conditional 2
    torch.testing.assert_close(v[:, :3], torch.full_like(v[:, :3], 2.5))
    torch.testing.assert_close(v[:, 3], torch.full_like(v[:, 3], 2.0))
    assert m.calls == 1  # one batched pass [x; x]
    v_all = guided_velocity(m, y, scale=1.5, channels=None)(x, torch.full((2,), 0.5))
    torch.testing.assert_close(v_all, torch.full_like(v_all, 2.5))


def test_cfg_interval_and_scale_one():
    m = FakeModel()
    x, y = torch.zeros(2, 4, 2, 2), torch.tensor([3, 7])
    f = guided_velocity(m, y, scale=3.0, channels=None, interval=(0.3, 1.0))
    v = f(x, torch.tensor([0.1, 0.5]))
    torch.testing.assert_close(v[0], torch.full_like(v[0], 2.0))  # outside the interval: conditional
    torch.testing.assert_close(v[1], torch.full_like(v[1], 4.0))  # 1 + 3 (2 - 1)
    m.calls = 0
    v1 = guided_velocity(m, y, scale=1.0)(x, torch.full((2,), 0.5))
    torch.testing.assert_close(v1, torch.full_like(v1, 2.0))
    assert m.calls == 1
