"""The process group of a run started by ``torchrun``: which rank this is, and the collectives training needs.

A plain ``python``/console-script run is world size 1 and touches no ``torch.distributed`` state, so the
single-process path is exactly what it was. Under ``torchrun --nproc_per_node=N`` (or a SLURM/elastic launch
that sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), the group uses NCCL on GPUs and gloo
on CPUs.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(minutes=10)  # a rank stuck this long in a collective fails instead of hanging


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs, checkpoints and writes the model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched() -> Ranks:
    """The ranks ``torchrun`` gave this process (world size 1 without it)."""
    return Ranks(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def init() -> Ranks:
    """Join the process group when launched with more than one rank; idempotent."""
    ranks = launched()
    if ranks.distributed and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group(backend=backend, timeout=TIMEOUT)
    return ranks


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def all_gather(ranks: Ranks, tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (same shape and dtype on all), in rank order, on every rank."""
    if not ranks.distributed:
        return [tensor]
    out = [torch.empty_like(tensor) for _ in range(ranks.world_size)]
    dist.all_gather(out, tensor)
    return out


def broadcast_text(ranks: Ranks, text: str, limit: int = 4096) -> str:
    """Rank 0's ``text`` (UTF-8, at most ``limit`` bytes) on every rank: e.g. why rank 0 refused to start."""
    if not ranks.distributed:
        return text
    buffer = torch.zeros(limit + 1, dtype=torch.uint8)
    data = text.encode()[:limit]
    if ranks.is_main and data:
        buffer[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    dist.broadcast(buffer, src=0)
    return bytes(buffer[:limit].tolist()).rstrip(b"\0").decode(errors="replace")
