"""Checkpoints: durable atomic saves, verification, safe loading, skipping damaged ones, staging leftovers."""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from slovo.config import Config, ModelConfig, save_config
from slovo.errors import SlovoError
from slovo.model import GPT
from slovo.train import checkpoint as ck
from slovo.train.state import Clock
from slovo.utils import read_json

TINY = ModelConfig(n_layer=1, n_head=2, n_embd=16, seq_len=8, vocab_size=32)


def tiny_model_and_optimizer(seed: int = 0) -> tuple[GPT, torch.optim.AdamW]:
    torch.manual_seed(seed)
    model = GPT(TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    ids = torch.randint(0, TINY.vocab_size, (2, TINY.seq_len))
    _, loss = model(ids, ids)
    loss.backward()
    opt.step()  # so the optimizer state holds exp_avg / exp_avg_sq / step tensors
    return model, opt


def loop_payload(opt: torch.optim.Optimizer, step: int) -> dict:
    """What the training loop saves in state.pt, in the same shapes and types."""
    rng = {"torch": torch.get_rng_state(), "cuda": [torch.get_rng_state()]}  # cuda: a list of ByteTensors
    loop = {
        "step": step,
        "tokens": step * 64,
        "progress": 0.25,
        "next_eval": 2,
        "last_ckpt_train_time": 1.5,
        "last_eval_train_time": 1.0,
        "last_eval_step": -1,
        "best_eval_loss": math.inf,
        "best_eval_bpb": math.inf,
        "last_eval": {"eval/loss": 3.25, "eval/bpb": 1.5, "eval/perplexity": 25.8},
    }
    scaler = {
        "scale": 65536.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
        "_growth_tracker": 0,
    }
    return {
        "optimizer": opt.state_dict(),
        "loader": {"position": step * 2, "seed": 1337},
        "clock": Clock().state_dict(),
        "loop": loop,
        "rng": rng,
        "scaler": scaler,
    }


def save(run: Path, step: int, seed: int = 0) -> Path:
    model, opt = tiny_model_and_optimizer(seed)
    return ck.save_checkpoint(
        run, step, model, loop_payload(opt, step), {"tokens": step * 64, "train_time": 1.0, "final": False}
    )


def rerecord(ckpt: Path, name: str) -> None:
    """Make checkpoint.json vouch for the current content of `name` (as if the file had been saved so)."""
    meta = read_json(ckpt / "checkpoint.json")
    meta["files"][name] = ck._hash_and_sync(ckpt / name)
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))


def truncate(path: Path, keep: int = 100) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


# ---- saving -------------------------------------------------------------------------------------


def test_save_records_size_and_sha256_of_every_file_and_leaves_no_staging(tmp_path):
    ckpt = save(tmp_path / "run", 4)
    meta = read_json(ckpt / "checkpoint.json")
    assert meta["step"] == 4 and meta["tokens"] == 256 and meta["format"] == ck.FORMAT
    for name in ("model.safetensors", "state.pt"):
        rec = meta["files"][name]
        assert rec["bytes"] == (ckpt / name).stat().st_size
        assert rec["sha256"] == ck._hash_and_sync(ckpt / name)["sha256"]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_0000004"]
    assert ck.verify_checkpoint(ckpt) is None


def test_everything_the_loop_saves_loads_back_under_weights_only(tmp_path):
    model, opt = tiny_model_and_optimizer()
    payload = loop_payload(opt, 7)
    ckpt = ck.save_checkpoint(tmp_path / "run", 7, model, payload, {"final": True})

    fresh = GPT(TINY)
    saved = ck.load_training_state(ckpt, fresh)

    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert saved["loop"] == payload["loop"] and saved["loop"]["best_eval_loss"] == math.inf
    assert saved["loader"] == payload["loader"] and saved["clock"] == payload["clock"]
    assert saved["scaler"] == payload["scaler"]
    assert torch.equal(saved["rng"]["torch"], payload["rng"]["torch"])
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-3, betas=(0.9, 0.95))
    opt2.load_state_dict(saved["optimizer"])  # AdamW takes its own saved state back
    assert opt2.state_dict()["param_groups"][0]["betas"] == (0.9, 0.95)
    state0 = next(iter(opt2.state.values()))
    assert torch.equal(state0["exp_avg"], next(iter(opt.state.values()))["exp_avg"])


def test_saving_the_same_step_again_replaces_it(tmp_path):
    run = tmp_path / "run"
    save(run, 4, seed=0)
    model, opt = tiny_model_and_optimizer(seed=1)
    ckpt = ck.save_checkpoint(run, 4, model, loop_payload(opt, 4), {"final": True})
    assert read_json(ckpt / "checkpoint.json")["final"] is True
    assert ck.verify_checkpoint(ckpt) is None
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000004"]


def _fill_then_fail(path, written: bytes = b"\0" * 1000):
    Path(path).write_bytes(written)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_writing_state_raises_one_line_and_leaves_older_checkpoints(tmp_path, monkeypatch):
    run = tmp_path / "run"
    older = save(run, 4)
    before = {p.name: p.read_bytes() for p in older.iterdir()}

    def full_disk_save(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ck.torch, "save", full_disk_save)
    with pytest.raises(ck.CheckpointSaveError) as e:
        save(run, 8)
    assert "No space left on device" in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, SlovoError)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000004"]  # no half folder
    assert {p.name: p.read_bytes() for p in older.iterdir()} == before


def test_a_full_disk_while_writing_weights_keeps_an_earlier_save_of_the_same_step(tmp_path, monkeypatch):
    run = tmp_path / "run"
    older = save(run, 4)
    before = {p.name: p.read_bytes() for p in older.iterdir()}

    def full_disk_weights(model, filename):
        Path(filename).write_bytes(b"\0" * 64)
        raise SafetensorError('Error while serializing: I/O error: No space left on device (os error 28) at path "x"')

    monkeypatch.setattr(ck, "save_model", full_disk_weights)
    with pytest.raises(ck.CheckpointSaveError, match="No space left on device"):
        save(run, 4)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000004"]
    assert {p.name: p.read_bytes() for p in older.iterdir()} == before
    assert ck.verify_checkpoint(older) is None


def test_a_failing_rename_puts_the_earlier_save_of_the_same_step_back(tmp_path, monkeypatch):
    run = tmp_path / "run"
    older = save(run, 4)
    before_files = read_json(older / "checkpoint.json")["files"]
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "step_0000004" and ".tmp-" in Path(src).name:  # the rename that publishes the save
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        return real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", replace)
    with pytest.raises(ck.CheckpointSaveError, match="Permission denied"):
        save(run, 4, seed=1)
    monkeypatch.undo()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000004"]
    assert ck.verify_checkpoint(older) is None
    assert read_json(older / "checkpoint.json")["files"] == before_files


def test_muon_optimizer_state_loads_back_under_weights_only(tmp_path):
    from slovo.config import OptimConfig
    from slovo.optim import make_optimizer

    model = GPT(TINY)
    opt = make_optimizer(model, OptimConfig(name="muon"), "cpu")
    ids = torch.randint(0, TINY.vocab_size, (2, TINY.seq_len))
    model(ids, ids)[1].backward()
    opt.step()
    ckpt = ck.save_checkpoint(tmp_path / "run", 1, model, {"optimizer": opt.state_dict()}, {})
    saved = ck.load_training_state(ckpt, GPT(TINY))
    make_optimizer(GPT(TINY), OptimConfig(name="muon"), "cpu").load_state_dict(saved["optimizer"])
    assert saved["optimizer"]["muon"]["param_groups"][0]["adjust_lr_fn"] == "original"


# ---- verifying and picking -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda c: truncate(c / "model.safetensors"), "model.safetensors is 100 bytes"),
        (lambda c: truncate(c / "state.pt"), "state.pt is 100 bytes"),
        (
            lambda c: (c / "model.safetensors").write_bytes(b"\0" * (c / "model.safetensors").stat().st_size),
            "model.safetensors does not match the sha256",
        ),
        (lambda c: (c / "state.pt").unlink(), "state.pt is missing"),
        (lambda c: (c / "checkpoint.json").unlink(), "checkpoint.json is missing"),
        (lambda c: (c / "checkpoint.json").write_text('{"step": 4, "fi'), "checkpoint.json cannot be read"),
    ],
    ids=["short-weights", "short-state", "zeroed-weights", "no-state", "no-json", "torn-json"],
)
def test_verify_names_what_is_wrong(tmp_path, damage, needle):
    ckpt = save(tmp_path / "run", 4)
    damage(ckpt)
    why = ck.verify_checkpoint(ckpt)
    assert why is not None and needle in why


def test_checkpoints_saved_before_file_records_are_checked_by_structure(tmp_path):
    ckpt = save(tmp_path / "run", 4)
    meta = read_json(ckpt / "checkpoint.json")
    del meta["files"], meta["format"]
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    assert ck.verify_checkpoint(ckpt) is None
    truncate(ckpt / "state.pt", keep=2000)
    assert "state.pt" in ck.verify_checkpoint(ckpt)


def test_find_resumable_skips_damaged_newer_checkpoints(tmp_path):
    run = tmp_path / "run"
    save(run, 4)
    good = save(run, 8)
    bad12 = save(run, 12)
    bad16 = save(run, 16)
    truncate(bad12 / "model.safetensors")
    (bad16 / "checkpoint.json").unlink()  # a step folder a crash left without its record

    found, skipped = ck.find_resumable(run)
    assert found == good
    assert [(p.name, "checkpoint.json is missing" in w or "model.safetensors is 100" in w) for p, w in skipped] == [
        ("step_0000016", True),
        ("step_0000012", True),
    ]

    ckpt, notice = ck.checkpoint_to_resume(run)
    assert ckpt == good
    assert notice.startswith("checkpoints step_0000016 (") and notice.endswith(
        "are damaged; resuming from step_0000008"
    )
    assert ck.list_checkpoints(run)[-1] == bad12  # unverified: the newest with a checkpoint.json


def test_one_damaged_checkpoint_gives_the_one_line_notice(tmp_path):
    run = tmp_path / "run"
    save(run, 4)
    truncate(save(run, 8) / "state.pt")
    _, notice = ck.checkpoint_to_resume(run)
    assert notice == (
        "checkpoint step_0000008 is damaged (state.pt is 100 bytes, checkpoint.json says "
        f"{read_json(run / 'checkpoints/step_0000008/checkpoint.json')['files']['state.pt']['bytes']}); "
        "resuming from step_0000004"
    )


def test_a_run_whose_every_checkpoint_is_damaged_is_a_one_line_error(tmp_path):
    run = tmp_path / "run"
    truncate(save(run, 4) / "state.pt")
    with pytest.raises(SlovoError, match=r"every checkpoint is damaged \(step_0000004: state.pt is 100 bytes") as e:
        ck.checkpoint_to_resume(run)
    assert "\n" not in str(e.value)
    with pytest.raises(SlovoError, match="no checkpoint found"):
        ck.checkpoint_to_resume(tmp_path / "empty")


def test_load_training_state_refuses_a_damaged_checkpoint_with_one_line(tmp_path):
    ckpt = save(tmp_path / "run", 4)
    truncate(ckpt / "model.safetensors")
    with pytest.raises(SlovoError) as e:
        ck.load_training_state(ckpt, GPT(TINY))
    assert "checkpoint is damaged (model.safetensors is 100 bytes" in str(e.value) and "\n" not in str(e.value)


class _Planted:
    """An object whose unpickling would create a file: what a malicious state.pt could do."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_state_pt_holding_a_pickled_object_is_refused_without_running_it(tmp_path):
    ckpt = save(tmp_path / "run", 4)
    planted = _Planted()
    planted.marker = tmp_path / "code-ran"
    torch.save({"optimizer": {}, "payload": planted}, ckpt / "state.pt")
    rerecord(ckpt, "state.pt")  # the record vouches for it, so only the loader stands in the way
    assert ck.verify_checkpoint(ckpt) is None

    with pytest.raises(SlovoError) as e:
        ck.load_training_state(ckpt, GPT(TINY))
    assert "holds pickled objects" in str(e.value) and "\n" not in str(e.value)
    assert not planted.marker.exists()


def test_weights_of_another_shape_are_a_one_line_error(tmp_path):
    ckpt = save(tmp_path / "run", 4)
    with pytest.raises(SlovoError, match="the weights do not load into the run's model") as e:
        ck.load_training_state(ckpt, GPT(ModelConfig(n_layer=1, n_head=2, n_embd=32, seq_len=8, vocab_size=32)))
    assert "\n" not in str(e.value)


# ---- inference lookups ---------------------------------------------------------------------------


def make_run_folder(run: Path) -> None:
    save_config(Config(model=TINY, preset="tiny"), run / "config.yaml")
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")).save(str(run / "tokenizer.json"))


def test_inference_passes_over_a_damaged_newest_checkpoint_and_says_so(tmp_path):
    run = tmp_path / "run"
    good = save(run, 4, seed=3)
    bad = save(run, 8)
    make_run_folder(run)
    truncate(bad / "model.safetensors")

    notices = []
    assert ck.resolve_checkpoint(run, on_skip=notices.append) == (run, good)
    model, _, _ = ck.load_for_inference(run, on_skip=notices.append)
    assert notices == [f"checkpoint step_0000008 is damaged ({ck.verify_checkpoint(bad)}); using step_0000004"] * 2
    expected, _ = tiny_model_and_optimizer(seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values()))

    with pytest.raises(SlovoError, match="step_0000008: the checkpoint is damaged"):
        ck.resolve_checkpoint(bad)  # named explicitly: no silent fallback


def test_inference_needs_only_intact_weights(tmp_path):
    run = tmp_path / "run"
    ckpt = save(run, 4)
    make_run_folder(run)
    truncate(ckpt / "state.pt")  # optimizer state does not matter for generate/export/eval
    assert ck.resolve_checkpoint(run, on_skip=pytest.fail) == (run, ckpt)


# ---- staging leftovers ---------------------------------------------------------------------------


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_staging_removes_leftovers_of_killed_saves_only(tmp_path):
    run = tmp_path / "run"
    save(run, 4)
    root = run / "checkpoints"
    dead = root / f".step_0000008.tmp-{dead_pid()}"
    live = root / f".step_0000008.tmp-{os.getppid()}"  # a live process: maybe a save in progress
    stale_old = root / ".step_0000004.old"
    for p in (dead, live, stale_old):
        p.mkdir()
        (p / "model.safetensors").write_bytes(b"partial")

    assert sorted(p.name for p in ck.clean_staging(run)) == sorted([dead.name, stale_old.name])
    assert sorted(p.name for p in root.iterdir()) == sorted(["step_0000004", live.name])
    assert ck.clean_staging(tmp_path / "no-run") == []


def test_clean_staging_puts_back_a_step_whose_replacement_was_killed_midway(tmp_path):
    run = tmp_path / "run"
    ckpt = save(run, 4)
    os.replace(ckpt, ckpt.with_name(".step_0000004.old"))  # killed between the two renames of a re-save
    ck.clean_staging(run)
    assert ck.find_resumable(run) == (ckpt, [])
