"""Sampling: per-sample random streams, the one generation loop, the sharded job, PNG grids."""

from dar.sampling.grid import save_grid
from dar.sampling.loop import SampleSettings, generate, to_uint8_nhwc
from dar.sampling.rng import PerSampleRNG

__all__ = ["PerSampleRNG", "SampleSettings", "generate", "save_grid", "to_uint8_nhwc"]
