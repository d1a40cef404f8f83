"""One process per device under ``torchrun``: DDP over NCCL (CUDA) or gloo (CPU).

Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) everything here is a no-op and training runs in one
process on ``--device``. Under ``torchrun`` each process takes ``cuda:LOCAL_RANK`` when CUDA is
available and not refused with ``--device cpu``; data are sharded by rank; only rank 0 logs and writes
checkpoints, and every rank waits at a barrier after each save.
"""
from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ldm_med.errors import InputError
from ldm_med.utils import resolve_device


@dataclass
class DistContext:
    """Where this process stands: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistContext:
    """Read torchrun's environment, pick the device and start the process group when needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    spec = str(device).lower()
    if spec.startswith("cuda") or (spec == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("--device cuda under torchrun, but CUDA is not available; use --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices: "
                             "start at most one process per GPU (--nproc-per-node)")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    elif spec in ("cpu", "auto"):
        dev, backend = torch.device("cpu"), "gloo"
    else:
        raise InputError(f"--device {device!r} is not supported under torchrun; use auto, cuda or cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shutdown(ctx: DistContext) -> None:
    """End a successful run: every rank meets at a barrier, then the process group is destroyed.

    Without the barrier a rank that finishes first tears down its gloo pairs while rank 0 is still
    writing, and rank 0 can abort at exit ("terminate called without an active exception"). After an
    error nothing is torn down here: a collective with a failed peer would hang, and torchrun stops
    the other ranks anyway. The garbage collector runs first: the DDP wrappers sit in reference cycles
    (rank 0 still held two when ``train`` returned), and freed only at interpreter exit they would tear
    down their share of the process group after it was destroyed.
    """
    if ctx.enabled and dist.is_initialized():
        gc.collect()
        barrier(ctx)
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def wrap(module: nn.Module, ctx: DistContext) -> nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else ``module``."""
    if not ctx.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def broadcast_object(value: Any, ctx: DistContext, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank (JSON-like values)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src, device=ctx.device if ctx.device.type == "cuda" else None)
    return box[0]


def gather_object(value: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``value``, in rank order (on every rank)."""
    if not ctx.enabled:
        return [value]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def weights_digest(model: nn.Module) -> str:
    """sha256 of a network's state dict (names, dtypes, shapes and bytes): equal digests, equal weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
