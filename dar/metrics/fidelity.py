"""FID, IS and precision/recall through torch-fidelity 0.4.0's metric functions, with the ADM protocol's settings.

    fid_from_statistics   `metric_fid.fid_statistics_to_metric`; both sides cast to float64 (the function
                          asserts equal dtypes, and ADM's reference statistics are float64)
    inception_score       `metric_isc.isc_features_to_metric` on unbiased logits (pool_3 @ W, no bias), on
                          ADM's splits: contiguous chunks of 5,000 samples in file order, the last one
                          possibly shorter (ADM `compute_inception_score(split_size=5000)`), no shuffling;
                          the score is the mean over chunks (std: their population std; ADM reports none)
    precision_recall      `metric_prc.prc_features_to_metric`, k = 3 (the radius is the distance to the 4th
                          nearest point counting itself, ADM's `ManifoldEstimator(nhood_sizes=(3,))`);
                          features_1 = GENERATED (torch-fidelity's input1), features_2 = REAL (input2):
                          precision = share of generated samples inside the real manifold, recall = share of
                          real samples inside the generated one; `save_cpu_ram=True` avoids the N x N matrix

Split boundaries: torch-fidelity's own rule cuts N into `splits` equal parts (i * N // splits); ADM cuts
chunks of 5,000 whatever N is. The two agree only at N = 50,000, so each ADM chunk goes through torch-fidelity
as one split: FID-10K points score 2 chunks, a 500-sample digits cell 1 chunk, exactly as ADM would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

IS_SPLIT_SIZE = 5000  # ADM: contiguous chunks of 5,000 samples (10 chunks at 50,000)
PRC_NEIGHBORHOOD = 3  # ADM: nhood_sizes=(3,)
PRC_BATCH_SIZE = 10_000  # ADM: row/col batch size of the distance blocks


def fid_from_statistics(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance of two Gaussians via torch-fidelity, float64 on both sides."""
    stat1 = {"mu": np.asarray(mu1, np.float64), "sigma": np.asarray(sigma1, np.float64)}
    stat2 = {"mu": np.asarray(mu2, np.float64), "sigma": np.asarray(sigma2, np.float64)}
    if stat1["mu"].shape != stat2["mu"].shape or stat1["sigma"].shape != stat2["sigma"].shape:
        raise ValueError(f"mismatched statistics: mu {stat1['mu'].shape} vs {stat2['mu'].shape}")
    return float(fid_statistics_to_metric(stat1, stat2, verbose=False)[KEY_METRIC_FID])


def is_chunks(n: int, split_size: int = IS_SPLIT_SIZE) -> list[tuple[int, int]]:
    """ADM's IS splits of n samples: [0, 5000), [5000, 10000), ..., the last one possibly shorter."""
    return [(lo, min(lo + split_size, n)) for lo in range(0, n, split_size)]


def inception_score(logits: torch.Tensor | np.ndarray, split_size: int = IS_SPLIT_SIZE) -> tuple[float, float]:
    """(mean, std) over ADM's contiguous chunks of exp(E KL(p(y|x) || p(y))); logits [N, classes], file order."""
    logits = torch.as_tensor(logits)
    if logits.dim() != 2 or logits.shape[0] < 1:
        raise ValueError(f"inception score needs logits [N >= 1, classes], got shape {tuple(logits.shape)}")
    scores = [
        isc_features_to_metric(logits[lo:hi], splits=1, shuffle=False)[KEY_METRIC_ISC_MEAN]
        for lo, hi in is_chunks(len(logits), split_size)
    ]
    return float(np.mean(scores)), float(np.std(scores))


def precision_recall(
    generated: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray, k: int = PRC_NEIGHBORHOOD
) -> tuple[float, float]:
    """(precision, recall) of generated features [N, D] against real features [M, D] (k-NN manifolds)."""
    gen, ref = torch.as_tensor(generated, dtype=torch.float32), torch.as_tensor(real, dtype=torch.float32)
    if gen.dim() != 2 or ref.dim() != 2 or gen.shape[1] != ref.shape[1]:
        raise ValueError(f"precision/recall need [N, D] features of equal D, got {tuple(gen.shape)} and {tuple(ref.shape)}")
    if min(gen.shape[0], ref.shape[0]) <= k:
        raise ValueError(f"precision/recall with k = {k} need more than {k} points on each side")
    out = prc_features_to_metric(gen, ref, prc_neighborhood=k, prc_batch_size=PRC_BATCH_SIZE, save_cpu_ram=True, verbose=False)
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL])
