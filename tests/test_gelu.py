"""The sigmoid form of GELU(tanh) against F.gelu: forward, backward, the SiT MLP that uses it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from conftest import randomize, tiny_model
from dar.models.gelu import gelu_tanh

# every regime: deep negative tail (output -> 0), the bend, large positive (output -> x)
X = torch.cat([torch.linspace(-30, 30, 2001), torch.randn(4000) * 3])


def test_matches_f_gelu_tanh_in_float64_to_rounding():
    x = X.double()
    torch.testing.assert_close(gelu_tanh(x), F.gelu(x, approximate="tanh"), rtol=1e-12, atol=1e-14)


def test_float32_forward_and_backward_are_as_accurate_as_f_gelu_tanh():
    """Against the float64 truth, the float32 errors stay within a few times F.gelu's own (both are rounding)."""
    truth = X.double().requires_grad_()
    F.gelu(truth, approximate="tanh").backward(torch.ones_like(truth))
    errors = {}
    for name, fn in (("ours", gelu_tanh), ("torch", lambda v: F.gelu(v, approximate="tanh"))):
        x = X.clone().requires_grad_()
        y = fn(x)
        y.backward(torch.ones_like(y))
        errors[name] = ((y.double() - F.gelu(X.double(), approximate="tanh")).abs().max().item(),
                        (x.grad.double() - truth.grad).abs().max().item())  # fmt: skip
    assert errors["ours"][0] <= 4 * errors["torch"][0] + 1e-7, errors
    assert errors["ours"][1] <= 4 * errors["torch"][1] + 1e-7, errors
    assert max(errors["ours"]) < 1e-5, errors


def test_backward_is_the_derivative():
    x = (torch.randn(64, dtype=torch.float64) * 3).requires_grad_()
    assert torch.autograd.gradcheck(gelu_tanh, (x,))


def test_other_dtypes_use_f_gelu_exactly():
    x = X.to(torch.bfloat16)
    assert torch.equal(gelu_tanh(x), F.gelu(x, approximate="tanh"))


def test_sit_mlp_is_fc2_gelu_tanh_fc1():
    model = tiny_model("residual")
    randomize(model)
    mlp = model.blocks[0].mlp
    h = torch.randn(2, 16, mlp.fc1.in_features)
    torch.testing.assert_close(mlp(h), mlp.fc2(F.gelu(mlp.fc1(h), approximate="tanh")), rtol=1e-6, atol=1e-6)
