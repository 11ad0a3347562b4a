"""IS and precision/recall through torch-fidelity with the ADM protocol's conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dar.metrics.fidelity import inception_score, is_chunks, precision_recall


def _pr_clouds():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 16, generator=g), torch.randn(200, 16, generator=g)
    return 0.1 * x, 3.0 * y  # a tight generated cloud inside a wide real one


def test_precision_recall_generated_is_input1():
    generated, real = _pr_clouds()
    precision, recall = precision_recall(generated, real)
    # Every generated point lies inside the wide real manifold; the tight generated manifold covers few real points.
    assert precision > 0.8 and recall < 0.3, (precision, recall)


def test_precision_recall_swapped_order_swaps_the_answer():
    generated, real = _pr_clouds()
    precision, recall = precision_recall(real, generated)
    assert precision < 0.3 and recall > 0.8, (precision, recall)


def test_precision_recall_identical_sets_and_k():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
    assert precision_recall(x, x.clone()) == (1.0, 1.0)
    with pytest.raises(ValueError, match="more than 3 points"):
        precision_recall(x[:3], x)


def _reference_precision_recall(gen: np.ndarray, real: np.ndarray, k: int) -> tuple[float, float]:
    """Plain k-NN manifolds (Kynkaanniemi et al. 2019): radius = distance to the k-th neighbour besides itself."""

    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    d_gen_real = np.linalg.norm(gen[:, None] - real[None], axis=-1)  # (N, M)
    precision = np.mean((d_gen_real <= radii(real)[None]).any(axis=1))
    recall = np.mean((d_gen_real.T <= radii(gen)[None]).any(axis=1))
    return float(precision), float(recall)


def test_precision_recall_matches_a_plain_k3_reference():
    # Partly overlapping clouds, where k changes the answer.
    rng = np.random.default_rng(3)
    gen = rng.normal(size=(120, 5)) + 0.8
    real = rng.normal(size=(150, 5)) * 1.3
    want = _reference_precision_recall(gen, real, k=3)
    assert precision_recall(gen, real) == pytest.approx(want, abs=1e-6)  # torch-fidelity averages in float32
    assert want != _reference_precision_recall(gen, real, k=8)


def _one_hot_logits(classes: list[int], num_classes: int = 10, scale: float = 200.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(classes), num_classes).double() * scale


def test_inception_score_contiguous_chunks_of_adm_split_size():
    # 10 chunks of 10 samples (split size 10); chunk i predicts k_i classes uniformly and confidently: score k_i.
    ks = [1, 2, 5, 10, 1, 2, 5, 10, 1, 2]
    classes = [j % k for k in ks for j in range(10)]
    mean, std = inception_score(_one_hot_logits(classes), split_size=10)
    assert mean == pytest.approx(np.mean(ks), abs=1e-9)
    assert std == pytest.approx(np.std(ks), abs=1e-9)


def test_inception_score_follows_adm_chunks_at_any_sample_count():
    # ADM cuts chunks of 5,000 whatever N is; 12,000 samples are 5,000 + 5,000 + 2,000 (not 10 splits of 1,200).
    assert is_chunks(12_000) == [(0, 5000), (5000, 10_000), (10_000, 12_000)]
    assert is_chunks(50_000) == [(i, i + 5000) for i in range(0, 50_000, 5000)] and is_chunks(500) == [(0, 500)]
    # chunk scores 1, 2 and 10 (the last chunk short): ADM's mean is 13/3; 10 equal splits would give 3.4
    classes = [0] * 5000 + [j % 2 for j in range(5000)] + [j % 10 for j in range(2000)]
    mean, _ = inception_score(_one_hot_logits(classes))
    assert mean == pytest.approx(13 / 3, abs=1e-9)
    # at 50,000 samples the ADM rule is torch-fidelity's 10 equal splits
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50_000, 16, generator=g, dtype=torch.float64) * 3
    want = isc_features_to_metric(logits, splits=10, shuffle=False)[KEY_METRIC_ISC_MEAN]
    assert inception_score(logits)[0] == pytest.approx(want, rel=1e-12)


def test_inception_score_follows_file_order_for_class_sorted_samples():
    # Class-sorted file: each contiguous chunk holds one class -> IS 1 (ADM's known order dependence);
    # the same samples interleaved give 10 in every chunk. A shuffling implementation would score both alike.
    sorted_classes = [c for c in range(10) for _ in range(10)]
    interleaved = [j % 10 for j in range(100)]
    assert inception_score(_one_hot_logits(sorted_classes), split_size=10) == pytest.approx((1.0, 0.0), abs=1e-9)
    assert inception_score(_one_hot_logits(interleaved), split_size=10) == pytest.approx((10.0, 0.0), abs=1e-9)


def test_inception_score_needs_logits():
    with pytest.raises(ValueError, match="N >= 1"):
        inception_score(torch.zeros(0, 10))
