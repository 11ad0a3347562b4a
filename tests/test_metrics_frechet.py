"""Frechet distance: closed forms, singular covariances, and the exact Gaussian velocity field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dar.metrics.fidelity import fid_from_statistics
from dar.metrics.frechet import feature_statistics, frechet_distance
from dar.transport import get_sampler, sample
from dar.transport.analytic import GaussianVelocity

BOTH = pytest.mark.parametrize("fd", [frechet_distance, fid_from_statistics], ids=["adm-sqrtm", "torch-fidelity"])


@BOTH
def test_diagonal_gaussians_closed_form(fd):
    # |mu1 - mu2|^2 + sum (s1 - s2)^2 = (1 + 0 + 4) + (1 + 0 + 4) = 10
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])
    assert fd(mu1, np.diag(s1**2), mu2, np.diag(s2**2)) == pytest.approx(10.0, abs=1e-10)


@pytest.mark.parametrize(
    ("fd", "dims"),
    [(fid_from_statistics, 2048), (frechet_distance, 512)],
    ids=["torch-fidelity-2048", "adm-sqrtm-512"],  # scipy's sqrtm of a 2048-d matrix takes 10-15 s on 2 cores
)
def test_unit_covariance_mean_shift(fd, dims):
    # means 0 vs 1, identity covariances: FD = |1|^2 * dims (2048 for pool_3 features)
    eye = np.eye(dims)
    assert fd(np.zeros(dims), eye, np.ones(dims), eye) == pytest.approx(float(dims), abs=1e-6)


def test_full_covariance_matches_closed_form_of_commuting_matrices():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T commute: Tr sqrt(S1 S2) = sum sqrt(a b).
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a, b = rng.uniform(0.5, 3, 6), rng.uniform(0.5, 3, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)
    assert fid_from_statistics(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)


def test_singular_covariances_stay_finite_and_agree():
    # 4 samples in 10 dims: rank-3 covariances, a singular product (the sFID situation with few samples).
    rng = np.random.default_rng(1)
    mu1, s1 = feature_statistics(rng.normal(size=(4, 10)))
    mu2, s2 = feature_statistics(rng.normal(size=(4, 10)) + 1)
    adm, tf = frechet_distance(mu1, s1, mu2, s2), fid_from_statistics(mu1, s1, mu2, s2)
    assert np.isfinite(adm) and adm > 0
    assert adm == pytest.approx(tf, rel=1e-3)


def test_feature_statistics_float64_unbiased():
    x = np.random.default_rng(2).normal(size=(50, 3)).astype(np.float32)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == sigma.dtype == np.float64 and sigma.shape == (3, 3)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(x[:1])


def test_exact_gaussian_field_gives_zero_distance_and_a_shifted_one_does_not():
    # Data N(mu, diag sigma^2) on a [2, 2, 2] "latent"; the exact velocity field's ODE maps noise onto it,
    # so the samples' Frechet distance (raw feature space) to the data's own statistics is sampling noise only.
    g = torch.Generator().manual_seed(0)
    mu = torch.linspace(-1.0, 1.0, 8, dtype=torch.float64).reshape(2, 2, 2)
    sigma = torch.linspace(0.5, 1.5, 8, dtype=torch.float64).reshape(2, 2, 2)
    z = torch.randn(10_000, 2, 2, 2, generator=g, dtype=torch.float64)
    data_mu, data_sigma = mu.flatten().numpy(), np.diag(sigma.flatten().numpy() ** 2)

    def fd_of(x: torch.Tensor) -> tuple[float, float]:
        m, s = feature_statistics(x.reshape(len(x), -1).numpy())
        return frechet_distance(m, s, data_mu, data_sigma), fid_from_statistics(m, s, data_mu, data_sigma)

    def sampled(field: GaussianVelocity) -> torch.Tensor:
        result = sample(get_sampler("ode-heun", nfe=50), field, z)  # 25 Heun steps: the field is smooth and linear in x
        assert result.nfe == 50
        return result.x

    exact = fd_of(sampled(GaussianVelocity(mu, sigma)))
    noise_floor = fd_of(GaussianVelocity(mu, sigma).flow_map(z))  # the same z through the exact flow map
    shifted = fd_of(sampled(GaussianVelocity(mu + 0.5, sigma)))  # mean off by 0.5 in 8 dims: FD = 8 * 0.25 = 2
    assert max(exact) < 0.01, exact  # sampling noise of 10k samples in 8 dims, ~5e-3
    assert exact == pytest.approx(noise_floor, abs=2e-4)  # the sampler adds nothing measurable to it
    assert min(shifted) == pytest.approx(2.0, abs=0.05), shifted
