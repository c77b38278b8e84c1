"""Numbers inside the training loop that decisions rest on (issue 20): the lrs a run records, what "best" is the
best of, which dataset a resume trains on, which checkpoint outranks which after a rollback, and what the budget
clock counts."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from slovo.cli import main
from slovo.runs.folders import load_run
from slovo.sweep import load_sweep
from slovo.train import Clock, train
from slovo.train.callbacks import Callback
from slovo.train.checkpoint import checkpoint_to_resume, clean_staging, drop_checkpoints_after, list_checkpoints
from slovo.utils import atomic_write_json, read_json, read_jsonl
from tests.conftest import write_corpus
from tests.helpers import tiny_train_args
from tests.test_guard import _break_step


class FakeTime:
    """A clock that moves only when a test moves it."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_muon_run_records_the_muon_lr_beside_the_adamw_lr(tiny_config, tmp_path):
    over = {"optim.name": "muon", "optim.muon_lr": 0.02, "schedule.name": "constant", "schedule.warmup": 0}
    train(tiny_config(**over, **{"budget.max_steps": 3}), tmp_path / "run", quiet=True)
    records = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "train/loss" in r]
    assert len(records) == 3
    for r in records:
        assert r["train/muon_learning_rate"] == pytest.approx(0.02)
        assert r["train/learning_rate"] == pytest.approx(2e-3)


def test_an_adamw_run_records_no_muon_lr(tiny_config, tmp_path):
    train(tiny_config(**{"budget.max_steps": 2}), tmp_path / "run", quiet=True)
    records = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "train/loss" in r]
    assert records and all("train/muon_learning_rate" not in r for r in records)


def test_best_eval_is_over_the_subset_evals_only_not_the_full_final_eval(tiny_config, tmp_path):
    over = {"budget.max_steps": 12, "eval.every": 3, "eval.subset_windows": 4, "optim.lr": 1e-2}
    summary = train(tiny_config(**over), tmp_path / "run", quiet=True)
    evals = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/bpb" in r]
    subset, final = evals[:-1], evals[-1]
    assert [r["eval/windows"] for r in subset] == [4, 4] and final["eval/windows"] == 32
    assert final["eval/bpb"] < min(r["eval/bpb"] for r in subset)  # a mixed minimum would pick the final
    assert summary["best/eval_bpb"] == pytest.approx(min(r["eval/bpb"] for r in subset))
    assert summary["best/eval_loss"] == pytest.approx(min(r["eval/loss"] for r in subset))
    assert summary["best/eval_windows"] == 4
    assert summary["eval/bpb"] == pytest.approx(final["eval/bpb"])


def test_without_subset_evals_best_is_over_every_eval(tiny_config, tmp_path):
    over = {"budget.max_steps": 6, "eval.every": 3, "eval.max_fraction": 0}
    summary = train(tiny_config(**over), tmp_path / "run", quiet=True)
    evals = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/bpb" in r]
    assert len(evals) == 3 and {r["eval/windows"] for r in evals} == {32}
    assert summary["best/eval_bpb"] == pytest.approx(min(r["eval/bpb"] for r in evals))


def test_a_fixed_subset_size_holds_for_runs_of_any_batch_size(tiny_config, tmp_path):
    for batch in (2, 8):
        over = {"budget.max_steps": 4, "eval.every": 2, "eval.subset_windows": 8}
        train(tiny_config(**over, **{"train.per_device_train_batch_size": batch}), tmp_path / f"b{batch}", quiet=True)
        evals = [r for r in read_jsonl(tmp_path / f"b{batch}" / "metrics.jsonl") if "eval/bpb" in r]
        assert [r["eval/windows"] for r in evals] == [8, 32]
    assert read_json(tmp_path / "b2" / "summary.json")["eval/subset_windows"] == 8


def _prepare(corpus_seed: int, out) -> None:
    corpus = write_corpus(out.parent / f"corpus{corpus_seed}.jsonl", seed=corpus_seed)
    args = ["prepare", "--data", str(corpus), "--out", str(out), "--vocab-size", "300", "--min-val-tokens", "2000"]
    assert main([*args, "--force", "--quiet"]) == 0


def _resume(capsys, run, *extra) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["train", "--resume", str(run), "--max-steps", "6", "--quiet", *extra])
    return code, capsys.readouterr().err.strip()


def test_resume_refuses_another_dataset_in_one_line_and_changes_nothing(small_dataset, tmp_path, capsys):
    assert main(tiny_train_args(small_dataset, tmp_path, "run", "--max-steps", "3")) == 0
    run = tmp_path / "run"
    before = {name: (run / name).read_bytes() for name in ("run.json", "metrics.jsonl", "summary.json")}
    _prepare(1, tmp_path / "other")
    code, err = _resume(capsys, run, "--data", str(tmp_path / "other"))
    assert code == 2 and "other data" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert {name: (run / name).read_bytes() for name in before} == before


def test_resume_refuses_a_dataset_prepared_anew_in_place(small_dataset, tmp_path, capsys):
    data = tmp_path / "ds"
    shutil.copytree(small_dataset, data)
    assert main(tiny_train_args(data, tmp_path, "run", "--max-steps", "3")) == 0
    _prepare(2, data)  # other text into the same folder
    code, err = _resume(capsys, tmp_path / "run")
    assert code == 2 and str(data) in err and len(err.splitlines()) == 1


def test_resume_refuses_a_dataset_with_another_tokenizer(small_dataset, tmp_path, capsys):
    assert main(tiny_train_args(small_dataset, tmp_path, "run", "--max-steps", "3")) == 0
    data = tmp_path / "ds"
    shutil.copytree(small_dataset, data)
    meta = read_json(data / "meta.json")
    _prepare(3, tmp_path / "other")
    shutil.copyfile(tmp_path / "other" / "tokenizer.json", data / "tokenizer.json")  # trained on other text
    atomic_write_json(data / "meta.json", {k: v for k, v in meta.items() if k != "fingerprint"})  # an older meta.json
    code, err = _resume(capsys, tmp_path / "run", "--data", str(data))
    assert code == 2 and "another tokenizer" in err and len(err.splitlines()) == 1


def test_resume_from_a_moved_copy_of_the_same_dataset_goes_on(small_dataset, tmp_path, capsys):
    assert main(tiny_train_args(small_dataset, tmp_path, "run", "--max-steps", "3")) == 0
    shutil.copytree(small_dataset, tmp_path / "moved")
    code, err = _resume(capsys, tmp_path / "run", "--data", str(tmp_path / "moved"))
    assert code == 0, err
    assert read_json(tmp_path / "run" / "summary.json")["train/global_step"] == 6


class _KillAfterRollback(Callback):
    """Kills the run (like a crash) at its first train record after a rollback (a step it has logged before)."""

    def __init__(self):
        self.logged = set()

    def on_log(self, state, control, metrics):
        if state.step in self.logged:
            raise KeyboardInterrupt
        self.logged.add(state.step)


def test_checkpoints_of_the_steps_a_rollback_discarded_never_outrank_the_run_after_it(
    tiny_config, tmp_path, monkeypatch
):
    _break_step(monkeypatch, {25})  # snapshots every 10 steps: the NaN at step 25 goes back to step 10
    over = {"budget.max_steps": 30, "guard.snapshot_every": 10, "checkpoint.every_steps": 4, "checkpoint.keep_last": 9}
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(**over), run, callbacks=[_KillAfterRollback()], quiet=True)
    steps = [int(p.name[5:]) for p in list_checkpoints(run)]
    assert steps == [4, 8]  # 12 ... 24 held the discarded steps
    assert checkpoint_to_resume(run)[0].name == "step_0000008"
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    resumed = train(tiny_config(**over), run, resume=True, quiet=True)
    assert resumed["status"] == "finished" and resumed["train/global_step"] == 30


def test_a_kill_while_dropping_superseded_checkpoints_leaves_none_to_resume_from(tmp_path):
    root = tmp_path / "run" / "checkpoints"
    for step in (4, 8):
        (root / f"step_{step:07d}").mkdir(parents=True)
    (root / ".step_0000012.superseded").mkdir()  # renamed away, not yet deleted, when the process died
    assert drop_checkpoints_after(tmp_path / "run", 8) == []
    assert [p.name for p in clean_staging(tmp_path / "run")] == [".step_0000012.superseded"]
    assert sorted(p.name for p in root.iterdir()) == ["step_0000004", "step_0000008"]


def test_a_lap_books_everything_since_the_last_one_but_what_the_ledger_booked_off_the_clock():
    fake = FakeTime()
    clock = Clock(now=fake)
    clock.start_lap()
    fake.t += 2.0  # a step
    assert clock.lap({"data": 0.5}, "train") == 2.0
    fake.t += 0.1  # bookkeeping: the bar, the records
    with clock.measure("checkpoint"):
        fake.t += 5.0
    fake.t += 1.0  # the next step
    assert clock.lap({"data": 0.0}, "train") == pytest.approx(1.1)
    assert clock.ledger["train"] == pytest.approx(1.5 + 1.1) and clock.ledger["data"] == 0.5
    assert clock.train_time == pytest.approx(3.1) and clock.ledger["checkpoint"] == 5.0


class _SlowBookkeeping(Callback):
    """Bookkeeping between two steps that takes 1 s of the fake clock (as a tracker or a slow terminal might)."""

    def __init__(self, fake):
        self.fake = fake

    def on_log(self, state, control, metrics):
        self.fake.t += 1.0


def test_the_bookkeeping_between_two_steps_is_on_the_budget_clock(tiny_config, tmp_path):
    fake = FakeTime()
    over = {"budget.time": "20s", "budget.max_steps": 40, "eval.every": 0, "checkpoint.every_seconds": 0}
    cfg = tiny_config(**over)  # max_steps: a backstop for a clock that never counts the bookkeeping
    summary = train(cfg, tmp_path / "run", callbacks=[_SlowBookkeeping(fake)], clock=Clock(now=fake), quiet=True)
    steps = summary["train/global_step"]
    assert summary["stop_reason"] == "time"
    # every step but the last is followed by 1 s of bookkeeping, on the clock: a 20 s budget holds at most 20 steps
    assert summary["train_runtime"] >= steps - 1
    assert steps <= 21


def test_a_sweep_fixes_one_eval_subset_for_trials_of_every_batch_size(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    body = {
        "preset": "tiny",
        "data": str(data),
        "budget": {"time": "60s"},
        "parameters": {"train.per_device_train_batch_size": {"values": [4, 32]}},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(body))
    spec = load_sweep(tmp_path / "s.yaml")
    sizes = {spec.build_config({"train.per_device_train_batch_size": b}).eval.subset_windows for b in (4, 32)}
    base = spec.build_config({"train.per_device_train_batch_size": 4})
    assert sizes == {64} and base.eval.tokens // base.model.seq_len == 256  # a quarter of the tiny eval set
    body["parameters"]["eval.subset_windows"] = {"value": 16}  # the sweep file's own choice stands
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(body))
    assert load_sweep(tmp_path / "s.yaml").build_config({}).eval.subset_windows == 16


def test_a_killed_runs_best_from_its_records_leaves_the_full_final_eval_out(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("{}")
    atomic_write_json(run / "summary.json", {"status": "interrupted"})  # no best/eval_bpb: read the records
    records = [(1, 4, 1.0), (2, 4, 0.9), (3, 32, 0.8)]  # two subset evals, then the full final one
    lines = [{"train/global_step": s, "eval/windows": w, "eval/bpb": b, "eval/loss": b} for s, w, b in records]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    info = load_run(run)
    assert info.best_bpb == 0.9 and info.best_loss == 0.9
