"""Data-parallel training under torchrun, kept to a handful of calls the loop makes.

`torchrun --nproc_per_node N -m slovo train ...` starts N copies; each reads WORLD_SIZE / RANK /
LOCAL_RANK and trains on its own batches (the loader is keyed on the rank). Rank 0 alone writes the run
folder, samples and trackers. Once per step the ranks exchange their loss, clock and stop wishes
(`agree_step`, one all-gather), and every collective decision is computed from that shared answer, so they
take the same learning rate, evaluate, checkpoint and stop at the same step whatever their own clocks say.
Without WORLD_SIZE everything is a no-op.

Two strategies (`distributed.strategy`):
- `ddp`: every rank holds the whole model and optimizer; DDP averages the gradients. Checkpoints are
  rank 0's `model.safetensors` + `state.pt` (slovo.checkpoint).
- `fsdp`: FSDP2 (`fully_shard`, each transformer block and the root) shards the trained weights, gradients
  and optimizer state over the ranks. The `Run` (train/run.py) keeps a plain copy of the model beside the sharded one,
  refreshed from it (`gather_weights`) before each eval and checkpoint: evals, samples and the checkpoint's
  `model.safetensors` use it, so eval windows need not split evenly and rank 0 can sample alone. Checkpoints
  add the sharded weights and optimizer in `dcp/` (torch.distributed.checkpoint, slovo.sharded), which any
  number of ranks, one included, can load.

Before training, `on_rank0` runs what one process must do for all (the default run name, the existence check,
`--overwrite`'s deletion) on rank 0 alone, once the process group exists, the others waiting for its answer.
Choices a rank could make from its own measurements (compile, the eval subset's size) are rank 0's, broadcast.

Leaving: gloo's worker threads outlive `destroy_process_group` (DDP keeps the process group alive) and may
drop their last reference to a finished collective's tensors after Python began to finalize; the thread then
asks for the GIL, CPython 3.11 ends it with pthread_exit, and the forced unwind through a C++ destructor calls
std::terminate ("terminate called without an active exception", SIGABRT, and torchrun stops the other
ranks). No ordering of barrier and destroy closes that window, so a non-main rank that finished cleanly
flushes its output and leaves with `os._exit(0)` (`close`), skipping the interpreter's teardown.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TypeVar

import torch

from slovo.errors import SlovoError

STRATEGIES = ("ddp", "fsdp")
T = TypeVar("T")
_group_started_here = False  # slovo started the process group that exists now (so its Dist may end the process)


def start_group() -> bool:
    """Under torchrun (WORLD_SIZE > 1): start the process group once, NCCL bound to this rank's GPU (`device_id`,
    which also makes the rank's GPU the current one) or gloo without CUDA. Returns whether there are several
    ranks."""
    global _group_started_here
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            local = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(local)
            dist.init_process_group("nccl", device_id=local)
        else:
            dist.init_process_group("gloo")
        _group_started_here = True
    return True


def exit_in_group(line: str, code: int) -> None:
    """Under a process group slovo started: print `line` to stderr and leave at once with `code` (the group ended,
    the interpreter's teardown skipped: gloo's threads can abort it, see the module's docstring). Else nothing."""
    if not (_group_started_here and torch.distributed.is_initialized()):
        return
    print(line, file=sys.stderr)
    torch.distributed.destroy_process_group()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def on_rank0(fn: Callable[[], T]) -> T:
    """`fn()` on rank 0 alone once the process group exists; every rank gets its result (or its SlovoError, the
    same one line) when rank 0 is done, so no rank goes on before rank 0's work on shared files is over. Without
    torchrun: `fn()`."""
    if not start_group():
        return fn()
    import torch.distributed as dist

    box: list = [None]
    if dist.get_rank() == 0:
        try:
            box = [("ok", fn())]
        except SlovoError as e:
            box = [("error", str(e))]
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise SlovoError(value)
    return value


# fp16's GradScaler skips a step when its own gradients overflowed; under FSDP each rank sees only its shards',
# so ranks could disagree on skipping and their weights part ways
FP16_FSDP = (
    "train.dtype=float16 does not work with distributed.strategy=fsdp (the GradScaler's overflow check sees "
    "only each rank's shards); use train.dtype=bfloat16 or float32, or distributed.strategy=ddp"
)


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
        self.owns_group = False  # slovo started the process group (so this object may end the process)
        if self.enabled:
            import torch.distributed as dist

            start_group()
            self.owns_group = _group_started_here
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

    # ---- strategies -------------------------------------------------------------------------------

    def shard(self, model: torch.nn.Module, cfg) -> torch.nn.Module | None:
        """Under `distributed.strategy=fsdp` on several ranks: a copy of `model` sharded with FSDP2 (every
        block, then the root, which holds the tied embedding and head), for the optimizer and the training
        steps; `model` itself stays whole for evals, samples and checkpoints. None otherwise (one process
        trains `model` itself, whatever the strategy)."""
        strategy = cfg.distributed.strategy
        if strategy == "fsdp" and cfg.optim.name == "muon":
            raise SlovoError(
                "optim.name=muon does not work with distributed.strategy=fsdp (Muon orthogonalises "
                "whole matrices, FSDP gives each rank a shard); use distributed.strategy=ddp or "
                "optim.name=adamw"
            )
        if strategy == "fsdp" and cfg.train.dtype == "float16":
            raise SlovoError(FP16_FSDP)
        if strategy != "fsdp" or not self.enabled:
            return None
        import copy

        from torch.distributed.fsdp import fully_shard

        sharded = copy.deepcopy(model)  # deepcopy keeps the tied weight tied
        for block in sharded.layers:
            fully_shard(block)
        fully_shard(sharded)
        return sharded

    def check_precision(self, cfg, dtype: str) -> None:
        """The precision chosen for the run (train.dtype=auto may be fp16 on an older card) against the strategy."""
        if cfg.distributed.strategy == "fsdp" and dtype == "float16":
            raise SlovoError(FP16_FSDP)

    def wrap(
        self, model: torch.nn.Module, device: str, sharded: torch.nn.Module | None = None, compiled: bool = False
    ) -> torch.nn.Module:
        """The module the training steps run: the FSDP-sharded copy, DDP around `model`, or `model`."""
        if sharded is not None:
            return torch.compile(sharded) if compiled else sharded
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)

    def gather_weights(self, sharded: torch.nn.Module | None, whole: torch.nn.Module) -> None:
        """Copy the sharded model's weights into the whole copy on every rank (a collective; no-op without FSDP)."""
        if sharded is None:
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True))
        with torch.no_grad():
            whole.load_state_dict(full)

    def no_sync(self, model: torch.nn.Module, last_micro_step: bool):
        """Skip the gradient all-reduce on all but the last micro-step of an accumulation."""
        if not self.enabled:
            return nullcontext()
        from torch.distributed.fsdp import FSDPModule

        module = getattr(model, "_orig_mod", model)
        if isinstance(module, FSDPModule):  # FSDP2: reduce-scatter only on the last micro-step
            module.set_requires_gradient_sync(last_micro_step)
            return nullcontext()
        return model.no_sync() if not last_micro_step else nullcontext()

    # ---- collectives ------------------------------------------------------------------------------

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
        return Agreed(
            float(table[:, 0].mean()),
            float(table[:, 1].max()),
            bool(table[:, 2].max() > 0),
            bool(table[:, 3].max() > 0),
        )

    def barrier(self) -> None:
        if self.enabled:
            self._dist.barrier()

    def sum(self, values: list[float], device: str) -> list[float]:
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        self._dist.all_reduce(t)
        return t.tolist()

    def broadcast(self, value, src: int = 0):
        """Rank `src`'s picklable `value`, on every rank."""
        if not self.enabled:
            return value
        box = [value]
        self._dist.broadcast_object_list(box, src=src)
        return box[0]

    def close(self, wait: bool = True) -> None:
        """Leave the process group. With `wait`, first meet the other ranks (a rank that tears down gloo while
        rank 0 still writes its checkpoint can abort the whole job); then a non-main rank of a process group
        this object started leaves the process at once (see the module's docstring for why)."""
        if not (self.enabled and self._dist.is_initialized()):
            return
        if wait:
            self._dist.barrier()
        self._dist.destroy_process_group()
        if wait and self.owns_group and not self.is_main:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(0)
