"""Fused Triton kernels for DAR aggregation (paper App. E). Reference: dar.routing.aggregate."""
