"""Training on several processes with ``torchrun`` (DistributedDataParallel).

``medsegai train ... --distributed`` started by ``torchrun --nproc_per_node N`` (or any launcher
that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``): gloo on
the CPU, NCCL on GPUs (one a process, ``cuda:LOCAL_RANK``). Every process holds the same
shuffled case order (one seed) and trains on its own share of each epoch's batches with its own
augmentation seed; DDP averages the gradients, so the replicas stay equal. The schedule's
position (which depends on each process's clock under a time budget) and the decision to stop
are taken by rank 0 and broadcast. Rank 0 alone validates, writes checkpoints, the model card,
the ONNX export and the domain record; the others wait for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class Ranks:
    """This process's place in the group (rank 0 of 1 without ``--distributed``)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def start(device: str) -> Ranks:
    """Join the process group torchrun describes in the environment; the device is
    ``cuda:LOCAL_RANK`` on GPUs."""
    import torch
    import torch.distributed as dist

    from ...core.errors import InputError

    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise InputError(f"--distributed needs the process group that torchrun sets up ({', '.join(missing)} not set): run 'torchrun --nproc_per_node N -m MedSegAILib.cli train ... --distributed'")
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(ranks.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return ranks


def broadcast_float(value: float, ranks: Ranks) -> float:
    """Rank 0's ``value`` on every process."""
    if not ranks.active:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.broadcast(t, src=0)
    return float(t.item())


def barrier(ranks: Ranks) -> None:
    if ranks.active:
        import torch.distributed as dist

        dist.barrier()


def stop(ranks: Ranks) -> None:
    if ranks.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
