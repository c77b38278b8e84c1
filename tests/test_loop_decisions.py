"""Numbers inside the training loop that decisions rest on (issue 20): the lrs a run records, what "best" is the
best of, which dataset a resume trains on, which checkpoint outranks which after a rollback, and what the budget
clock counts."""

from __future__ import annotations

import pytest

from slovo.train import train
from slovo.utils import read_json, read_jsonl


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
