"""torch.distributed setup from the environment, kept outside the model code.

torchrun and submitit (through `submitit.helpers.TorchDistributedEnvironment().export()`)
both provide RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. With
WORLD_SIZE unset or 1 everything runs in one plain process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str = "auto") -> torch.device:
    """auto (cuda:LOCAL_RANK when CUDA is visible, else cpu) | cpu | cuda | cuda:N, or a ConfigError saying why not."""
    from dar.config import ConfigError

    local = int(os.environ.get("LOCAL_RANK", 0))
    if name == "auto":
        return torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} was asked for but no CUDA device is visible here; use --device cpu or auto")
        if ":" in name and int(os.environ.get("WORLD_SIZE", 1)) > 1:
            raise ConfigError(f"device: {name!r} would put every process on one GPU; use cuda (each process takes LOCAL_RANK)")
        index = int(name.split(":")[1]) if ":" in name else local
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} names GPU {index} but {torch.cuda.device_count()} are visible")
        return torch.device(f"cuda:{index}")
    return torch.device(name)


def init(device: str = "auto") -> DistInfo:
    """Initialise the process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world} but {key} is not set; launch with torchrun or through dar.launch")
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_ok(ok: bool) -> bool:
    """True on every process iff `ok` is true on every process (one all-reduce; just `ok` without a process group)."""
    if not dist.is_initialized():
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(flag)
    return flag.item() == 0


def same_on_all(value: int) -> bool:
    """True on every process iff every process passed the same integer."""
    if not dist.is_initialized():
        return True
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    lo, hi = torch.tensor([value], device=device, dtype=torch.long), torch.tensor([value], device=device, dtype=torch.long)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return lo.item() == hi.item()


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
