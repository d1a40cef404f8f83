"""Sharding a batch run over torchrun ranks (one process per device, as in training).

Without ``WORLD_SIZE`` (or with 1) everything here is a no-op. Under torchrun the ranks meet in a
gloo process group (used only to share the plan and to wait for each other: the models never talk
across ranks), rank 0 scans IN_DIR and broadcasts the plan, each rank takes its share of the series
(longest-processing-time first, by voxels, so shares are balanced and deterministic), runs on
``cuda:LOCAL_RANK`` when CUDA is there (else the CPU), and rank 0 writes the one merged report after a
final barrier. The manifest in OUT_DIR (SQLite) is where ranks' results meet.
"""
from __future__ import annotations

import datetime
import heapq
import os
from dataclasses import dataclass
from typing import Any

BARRIER_TIMEOUT = datetime.timedelta(days=7)  # ranks wait for the slowest one at the end


@dataclass
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init() -> Rank:
    """Read torchrun's environment; start the gloo group when there are several ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Rank()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return Rank(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def device_for(rank: Rank, device: str) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` when CUDA is there."""
    spec = str(device).lower()
    if not rank.enabled or spec not in ("auto", "cuda"):
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{rank.local_rank % torch.cuda.device_count()}"
    return "cpu" if spec == "auto" else device


def assign(costs: list[int], world: int) -> list[int]:
    """Rank of each job: longest first onto the least-loaded rank (ties: lowest rank)."""
    heap = [(0, r) for r in range(world)]
    out = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, r = heapq.heappop(heap)
        out[i] = r
        heapq.heappush(heap, (load + costs[i], r))
    return out


def broadcast(value: Any, rank: Rank) -> Any:
    if not rank.enabled:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, rank: Rank) -> list[Any]:
    if not rank.enabled:
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * rank.world
    dist.all_gather_object(out, value)
    return out


def shutdown(rank: Rank) -> None:
    if rank.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
