"""Transport: the linear interpolant, its loss, samplers and guidance (SiT conventions)."""

from dar.transport.guidance import SIT_GUIDED_CHANNELS, guided_velocity
from dar.transport.path import flow_matching_loss, interpolate, sample_t, score_from_velocity
from dar.transport.samplers import SAMPLERS, SampleResult, SamplerSpec, get_sampler, sample

__all__ = [
    "SAMPLERS",
    "SIT_GUIDED_CHANNELS",
    "SampleResult",
    "SamplerSpec",
    "flow_matching_loss",
    "get_sampler",
    "guided_velocity",
    "interpolate",
    "sample",
    "sample_t",
    "score_from_velocity",
]
