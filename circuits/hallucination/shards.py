"""Spreading an evaluation over processes with ``torchrun``: who takes which items, and the group.

Context:
    Launched by ``torchrun --nproc_per_node N -m probe.cli vlm eval ...`` (or
    ``python -m torch.distributed.run``), each process reads its rank and the world size from
    the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); without them it is the
    only process (world 1) and no process group is made. Process ``rank`` takes the items at
    positions ``i % world == rank`` and writes its own shard file; after a barrier, rank 0 merges
    the shards. The group uses gloo on CPU and NCCL on CUDA (each process on ``cuda:LOCAL_RANK``).

    The barrier waits for the slowest process, which may take hours on a large split, so the
    group's timeout is :data:`GROUP_TIMEOUT` rather than torch's default of minutes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from probe.errors import InputError

GROUP_TIMEOUT = timedelta(hours=24)

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """This process's place in the run.

    Attributes:
        rank: from 0 to ``world - 1``; rank 0 merges and reports.
        world: the number of processes.
        local_rank: the rank on this machine (picks the GPU).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if not (self.world >= 1 and 0 <= self.rank < self.world and self.local_rank >= 0):
            raise InputError(f"bad torchrun environment: RANK {self.rank}, WORLD_SIZE {self.world}, "
                             f"LOCAL_RANK {self.local_rank}; launch with torchrun or without these variables")

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """The items this process answers: those at positions ``i % world == rank``."""
        return [item for i, item in enumerate(items) if i % self.world == self.rank]


def shard_from_env(env: Mapping[str, str] = os.environ) -> Shard:
    """The shard torchrun's variables describe; world 1 when they are absent."""
    try:
        return Shard(rank=int(env.get("RANK", 0)), world=int(env.get("WORLD_SIZE", 1)),
                     local_rank=int(env.get("LOCAL_RANK", 0)))
    except ValueError:
        raise InputError("bad torchrun environment: RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None


def rank_device(device: str, shard: Shard) -> str:
    """The device of this process: a bare ``cuda`` becomes ``cuda:LOCAL_RANK`` when sharded."""
    return f"cuda:{shard.local_rank}" if device == "cuda" and shard.world > 1 else device


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


@contextmanager
def process_group(shard: Shard, device: str) -> Iterator[None]:
    """The torch.distributed group of the run while the block runs (nothing for world 1)."""
    if shard.world == 1:
        yield
        return
    import torch.distributed as dist

    backend = backend_for(device)
    if backend == "nccl":
        import torch

        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=GROUP_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(shard: Shard, device: str) -> None:
    """Wait until every process got here (nothing for world 1)."""
    if shard.world == 1:
        return
    import torch.distributed as dist

    if backend_for(device) == "nccl":
        dist.barrier(device_ids=[shard.local_rank])
    else:
        dist.barrier()
