"""PyTorch DDP plumbing for ``fit``: detect a process group or a torchrun launch, nothing home-made."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistContext", "setup_distributed", "teardown_distributed"]


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``world_size == 1`` and ``enabled=False`` outside DDP."""

    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # fit created the process group, so fit destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (identity outside DDP)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def setup_distributed(device: str) -> tuple[DistContext, torch.device]:
    """Join the DDP run this process belongs to, if any, and pick its device.

    An already initialised default process group is used as is. Otherwise, torchrun's environment
    (``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) starts one with
    ``init_process_group`` (NCCL for CUDA devices, gloo for the CPU). Under DDP a CUDA ``device`` becomes
    ``cuda:LOCAL_RANK``.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"TrainConfig.device={device!r} but torch.cuda.is_available() is False")
    owns = False
    if dist.is_available() and dist.is_initialized():
        enabled = dist.get_world_size() > 1
    elif dist.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        enabled, owns = True, True
    else:
        return DistContext(), dev
    if not enabled:
        return DistContext(), dev
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    ctx = DistContext(True, dist.get_rank(), dist.get_world_size(), local_rank, owns)
    return ctx, dev


def teardown_distributed(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
