"""Multi-process training with ``torchrun``: environment detection, DDP, samplers, rank-0 gates.

``torchrun --nproc_per_node N -m stemforge.cli.main train ...`` (or ``python -m
torch.distributed.run``) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address;
:func:`init` then joins the process group with ``nccl`` on GPUs and ``gloo`` on CPUs. Without those
variables everything here is a no-op and training runs in one process.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

import torch
from torch import distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler, Sampler, SequentialSampler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def detect() -> DistInfo:
    """Rank information from the torchrun environment (single process if absent)."""
    env = os.environ
    return DistInfo(rank=int(env.get("RANK", 0)), world_size=int(env.get("WORLD_SIZE", 1)),
                    local_rank=int(env.get("LOCAL_RANK", 0)))


def choose_device(info: DistInfo, requested: Optional[str] = None) -> torch.device:
    """``requested`` or the best available; with several GPUs, this rank's ``cuda:LOCAL_RANK``."""
    name = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(name)


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group (``nccl`` for CUDA, ``gloo`` otherwise) when running distributed."""
    if not info.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    logger.info("rank %d/%d joined the %s process group", info.rank, info.world_size, backend)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``model`` in :class:`DistributedDataParallel` when distributed, else unchanged."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def sampler(dataset: Dataset, info: DistInfo, seed: int) -> Sampler:
    """Each rank gets its own share of the examples (all of them in one process)."""
    if not info.enabled:
        return SequentialSampler(dataset)
    return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                              seed=seed, drop_last=True)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU for ``nccl``, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_across(value: float, info: DistInfo) -> float:
    """The mean of ``value`` over ranks."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size


def broadcast_flag(flag: bool, info: DistInfo) -> bool:
    """Rank 0's ``flag`` on every rank (keeps time-based decisions in step)."""
    if not info.enabled:
        return flag
    tensor = torch.tensor([int(flag)], dtype=torch.int64, device=_comm_device())
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def gather_objects(obj: object, info: DistInfo) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in one process)."""
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
