"""The fused DAR aggregation kernel (kernels/dar_aggregate.py) against the PyTorch reference.

Without CUDA the kernels run on CPU in the Triton interpreter. Triton fixes its mode
when it is first imported, so this module sets TRITON_INTERPRET=1 before importing
it; the setting then stays for the test session (harmless for the CPU-only tests:
torch.compile on CPU generates C++, not Triton). If something imported Triton
earlier in compiled mode, collection stops with an explanation: export
TRITON_INTERPRET=1 for CPU test runs. Shapes stay tiny (<= 16 rows per call).

With CUDA the same tests run the compiled kernels on the GPU, and `TestGPU` adds
SiT-XL/2-sized bf16 cases. Forward outputs are compared with
`dar.routing.aggregate.aggregate`; gradients with an fp64 autograd implementation
of Eq. 5 written below.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

import triton.language as tl  # noqa: E402

import kernels.dar_aggregate as K  # noqa: E402
from dar.models import build_model  # noqa: E402
from dar.routing.aggregate import RMS_EPS, aggregate  # noqa: E402
from dar.routing.backend import BACKENDS, get_aggregate_fn  # noqa: E402

if not CUDA and not (K.INTERPRET and type(tl.sum).__name__ == "InterpretedFunction"):
    raise RuntimeError(
        "Triton was imported in compiled mode before tests/test_kernels.py could set TRITON_INTERPRET=1, "
        "and there is no GPU: export TRITON_INTERPRET=1 for CPU test runs (or run this file on its own)"
    )

QUERY_SHAPES = {"static": lambda B, T, D: (D,), "per-sample": lambda B, T, D: (B, D), "per-token": lambda B, T, D: (B, T, D)}


def make(N, query, B=2, T=5, D=100, dtype=torch.float32, q_scale=3.0, seed=0):
    """Leaf inputs on DEVICE: N sources [B, T, D] of growing scale, a query, an RMSNorm weight."""
    g = torch.Generator().manual_seed(seed)
    sources = [(torch.randn(B, T, D, generator=g) * (i + 1)).to(dtype) for i in range(N)]
    q = torch.randn(*QUERY_SHAPES[query](B, T, D), generator=g) * q_scale
    w = 1 + 0.5 * torch.randn(D, generator=g)
    return [x.to(DEVICE) for x in sources], q.to(DEVICE), w.to(DEVICE)


def eq5_fp64(sources, query, w, eps=RMS_EPS):
    """Eq. 5 in float64 with plain autograd: the gradient reference."""
    V = [v.double() for v in sources]
    D = V[0].shape[-1]
    u = query.double() * w.double() / math.sqrt(D)
    if u.dim() == 2:
        u = u[:, None]
    s = torch.stack([(v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + eps) * u).sum(-1) for v in V])  # [N, B, T]
    alpha = torch.softmax(s, dim=0)
    return sum(alpha[i, ..., None] * V[i] for i in range(len(V)))


def grads(fn, sources, query, w, grad_out, dtype=None):
    """(h, [dv_i], dq, dw) of fn on fresh leaf copies of the inputs (optionally cast to dtype)."""
    leaves = [x.detach().clone().to(dtype or x.dtype).requires_grad_() for x in (*sources, query, w)]
    h = fn(leaves[:-2], leaves[-2], leaves[-1])
    out = torch.autograd.grad(h, leaves, grad_out.to(h.dtype))
    return h, list(out[:-2]), out[-2], out[-1]


def assert_rel(actual, expected, rel, name=""):
    """max |actual - expected| <= rel * max |expected| (relative to the tensor's scale)."""
    actual, expected = actual.double(), expected.double()
    assert torch.isfinite(actual).all(), f"{name}: non-finite values"
    err = (actual - expected).abs().max().item()
    scale = max(expected.abs().max().item(), 1e-12)
    assert err <= rel * scale, f"{name}: max error {err:.3g} > {rel:g} x scale {scale:.3g}"


def check_against_reference(sources, query, w, rel_h=2e-6, rel_grad=2e-5):
    """Fused forward vs the reference and fp64; fused gradients vs fp64 autograd."""
    h = K.fused_aggregate(sources, query, w)
    assert h.dtype == sources[0].dtype and h.shape == sources[0].shape
    assert_rel(h, aggregate(sources, query, w), rel_h, "h vs reference")
    g = torch.randn(h.shape, generator=torch.Generator().manual_seed(7)).to(DEVICE)
    h_k, dv_k, dq_k, dw_k = grads(K.fused_aggregate, sources, query, w, g)
    h_r, dv_r, dq_r, dw_r = grads(eq5_fp64, sources, query, w, g, dtype=torch.float64)
    assert_rel(h_k, h_r, max(rel_h, 2e-6), "h vs fp64")
    for i, (a, b) in enumerate(zip(dv_k, dv_r)):
        assert a.dtype == sources[i].dtype
        assert_rel(a, b, rel_grad, f"dv_{i}")
    assert dq_k.dtype == query.dtype and dw_k.dtype == w.dtype
    assert_rel(dq_k, dq_r, rel_grad, "dq")
    assert_rel(dw_k, dw_r, rel_grad, "dw")
    return dq_k, dw_k


# ---------------------------------------------------------------------------
# Outputs and gradients against the references
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("D", [96, 100])
@pytest.mark.parametrize("N", [1, 2, 3, 33])
@pytest.mark.parametrize("query", list(QUERY_SHAPES))
def test_outputs_and_gradients_match_reference(query, N, D):
    sources, q, w = make(N, query, D=D)
    check_against_reference(sources, q, w)


@pytest.mark.parametrize("query", list(QUERY_SHAPES))
def test_single_source_is_identity_with_exactly_zero_query_and_weight_gradients(query):
    sources, q, w = make(1, query)
    h = K.fused_aggregate(sources, q, w)
    assert torch.equal(h, sources[0])
    dq, dw = check_against_reference(sources, q, w)
    assert torch.equal(dq, torch.zeros_like(dq)) and torch.equal(dw, torch.zeros_like(dw))


@pytest.mark.parametrize("query", list(QUERY_SHAPES))
def test_saturated_logits(query):
    """|s_i - s_j| ~ 1e3: alpha is one-hot in fp32; the online softmax must not overflow."""
    sources, q, w = make(3, query, q_scale=3e3)
    logits = torch.stack([(v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + RMS_EPS)) for v in sources])
    u = q * w / math.sqrt(q.shape[-1])
    s = (logits * (u[:, None] if u.dim() == 2 else u)).sum(-1)  # [N, B, T]
    assert (s.max(0).values - s.min(0).values).min() > 100  # really saturated
    check_against_reference(sources, q, w)


@pytest.mark.parametrize("query", list(QUERY_SHAPES))
def test_zero_rows(query):
    """All-zero tokens (r = eps^-1/2, s = 0) in some sources, and one all-zero source."""
    sources, q, w = make(3, query)
    sources[0][0, 1] = 0
    sources[1][:, 3] = 0
    sources[2].zero_()
    check_against_reference(sources, q, w)


@pytest.mark.parametrize("query", ["static", "per-token"])
def test_bf16_inputs(query):
    """bf16 sources and query, fp32 math; the interpreter truncates fp32 -> bf16 stores."""
    sources, q, w = make(3, query, dtype=torch.bfloat16)
    q = q.to(torch.bfloat16)
    check_against_reference(sources, q, w, rel_h=1e-2, rel_grad=2e-2)


def test_mixed_dtype_sources():
    """Under bf16 autocast v_0 (patch embedding + fp32 positions) is fp32 and the rest bf16."""
    sources, q, w = make(4, "per-sample")
    sources = [sources[0]] + [v.to(torch.bfloat16) for v in sources[1:]]
    check_against_reference(sources, q, w, rel_h=2e-6, rel_grad=2e-2)


def test_views_of_a_preallocated_buffer():
    sources, q, w = make(5, "static")
    buffer = torch.stack([*sources, torch.full_like(sources[0], float("nan"))])  # [N_max, B, T, D], slot 5 unused
    views = K.sources_from_buffer(buffer, 5)
    assert all(v.data_ptr() == buffer[i].data_ptr() for i, v in enumerate(views))  # no copies
    torch.testing.assert_close(K.fused_aggregate(views, q, w), K.fused_aggregate(sources, q, w), rtol=0, atol=0)


def test_inference_skips_the_saved_statistics():
    sources, q, w = make(2, "per-token", dtype=torch.bfloat16)
    h, lse, h32 = torch.ops.dar.aggregate(sources, q, w, RMS_EPS, False)
    assert lse.numel() == 0 and h32.numel() == 0
    h, lse, h32 = torch.ops.dar.aggregate(sources, q, w, RMS_EPS, True)
    assert lse.shape == h.shape[:2] and h32.dtype == torch.float32 and h32.shape == h.shape


def test_bad_inputs_raise():
    sources, q, w = make(2, "static")
    with pytest.raises(ValueError, match="source 1 has shape"):
        K.fused_aggregate([sources[0], sources[1][:, :2]], q, w)
    with pytest.raises(ValueError, match="query must be"):
        K.fused_aggregate(sources, q[:7], w)
    with pytest.raises(ValueError, match="empty"):
        K.fused_aggregate([], q, w)
    with pytest.raises(ValueError, match="at most two dtypes"):
        K.fused_aggregate([sources[0], sources[1].half(), sources[1].bfloat16()], q, w)


# ---------------------------------------------------------------------------
# torch.library registration
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["per-sample", "per-token"])
def test_opcheck(query):
    sources, q, w = make(3, query, T=3, D=32)
    sources = [v.requires_grad_() for v in sources]
    torch.library.opcheck(torch.ops.dar.aggregate.default, (sources, q.requires_grad_(), w.requires_grad_(), RMS_EPS, True))
    h, lse, _ = torch.ops.dar.aggregate(sources, q, w, RMS_EPS, True)
    args = (torch.randn_like(h), [v.detach() for v in sources], q.detach(), w.detach(), h.detach(), lse, RMS_EPS)
    torch.library.opcheck(torch.ops.dar.aggregate_backward.default, args)


def test_torch_compile_fullgraph():
    """Dynamo traces the custom op (fake impl), AOTAutograd its registered backward."""
    sources, q, w = make(3, "per-token", T=3, D=32)

    def loss(sources, q, w):
        return (K.fused_aggregate(sources, q, w) * 2).square().sum()

    compiled = torch.compile(loss, fullgraph=True)
    eager = grads(loss, sources, q, w, torch.tensor(1.0, device=DEVICE))
    traced = grads(compiled, sources, q, w, torch.tensor(1.0, device=DEVICE))
    assert_rel(traced[0], eager[0], 1e-6, "loss")
    for a, b in zip([*traced[1], traced[2], traced[3]], [*eager[1], eager[2], eager[3]]):
        assert_rel(a, b, 1e-6, "grad")


# ---------------------------------------------------------------------------
# The model-level switch
# ---------------------------------------------------------------------------


def tiny_dar_sit(backend):
    torch.manual_seed(0)
    model = build_model(
        "SiT-S/2", "dar-dynamic-c2", depth=2, hidden_size=32, num_heads=4, input_size=8, in_channels=4, num_classes=10,
        routing_backend=backend,
    )  # fmt: skip
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random routing parameters, so that alpha is far from uniform
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.to(DEVICE).eval()  # eval: no label dropout, so both models see the same labels


def test_model_switch_gives_the_same_outputs_and_gradients():
    ref, fused = tiny_dar_sit("torch"), tiny_dar_sit("triton")
    assert ref.routing.aggregate_fn is aggregate and fused.routing.backend == "triton"
    g = torch.Generator().manual_seed(2)
    x, t, y = torch.randn(2, 4, 8, 8, generator=g), torch.rand(2, generator=g), torch.randint(0, 10, (2,), generator=g)
    x, t, y = x.to(DEVICE), t.to(DEVICE), y.to(DEVICE)
    out_ref, out_fused = ref(x, t, y), fused(x, t, y)
    assert_rel(out_fused, out_ref, 1e-5, "model output")
    out_ref.square().sum().backward()
    out_fused.square().sum().backward()
    for (name, p_ref), p_fused in zip(ref.named_parameters(), fused.parameters()):
        if p_ref.grad is not None:
            assert_rel(p_fused.grad, p_ref.grad, 1e-4, name)
    fused.routing.set_backend("torch")  # switching back reproduces the reference exactly
    torch.testing.assert_close(fused(x, t, y), ref(x, t, y), rtol=0, atol=0)


def test_backend_names():
    assert BACKENDS == ("torch", "triton", "auto")
    with pytest.raises(ValueError, match=r"unknown aggregation backend 'cuda'.*'torch', 'triton', 'auto'"):
        get_aggregate_fn("cuda")
    with pytest.raises(ValueError, match="unknown aggregation backend"):
        build_model("SiT-S/2", "residual", depth=2, hidden_size=32, num_heads=4, input_size=8, routing_backend="fast")
    sources, q, w = make(2, "static")
    auto = get_aggregate_fn("auto")(sources, q, w)
    torch.testing.assert_close(auto, (K.fused_aggregate if CUDA else aggregate)(sources, q, w), rtol=0, atol=0)
    # alpha requests (observers) go to the reference on every backend
    _, alpha = get_aggregate_fn("triton")(sources, q, w, return_alpha=True)
    torch.testing.assert_close(alpha, aggregate(sources, q, w, return_alpha=True)[1], rtol=0, atol=0)


def test_triton_where_it_cannot_run_is_a_clear_error(monkeypatch):
    sources, q, w = make(2, "static")
    monkeypatch.setattr(K, "INTERPRET", False)
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        K.fused_aggregate([v.cpu() for v in sources], q.cpu(), w.cpu())
    if not CUDA:
        with pytest.raises(RuntimeError, match="needs a CUDA device"):
            get_aggregate_fn("triton")


# ---------------------------------------------------------------------------
# GPU: SiT-XL/2-sized bf16 cases (compiled kernels)
# ---------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
class TestGPU:
    @pytest.mark.parametrize("N", [2, 17, 57])
    @pytest.mark.parametrize("query", list(QUERY_SHAPES))
    def test_bf16_sit_xl_sizes(self, query, N):
        sources, q, w = make(N, query, B=4, T=256, D=1152, dtype=torch.bfloat16)
        check_against_reference(sources, q.to(torch.bfloat16), w, rel_h=1e-2, rel_grad=2e-2)

    def test_fp32_odd_sizes(self):
        sources, q, w = make(33, "per-token", B=3, T=77, D=1000)
        check_against_reference(sources, q, w, rel_h=1e-5, rel_grad=1e-4)

    def test_unaligned_sources(self):
        """Addresses off the 16-byte grid disable the vectorisation hint but stay correct."""
        B, T, D, N = 2, 64, 1152, 5
        flat = torch.randn(N * B * T * D + 1, device="cuda", dtype=torch.bfloat16)
        sources = [flat[1 + i * B * T * D : 1 + (i + 1) * B * T * D].view(B, T, D) for i in range(N)]
        _, q, w = make(N, "static", B=B, T=T, D=D)
        check_against_reference(sources, q, w, rel_h=1e-2, rel_grad=2e-2)

    def test_compiled_model_under_autocast(self):
        ref, fused = tiny_dar_sit("torch"), tiny_dar_sit("triton")
        x, t, y = torch.randn(4, 4, 8, 8, device="cuda"), torch.rand(4, device="cuda"), torch.randint(0, 10, (4,), device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out_ref = ref(x, t, y)
            out_fused = torch.compile(fused, fullgraph=True)(x, t, y)
        assert_rel(out_fused.float(), out_ref.float(), 2e-2, "model output")
