"""The reference DAR aggregation (Eq. 5) against a naive per-token loop."""

from __future__ import annotations

import math

import pytest
import torch

from dar.routing.aggregate import RMS_EPS, aggregate


def naive_aggregate(sources, query, w, eps=RMS_EPS):
    """Eq. 5 written out token by token in float64."""
    N = len(sources)
    B, T, D = sources[0].shape
    h = torch.zeros(B, T, D, dtype=torch.float64)
    alpha = torch.zeros(N, B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            if query.dim() == 1:
                q = query
            elif query.dim() == 2:
                q = query[b]
            else:
                q = query[b, t]
            logits = []
            for i in range(N):
                v = sources[i][b, t].double()
                k = w.double() * v / math.sqrt(float((v * v).mean()) + eps)  # k_i = RMSNorm(v_i)
                logits.append(float((q.double() * k).sum()) / math.sqrt(D))
            m = max(logits)
            e = [math.exp(s - m) for s in logits]
            z = sum(e)
            for i in range(N):
                alpha[i, b, t] = e[i] / z
                h[b, t] += alpha[i, b, t] * sources[i][b, t].double()
    return h, alpha


def make(N, B=2, T=3, D=8, query="static", seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    sources = [torch.randn(B, T, D, generator=g, dtype=dtype) * (i + 1) for i in range(N)]
    shape = {"static": (D,), "per-sample": (B, D), "per-token": (B, T, D)}[query]
    q = torch.randn(*shape, generator=g, dtype=dtype) * 3
    w = 1 + 0.5 * torch.randn(D, generator=g, dtype=dtype)
    return sources, q, w


@pytest.mark.parametrize("query", ["static", "per-sample", "per-token"])
@pytest.mark.parametrize("N", [1, 2, 5])
def test_reference_equals_naive_loop(query, N):
    sources, q, w = make(N, query=query)
    h, alpha = aggregate(sources, q, w, return_alpha=True)
    h_ref, alpha_ref = naive_aggregate(sources, q, w)
    # the reference computes in fp32 internally; compare at fp32 precision
    torch.testing.assert_close(alpha.double(), alpha_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h.double(), h_ref, rtol=1e-5, atol=1e-5)


def test_weights_are_a_softmax_and_zero_query_is_uniform():
    sources, q, w = make(4)
    _, alpha = aggregate(sources, q, w, return_alpha=True)
    torch.testing.assert_close(alpha.sum(0), torch.ones_like(alpha[0]))
    assert (alpha > 0).all()
    h0, a0 = aggregate(sources, torch.zeros_like(q), w, return_alpha=True)
    torch.testing.assert_close(a0, torch.full_like(a0, 0.25))
    torch.testing.assert_close(h0, sum(sources) / 4, rtol=1e-5, atol=1e-6)


def test_key_normalisation_makes_weights_scale_invariant():
    """k_i = RMSNorm(v_i): scaling a source changes its value, not its weight."""
    sources, q, w = make(3)
    _, a = aggregate(sources, q, w, return_alpha=True)
    _, a2 = aggregate([sources[0] * 100, sources[1], sources[2] * 0.5], q, w, return_alpha=True)
    torch.testing.assert_close(a, a2, rtol=1e-5, atol=1e-6)


def test_saturated_logits_pick_one_source():
    sources, q, w = make(3, query="per-token")
    big = 1e4 * q
    h, alpha = aggregate(sources, big, w, return_alpha=True)
    assert torch.isfinite(h).all()
    top = alpha.argmax(0)
    picked = torch.stack(sources)[top, torch.arange(2)[:, None], torch.arange(3)[None]]
    torch.testing.assert_close(h, picked, rtol=1e-4, atol=1e-4)


def test_zero_source_rows_are_finite():
    sources, q, w = make(3)
    sources[1] = torch.zeros_like(sources[1])
    h, alpha = aggregate(sources, q, w, return_alpha=True)
    assert torch.isfinite(h).all() and torch.isfinite(alpha).all()


def test_gradients_match_naive_autograd():
    sources, q, w = make(3, query="per-token")
    leaves = [s.clone().requires_grad_() for s in sources] + [q.clone().requires_grad_(), w.clone().requires_grad_()]
    h = aggregate(leaves[:3], leaves[3], leaves[4])
    (h * torch.linspace(-1, 1, h.numel(), dtype=h.dtype).reshape(h.shape)).sum().backward()
    grads = [p.grad.clone() for p in leaves]

    # Same function written with a stack, in float64, differentiated by autograd.
    leaves2 = [p.detach().clone().requires_grad_() for p in leaves]
    V = torch.stack(leaves2[:3])  # [N, B, T, D]
    k = leaves2[4] * V * torch.rsqrt(V.pow(2).mean(-1, keepdim=True) + RMS_EPS)
    a = torch.softmax((leaves2[3] * k).sum(-1) / math.sqrt(V.shape[-1]), dim=0)
    h2 = (a.unsqueeze(-1) * V).sum(0)
    (h2 * torch.linspace(-1, 1, h2.numel(), dtype=h2.dtype).reshape(h2.shape)).sum().backward()
    for g1, p2 in zip(grads, leaves2):
        torch.testing.assert_close(g1, p2.grad, rtol=1e-4, atol=1e-5)


def test_bf16_inputs_give_bf16_output_close_to_fp32():
    sources, q, w = make(4, dtype=torch.float32)
    h32 = aggregate(sources, q, w)
    h16 = aggregate([s.bfloat16() for s in sources], q.bfloat16(), w.bfloat16())
    assert h16.dtype == torch.bfloat16
    torch.testing.assert_close(h16.float(), h32, rtol=2e-2, atol=3e-2)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda s, q, w: ([], q, w), "empty"),
        (lambda s, q, w: ([s[0], s[1][:, :2]], q, w), "source 1 has shape"),
        (lambda s, q, w: (s, q[:3], w), "query must be"),
        (lambda s, q, w: (s, q, w[:3]), "norm_weight"),
        (lambda s, q, w: ([x[0] for x in s], q, w), "must be \\[B, T, D\\]"),
    ],
)
def test_bad_shapes_raise_clear_errors(bad, message):
    sources, q, w = make(2)
    with pytest.raises(ValueError, match=message):
        aggregate(*bad(sources, q, w))


@pytest.mark.parametrize("query", ["static", "per-sample", "per-token"])
def test_normalised_sources_given_by_the_caller_give_the_same_aggregation(query):
    """A stream's cached rms_normalize(v_i) (fast path) against normalising on every read (slow path): outputs and
    gradients of sources, query and weight agree."""
    from dar.routing.aggregate import rms_normalize

    def run(cached):
        sources, q, w = make(4, B=3, T=5, D=16, query=query, dtype=torch.float32)
        for x in (*sources, q, w):
            x.requires_grad_(True)
        normed = [rms_normalize(v) for v in sources] if cached else None
        h, alpha = aggregate(sources, q, w, return_alpha=True, normed=normed)
        (h.square().sum() + (alpha * torch.arange(4.0)[:, None, None]).sum()).backward()
        return [h, alpha, *(x.grad for x in (*sources, q, w))]

    for fast, slow in zip(run(True), run(False)):
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


def stacked_aggregate(sources, query, w, eps=RMS_EPS):
    """Eq. 5 as one stacked einsum (the slow form: stacks the sources), differentiable, for gradient checks."""
    V = torch.stack(sources)  # [N, B, T, D]
    K = w * V * torch.rsqrt(V.pow(2).mean(-1, keepdim=True) + eps)
    q = query if query.dim() != 2 else query[:, None, :]
    alpha = torch.softmax((K * q).sum(-1) / math.sqrt(V.shape[-1]), dim=0)  # [N, B, T]
    return torch.einsum("nbt,nbtd->btd", alpha, V)


@pytest.mark.parametrize("query", ["static", "per-sample", "per-token"])
def test_gradients_equal_the_stacked_form(query):
    """The per-source matrix-vector / multiply-sum logits and the addcmul sum have the stacked form's gradients."""
    sources, q, w = make(5, B=3, T=4, D=16, query=query, dtype=torch.float32)
    leaves = [t.clone().requires_grad_() for t in [*sources, q, w]]
    copies = [t.clone().requires_grad_() for t in [*sources, q, w]]
    g = torch.randn(3, 4, 16)
    (aggregate(leaves[:5], leaves[5], leaves[6]) * g).sum().backward()
    (stacked_aggregate(copies[:5], copies[5], copies[6]) * g).sum().backward()
    for a, b in zip(leaves, copies):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
