"""FLOPs of one model forward, counted op by op on the meta device (nothing is allocated).

Matrix products, convolutions and attention use PyTorch's own FLOP formulas
(torch.utils.flop_counter: 2 per multiply-add). The routing zoo's overheads are
mostly elementwise (weighted sums over sources, norms, softmaxes over depth),
which those formulas ignore, so every other op is counted too:

    pointwise op (tagged pointwise)      1 FLOP per output element
    reduction (tagged reduction)         1 FLOP per input element
    softmax / log-softmax / logsumexp    5 FLOPs per input element (max, subtract, exp, sum, divide)
    layer / RMS norm                     5 FLOPs per input element
    views, copies, concatenation         0

This is an op count, not a hardware measurement: it ranks methods by arithmetic and
gives "extra FLOPs over the residual model" a common definition. The numbers printed by
`python -m dar params` come from here.
"""

from __future__ import annotations

import copy
import math

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

aten = torch.ops.aten

FIVE_PER_ELEMENT = {
    aten._softmax,
    aten._log_softmax,
    aten.logsumexp,
    aten.native_layer_norm,
    aten._fused_rms_norm,
}


def _numel(x) -> int:
    return math.prod(x.shape) if isinstance(x, torch.Tensor) else 0


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        if packet in flop_registry:
            self.flops += int(flop_registry[packet](*args, **kwargs, out_val=out))
        elif packet in FIVE_PER_ELEMENT:
            self.flops += 5 * _numel(args[0])
        elif torch.Tag.reduction in func.tags:
            self.flops += _numel(args[0])
        elif torch.Tag.pointwise in func.tags:
            first = out if isinstance(out, torch.Tensor) else (out[0] if isinstance(out, tuple | list) and out else None)
            self.flops += _numel(first)
        return out


def forward_flops(model: torch.nn.Module, batch: int = 1) -> int:
    """FLOPs of one forward of `model` (a SiT built on any device) on `batch` samples, counted on meta tensors."""
    device = torch.device("meta")
    if next(model.parameters()).device.type != "meta":
        model = copy.deepcopy(model).to(device)
    x = torch.empty(batch, model.in_channels, model.input_size, model.input_size, device=device)
    t = torch.empty(batch, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    was = model.training
    model.eval()
    counter = _Counter()
    try:
        with torch.no_grad(), counter:
            model(x, t, y)
    finally:
        model.train(was)
    return counter.flops
