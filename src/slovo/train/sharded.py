"""Checkpoints of `distributed.strategy=fsdp` runs: slovo's checkpoint folder plus the sharded state in `dcp/`.

    checkpoints/step_NNNNNNN/
      model.safetensors   the whole weights, gathered (what export, generate and eval read)
      state.pt            loader position, RNG, clock, loop state (no optimizer: it is sharded)
      dcp/                torch.distributed.checkpoint: the model's and the optimizer's shards, one file per rank
      checkpoint.json     written last; `files` records size and sha256 of every file above, `sharded` the world

The save keeps slovo.train.checkpoint's crash safety: every rank writes into rank 0's staging folder
`.step_N.tmp-PID` (the folders must be on a filesystem all ranks share), DCP fsyncs its files, rank 0 writes
the rest, hashes everything, writes checkpoint.json last and renames the folder into place. The ranks agree on
each stage, so a save that fails on one rank fails on all, and a failed periodic save leaves the older ones.

DCP loads by parameter name and reshards on load, so a run saved on N ranks resumes on M, one process (no
torchrun, no process group) included.
"""

from __future__ import annotations

import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from slovo.errors import SlovoError, first_line
from slovo.model import unwrap
from slovo.train.checkpoint import (
    CKPT_DIR,
    FORMAT,
    INFO_FILE,
    MODEL_FILE,
    STATE_FILE,
    CheckpointSaveError,
    _hash_and_sync,
    _io_reason,
    _swap_into_place,
    _write_state,
    checkpoint_name,
    load_state,
    verify_checkpoint,
)
from slovo.utils import atomic_write_json, fsync_dir, read_json

DCP_DIR = "dcp"


def is_sharded(ckpt: str | Path) -> bool:
    return (Path(ckpt) / DCP_DIR).is_dir()


def _state_dicts(model: torch.nn.Module, optimizer) -> tuple[Any, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model = unwrap(model)
    return get_model_state_dict(model), get_optimizer_state_dict(model, optimizer)


def save_sharded(
    dist,
    run_dir: str | Path,
    step: int,
    whole: torch.nn.Module,
    trained: torch.nn.Module,
    optimizer,
    state: dict[str, Any],
    info: dict,
) -> Path | None:
    """Every rank calls this. Writes checkpoint `step` (see the module docstring) and returns its folder on rank 0
    (None elsewhere). `whole` holds the gathered weights (rank 0 writes them), `trained` is the model the
    optimizer steps (FSDP-sharded, or the same model in one process). Raises CheckpointSaveError on every rank
    when any rank could not write; then the staging folder is gone and the older checkpoints are intact."""
    root = Path(run_dir) / CKPT_DIR
    final = root / checkpoint_name(step)
    tmp, problem = _staging(root, final) if dist.is_main else (None, None)
    tmp, problem = dist.broadcast((tmp, problem))
    if problem is None:
        problem = _save_shards(tmp, trained, optimizer)
    if problem is None and dist.is_main:
        try:
            _finish_on_rank0(tmp, final, step, whole, state, info, dist.world)
        except Exception as e:  # noqa: BLE001 - OSError, SafetensorError: reported as one line below
            problem = _io_reason(e)
    if dist.enabled:  # one answer for all: did every stage work on every rank
        problem = dist.broadcast(problem)
    if problem is not None:
        if dist.is_main and tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointSaveError(
            f"{final}: could not save the checkpoint ({problem}); the older checkpoints are intact"
        )
    return final if dist.is_main else None


def _staging(root: Path, final: Path) -> tuple[Path, str | None]:
    """Rank 0's empty staging folder (with its `dcp/`), and what went wrong making it."""
    tmp = root / f".{final.name}.tmp-{os.getpid()}"  # rank 0's PID: clean_staging checks it is gone
    try:
        if not root.is_dir():
            root.mkdir(parents=True)
            fsync_dir(root.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / DCP_DIR).mkdir(parents=True)
    except OSError as e:
        return tmp, _io_reason(e)
    return tmp, None


def _save_shards(tmp: Path, trained: torch.nn.Module, optimizer) -> str | None:
    """Every rank writes its shards of the weights and optimizer; what went wrong on any rank, or None."""
    import torch.distributed.checkpoint as dcp

    model_sd, optim_sd = _state_dicts(trained, optimizer)
    try:  # DCP gathers every rank's write result, so all ranks raise together
        with _alone_is_fine():
            dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp / DCP_DIR), no_dist=not _grouped())
    except Exception as e:  # noqa: BLE001 - a CheckpointException (wrapping each rank's OSError) or an OSError
        return first_line(e)
    return None


def _finish_on_rank0(tmp: Path, final: Path, step: int, whole, state: dict, info: dict, world: int) -> None:
    """The whole weights, state.pt and checkpoint.json (last, with every file's hash), then the rename."""
    from safetensors.torch import save_model

    save_model(unwrap(whole), str(tmp / MODEL_FILE))
    _write_state(tmp / STATE_FILE, state)
    names = [MODEL_FILE, STATE_FILE] + sorted(f"{DCP_DIR}/{p.name}" for p in (tmp / DCP_DIR).iterdir())
    files = {name: _hash_and_sync(tmp / name) for name in names}
    fsync_dir(tmp / DCP_DIR)
    record = {"format": FORMAT, "step": step, **info, "files": files}
    atomic_write_json(tmp / INFO_FILE, record | {"sharded": {"format": "torch-dcp", "world_size": world}})
    fsync_dir(tmp)
    _swap_into_place(tmp, final)


def _grouped() -> bool:
    """Whether a process group exists (else DCP reads and writes alone, without warning about it)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


@contextmanager
def _alone_is_fine():
    """DCP warns that it assumes a single process when there is no process group; here that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def load_sharded(ckpt: str | Path, trained: torch.nn.Module, optimizer) -> dict:
    """Load a sharded checkpoint's weights and optimizer into `trained` / `optimizer` (any number of ranks, as
    the process group, if any, has them) and return its `state.pt`. Every recorded file is checked first."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    ckpt = Path(ckpt)
    recorded = (read_json(ckpt / INFO_FILE) or {}).get("files") or {}
    why = verify_checkpoint(ckpt, files=tuple(recorded) or (MODEL_FILE, STATE_FILE))
    if why:
        raise SlovoError(f"{ckpt}: the checkpoint is damaged ({why})")
    model_sd, optim_sd = _state_dicts(trained, optimizer)
    both = {"model": model_sd, "optim": optim_sd}
    try:
        with _alone_is_fine():
            dcp.load(both, checkpoint_id=str(ckpt / DCP_DIR), no_dist=not _grouped())
    except Exception as e:  # noqa: BLE001 - a CheckpointException naming the missing or mismatched keys
        raise SlovoError(f"{ckpt}: the sharded state does not load into this run's model ({first_line(e)})") from None
    model = unwrap(trained)
    set_model_state_dict(model, both["model"])
    set_optimizer_state_dict(model, optimizer, both["optim"])
    return load_state(ckpt / STATE_FILE)
