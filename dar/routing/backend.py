"""Which implementation computes DAR's aggregation (Eq. 5): the PyTorch reference or the fused kernel.

    torch   dar.routing.aggregate.aggregate, the reference (any device, any dtype)
    triton  the fused Triton kernel of kernels/dar_aggregate.py (App. E); CUDA tensors,
            or CPU tensors in the Triton interpreter (TRITON_INTERPRET=1, tests only)
    auto    triton when the inputs are CUDA tensors and Triton is installed, else torch

Both compute the same function (tests/test_kernels.py checks outputs and gradients
within tolerance). Requests for the routing weights (`return_alpha=True`, made when
observers such as the diagnostics' AlphaRecorder watch the stream) always go to the
reference: the kernel never materialises alpha [N, B, T], and the observers may
differentiate through it, which the fused op does not support.

The kernel module is imported on first use, not here, so `import dar` neither needs
Triton nor fixes its interpreter mode.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from dar.routing.aggregate import RMS_EPS, aggregate

BACKENDS = ("torch", "triton", "auto")
HAS_TRITON = importlib.util.find_spec("triton") is not None  # checked without importing it

AggregateFn = Callable[..., Tensor | tuple[Tensor, Tensor]]

_fused_aggregate: AggregateFn | None = None  # kernels.dar_aggregate.fused_aggregate, once imported


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown aggregation backend {name!r}; choose one of {BACKENDS}")
    return name


def _load_kernel() -> AggregateFn:
    global _fused_aggregate
    if _fused_aggregate is None:
        from kernels.dar_aggregate import fused_aggregate  # deferred: see the module docstring

        _fused_aggregate = fused_aggregate
    return _fused_aggregate


def triton_aggregate(
    sources: Sequence[Tensor],
    query: Tensor,
    norm_weight: Tensor,
    eps: float = RMS_EPS,
    return_alpha: bool = False,
    normed: Sequence[Tensor] | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """The fused kernel with the reference's signature (alpha requests go to the reference). The kernel normalises
    the sources inside its fused pass, so a caller's `normed` serves only the reference."""
    if return_alpha:
        return aggregate(sources, query, norm_weight, eps, return_alpha=True, normed=normed)
    return _load_kernel()(sources, query, norm_weight, eps)


def uses_kernel(backend: str, x: Tensor) -> bool:
    """Whether `backend` computes a read of sources like `x` (without alpha) with the fused kernel."""
    return backend == "triton" or (backend == "auto" and HAS_TRITON and x.is_cuda)


def auto_aggregate(
    sources: Sequence[Tensor],
    query: Tensor,
    norm_weight: Tensor,
    eps: float = RMS_EPS,
    return_alpha: bool = False,
    normed: Sequence[Tensor] | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """The fused kernel for CUDA inputs when Triton is installed, the reference otherwise."""
    if not return_alpha and len(sources) > 0 and uses_kernel("auto", sources[0]):
        return _load_kernel()(sources, query, norm_weight, eps)
    return aggregate(sources, query, norm_weight, eps, return_alpha=return_alpha, normed=normed)


def get_aggregate_fn(backend: str) -> AggregateFn:
    """The aggregation function for a backend name; all share `aggregate`'s signature.

    Raises ValueError for an unknown name, and RuntimeError for 'triton' where it
    cannot run (Triton not installed, or neither CUDA nor the Triton interpreter).
    """
    check_backend(backend)
    if backend == "torch":
        return aggregate
    if backend == "auto":
        return auto_aggregate
    if not HAS_TRITON:
        raise RuntimeError("routing backend 'triton' needs the `triton` package; use 'torch' or 'auto'")
    _load_kernel()
    from kernels.dar_aggregate import INTERPRET

    if not torch.cuda.is_available() and not INTERPRET:
        raise RuntimeError(
            "routing backend 'triton' needs a CUDA device (or, for CPU tests, TRITON_INTERPRET=1 set before "
            "the kernels are first imported); use 'torch' or 'auto' on this machine"
        )
    return triton_aggregate
