"""The training path's optimiser and EMA (dar/train/optim.py) against their per-tensor forms."""

from __future__ import annotations

import copy

import torch

from conftest import randomize, tiny_batch, tiny_model
from dar.train.optim import ema_update, load_state, make_optimizer


def train_steps(fused: bool, steps: int = 25):
    """`steps` AdamW steps and EMA updates of a tiny DAR model on a fixed sequence of gradients (the same for both
    forms: a model's own gradients would feed rounding differences back, and Adam amplifies those on parameters
    whose true gradient is zero, such as attention's key bias)."""
    model = tiny_model("dar-static-c2", depth=2)
    randomize(model)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = make_optimizer(model.parameters(), lr=1e-2, weight_decay=0.01, betas=(0.9, 0.99), fused=fused)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in model.parameters():
            p.grad = torch.randn(p.shape, generator=g) * 0.1
        opt.step()
        opt.zero_grad(set_to_none=True)
        if fused:
            ema_update(list(ema.parameters()), list(model.parameters()), 0.9)
        else:
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 0.1)
    return model, ema, opt


def test_fused_adamw_and_foreach_ema_follow_the_per_tensor_forms():
    (m_fast, e_fast, o_fast), (m_slow, e_slow, o_slow) = train_steps(True), train_steps(False)
    assert o_fast.defaults["fused"] and not o_slow.defaults["fused"]
    start = tiny_model("dar-static-c2", depth=2)
    randomize(start)
    moved = max((a - b).abs().max().item() for a, b in zip(m_fast.parameters(), start.parameters()))
    assert moved > 0.05, "the steps moved the weights (else equality says nothing)"
    for (name, a), b in zip(m_fast.state_dict().items(), m_slow.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for (name, a), b in zip(e_fast.state_dict().items(), e_slow.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_ema_update_is_exactly_the_per_tensor_lerp():
    g = torch.Generator().manual_seed(0)
    ema = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]
    model = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]
    want = [e.clone().lerp_(m, 1 - 0.97) for e, m in zip(ema, model)]
    ema_update(ema, model, 0.97)
    for a, b in zip(ema, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_checkpoint_of_one_optimizer_form_resumes_under_the_other():
    """The fused and per-tensor AdamW keep the same state: a state dict saved by one loads into the other and the
    next step agrees."""
    model, _, fast = train_steps(True, steps=3)
    slow = make_optimizer(model.parameters(), lr=1e-2, weight_decay=0.01, betas=(0.9, 0.99), fused=False)
    load_state(slow, copy.deepcopy(fast.state_dict()))  # load_state_dict keeps the tensors it is given
    twin = copy.deepcopy(model)
    fast_twin = make_optimizer(twin.parameters(), lr=1e-2, weight_decay=0.01, betas=(0.9, 0.99), fused=True)
    load_state(fast_twin, copy.deepcopy(fast.state_dict()))
    assert fast_twin.param_groups[0]["fused"] and not slow.param_groups[0]["fused"], "each keeps its own implementation"
    for m, opt in ((model, slow), (twin, fast_twin)):
        x, t, y = tiny_batch(m, batch=4, seed=99)
        m(x, t, y).square().mean().backward()
        opt.step()
    assert max(len(s) for s in slow.state.values()) == 3  # step, exp_avg, exp_avg_sq carried over
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
