"""Crash-safe checkpoints and exact resume.

A checkpoint is a folder `checkpoints/step_NNNNNNN/` holding
  model.safetensors   the weights (tied weights stored once)
  state.pt            optimizer, RNG states, loader position, step, tokens, clock ledger, loop state
  checkpoint.json     written last: step, tokens, train time, whether it is the final one, and under `files`
                      each file's size in bytes and sha256

How a save survives a kill or a power loss: the files are written into a hidden folder `.step_N.tmp-PID`, each
file and then the folder are fsynced, the folder is renamed into place and the parent folder is fsynced. A
folder named `step_N` therefore never holds data that is still only in the page cache, and `checkpoint.json`
(written last) vouches for the size and hash of every other file. A save that fails (disk full, no permission)
raises `CheckpointSaveError` and removes its hidden folder; older checkpoints are never touched before the new
one is complete. Leftovers of a killed save are removed by `clean_staging`.

How a load stays safe: `verify_checkpoint` compares every file with its record, so a truncated or zero-filled
file is named instead of failing deep inside safetensors; `find_resumable` walks from the newest checkpoint to
the oldest and returns the first good one; `state.pt` is read with `torch.load(weights_only=True)`, which
refuses pickled objects (unpickling one would run code from the run folder).

The hash is sha256, the one `meta.json` and `run.json` use for the tokenizer (its speed against blake2b:
bench/results/checkpoint_hash.md). Checkpoints written before the `files` record existed are still accepted after
a structural check (the safetensors header, the CRCs of state.pt's zip).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, safe_open, save_model

from slovo.errors import SlovoError, first_line
from slovo.model import unwrap
from slovo.utils import atomic_write_json, fsync_dir, process_alive, read_json, read_json_dict, sha256_file

CKPT_DIR = "checkpoints"
PREFIX = "step_"
FORMAT = "slovo-checkpoint/2"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
INFO_FILE = "checkpoint.json"
DATA_FILES = (MODEL_FILE, STATE_FILE)

_STEP_DIR = re.compile(r"step_(\d+)")
_TMP_DIR = re.compile(r"\.(step_\d+)\.tmp-(\d+)")  # staging folder of a save in progress (or killed)
_OLD_DIR = re.compile(r"\.(step_\d+)\.old")  # the previous folder of a step being saved again
_SUPERSEDED_DIR = re.compile(r"\.(step_\d+)\.superseded")  # a checkpoint a rollback discarded, being deleted


class CheckpointSaveError(SlovoError):
    """A checkpoint could not be written (disk full, no permission); the older checkpoints are intact."""


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:07d}"


def _step_of(path: Path) -> int | None:
    m = _STEP_DIR.fullmatch(path.name)
    return int(m[1]) if m else None


def _step_dirs(run_dir: str | Path) -> list[Path]:
    """Every `step_N` folder of a run, complete or not, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _step_of(p) is not None and p.is_dir()]
    return sorted(found, key=_step_of)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run that have a `checkpoint.json` (not verified: see `verify_checkpoint`), oldest first."""
    return [p for p in _step_dirs(run_dir) if (p / INFO_FILE).exists()]


# ---- saving ---------------------------------------------------------------------------------------


def _hash_and_sync(path: Path) -> dict:
    """Size and sha256 of a written file, read back once; the same pass fsyncs it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
        os.fsync(f.fileno())
        size = f.tell()
    return {"bytes": size, "sha256": h.hexdigest()}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    # Through a Python file object, so a full disk surfaces as OSError rather than torch's RuntimeError.
    with open(path, "wb") as f:
        torch.save(state, f)


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename the complete folder `tmp` to `final`. An existing `final` (the same step saved again, e.g. the final
    checkpoint right after a periodic one) is moved to `.step_N.old` first and put back if the rename fails."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    fsync_dir(final.parent)  # the new entry is on disk before the old copy goes
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _io_reason(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    m = re.search(r"I/O error: (.*?) \(os error", str(e))  # safetensors wraps the OS error in its own text
    return m[1] if m else str(e).splitlines()[0]


def save_checkpoint(run_dir: str | Path, step: int, model: torch.nn.Module, state: dict[str, Any], info: dict) -> Path:
    """Write checkpoint `step` durably and atomically; returns its folder `RUN/checkpoints/step_N`.

    `state` must hold only tensors and plain data (dict, list, tuple, str, int, float, bool, None), since it is
    loaded back with `weights_only=True`. `info` (tokens, train_time, final, ...) goes into `checkpoint.json`.
    Raises `CheckpointSaveError` (one line) when the disk refuses; then no partial folder is left and every
    older checkpoint, including an earlier save of the same step, is unchanged."""
    root = Path(run_dir) / CKPT_DIR
    final = root / checkpoint_name(step)
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    try:
        if not root.is_dir():
            root.mkdir(parents=True)
            fsync_dir(root.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            save_model(unwrap(model), str(tmp / MODEL_FILE))
            _write_state(tmp / STATE_FILE, state)
            files = {name: _hash_and_sync(tmp / name) for name in DATA_FILES}
            atomic_write_json(tmp / INFO_FILE, {"format": FORMAT, "step": step, **info, "files": files})
            fsync_dir(tmp)
            _swap_into_place(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except (OSError, SafetensorError) as e:
        raise CheckpointSaveError(
            f"{final}: could not save the checkpoint ({_io_reason(e)}); the older checkpoints are intact"
        ) from e
    return final


def decay_start_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint tagged `decay_start` in its checkpoint.json with the latest training time (not verified):
    where a run extended to a larger budget, or tune's final run, continues from. By time, since a rollback or
    an extension can save it again at a lower step."""
    infos = {p: read_json_dict(p / INFO_FILE) for p in list_checkpoints(run_dir)}
    tagged = [p for p, info in infos.items() if info.get("tag") == "decay_start"]
    return max(reversed(tagged), key=lambda p: infos[p].get("train_time", 0), default=None)  # a tie: the later step


def prune_checkpoints(run_dir: str | Path, keep_last: int, keep: Path | None = None) -> None:
    """Delete all but the newest `keep_last + 1` checkpoints (always keeping `keep`, and `decay_start_checkpoint`)."""
    decay_start = decay_start_checkpoint(run_dir)
    found = [p for p in list_checkpoints(run_dir) if p != decay_start]
    for old in found[: max(0, len(found) - keep_last - 1)]:
        if keep is None or old.resolve() != keep.resolve():
            shutil.rmtree(old, ignore_errors=True)


def drop_checkpoints_after(run_dir: str | Path, step: int) -> list[Path]:
    """Delete the checkpoints saved after `step` (a divergence-guard rollback went back to `step`: they hold the
    discarded steps and must not outrank the newer ones the run saves from here). Each goes out of sight by one
    rename first, so a kill mid-way leaves no half-deleted `step_N` (`clean_staging` removes the rest)."""
    later = [p for p in _step_dirs(run_dir) if _step_of(p) > step]
    for p in reversed(later):
        gone = p.with_name(f".{p.name}.superseded")
        shutil.rmtree(gone, ignore_errors=True)
        os.replace(p, gone)
    if later:
        fsync_dir(Path(run_dir) / CKPT_DIR)
    for p in later:
        shutil.rmtree(p.with_name(f".{p.name}.superseded"), ignore_errors=True)
    return later


def clean_staging(run_dir: str | Path) -> list[Path]:
    """Tidy what killed saves left in `RUN/checkpoints`; returns the leftovers it dealt with.

    `.step_N.tmp-PID` folders whose process is gone are removed (a live PID's folder may be a save in progress).
    `.step_N.superseded` (a checkpoint a rollback discarded) is removed. `.step_N.old` is removed when `step_N`
    exists; when it does not, the save was killed between its two renames and `.step_N.old` is the only copy of
    that step, so it is renamed back to `step_N`. Call it while holding the run's lock (`slovo.train.runlock.RunLock`),
    before looking for a checkpoint to resume."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    handled = []
    for p in sorted(root.iterdir()):
        m = _TMP_DIR.fullmatch(p.name)
        if m and (int(m[2]) == os.getpid() or not process_alive(int(m[2]))):
            shutil.rmtree(p, ignore_errors=True)
            handled.append(p)
    for p in sorted(root.iterdir()):
        if _SUPERSEDED_DIR.fullmatch(p.name):
            shutil.rmtree(p, ignore_errors=True)
            handled.append(p)
    for p in sorted(root.iterdir()):
        m = _OLD_DIR.fullmatch(p.name)
        if m:
            final = root / m[1]
            if final.exists():
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.replace(p, final)
            handled.append(p)
    if handled:
        fsync_dir(root)
    return handled


# ---- verifying ------------------------------------------------------------------------------------


def _check_recorded(path: Path, record: Any, hashes: bool) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    if not isinstance(record, dict) or not isinstance(record.get("bytes"), int):
        return f"checkpoint.json has no valid record of {path.name}"
    size = path.stat().st_size
    if size != record["bytes"]:
        return f"{path.name} is {size} bytes, checkpoint.json says {record['bytes']}"
    if hashes and "sha256" in record:
        if sha256_file(path) != record["sha256"]:
            return f"{path.name} does not match the sha256 in checkpoint.json"
    return None


def _check_structure(path: Path) -> str | None:
    """For checkpoints saved before `files` was recorded: can the file's own structure be read."""
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        if path.name == MODEL_FILE:
            with safe_open(str(path), framework="pt") as f:  # checks the header and that the data fits the file
                f.keys()
        else:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad:
                return f"{path.name}: {bad} fails its CRC check"
    except (SafetensorError, zipfile.BadZipFile, OSError, ValueError) as e:
        return f"{path.name} cannot be read ({first_line(e)})"
    return None


def verify_checkpoint(path: str | Path, *, files: Iterable[str] = DATA_FILES, hashes: bool = True) -> str | None:
    """None when the checkpoint folder `path` is complete and intact, else a short reason (no path in it), e.g.
    "model.safetensors is 812 bytes, checkpoint.json says 40960". Checks `files` (default both; inference needs
    only the weights) against their recorded size and, with `hashes`, sha256. Costs one read of those files."""
    p = Path(path)
    if not p.is_dir():
        return "it is not a folder"
    if not (p / INFO_FILE).is_file():
        return "checkpoint.json is missing (the save did not finish)"
    try:
        meta = read_json(p / INFO_FILE)
    except (OSError, ValueError) as e:
        return f"checkpoint.json cannot be read ({e})"
    if not isinstance(meta, dict):
        return "checkpoint.json is not a JSON object"
    step = _step_of(p)
    if step is not None and meta.get("step") != step:
        return f"checkpoint.json names step {meta.get('step')}, the folder step {step}"
    recorded = meta.get("files")
    for name in files:
        if isinstance(recorded, dict):
            why = _check_recorded(p / name, recorded.get(name), hashes)
        else:
            why = _check_structure(p / name)
        if why:
            return why
    return None


def find_resumable(
    run_dir: str | Path, *, files: Iterable[str] = DATA_FILES
) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(newest good checkpoint or None, [(newer damaged checkpoint, why), ...] newest first). Walks the run's
    `step_N` folders from the newest down and stops at the first that passes `verify_checkpoint`."""
    files = tuple(files)
    skipped: list[tuple[Path, str]] = []
    for ckpt in reversed(_step_dirs(run_dir)):
        why = verify_checkpoint(ckpt, files=files)
        if why is None:
            return ckpt, skipped
        skipped.append((ckpt, why))
    return None, skipped


def skipped_message(chosen: Path, skipped: list[tuple[Path, str]], verb: str = "resuming from") -> str:
    """One line such as "checkpoint step_0000012 is damaged (state.pt is missing); resuming from step_0000008"."""
    if len(skipped) == 1:
        head = f"checkpoint {skipped[0][0].name} is damaged ({skipped[0][1]})"
    else:
        head = "checkpoints " + ", ".join(f"{p.name} ({why})" for p, why in skipped) + " are damaged"
    return f"{head}; {verb} {chosen.name}"


def _none_good(run_dir: Path, skipped: list[tuple[Path, str]], remedy: str) -> SlovoError:
    if not skipped:
        return SlovoError(f"{run_dir}: no checkpoint found (expected {run_dir}/{CKPT_DIR}/{PREFIX}NNNNNNN/); {remedy}")
    every = "; ".join(f"{p.name}: {why}" for p, why in skipped)
    return SlovoError(f"{run_dir}: every checkpoint is damaged ({every}); {remedy}")


def checkpoint_to_resume(run_dir: str | Path) -> tuple[Path, str | None]:
    """(the checkpoint `--resume` should load, a one-line notice to print when newer ones were damaged, else None).
    Raises SlovoError when the run has no good checkpoint."""
    ckpt, skipped = find_resumable(run_dir)
    if ckpt is None:
        raise _none_good(Path(run_dir), skipped, "start the run again without --resume")
    return ckpt, skipped_message(ckpt, skipped) if skipped else None


# ---- loading --------------------------------------------------------------------------------------


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    try:
        load_model(unwrap(model), str(path))
    except (SafetensorError, RuntimeError, OSError) as e:  # RuntimeError: names or shapes not the model's
        raise SlovoError(f"{path}: the weights do not load into the run's model ({first_line(e)})") from None


def load_state(path: str | Path) -> dict:
    """`state.pt` read with weights_only=True (tensors and plain data only); anything else is a one-line
    SlovoError, since unpickling an object would run code from the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise SlovoError(
            f"{path}: holds pickled objects besides tensors and plain data; refusing to load it "
            "(unpickling them would run code from the file)"
        ) from None
    except (RuntimeError, OSError, EOFError) as e:
        raise SlovoError(f"{path}: cannot be read ({first_line(e)})") from None
    if not isinstance(state, dict):
        raise SlovoError(f"{path}: holds {type(state).__name__}, not the training state")
    return state


def load_training_state(ckpt: Path, model: torch.nn.Module) -> dict:
    """Verify checkpoint `ckpt`, load its weights into `model` (unwrapped) and return its saved state dict.
    A damaged checkpoint or a state.pt holding pickled objects is a one-line SlovoError."""
    ckpt = Path(ckpt)
    why = verify_checkpoint(ckpt)
    if why:
        raise SlovoError(f"{ckpt}: the checkpoint is damaged ({why})")
    _load_weights(model, ckpt / MODEL_FILE)
    return load_state(ckpt / STATE_FILE)


def _is_checkpoint_dir(p: Path) -> bool:
    if (p / CKPT_DIR).is_dir():
        return False
    return _step_of(p) is not None or (p / MODEL_FILE).exists() or (p / INFO_FILE).exists()


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def resolve_checkpoint(path: str | Path, *, on_skip: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """(run_dir, checkpoint_dir) for a run folder (its newest checkpoint whose weights are intact) or a checkpoint
    folder (which must be intact). Damaged newer checkpoints of a run are passed over; `on_skip` gets a one-line
    notice about them (default: printed on stderr)."""
    p = Path(path)
    if not p.exists():
        raise SlovoError(f"{p}: no such run folder or checkpoint")
    if _is_checkpoint_dir(p):
        why = verify_checkpoint(p, files=(MODEL_FILE,))
        if why:
            raise SlovoError(f"{p}: the checkpoint is damaged ({why}); name another checkpoint or the run folder")
        run_dir = p.parent.parent if p.parent.name == CKPT_DIR else p
        return run_dir, p
    ckpt, skipped = find_resumable(p, files=(MODEL_FILE,))
    if ckpt is None:
        raise _none_good(p, skipped, "train the run (further) first")
    if skipped:
        (on_skip or _say)(skipped_message(ckpt, skipped, "using"))
    return p, ckpt


def load_for_inference(path: str | Path, device: str = "cpu", *, on_skip: Callable[[str], None] | None = None):
    """(model in eval mode, Config, tokenizers.Tokenizer) from a run folder or one of its checkpoints; a damaged
    newest checkpoint is passed over as in `resolve_checkpoint`."""
    from tokenizers import Tokenizer

    from slovo.config import load_config
    from slovo.model import GPT

    run_dir, ckpt = resolve_checkpoint(path, on_skip=on_skip)
    cfg_path = run_dir / "config.yaml"
    tok_path = run_dir / "tokenizer.json"
    for needed in (cfg_path, tok_path):
        if not needed.exists():
            raise SlovoError(f"{run_dir}: not a slovo run folder ({needed.name} is missing)")
    cfg = load_config(config_file=cfg_path)
    model = GPT(cfg.model)
    _load_weights(model, ckpt / MODEL_FILE)
    model.to(device).eval()
    return model, cfg, Tokenizer.from_file(str(tok_path))
