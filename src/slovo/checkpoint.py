"""Atomic checkpoints and exact resume.

A checkpoint is a folder `checkpoints/step_NNNNNNN/` holding
  model.safetensors   the weights (tied weights stored once)
  state.pt            optimizer, RNG states, loader position, step, tokens, clock ledger, loop state
  checkpoint.json     step, tokens, train time, and whether it is the final one
It is written into a hidden temporary folder and renamed into place, so a killed run never leaves a
checkpoint that looks complete; `checkpoint.json` is written last inside it as a second guard.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

from slovo.errors import SlovoError
from slovo.utils import atomic_write_json, staged_dir

CKPT_DIR = "checkpoints"
PREFIX = "step_"


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "checkpoint.json").exists()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, state: dict[str, Any], info: dict) -> Path:
    """Write a checkpoint atomically; returns its folder."""
    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    # Saving the same step again (a final checkpoint right after a periodic one) replaces it.
    with staged_dir(final) as tmp:
        save_model(unwrap(model), str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
        atomic_write_json(tmp / "checkpoint.json", {"step": step, **info})
    return final


def prune_checkpoints(run_dir: str | Path, keep_last: int, keep: Path | None = None) -> None:
    """Delete all but the newest `keep_last + 1` checkpoints (always keeping `keep`)."""
    found = list_checkpoints(run_dir)
    for old in found[: max(0, len(found) - keep_last - 1)]:
        if keep is None or old.resolve() != keep.resolve():
            shutil.rmtree(old, ignore_errors=True)


def load_training_state(ckpt: Path, model: torch.nn.Module) -> dict:
    load_model(unwrap(model), str(ckpt / "model.safetensors"))
    return torch.load(ckpt / "state.pt", map_location="cpu", weights_only=False)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain GPT inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """(run_dir, checkpoint_dir) for a run folder (newest checkpoint) or a checkpoint folder."""
    p = Path(path)
    if not p.exists():
        raise SlovoError(f"{p}: no such run folder or checkpoint")
    if (p / "model.safetensors").exists():
        run_dir = p.parent.parent if p.parent.name == CKPT_DIR else p
        return run_dir, p
    ckpt = latest_checkpoint(p)
    if ckpt is None:
        raise SlovoError(f"{p}: no checkpoint found (expected {p}/{CKPT_DIR}/{PREFIX}NNNNNNN/model.safetensors)")
    return p, ckpt


def load_for_inference(path: str | Path, device: str = "cpu"):
    """(model in eval mode, Config, tokenizers.Tokenizer) from a run folder or one of its checkpoints."""
    from tokenizers import Tokenizer

    from slovo.config import load_config
    from slovo.model import GPT

    run_dir, ckpt = resolve_checkpoint(path)
    cfg_path = run_dir / "config.yaml"
    tok_path = run_dir / "tokenizer.json"
    for needed in (cfg_path, tok_path):
        if not needed.exists():
            raise SlovoError(f"{run_dir}: not a slovo run folder ({needed.name} is missing)")
    cfg = load_config(config_file=cfg_path)
    model = GPT(cfg.model)
    load_model(model, str(ckpt / "model.safetensors"))
    model.to(device).eval()
    return model, cfg, Tokenizer.from_file(str(tok_path))
