"""Frechet distance between two Gaussians, as the ADM evaluator computes it.

    FD = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))

(Dowson & Landau 1982; the FID of Heusel et al. 2017 evaluated on Inception
features). This is the float64 scipy `sqrtm` formulation of TTUR's `fid.py`
that the ADM evaluator (`FIDStatistics.frechet_distance`) uses:

- if the matrix square root of the product is not finite (the product is
  singular, e.g. fewer samples than feature dimensions), eps = 1e-6 is added
  to both diagonals and the root recomputed;
- a complex root is accepted when the imaginary parts of its diagonal are all
  below 1e-3 (numerical noise) and its real part is kept; larger imaginary
  parts raise.

The reported FID/sFID go through torch-fidelity's `fid_statistics_to_metric`
(eigenvalues of S1 S2, see `fidelity.py`); this module is the independent
ADM-formula value the evaluation records next to it as a cross-check, and the
statistics helper both use.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

ADM_EPS = 1e-6  # diagonal offset for a singular product (ADM evaluator default)
ADM_IMAG_ATOL = 1e-3  # largest tolerated imaginary part on the root's diagonal (ADM evaluator)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, N - 1, as np.cov) of features [N, D], in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"feature statistics need a [N >= 2, D] matrix, got shape {x.shape}")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = ADM_EPS) -> float:
    """FD of N(mu1, sigma1) and N(mu2, sigma2), float64 throughout (ADM evaluator formula)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")

    diff = mu1 - mu2  # [D]
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        warnings.warn(f"Frechet distance: singular covariance product; adding {eps} to both diagonals", stacklevel=2)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=ADM_IMAG_ATOL):
            raise ValueError(f"Frechet distance: matrix square root has imaginary component {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _sqrtm(a: np.ndarray) -> np.ndarray:
    # scipy warns (LinAlgWarning) on singular input and may return inf/nan; the caller retries with eps.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(a)
