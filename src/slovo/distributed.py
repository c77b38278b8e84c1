"""Data-parallel training under torchrun, kept to a handful of calls the loop makes.

`torchrun --nproc_per_node N -m slovo train ...` starts N copies; each reads WORLD_SIZE / RANK /
LOCAL_RANK, trains on its own batches (the loader is keyed on the rank) and averages gradients
through DDP. Rank 0 alone writes the run folder, checkpoints, samples and trackers. Once per step
the ranks exchange their loss, clock and stop wishes (`agree_step`, one all-gather), and every collective
decision is computed from that shared answer, so they take the same learning rate, evaluate, checkpoint and
stop at the same step whatever their own clocks say. Without WORLD_SIZE everything is a no-op.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch


@dataclass
class Agreed:
    """What all ranks agreed on after a step."""

    loss: float  # mean over ranks
    train_time: float  # the latest training clock of any rank
    stop: bool  # some rank was asked to stop (Ctrl-C, a callback)
    nonfinite: bool  # some rank saw a non-finite loss or grad norm


class Dist:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            self._dist = dist

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> str:
        """One GPU per process under torchrun; otherwise what the config asked for."""
        if self.enabled and requested.startswith("cuda"):
            torch.cuda.set_device(self.local_rank)
            return f"cuda:{self.local_rank}"
        return requested

    def wrap(self, model: torch.nn.Module, device: str) -> torch.nn.Module:
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)

    def no_sync(self, model: torch.nn.Module, last_micro_step: bool):
        """Skip the gradient all-reduce on all but the last micro-step of an accumulation."""
        if self.enabled and not last_micro_step:
            return model.no_sync()
        return nullcontext()

    def agree_step(self, loss: float, train_time: float, stop: bool, nonfinite: bool, device: str) -> Agreed:
        """The step's one collective: every rank sends its loss, clock, stop wish and a non-finite flag, and all
        receive the same answer (mean loss, latest clock, any stop, any non-finite). Every decision that ranks
        must take together (eval due, checkpoint due, budget spent, stop) is computed from this answer only."""
        if not self.enabled:
            return Agreed(loss, train_time, stop, nonfinite)
        mine = torch.tensor([loss, train_time, float(stop), float(nonfinite)], dtype=torch.float64, device=device)
        every = [torch.empty_like(mine) for _ in range(self.world)]
        self._dist.all_gather(every, mine)
        table = torch.stack(every).cpu()
        return Agreed(float(table[:, 0].mean()), float(table[:, 1].max()), bool(table[:, 2].max() > 0),
                      bool(table[:, 3].max() > 0))

    def barrier(self) -> None:
        if self.enabled:
            self._dist.barrier()

    def sum(self, values: list[float], device: str) -> list[float]:
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        self._dist.all_reduce(t)
        return t.tolist()

    def close(self, wait: bool = True) -> None:
        """Leave the process group. With `wait`, first meet the other ranks: a rank that tears down gloo
        while rank 0 is still writing its checkpoint can abort the whole job."""
        if self.enabled and self._dist.is_initialized():
            if wait:
                self._dist.barrier()
            self._dist.destroy_process_group()
