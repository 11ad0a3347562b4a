"""Per-sample random streams: sample i's noise depends only on (seed, i).

Every sample owns a generator seeded from the run seed and its global index,
so its starting noise, its class label and its SDE increments are the same
whatever the batch size, the shard layout or the number of processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def sample_seed(seed: int, index: int) -> int:
    return (seed * 1_000_000_007 + index) % (2**63 - 1)


class PerSampleRNG:
    def __init__(self, seed: int, indices: Sequence[int], device: torch.device | str = "cpu") -> None:
        self.indices = list(indices)
        self.device = torch.device(device)
        self.generators = [torch.Generator().manual_seed(sample_seed(seed, i)) for i in self.indices]

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """[B, *shape] standard normal, row b from sample b's stream (drawn on CPU, then moved)."""
        return torch.stack([torch.randn(tuple(shape), generator=g, dtype=dtype) for g in self.generators]).to(self.device)

    def randint(self, high: int) -> torch.Tensor:
        """[B] uniform integers in [0, high), e.g. class labels drawn uniformly as the reference does."""
        return torch.stack([torch.randint(0, high, (), generator=g) for g in self.generators]).to(self.device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(x.shape[1:], dtype=x.dtype)
