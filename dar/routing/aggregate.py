"""The DAR depth aggregation, paper Eq. 5, in plain PyTorch.

    h = sum_i alpha_i v_i,   alpha = softmax_i(q . k_i / sqrt(D)),   k_i = w * RMSNorm(v_i)

This is the single reference implementation of the math. The routing module
calls it (or the fused Triton kernel of `kernels/`, which must match it), the
diagnostics read its weights, and the kernel tests compare against it.

The sources are taken as a sequence of [B, T, D] tensors and never stacked:
stacking N sources per layer would copy N slices of activations per call
(see the kernel notes). Only the per-source logits, N x [B, T], are stacked.

The query has one of three shapes, one per query parameterisation (Eq. 6):
    [D]        static     q_l = w_l
    [B, D]     explicit   q_l = w_l + e(t)            (one query per sample)
    [B, T, D]  dynamic    q_l = W_q v_{l-1}           (one query per token)

Math is done in fp32 whatever the input dtype (bf16 under autocast), and the
output is cast back to the sources' dtype.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from torch import Tensor

RMS_EPS = 1e-6  # eps of the per-source key RMSNorm (k_i = RMSNorm(v_i), Eq. 5)


def check_sources(sources: Sequence[Tensor], query: Tensor, norm_weight: Tensor) -> tuple[int, int, int]:
    """Validate shapes; returns (B, T, D). Raises ValueError naming the problem."""
    if len(sources) == 0:
        raise ValueError("aggregate: the source set is empty; DAR needs at least v_0 (the input embedding)")
    shape = sources[0].shape
    if len(shape) != 3:
        raise ValueError(f"aggregate: sources must be [B, T, D] tensors, got shape {tuple(shape)}")
    for i, v in enumerate(sources):
        if v.shape != shape:
            raise ValueError(f"aggregate: source {i} has shape {tuple(v.shape)}, source 0 has {tuple(shape)}; all must match")
    B, T, D = shape
    if norm_weight.shape != (D,):
        raise ValueError(f"aggregate: norm_weight must have shape ({D},), got {tuple(norm_weight.shape)}")
    if query.shape not in ((D,), (B, D), (B, T, D)):
        raise ValueError(
            f"aggregate: query must be [D] (static), [B, D] (per-sample) or [B, T, D] (per-token) "
            f"with B={B}, T={T}, D={D}; got {tuple(query.shape)}"
        )
    return B, T, D


def scaled_query(query: Tensor, norm_weight: Tensor, T: int) -> Tensor:
    """u = q * w / sqrt(D), broadcastable against [B, T, D].

    Folding the RMSNorm weight and the 1/sqrt(D) temperature into the query
    turns each logit into one dot product with the unit-RMS source:
    q . (w * xhat_i) / sqrt(D) = u . xhat_i.
    """
    D = norm_weight.shape[0]
    u = query.float() * norm_weight.float() / math.sqrt(D)
    if u.dim() == 2:  # [B, D] -> [B, 1, D]
        u = u.unsqueeze(1)
    return u


def full_precision(x: Tensor):
    """A context in which autocast is off for x's device: the routing's own math runs in fp32 under bf16 autocast
    (a matmul would otherwise be cast down). A no-op where autocast is not on (and on the meta device)."""
    kind = x.device.type
    if kind in ("cuda", "cpu") and torch.is_autocast_enabled(kind):
        return torch.autocast(kind, enabled=False)
    return contextlib.nullcontext()


def rms_normalize(v: Tensor, eps: float = RMS_EPS) -> Tensor:
    """xhat = v / RMS(v) over the last dim, in fp32: the key of Eq. 5 without its weight (folded into the query).

    It depends on the source alone, so a stream computes it once per source and every aggregator that reads the
    source reuses it (`normed=` below): the same values as normalising on every read, at a fraction of the ops."""
    v = v.float()
    return v * torch.rsqrt(v.pow(2).mean(dim=-1, keepdim=True) + eps)


def source_logits(
    sources: Sequence[Tensor], query: Tensor, norm_weight: Tensor, eps: float = RMS_EPS, normed: Sequence[Tensor] | None = None
) -> Tensor:
    """Routing logits s_i = q . k_i / sqrt(D) for every source: [N, B, T] in fp32.

    normed: rms_normalize(v_i) of each source when the caller keeps them (a stream does), else computed here."""
    _, T, _ = check_sources(sources, query, norm_weight)
    u = scaled_query(query, norm_weight, T)
    xhats = normed if normed is not None else [rms_normalize(v, eps) for v in sources]
    with full_precision(u):
        return _logits(xhats, u)


def _logits(xhats: Sequence[Tensor], u: Tensor) -> Tensor:
    if u.dim() == 1:  # static: one query for every token, a matrix-vector product over the flattened tokens
        B, T, D = xhats[0].shape
        return torch.stack([(xhat.reshape(B * T, D) @ u).view(B, T) for xhat in xhats])  # [N, B, T]
    # per-sample [B, 1, D] or per-token [B, T, D]: an elementwise product summed over D. (A batched matmul against
    # a [B, D, 1] column is the same sum, several times slower on a CPU: B tiny matrix-vector products.)
    return torch.stack([(xhat * u).sum(dim=-1) for xhat in xhats])  # [N, B, T]


def aggregate(
    sources: Sequence[Tensor],
    query: Tensor,
    norm_weight: Tensor,
    eps: float = RMS_EPS,
    return_alpha: bool = False,
    normed: Sequence[Tensor] | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Eq. 5: softmax-weighted sum of the sources.

    sources: N tensors [B, T, D]; query: [D], [B, D] or [B, T, D];
    norm_weight: [D]; normed: optional rms_normalize(v_i) of each source (see source_logits).
    Returns h [B, T, D] (and alpha [N, B, T] if asked).
    """
    alpha = torch.softmax(source_logits(sources, query, norm_weight, eps, normed), dim=0)  # [N, B, T]
    weights = alpha.unsqueeze(-1)  # [N, B, T, 1]
    h = weights[0] * sources[0].float()
    for i in range(1, len(sources)):
        h = torch.addcmul(h, weights[i], sources[i].float())  # h + alpha_i v_i in one op
    h = h.to(sources[0].dtype)
    return (h, alpha) if return_alpha else h
