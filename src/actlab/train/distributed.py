"""Helpers for multi-process data-parallel training (``torchrun`` + DistributedDataParallel).

Launch a training script with ``torchrun --nproc_per_node=K script.py`` (or
``python -m torch.distributed.run ...``) and call ``train_model(..., distributed=True)``: the
process group is initialised from the ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` /
``MASTER_ADDR`` / ``MASTER_PORT`` variables torchrun sets, with the ``gloo`` backend on CPU and
``nccl`` on CUDA (one GPU per process, ``cuda:LOCAL_RANK``).

Batch sharding: every process draws the same permutation (same seed) and forms the same GLOBAL
batch of ``batch_size`` samples; process ``r`` of ``K`` trains on the contiguous slice
:func:`shard_bounds` ``(B, r, K)`` of it, so the global batch equals ``cfg.batch_size`` whatever
``K`` is. Only rank 0 writes checkpoints, calls ``on_epoch`` and shows progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "env_world",
    "init_distributed",
    "dist_info",
    "is_main_process",
    "shard_bounds",
    "all_reduce_sum",
    "barrier",
    "cleanup_distributed",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """True when more than one process takes part (collectives are needed)."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def env_world() -> DistInfo:
    """Rank, world size and local rank from the environment (single process when unset)."""
    info = DistInfo(
        rank=_env_int("RANK", 0),
        world_size=_env_int("WORLD_SIZE", 1),
        local_rank=_env_int("LOCAL_RANK", 0),
    )
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise ValueError(f"invalid RANK={info.rank} for WORLD_SIZE={info.world_size}")
    return info


def init_distributed(device_type: str = "cpu", backend: str | None = None) -> DistInfo:
    """Initialise the default process group from the environment if needed; return the world.

    ``backend`` defaults to ``"nccl"`` for ``device_type="cuda"`` and ``"gloo"`` otherwise. With
    ``WORLD_SIZE`` unset or 1 nothing is initialised and a single-process world is returned.
    On CUDA the current device is set to ``cuda:LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        return dist_info()
    info = env_world()
    if not info.active:
        return info
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build")
    if backend is None:
        backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(
        backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size
    )
    return info


def dist_info() -> DistInfo:
    """The world of an initialised process group, else the single-process world."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return DistInfo()


def is_main_process() -> bool:
    """True on rank 0 (and in a single process)."""
    return dist_info().is_main


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(start, stop)`` of rank ``rank``'s contiguous share of ``n`` items.

    The first ``n mod K`` ranks get one item more; the shares tile ``range(n)`` in rank order.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world size {world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over processes in place (no-op in a single process); returns ``t``."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def cleanup_distributed() -> None:
    """Destroy the default process group if one is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
