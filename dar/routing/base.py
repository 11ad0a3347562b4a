"""The routing interface that the shared SiT block stack calls between sublayers.

The block stack knows nothing about how sublayer inputs are formed. For every
forward pass the routing opens a `Stream`; each sublayer l = 1..L (attention
and MLP sublayers counted separately, paper Sec. 4.1) does

    h_l = stream.read(l)             # what enters sublayer l
    stream.write(l, v_l)             # v_l = f_l(h_l; t), the gated sublayer output

and the prediction head takes `stream.read_final()`. The residual stream
(Eq. 1-2), U-Net-like skips (Eq. 3-4) and DAR (Eq. 5-7, 11) are three
implementations of this one interface.

Observers see what the stream computes (aggregated inputs, sublayer outputs,
routing weights) without changing it; the diagnostics and the training
metrics use them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from torch import Tensor, nn


class Observer:
    """Receives the tensors a stream computes. Default: ignore everything.

    `alpha` is [N, B, T] (the softmax weights over `sources`, Eq. 5) for DAR
    reads and None for routings without weights. Tensors are the live ones
    (not detached), so an observer may call `retain_grad()` on them.
    """

    def on_read(self, l: int, h: Tensor, sources: tuple[int, ...] | None, alpha: Tensor | None) -> None:
        pass

    def on_write(self, l: int, v: Tensor) -> None:
        pass

    def on_final(self, h: Tensor, sources: tuple[int, ...] | None, alpha: Tensor | None) -> None:
        pass

    def on_mix(self, l: int, maps: dict[str, Tensor]) -> None:
        """The mixing maps of a multi-stream routing at sublayer l (Hyper-Connections, mHC), by name, each
        [..., n] or [..., n, n] with per-token maps [B, T, ...]; they mix the n copies of the stream, not sources."""


class MixRecorder(Observer):
    """Keeps the token-averaged mixing maps of Hyper-Connections / mHC: `maps[l][name]`, [B, ...] (static maps [...])."""

    def __init__(self) -> None:
        self.maps: dict[int, dict[str, Tensor]] = {}

    def on_mix(self, l, maps):
        self.maps[l] = {
            k: (v.detach().float().mean(dim=1) if v.dim() >= 3 else v.detach().float()).cpu() for k, v in maps.items()
        }


class AlphaRecorder(Observer):
    """Keeps the token-averaged routing weights of every DAR aggregator.

    `weights[l]` = (source indices, alpha averaged over tokens, [B, N]),
    with l = 1..L for sublayer aggregators and l = "final" for the head's.
    """

    def __init__(self) -> None:
        self.weights: dict[int | str, tuple[tuple[int, ...], Tensor]] = {}

    def on_read(self, l, h, sources, alpha):
        if alpha is not None:
            self.weights[l] = (sources, alpha.detach().float().mean(dim=-1).transpose(0, 1).cpu())

    def on_final(self, h, sources, alpha):
        if alpha is not None:
            self.weights["final"] = (sources, alpha.detach().float().mean(dim=-1).transpose(0, 1).cpu())


class Stream:
    """One forward pass worth of routing state."""

    def __init__(self, routing: Routing) -> None:
        self.routing = routing
        self.observers = routing.observers
        self.num_sublayers = routing.num_sublayers
        self._next = 1  # the sublayer whose input is read next

    def read(self, l: int) -> Tensor:
        if l != self._next:
            raise RuntimeError(f"routing: sublayer {l} read out of order (expected {self._next})")
        h, sources, alpha = self._read(l)
        for obs in self.observers:
            obs.on_read(l, h, sources, alpha)
        return h

    def write(self, l: int, v: Tensor) -> None:
        if l != self._next:
            raise RuntimeError(f"routing: sublayer {l} written out of order (expected {self._next})")
        self._write(l, v)
        self._next += 1
        for obs in self.observers:
            obs.on_write(l, v)

    def read_final(self) -> Tensor:
        if self._next != self.num_sublayers + 1:
            raise RuntimeError(f"routing: final read after {self._next - 1} of {self.num_sublayers} sublayers")
        h, sources, alpha = self._read_final()
        for obs in self.observers:
            obs.on_final(h, sources, alpha)
        return h

    def value_mixer(self, l: int) -> Callable[[Tensor], Tensor] | None:
        """A map applied to the attention values of sublayer l ([B, heads, T, D/heads]) before attention, or None.

        Only routings that reach inside attention (value residual learning, dar/routing/value.py) return one."""
        return None

    # Implemented by each routing's stream.
    def _read(self, l: int) -> tuple[Tensor, tuple[int, ...] | None, Tensor | None]:
        raise NotImplementedError

    def _write(self, l: int, v: Tensor) -> None:
        raise NotImplementedError

    def _read_final(self) -> tuple[Tensor, tuple[int, ...] | None, Tensor | None]:
        raise NotImplementedError


class Routing(nn.Module):
    """Base class of the routing modules. Subclasses define `start`."""

    #: The explicit-injection DAR variant needs e(t) = 0 at init (Sec. 4.2).
    zero_init_t_embedder: bool = False

    def __init__(self, dim: int, depth: int) -> None:
        super().__init__()
        self.dim = dim
        self.depth = depth
        self.num_sublayers = 2 * depth
        self.observers: list[Observer] = []

    def reset_parameters(self) -> None:
        """Initialise routing parameters; called after the backbone's init."""

    def start(self, x0: Tensor, t_emb: Tensor) -> Stream:
        """Open a stream for one forward pass. x0: [B, T, D] input embedding (v_0);
        t_emb: [B, D] timestep embedding e(t)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def observe(self, observer: Observer) -> Iterator[Observer]:
        """Attach an observer for the duration of a `with` block."""
        self.observers.append(observer)
        try:
            yield observer
        finally:
            self.observers.remove(observer)
