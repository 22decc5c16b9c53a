"""Data-parallel training under ``torchrun``: the same entry, N processes, one model.

``torchrun --nproc_per_node N -m medstation train-detector ...`` (or ``train``) sets
``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; :func:`setup` then joins the process group
(NCCL on CUDA, Gloo on CPU, and Gloo on CUDA too in a bundle built without NCCL:
``packaging/slim.py``) and each process trains on its own batches (its own
random stream) with gradients averaged by ``DistributedDataParallel``. Rank 0
alone writes progress, validates, checkpoints and saves the model; the others
only compute. Without ``torchrun`` nothing changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def stubbed_libraries() -> set[str]:
    """Libraries a trimmed bundle replaced by stubs (``packaging/slim.py`` writes
    ``medstation-trim.json`` next to them); empty in a source tree."""
    import json
    import sys

    marker = Path(getattr(sys, "_MEIPASS", "")) / "medstation-trim.json" if getattr(sys, "frozen", False) \
        else None
    if marker is None or not marker.is_file():
        return set()
    try:
        return set(json.loads(marker.read_text()).get("stubbed", []))
    except (OSError, ValueError):
        return set()


def backend(cuda: bool) -> str:
    """NCCL between GPUs where it is there, else Gloo (which reduces CUDA tensors too, more slowly)."""
    return "nccl" if cuda and not any(s.startswith("libnccl") for s in stubbed_libraries()) else "gloo"


def setup(device: str = "cpu") -> World:
    """Join the process group when started by ``torchrun`` (a no-op otherwise)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend(cuda))
    return World(rank, size, local)


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """The model as the trainer steps it: wrapped in DDP when distributed (the caller keeps the
    plain module to save)."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else world.local_rank] if device.type == "cuda" else None
    # the detector's FPN computes a stride-16 output it does not use: DDP must not wait for its gradient
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def teardown(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
