"""Distributed data parallel (DDP) plumbing: one entry point, 1 or N processes.

``torchrun --nproc_per_node=N -m stages.train ...`` sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; without them the same code runs as a single
process and every helper here is a no-op. Backends: ``nccl`` for CUDA, ``gloo``
on CPU. Only rank 0 logs metrics and writes checkpoints/outputs; the others
wait at a barrier so nobody reads a half-written file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from signflow.device import select_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job, and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Read the torchrun environment and join the process group (if any)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_preference, setting="train.device", local_rank=local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        log.info("process group: backend=%s rank=%d/%d device=%s", backend, rank, world_size, device)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP-wrap ``model`` (already on ``ctx.device``) when running distributed.

    DDP broadcasts rank 0's initial weights, so all ranks start identical.
    """
    if not ctx.enabled:
        return model
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("nothing to train: every parameter is frozen")
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a float64 tensor of counters over ranks (metrics are sums, divided afterwards)."""
    if not ctx.enabled:
        return values
    # gloo and nccl both reduce float64 on their own device type.
    reduced = values.to(ctx.device if ctx.device.type == "cuda" else "cpu", torch.float64).clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.cpu()


def cleanup(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
