"""Fused DAR depth aggregation (paper Eq. 5, App. E): Triton kernels, launchers, custom op.

Per token, over N sources v_i [D], with c = D^-1/2 and u = c q w (q the query, w the
learnable weight of the key RMSNorm):

    r_i = (mean(v_i^2) + eps)^-1/2,  xhat_i = r_i v_i,  s_i = u . xhat_i = q . (w * xhat_i) / sqrt(D)
    alpha = softmax_i(s),  h = sum_i alpha_i v_i,  lse = log sum_i exp(s_i)

Forward: one streaming loop over the sources with the online-softmax recurrence
(m' = max(m, s); Z <- Z e^(m-m') + e^(s-m'); acc <- acc e^(m-m') + e^(s-m') v), so
each source is read from HBM once and r, s, exp(s) live in registers. It saves
lse [B, T] and, when h is stored in a low-precision dtype, an fp32 copy of h.

Backward, one pass over the sources, g = dL/dh:

    delta = g . h = sum_j alpha_j (g . v_j),    alpha_i = exp(s_i - lse)
    ds_i = alpha_i (g . v_i - delta)
    dL/dv_i = alpha_i g + ds_i r_i (u - (s_i / D) xhat_i)      (the RMSNorm Jacobian applied to u)
    a = sum_i ds_i xhat_i                                      (per token)
    per-token q:   dq = c w * a,                 dw = c sum_tokens q * a
    per-sample q:  dq_b = c w * sum_t a_bt,      dw = c sum_b q_b * sum_t a_bt
    static q:      dq = c w * sum_tokens a,      dw = c q * sum_tokens a

The RMSNorm intermediates are recomputed in the backward; delta comes from the
saved fp32 h, so the backward reads the sources once (about 2N slices of HBM
traffic) where the paper's two-pass backward reads them twice (about 3N).
With N = 1, alpha = 1 and g . v = delta bit for bit, so dq = dw = 0 exactly.

Layers (Liger-Kernel style): `@triton.jit` kernels -> launchers `aggregate_forward` /
`aggregate_backward` (shape checks, block sizes, allocation) -> the `torch.library`
custom op `dar::aggregate` (fake implementation + registered autograd, so
torch.compile traces it) -> the user function `fused_aggregate`.

Sources are never stacked. The launcher hands the kernels a small int64 table of
element offsets of every source (and every dv output) relative to one base tensor
per dtype; N separate [B, T, D] tensors, or the N views of one preallocated
[N_max, B, T, D] buffer (`sources_from_buffer`), are read in place. The sources may
mix two dtypes (under bf16 autocast v_0 = patch embedding + fp32 positions is fp32
while the sublayer outputs are bf16): the kernels loop over each dtype group in
turn, which the order-free online softmax allows. Any N is supported (a runtime
loop; no cap at 32 sources).

CPU testing: with TRITON_INTERPRET=1 set before this module is imported, the same
kernels run on CPU tensors in the Triton interpreter (slow: tiny shapes only).
Every load is cast to fp32 before arithmetic (bf16 math is wrong in the interpreter).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from dar.routing.aggregate import RMS_EPS, check_sources

# Fixed when the kernels below are decorated: triton.jit builds interpreter
# functions if TRITON_INTERPRET=1 is set when this module is imported.
# (triton.knobs from Triton 3.4; the environment variable it reads before that)
_knobs = getattr(triton, "knobs", None)
INTERPRET: bool = bool(_knobs.runtime.interpret) if _knobs else os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

QUERY_STATIC, QUERY_SAMPLE, QUERY_TOKEN = 0, 1, 2  # query [D], [B, D], [B, T, D]

# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@triton.jit
def _tile(T, D: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    """This program's rows (tokens) t of sample b; element offsets into a [B, T, D] tensor."""
    b = tl.program_id(1)
    t = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)  # [R]
    cols = tl.arange(0, BLOCK_D)  # [BD]
    row_mask = t < T
    col_mask = cols < D
    rows = (b * T + t).to(tl.int64)  # [R]
    offs = rows[:, None] * D + cols[None, :]  # [R, BD]
    mask = row_mask[:, None] & col_mask[None, :]
    return b, rows, row_mask, cols, col_mask, offs, mask


@triton.jit
def _scaled_query(q_ptr, w_ptr, b, offs, mask, cols, col_mask, inv_sqrt_d, D: tl.constexpr, QUERY: tl.constexpr):
    """u = q * w / sqrt(D) in fp32: [R, BD] for a per-token query, [1, BD] otherwise."""
    w = tl.load(w_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
    if QUERY == 2:  # per-token q [B, T, D]
        q = tl.load(q_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        u = q * (w * inv_sqrt_d)[None, :]
    elif QUERY == 1:  # per-sample q [B, D]
        q = tl.load(q_ptr + b * D + cols, mask=col_mask, other=0.0).to(tl.float32)
        u = (q * w * inv_sqrt_d)[None, :]
    else:  # static q [D]
        q = tl.load(q_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
        u = (q * w * inv_sqrt_d)[None, :]
    return u


@triton.jit
def _rms_logit(v, u, eps, D: tl.constexpr):
    """r = (mean(v^2) + eps)^-1/2 and s = u . (r v), per row. Shared by both passes so that
    the backward recomputes bit-identical logits."""
    r = 1.0 / tl.sqrt(tl.sum(v * v, axis=1) / D + eps)  # [R]
    s = tl.sum(u * v, axis=1) * r  # [R]
    return r, s


@triton.jit
def _fwd_group(base, table, start, n, offs, mask, u, m, z, acc, eps, D: tl.constexpr, ALIGN: tl.constexpr, STAGES: tl.constexpr):
    """Online-softmax update of (m, z, acc) with the n sources whose element offsets
    (relative to `base`) are table[start : start + n]. With STAGES > 1 the compiler
    pipelines the loop: the next sources' tiles stream into shared memory (cp.async)
    while the current one is reduced, keeping several loads in flight per program."""
    for j in tl.range(0, n, num_stages=STAGES):
        off = tl.multiple_of(tl.load(table + start + j), ALIGN)
        v = tl.load(base + off + offs, mask=mask, other=0.0).to(tl.float32)  # [R, BD]
        _, s = _rms_logit(v, u, eps, D)
        m_new = tl.maximum(m, s)
        scale = tl.exp(m - m_new)  # 0 on the first source (m = -inf)
        p = tl.exp(s - m_new)
        z = z * scale + p
        acc = acc * scale[:, None] + p[:, None] * v
        m = m_new
    return m, z, acc


# n0 / n1 / T are not specialised: a value of 1 would become a constant, and every N
# would compile its own kernel.
@triton.jit(do_not_specialize=["n0", "n1", "T"])
def _aggregate_fwd_kernel(
    table,  # int64 [2N]: source offsets (group 0, then group 1), then dv offsets (unused here)
    n0,
    n1,
    src0,  # base of dtype group 0 (the dtype of sources[0])
    src1,  # base of dtype group 1 (any second dtype; == src0 when n1 == 0)
    q_ptr,
    w_ptr,
    h_ptr,  # [B, T, D], dtype of sources[0]
    h32_ptr,  # [B, T, D] fp32 (written if SAVE_H32)
    lse_ptr,  # [B, T] fp32 (written if SAVE_LSE)
    T,
    eps,
    inv_sqrt_d,
    D: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    QUERY: tl.constexpr,
    ALIGN0: tl.constexpr,
    ALIGN1: tl.constexpr,
    STAGES: tl.constexpr,
    SAVE_H32: tl.constexpr,
    SAVE_LSE: tl.constexpr,
):
    b, rows, row_mask, cols, col_mask, offs, mask = _tile(T, D, BLOCK_R, BLOCK_D)
    u = _scaled_query(q_ptr, w_ptr, b, offs, mask, cols, col_mask, inv_sqrt_d, D, QUERY)
    m = tl.full([BLOCK_R], float("-inf"), tl.float32)
    z = tl.zeros([BLOCK_R], tl.float32)
    acc = tl.zeros([BLOCK_R, BLOCK_D], tl.float32)
    m, z, acc = _fwd_group(src0, table, 0, n0, offs, mask, u, m, z, acc, eps, D, ALIGN0, STAGES)
    m, z, acc = _fwd_group(src1, table, n0, n1, offs, mask, u, m, z, acc, eps, D, ALIGN1, STAGES)
    h = acc / z[:, None]
    tl.store(h_ptr + offs, h.to(h_ptr.dtype.element_ty), mask=mask)
    if SAVE_H32:
        tl.store(h32_ptr + offs, h, mask=mask)
    if SAVE_LSE:
        tl.store(lse_ptr + rows, m + tl.log(z), mask=row_mask)


@triton.jit
def _bwd_group(
    src_base,
    dv_base,
    table,
    n_total,
    start,
    n,
    offs,
    mask,
    u,
    g,
    delta,
    lse,
    a,
    eps,
    D: tl.constexpr,
    ALIGN: tl.constexpr,
    STAGES: tl.constexpr,
):
    """dL/dv_i for the n sources table[start : start + n] (their dv offsets sit at
    table[n_total + start : ...]); returns a + sum_i ds_i xhat_i. Pipelined like `_fwd_group`."""
    for j in tl.range(0, n, num_stages=STAGES):
        off = tl.multiple_of(tl.load(table + start + j), ALIGN)
        v = tl.load(src_base + off + offs, mask=mask, other=0.0).to(tl.float32)  # [R, BD]
        r, s = _rms_logit(v, u, eps, D)
        alpha = tl.exp(s - lse)  # [R]
        ds = alpha * (tl.sum(g * v, axis=1) - delta)  # [R]
        xhat = v * r[:, None]
        dv = alpha[:, None] * g + (ds * r)[:, None] * (u - (s / D)[:, None] * xhat)
        doff = tl.multiple_of(tl.load(table + n_total + start + j), ALIGN)
        tl.store(dv_base + doff + offs, dv.to(dv_base.dtype.element_ty), mask=mask)
        a += ds[:, None] * xhat
    return a


@triton.jit(do_not_specialize=["n0", "n1", "T"])
def _aggregate_bwd_kernel(
    table,  # int64 [2N]: source offsets, then dv offsets (same order)
    n0,
    n1,
    src0,
    src1,
    dv0,  # base of the dv outputs of dtype group 0
    dv1,
    q_ptr,
    w_ptr,
    g_ptr,  # dL/dh [B, T, D]
    hs_ptr,  # the saved h [B, T, D] (fp32 copy when h itself is low precision)
    lse_ptr,  # [B, T] fp32
    dq_ptr,  # per-token q: dq [B, T, D]; unused otherwise
    part_ptr,  # fp32 [B, cdiv(T, BLOCK_R), D]: per-program row sums (see below)
    T,
    eps,
    inv_sqrt_d,
    D: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_D: tl.constexpr,
    QUERY: tl.constexpr,
    ALIGN0: tl.constexpr,
    ALIGN1: tl.constexpr,
    STAGES: tl.constexpr,
):
    b, rows, row_mask, cols, col_mask, offs, mask = _tile(T, D, BLOCK_R, BLOCK_D)
    u = _scaled_query(q_ptr, w_ptr, b, offs, mask, cols, col_mask, inv_sqrt_d, D, QUERY)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    hs = tl.load(hs_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    delta = tl.sum(g * hs, axis=1)  # [R]
    lse = tl.load(lse_ptr + rows, mask=row_mask, other=0.0)
    a = tl.zeros([BLOCK_R, BLOCK_D], tl.float32)
    n_total = n0 + n1
    a = _bwd_group(src0, dv0, table, n_total, 0, n0, offs, mask, u, g, delta, lse, a, eps, D, ALIGN0, STAGES)
    a = _bwd_group(src1, dv1, table, n_total, n0, n1, offs, mask, u, g, delta, lse, a, eps, D, ALIGN1, STAGES)
    # Query and weight gradients. Per-token q: dq = c w * a here, and the row sum of
    # q * a (-> dw) goes to the partial buffer. Static / per-sample q: the row sum of a
    # goes to the partial buffer, and the launcher finishes dq and dw from it.
    part = part_ptr + (b * tl.num_programs(0) + tl.program_id(0)) * D + cols
    if QUERY == 2:
        w = tl.load(w_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
        tl.store(dq_ptr + offs, (a * (w * inv_sqrt_d)[None, :]).to(dq_ptr.dtype.element_ty), mask=mask)
        q = tl.load(q_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(part, tl.sum(q * a, axis=0), mask=col_mask)
    else:
        tl.store(part, tl.sum(a, axis=0), mask=col_mask)


# ---------------------------------------------------------------------------
# Launchers: shape checks, block sizes, offset tables, allocation
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchConfig:
    """Block sizes of one launch: a program handles `block_rows` tokens of one sample,
    each row whole (`block_d` = next power of two >= D, masked); `stages` is the
    software-pipelining depth of the loop over sources (1 = none)."""

    block_rows: int
    block_d: int
    num_warps: int
    stages: int


def launch_config(D: int, T: int, interpret: bool = INTERPRET) -> LaunchConfig:
    """About 4K elements per [rows, D] tile (16 per thread at 8 warps): the forward's
    acc / u / v and the backward's g / u / a / v tiles in registers without spills, at
    2-3 programs per SM (ptxas for sm_90 at D = 1152: 80 / 118 registers per thread).
    Four pipeline stages keep three source tiles per program in flight through shared
    memory. Forward and backward use the same config, so the per-row reductions (and
    the recomputed logits) follow the same order in both passes. Chosen from compiler
    output, not timed on hardware: `python -m kernels.bench --sweep` times alternatives."""
    block_d = triton.next_power_of_2(D)
    block_rows = max(1, min(16, 4096 // block_d, triton.next_power_of_2(T)))
    num_warps = max(4, min(16, block_rows * block_d // 512))
    return LaunchConfig(block_rows, block_d, num_warps, stages=1 if interpret else 4)


def _check_runnable(t: Tensor) -> None:
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and INTERPRET:
        return
    raise RuntimeError(
        f"the fused DAR aggregation kernel needs CUDA tensors (got device {t.device}); on CPU it runs only in "
        "the Triton interpreter, with TRITON_INTERPRET=1 set before `kernels.dar_aggregate` is imported. "
        "Use the PyTorch reference (routing backend 'torch') instead."
    )


def _on_device(t: Tensor):
    """Launch on the inputs' GPU, whatever the current device is."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


def _query_kind(query: Tensor) -> int:
    return {1: QUERY_STATIC, 2: QUERY_SAMPLE, 3: QUERY_TOKEN}[query.dim()]


def _dtype_groups(tensors: Sequence[Tensor]) -> tuple[list[int], list[int]]:
    """Indices of the tensors of sources[0]'s dtype, and of the (single) other dtype."""
    d0 = tensors[0].dtype
    g0 = [i for i, t in enumerate(tensors) if t.dtype == d0]
    g1 = [i for i, t in enumerate(tensors) if t.dtype != d0]
    if len({tensors[i].dtype for i in g1}) > 1:
        dtypes = sorted({str(t.dtype) for t in tensors})
        raise ValueError(f"fused aggregate: sources may mix at most two dtypes, got {dtypes}")
    return g0, g1


def _offsets(tensors: Sequence[Tensor], group: list[int]) -> tuple[list[int], int]:
    """Element offsets of tensors[group] from the group's first tensor, and the alignment
    hint (in elements) that holds for all of them: 16 bytes when every address is
    16-byte aligned (vectorised loads), else 1."""
    if not group:
        return [], 1
    base = tensors[group[0]]
    size = base.element_size()
    ptrs = [tensors[i].data_ptr() for i in group]
    if any((p - ptrs[0]) % size for p in ptrs):
        raise ValueError("fused aggregate: source addresses are not element-aligned")
    align = max(1, 16 // size) if all(p % 16 == 0 for p in ptrs) else 1
    return [(p - ptrs[0]) // size for p in ptrs], align


def _offset_table(srcs: Sequence[Tensor], dsts: Sequence[Tensor] | None, g0: list[int], g1: list[int]):
    """int64 [2N] device tensor: source offsets in group order, then dst offsets."""
    src_off0, a0 = _offsets(srcs, g0)
    src_off1, a1 = _offsets(srcs, g1)
    entries = src_off0 + src_off1
    if dsts is not None:
        dst_off0, b0 = _offsets(dsts, g0)
        dst_off1, b1 = _offsets(dsts, g1)
        entries += dst_off0 + dst_off1
        a0, a1 = min(a0, b0), min(a1, b1)
    else:
        entries += [0] * len(entries)
    device = srcs[0].device
    table = torch.tensor(entries, dtype=torch.int64, pin_memory=device.type == "cuda")
    return table.to(device, non_blocking=True), a0, a1


def _prepare(sources: Sequence[Tensor], query: Tensor, norm_weight: Tensor):
    B, T, D = check_sources(sources, query, norm_weight)
    for t in (*sources, query, norm_weight):
        _check_runnable(t)
        if t.device != sources[0].device:
            raise ValueError(f"fused aggregate: all inputs must be on one device, got {t.device} and {sources[0].device}")
    # Contiguous rows are required; .contiguous() is a no-op (no copy) for the usual inputs.
    srcs = [s.contiguous() for s in sources]
    return srcs, query.contiguous(), norm_weight.contiguous(), B, T, D


def aggregate_forward(
    sources: Sequence[Tensor],
    query: Tensor,
    norm_weight: Tensor,
    eps: float = RMS_EPS,
    save_stats: bool = True,
    config: LaunchConfig | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the forward kernel. Returns (h, lse, h32): h [B, T, D] in sources[0].dtype;
    with save_stats, lse [B, T] fp32 and h32 = fp32 h [B, T, D] when h itself is not
    at least fp32 (else an empty tensor, the backward then reads h); without
    save_stats (inference) lse and h32 are empty and not written. `config` overrides
    the block sizes (benchmark sweeps)."""
    srcs, query, norm_weight, B, T, D = _prepare(sources, query, norm_weight)
    cfg = config or launch_config(D, T)
    g0, g1 = _dtype_groups(srcs)
    table, a0, a1 = _offset_table(srcs, None, g0, g1)
    h = torch.empty_like(srcs[0])
    need_h32 = save_stats and h.dtype not in (torch.float32, torch.float64)
    h32 = h.new_empty((B, T, D) if need_h32 else (0,), dtype=torch.float32)
    lse = h.new_empty((B, T) if save_stats else (0,), dtype=torch.float32)
    if h.numel() == 0:
        return h, lse, h32
    src1 = srcs[(g1 or g0)[0]]  # any tensor of the right kind when group 1 is empty
    grid = (triton.cdiv(T, cfg.block_rows), B)
    with _on_device(h):
        _aggregate_fwd_kernel[grid](
            table, len(g0), len(g1), srcs[g0[0]], src1, query, norm_weight, h, h32 if need_h32 else h,
            lse if save_stats else h, T, eps, 1.0 / math.sqrt(D),
            D=D, BLOCK_R=cfg.block_rows, BLOCK_D=cfg.block_d, QUERY=_query_kind(query), ALIGN0=a0, ALIGN1=a1,
            SAVE_H32=need_h32, SAVE_LSE=save_stats, STAGES=cfg.stages, num_warps=cfg.num_warps,
        )  # fmt: skip
    return h, lse, h32


def aggregate_backward(
    grad_h: Tensor,
    sources: Sequence[Tensor],
    query: Tensor,
    norm_weight: Tensor,
    h_saved: Tensor,
    lse: Tensor,
    eps: float = RMS_EPS,
    config: LaunchConfig | None = None,
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Launch the backward kernel. h_saved is the fp32 h (or h when it is fp32 already),
    lse the forward's log-sum-exp. Returns ([dv_i], dq, dw) in the inputs' dtypes."""
    srcs, query, norm_weight, B, T, D = _prepare(sources, query, norm_weight)
    if lse.shape != (B, T) or h_saved.shape != (B, T, D):
        raise RuntimeError(
            "fused aggregate backward: the forward ran without saving its statistics (save_stats=False); "
            "call it with save_stats=True when gradients are needed"
        )
    cfg = config or launch_config(D, T)
    g0, g1 = _dtype_groups(srcs)
    dvs = [torch.empty_like(s) for s in srcs]
    kind = _query_kind(query)
    c = 1.0 / math.sqrt(D)
    if grad_h.numel() == 0:
        return dvs, torch.zeros_like(query), torch.zeros_like(norm_weight)
    table, a0, a1 = _offset_table(srcs, dvs, g0, g1)
    n_tblk = triton.cdiv(T, cfg.block_rows)
    part = torch.empty((B, n_tblk, D), dtype=torch.float32, device=grad_h.device)
    dq = torch.empty_like(query)
    j1 = (g1 or g0)[0]
    with _on_device(dq):
        _aggregate_bwd_kernel[(n_tblk, B)](
            table, len(g0), len(g1), srcs[g0[0]], srcs[j1], dvs[g0[0]], dvs[j1], query, norm_weight,
            grad_h.contiguous(), h_saved.contiguous(), lse.contiguous(), dq, part, T, eps, c,
            D=D, BLOCK_R=cfg.block_rows, BLOCK_D=cfg.block_d, QUERY=kind, ALIGN0=a0, ALIGN1=a1,
            STAGES=cfg.stages, num_warps=cfg.num_warps,
        )  # fmt: skip
    w = norm_weight.float()
    if kind == QUERY_TOKEN:  # part[b, k] = sum over the block's rows of q * a
        dw = c * part.sum(dim=(0, 1))
    elif kind == QUERY_SAMPLE:  # part[b, k] = sum over the block's rows of a
        a_b = part.sum(dim=1)  # [B, D]
        dq = (c * w * a_b).to(query.dtype)
        dw = c * (query.float() * a_b).sum(dim=0)
    else:
        a_all = part.sum(dim=(0, 1))  # [D]
        dq = (c * w * a_all).to(query.dtype)
        dw = c * query.float() * a_all
    return dvs, dq, dw.to(norm_weight.dtype)


# ---------------------------------------------------------------------------
# Custom op (torch.library) with fake implementation and autograd
# ---------------------------------------------------------------------------


@torch.library.custom_op("dar::aggregate", mutates_args=())
def _aggregate_op(
    sources: list[Tensor], query: Tensor, norm_weight: Tensor, eps: float, save_stats: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """(h, lse, h32) = fused Eq. 5; see `aggregate_forward`. lse and h32 are saved for the
    backward and are not differentiable."""
    return aggregate_forward(sources, query, norm_weight, eps, save_stats)


@_aggregate_op.register_fake
def _(sources, query, norm_weight, eps, save_stats):
    v = sources[0]
    B, T, D = v.shape
    need_h32 = save_stats and v.dtype not in (torch.float32, torch.float64)
    h32 = v.new_empty((B, T, D) if need_h32 else (0,), dtype=torch.float32)
    lse = v.new_empty((B, T) if save_stats else (0,), dtype=torch.float32)
    return torch.empty_like(v), lse, h32


@torch.library.custom_op("dar::aggregate_backward", mutates_args=())
def _aggregate_backward_op(
    grad_h: Tensor, sources: list[Tensor], query: Tensor, norm_weight: Tensor, h_saved: Tensor, lse: Tensor, eps: float
) -> list[Tensor]:
    """[dv_0, .., dv_{N-1}, dq, dw]; see `aggregate_backward`."""
    dvs, dq, dw = aggregate_backward(grad_h, sources, query, norm_weight, h_saved, lse, eps)
    return [*dvs, dq, dw]


@_aggregate_backward_op.register_fake
def _(grad_h, sources, query, norm_weight, h_saved, lse, eps):
    return [torch.empty_like(s) for s in sources] + [torch.empty_like(query), torch.empty_like(norm_weight)]


def _setup_context(ctx, inputs, output):
    sources, query, norm_weight, eps, _save_stats = inputs
    h, lse, h32 = output
    ctx.num_sources = len(sources)
    ctx.eps = eps
    ctx.mark_non_differentiable(lse, h32)
    ctx.save_for_backward(*sources, query, norm_weight, h32 if h32.numel() else h, lse)


def _backward(ctx, grad_h, _grad_lse, _grad_h32):
    *sources, query, norm_weight, h_saved, lse = ctx.saved_tensors
    grads = _aggregate_backward_op(grad_h, sources, query, norm_weight, h_saved, lse, ctx.eps)
    n = ctx.num_sources
    return grads[:n], grads[n], grads[n + 1], None, None


_aggregate_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------
# User-facing functions
# ---------------------------------------------------------------------------


def fused_aggregate(sources: Sequence[Tensor], query: Tensor, norm_weight: Tensor, eps: float = RMS_EPS) -> Tensor:
    """Eq. 5 with the fused kernel; same contract as `dar.routing.aggregate.aggregate`
    (sources: N x [B, T, D]; query [D], [B, D] or [B, T, D]; norm_weight [D]; fp32 math;
    h in sources[0].dtype) without `return_alpha`. Differentiable in all inputs."""
    sources = list(sources)
    needs_grad = torch.is_grad_enabled() and (
        query.requires_grad or norm_weight.requires_grad or any(s.requires_grad for s in sources)
    )
    h, _, _ = torch.ops.dar.aggregate(sources, query, norm_weight, eps, needs_grad)
    return h


def sources_from_buffer(buffer: Tensor, n: int) -> list[Tensor]:
    """The first n sources of a preallocated [N_max, B, T, D] buffer, as views (no copy)."""
    if buffer.dim() != 4 or not 1 <= n <= buffer.shape[0]:
        raise ValueError(f"expected a [N_max, B, T, D] buffer and 1 <= n <= N_max, got {tuple(buffer.shape)} and n={n}")
    return list(buffer[:n].unbind(0))
