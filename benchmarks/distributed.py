"""Data-parallel runs under torchrun: the process group, which process writes, and the few collectives a run uses.

Without torchrun's environment every helper is the identity and no process group exists, so a plain
`python -m benchmarks bench` takes the single-process path unchanged and gives bit-identical results.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from riscore.errors import UserError

T = TypeVar("T")
TORCHRUN_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


def launched() -> bool:
    """Started by torchrun (or a launcher that sets the same environment)."""
    return all(key in os.environ for key in TORCHRUN_ENV)


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """The process that writes records and checkpoints and talks to the user: rank 0, also (by torchrun's
    RANK) before the process group is up and after it is gone."""
    if active():
        return rank() == 0
    return not launched() or os.environ["RANK"] == "0"  # a lone RANK (some job schedulers set it) is not torchrun


@contextmanager
def process_group(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the duration; yields the device this process computes on.

    On CUDA each process takes cuda:LOCAL_RANK (NCCL), on CPU the group uses gloo. Outside torchrun, or
    when the caller already set a group up, nothing is initialised or torn down here.
    """
    if not launched():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    owner = not active()
    if owner:
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    try:
        yield device
    finally:
        if owner:
            dist.destroy_process_group()


def local_batch_size(batch_size: int, world: int | None = None) -> int:
    """Each process's share of the suite's batch, which stays the global batch whatever the process count."""
    world = world_size() if world is None else world
    if batch_size % world:
        raise UserError(f"batch_size {batch_size} is the global batch and does not split over {world} processes; "
                        f"use a multiple of {world} (--budget batch_size=...) or another process count")
    return batch_size // world


def shard(size: int) -> range:
    """This process's contiguous block of range(size): the blocks in rank order are the single-process order."""
    return range(size * rank() // world_size(), size * (rank() + 1) // world_size())


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """With several processes, `model` in DistributedDataParallel (gradients averaged in backward) with
    BatchNorm over the global batch; with one, `model` itself."""
    if world_size() == 1:
        return model
    return DistributedDataParallel(global_batch_norm(model, device),
                                   device_ids=[device] if device.type == "cuda" else None)


def global_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm layers that train on the statistics of the global batch, as with one process.

    On CUDA they become torch's SyncBatchNorm (which exchanges statistics only). torch has no CPU version, so
    on CPU each training BatchNorm gathers every process's input, normalises the whole batch exactly as one
    process would, and keeps its own part: more traffic, fine for the small CPU runs that use it.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.register_forward_pre_hook(_gather_input)
            module.register_forward_hook(_own_output)
    return model


class _GatherBatch(torch.autograd.Function):
    """Every process's part of a batch, concatenated in rank order. Through the batch statistics each process's
    loss reaches every part, so the backward sums a part's gradient over processes."""

    @staticmethod
    def forward(ctx, part: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(part) for _ in range(world_size())]
        dist.all_gather(parts, part.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)  # reduced in place: not autograd's buffer
        dist.all_reduce(grad)
        return grad.chunk(world_size())[rank()]


def _gather_input(module: nn.Module, args: tuple) -> tuple | None:
    return (_GatherBatch.apply(args[0]),) if module.training else None


def _own_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    if not module.training:
        return None
    local = output.shape[0] // world_size()
    return output[rank() * local:(rank() + 1) * local]  # one view (not chunk's several): in-place ReLUs follow


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean over processes of a tensor each holds (a NaN on any process makes it NaN everywhere)."""
    if world_size() == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world_size()


def gather(obj: T) -> list[T]:
    """Every process's `obj` (picklable), in rank order."""
    if world_size() == 1:
        return [obj]
    out: list[T] = [obj] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()
