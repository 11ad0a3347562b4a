"""GELU with the tanh approximation (SiT's MLP activation), with a faster exact form for CPU tensors.

    gelu(x) = 0.5 x (1 + tanh(c (x + 0.044715 x^3))),  c = sqrt(2 / pi)
            = x sigmoid(2 c (x + 0.044715 x^3))               (1 + tanh(z) = 2 sigmoid(2 z))

The two lines are the same function. PyTorch's CPU kernels evaluate tanh several times slower than sigmoid,
so on a CPU the second line (four elementwise passes forward, five backward) takes about half the time of
`F.gelu(x, approximate="tanh")`, forward and backward, and agrees with it to float rounding
(tests/test_sit.py). GELU was a sixth of a SiT-T/2 training step and a fifth of a sampler forward on one core.
Every other device keeps `F.gelu`, whose fused kernels are the fast path there.

Backward of x s(u), s = sigmoid, u = a x + b x^3 (a = 2c, b = 0.044715 a):
    d/dx = s + x s (1 - s) (a + 3 b x^2)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

A = 2 * math.sqrt(2 / math.pi)
B = 0.044715 * A


def _scalar(value: float, like: Tensor) -> Tensor:
    return torch.tensor(value, dtype=like.dtype, device=like.device)


class _SigmoidGelu(torch.autograd.Function):
    # Each op is a pass over activations that are often out of cache by the backward: fused forms (addcmul) first.
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        s = torch.addcmul(_scalar(A, x), x, x, value=B).mul_(x).sigmoid_()  # s(u), u = x (a + b x^2): 3 passes
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        x, s = ctx.saved_tensors
        d = torch.addcmul(_scalar(A, x), x, x, value=3 * B).mul_(x)  # x u'
        d = torch.addcmul(s, d, torch.addcmul(s, s, s, value=-1))  # s + x u' (s - s^2)
        return d.mul_(grad)


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU(tanh approximation) of x: the sigmoid form on CPU float tensors, `F.gelu` elsewhere."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return _SigmoidGelu.apply(x)
    return F.gelu(x, approximate="tanh")


class GELUTanh(nn.Module):
    """nn.GELU(approximate="tanh") through gelu_tanh (no parameters: checkpoints are unchanged)."""

    def forward(self, x: Tensor) -> Tensor:
        return gelu_tanh(x)
