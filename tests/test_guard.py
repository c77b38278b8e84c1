"""The divergence guard: a diverging step rolls the run back to a snapshot with a lower lr and the run goes on;
fp16 overflows are skipped steps, not divergence; the guard's state survives a resume."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import slovo.train.trainer as train_mod
from slovo.config import GuardConfig, LrSpikeConfig
from slovo.train import TrainState, train
from slovo.train.callbacks import Callback
from slovo.train.guard import DivergenceGuard
from slovo.train.state import Clock
from slovo.utils import read_jsonl


def _records(run_dir, key):
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if key in r]


def _break_step(monkeypatch, at_calls, loss=math.nan, poison_weights=True):
    """Make the train_step calls numbered in `at_calls` (1-based) diverge: NaN weights and a NaN loss."""
    real = train_mod.train_step
    calls = {"n": 0}

    def step(*, model, **kwargs):
        calls["n"] += 1
        result = real(model=model, **kwargs)
        if calls["n"] in at_calls:
            if poison_weights:
                with torch.no_grad():
                    next(model.parameters()).fill_(math.nan)
            result.loss = loss
        return result

    monkeypatch.setattr(train_mod, "train_step", step)
    return calls


class StopAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_log(self, state, control, metrics):
        if state.step == self.step:
            control.stop("interrupted")


def test_a_nan_loss_rolls_back_to_a_snapshot_lowers_the_lr_skips_the_batches_and_finishes(
    tiny_config, tmp_path, monkeypatch
):
    _break_step(monkeypatch, {25})
    over = {"budget.max_steps": 30, "schedule.name": "constant", "schedule.warmup": 0, "guard.snapshot_every": 10}
    run = tmp_path / "run"
    summary = train(tiny_config(**over), run, quiet=True)
    assert summary["status"] == "finished" and summary["rollbacks"] == 1 and summary["lr_scale"] == 0.5
    assert math.isfinite(summary["eval/loss"])
    (event,) = _records(run, "guard/rollback")
    # snapshots every 10 steps, the older of two restored: the NaN at step 25 goes back to step 10
    assert event["guard/bad_step"] == 25 and event["guard/to_step"] == 10 == event["train/global_step"]
    assert "loss became nan" in event["guard/reason"] and event["guard/peak_lr"] == tiny_config().optim.lr * 0.5
    lrs = {r["train/global_step"]: r["train/learning_rate"] for r in _records(run, "train/loss")}  # the last of each
    assert lrs[30] == pytest.approx(tiny_config(**over).optim.lr * 0.5)
    assert summary["train/global_step"] == 30  # the lost steps are trained again (with other batches)
    ckpt = torch.load(run / "checkpoints" / "step_0000030" / "state.pt", weights_only=True)
    # the loader went on past the 25 steps' batches it had handed out; it was not rewound to step 10's position
    assert ckpt["loader"]["position"] == 25 + 20
    assert summary["ledger"]["guard"] > 0


def test_the_time_of_discarded_steps_stays_on_the_budget_clock(tiny_config, tmp_path, monkeypatch):
    from tests.test_train import TickingTime

    over = {
        "budget.time": "20s",
        "budget.max_steps": 0,
        "schedule.name": "constant",
        "schedule.warmup": 0,
        "guard.snapshot_every": 5,
    }
    plain = train(tiny_config(**over), tmp_path / "plain", clock=Clock(now=TickingTime()), quiet=True)
    _break_step(monkeypatch, {12})
    broken = train(tiny_config(**over), tmp_path / "broken", clock=Clock(now=TickingTime()), quiet=True)
    assert plain["stop_reason"] == broken["stop_reason"] == "time" and broken["rollbacks"] == 1
    # the same training seconds bought 7 fewer steps: 12 back to 5 (within a step: the budget clock counts the
    # bookkeeping between steps too, and on this clock every read of it costs a tick, so snapshot steps cost more)
    step_s = plain["train_runtime"] / plain["train/global_step"]
    assert broken["train_runtime"] == pytest.approx(plain["train_runtime"], abs=step_s)
    assert abs(broken["train/global_step"] - (plain["train/global_step"] - 7)) <= 1


def test_divergence_after_max_rollbacks_fails_the_run_with_the_advice(tiny_config, tmp_path, monkeypatch):
    _break_step(monkeypatch, set(range(12, 100)))  # every step from the 12th on diverges
    summary = train(tiny_config(**{"budget.max_steps": 40, "guard.max_rollbacks": 2}), tmp_path / "run", quiet=True)
    assert summary["status"] == "failed" and summary["rollbacks"] == 2
    assert "after 2 rollbacks" in summary["error"] and "try a lower optim.lr" in summary["error"]
    assert len(summary["error"].splitlines()) == 1
    assert len(_records(tmp_path / "run", "guard/rollback")) == 2


def test_with_the_guard_off_a_nan_loss_fails_the_run_at_once(tiny_config, tmp_path, monkeypatch):
    _break_step(monkeypatch, {5})
    summary = train(tiny_config(**{"budget.max_steps": 20, "guard.enabled": False}), tmp_path / "run", quiet=True)
    assert summary["status"] == "failed" and summary["rollbacks"] == 0 and summary["train/global_step"] == 5
    assert "loss became nan at step 5 (try a lower optim.lr)" == summary["error"]


def test_the_lr_scale_and_rollback_count_survive_a_resume(tiny_config, tmp_path, monkeypatch):
    over = {"budget.max_steps": 30, "schedule.name": "constant", "schedule.warmup": 0, "checkpoint.every_steps": 5}
    _break_step(monkeypatch, {12})
    first = train(tiny_config(**over), tmp_path / "run", callbacks=[StopAt(15)], quiet=True)
    assert first["status"] == "interrupted" and first["rollbacks"] == 1
    monkeypatch.undo()
    resumed = train(tiny_config(**over), tmp_path / "run", resume=True, quiet=True)
    assert resumed["status"] == "finished" and resumed["rollbacks"] == 1 and resumed["lr_scale"] == 0.5
    last = _records(tmp_path / "run", "train/loss")[-1]
    assert last["train/learning_rate"] == pytest.approx(tiny_config(**over).optim.lr * 0.5)


def _spike_run(tiny_config, tmp_path, name, **extra):
    # the loss history is 10 steps long, so it is full when the spike comes in the middle of the 40 steps
    over = {"budget.max_steps": 40, "guard.spike_window": 10, **extra}
    return train(tiny_config(**over), tmp_path / name, quiet=True)


def test_a_debug_lr_spike_is_caught_and_the_run_ends_near_an_unspiked_one(tiny_config, tmp_path):
    spike = {"debug.lr_spike.at": 0.5, "debug.lr_spike.factor": 1000}
    plain = _spike_run(tiny_config, tmp_path, "plain")
    # lr_factor 1 keeps the lr: this 40-step run's loss falls in proportion to the lr, so a halved lr alone would
    # cost it ~10%; what is checked here is that the rollback leaves nothing of the spike behind
    spiked = _spike_run(tiny_config, tmp_path, "spiked", **spike, **{"guard.lr_factor": 1.0})
    assert spiked["status"] == "finished" and spiked["rollbacks"] >= 1
    assert "loss spiked" in _records(tmp_path / "spiked", "guard/rollback")[0]["guard/reason"]
    assert spiked["eval/loss"] == pytest.approx(plain["eval/loss"], rel=0.02)
    unguarded = _spike_run(tiny_config, tmp_path, "unguarded", **spike, **{"guard.enabled": False})
    assert unguarded["status"] == "failed" and "loss spiked" in unguarded["error"]
    assert "try a lower optim.lr" in unguarded["error"]


def test_the_debug_lr_spike_multiplies_the_lr_for_its_steps_once(tiny_config, tmp_path):
    over = {
        "budget.max_steps": 20,
        "schedule.name": "constant",
        "schedule.warmup": 0,
        "guard.spike_factor": 0,
        "debug.lr_spike.at": 0.5,
        "debug.lr_spike.factor": 3,
        "debug.lr_spike.steps": 2,
    }
    train(tiny_config(**over), tmp_path / "run", quiet=True)
    lr = tiny_config(**over).optim.lr
    lrs = [r["train/learning_rate"] / lr for r in _records(tmp_path / "run", "train/loss")]
    assert lrs == pytest.approx([1.0] * 10 + [3.0, 3.0] + [1.0] * 8)


# ---- fp16: an overflow is a skipped step, a non-finite loss is still a divergence ------------------------------------


def test_an_fp16_gradient_overflow_is_a_skipped_step_not_a_divergence(tiny_config, tmp_path, monkeypatch):
    real_unscale = torch.amp.GradScaler.unscale_
    calls = {"n": 0}

    def unscale_with_one_overflow(self, optimizer):
        calls["n"] += 1
        if calls["n"] == 4:  # one gradient overflows once, as a too-large scale makes it do
            next(p for g in optimizer.param_groups for p in g["params"] if p.grad is not None).grad.fill_(math.inf)
        return real_unscale(self, optimizer)

    monkeypatch.setattr(torch.amp.GradScaler, "unscale_", unscale_with_one_overflow)
    run = tmp_path / "run"
    summary = train(tiny_config(**{"budget.max_steps": 8, "train.dtype": "float16"}), run, quiet=True)
    assert summary["status"] == "finished" and summary["rollbacks"] == 0 and math.isfinite(summary["eval/loss"])
    norms = [r["train/grad_norm"] for r in _records(run, "train/loss")]
    assert math.isinf(norms[3]) and all(math.isfinite(n) for i, n in enumerate(norms) if i != 3)
    state = torch.load(run / "checkpoints" / "step_0000008" / "state.pt", weights_only=True)
    assert state["scaler"]["scale"] < torch.amp.GradScaler("cpu").get_scale()  # the scaler backed off


def test_a_non_finite_loss_under_fp16_is_still_a_divergence(tiny_config, tmp_path, monkeypatch):
    _break_step(monkeypatch, {15}, loss=math.inf, poison_weights=False)
    summary = train(tiny_config(**{"budget.max_steps": 20, "train.dtype": "float16"}), tmp_path / "run", quiet=True)
    assert summary["status"] == "finished" and summary["rollbacks"] == 1
    assert "loss became inf" in _records(tmp_path / "run", "guard/rollback")[0]["guard/reason"]


# ---- the guard alone ------------------------------------------------------------------------------------------------


def _guard(**cfg):
    model = torch.nn.Linear(3, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return DivergenceGuard(GuardConfig(**cfg), LrSpikeConfig(), model, optimizer, None, Clock()), model, optimizer


def test_a_spike_is_measured_against_the_median_of_a_full_window():
    guard, _, _ = _guard(spike_factor=2.0, spike_window=6)
    state = TrainState()
    for loss in (5.0, 4.0, 100.0, 4.0):  # one earlier outlier does not raise the bar: the median ignores it
        assert guard.check(1000.0, False, 1.0) is None  # fewer than 5 losses seen: no spike check yet
        guard.accept(state, loss)
    guard.accept(state, 4.0)
    assert guard.recent_losses == [5.0, 4.0, 100.0, 4.0, 4.0]
    assert guard.check(8.0, False, 1.0) is None  # median 4.0: 8.0 is exactly 2x, not above
    assert "spiked" in guard.check(8.1, False, 1.0)
    assert "nan" in guard.check(math.nan, False, 1.0)
    assert "grad norm" in guard.check(4.0, True, math.inf)
    guard.accept(state, 4.2)
    guard.accept(state, 4.4)
    assert guard.recent_losses == [4.0, 100.0, 4.0, 4.0, 4.2, 4.4]  # a window, not a growing list


def test_spike_factor_0_turns_the_spike_check_off():
    guard, _, _ = _guard(spike_factor=0, spike_window=2)
    guard.recent_losses = [1.0, 1.0]
    assert guard.check(1000.0, False, 1.0) is None


def test_rollback_restores_the_older_snapshot_and_it_can_serve_twice():
    guard, model, optimizer = _guard(snapshot_every=2)

    def train_one(state):
        model(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        state.step += 1
        guard.accept(state, 1.0)

    state = TrainState()
    guard.snapshot(state)
    train_one(state)
    train_one(state)
    at_2 = {k: v.clone() for k, v in model.state_dict().items()}
    moment_at_2 = optimizer.state[model.weight]["exp_avg"].clone()
    train_one(state)
    train_one(state)
    assert [s.step for s in guard.snapshots] == [2, 4]  # the newest two
    for _ in range(2):  # the second rollback finds the snapshot unchanged by the training in between
        snapshot, _ = guard.rollback(state, "test")
        state.step = snapshot.step  # the Trainer goes back to the snapshot's step
        assert state.step == 2 and [s.step for s in guard.snapshots] == [2]  # the newer one may hold the damage
        assert all(torch.equal(at_2[k], v) for k, v in model.state_dict().items())
        assert torch.equal(optimizer.state[model.weight]["exp_avg"], moment_at_2)
        train_one(state)
    assert guard.rollbacks == 2 and guard.lr_scale == 0.25


def test_no_snapshots_are_taken_with_the_guard_off():
    guard, _, _ = _guard(enabled=False)
    state = TrainState()
    guard.snapshot(state)
    state.step = 10
    guard.accept(state, 1.0)
    assert guard.snapshots == [] and not guard.can_roll_back()


def test_guard_config_values_are_checked():
    from slovo.config import load_config
    from slovo.errors import SlovoError

    for bad, needle in (
        ("guard.lr_factor=0", "guard.lr_factor"),
        ("guard.spike_factor=0.5", "spike_factor"),
        ("debug.lr_spike.at=1.5", "debug.lr_spike.at"),
        ("debug.lr_spike.steps=0", "steps"),
    ):
        with pytest.raises(SlovoError, match=needle):
            load_config(preset="tiny", overrides=[bad])
    cfg = load_config(preset="tiny", overrides=["debug.lr_spike.at=0.5", "debug.lr_spike.factor=100"])
    assert cfg.debug.lr_spike.at == 0.5 and cfg.debug.lr_spike.factor == 100 and cfg.guard.enabled


def test_a_spike_state_namespace_is_enough_for_before_step():
    guard = DivergenceGuard(GuardConfig(), LrSpikeConfig(at=0.5, factor=10, steps=1), None, None, None, Clock())
    guard.lr_scale = 0.5
    state = SimpleNamespace(progress=0.4, step=3)
    assert guard.before_step(state) == 0.5
    state.progress = 0.5
    assert guard.before_step(state) == 5.0 and guard.before_step(state) == 0.5
