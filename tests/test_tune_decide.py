"""How slovo tune decides: probes within noise of the best are resolved by the rule, a rollback's lr cut is
carried, the deadline does not always cut the largest lr, and a killed and rerun tune keeps its total."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from slovo.tune.plan import Plan, Shape, horizon_lr


def _plan() -> Plan:
    plan = Plan(1200, 300, 900, "tiny", "data", "cpu", False, "", base_lr=0.015, base_batch=8)
    plan.shapes.append(Shape(2, 256, params=1, tokens_per_s=8000, predicted_loss=9.7))
    plan.depths, plan.widths, plan.batches = [2], [256], [8, 4]
    plan.lrs, plan.lr_key, plan.trial_s = [0.015, 0.03, 0.0075], "optim.muon_lr", 60.0
    return plan


def _row(rank, lr, bpb, vs_best, batch=8, lr_scale=None, noise="windows"):
    return {
        "rank": rank,
        "params": {
            "model.n_layer": 2,
            "model.n_embd": 256,
            "train.per_device_train_batch_size": batch,
            "optim.muon_lr": lr,
        },
        "runs": [f"trial-{rank:03d}"],
        "seeds": 1,
        "eval/bpb": bpb,
        "eval/bpb_se": 0.01,
        "vs_best": vs_best,
        "noise": noise,
        "lr_scale": lr_scale,
    }


def _results(rows):
    return {"rows": rows, "best": rows[0], "sweep_dir": "/t/probes"}


def test_probes_within_noise_of_the_best_are_resolved_by_the_rule_not_by_the_lowest_score():
    from slovo.tune.run import choose

    rows = [_row(1, 0.03, 1.100, "best"), _row(2, 0.015, 1.104, "within noise"), _row(3, 0.0075, 1.2, "")]
    choice, why, decision = choose(_plan(), _results(rows), 900.0)
    assert decision["chosen"] == "trial-002"  # the base lr, within noise of the lowest score
    assert decision["winner"] == "/t/probes/trials/trial-002" and decision["sure"] is False
    assert decision["within_noise"] == ["trial-001", "trial-002"]
    assert any(line.startswith("not sure: 2 probes are within noise") for line in why)
    probe_tokens, final_tokens = 8000 * 60.0, 8000 * 900.0
    assert choice["optim.muon_lr"] == pytest.approx(float(f"{horizon_lr(0.015, probe_tokens, final_tokens):.3g}"))


def test_a_probe_clearly_ahead_wins_and_the_decision_says_it_is_sure():
    from slovo.tune.run import choose

    rows = [_row(1, 0.03, 1.100, "best"), _row(2, 0.015, 1.150, ""), _row(3, 0.0075, 1.2, "")]
    _, why, decision = choose(_plan(), _results(rows), 900.0)
    assert decision["chosen"] == "trial-001" and decision["sure"] is True
    assert decision["margin_bpb"] == pytest.approx(0.05)
    assert any(line.startswith("sure beyond eval noise") for line in why)


def test_the_choice_carries_the_lr_a_probe_trained_at_after_a_guard_rollback():
    from slovo.tune.run import choose

    rows = [_row(1, 0.03, 1.100, "best", lr_scale=0.25), _row(2, 0.015, 1.150, "")]
    choice, why, _ = choose(_plan(), _results(rows), 900.0)
    expected = float(f"{horizon_lr(0.03 * 0.25, 8000 * 60.0, 8000 * 900.0):.3g}")
    assert choice["optim.muon_lr"] == pytest.approx(expected)
    assert "0.0075 (0.03 x 1/4)" in why[0]


def test_the_probe_sweep_runs_the_priors_lr_first_so_the_deadline_does_not_always_cut_the_largest(
    small_dataset, tmp_path
):
    from slovo.config import load_config
    from slovo.sweep import load_sweep
    from slovo.sweep.spec import grid_points
    from slovo.tune.plan import _choose_axes
    from slovo.tune.run import probe_sweep_yaml

    cfg = load_config(preset="tiny", overrides={"model.vocab_size": 300, "data.path": str(small_dataset)})
    plan = Plan(1200, 300, 900, "tiny", str(small_dataset), "cpu", False, "", base_lr=0.015, base_batch=8)
    plan.lr_key = "optim.muon_lr"
    plan.shapes.append(Shape(2, 256, params=1, tokens_per_s=8000, predicted_loss=9.7))
    _choose_axes(plan, cfg, [8, 4], 600.0)
    path = tmp_path / "probes.yaml"
    path.write_text(probe_sweep_yaml(plan, "tiny", False, cfg))
    points = grid_points(load_sweep(path))
    lrs = [p["optim.muon_lr"] for p in points]
    assert lrs[0] == plan.base_lr  # the prior's lr is measured first
    assert lrs[-1] != max(lrs)  # the probe a deadline cuts is not the largest lr
    assert points[0]["train.per_device_train_batch_size"] == 8  # every lr at the base batch before the other


def test_a_rerun_after_a_kill_gives_the_final_run_only_the_time_tune_has_left(tiny_config, tmp_path, monkeypatch):
    import slovo.train as train_mod
    from slovo.tune.run import WallClock, _final_run

    final = tmp_path / "final"
    cfg = tiny_config(**{"budget.time": "600s", "budget.max_steps": 3})
    train_mod.train(cfg, final, clock=WallClock(), quiet=True)
    summary = json.loads((final / "summary.json").read_text())
    (final / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))  # killed
    from slovo.train.checkpoint import STATE_FILE, checkpoint_to_resume, load_state

    ckpt, _ = checkpoint_to_resume(final)
    spent = WallClock.spent_in(load_state(ckpt / STATE_FILE)["clock"])
    seen = {}

    def fake_train(run_cfg, run_dir, resume=False, callbacks=(), clock=None, quiet=False):
        seen["budget"], seen["resume"] = run_cfg.budget.time, resume
        return {"status": "finished"}

    monkeypatch.setattr(train_mod, "train", fake_train)

    class Left:  # tune's clock: 20 s left of its total
        info, total_s = "", 100.0

        def left(self):
            return 20.0

    from rich.console import Console

    _final_run(tmp_path, final, cfg, False, "tiny", {"choice": {}}, Left(), Console(quiet=True))
    assert seen["resume"] is True
    assert float(seen["budget"].removesuffix("s")) == pytest.approx(spent + 20.0, abs=0.06)
    assert not math.isclose(float(seen["budget"].removesuffix("s")), 600.0)


def test_a_tune_seed_reaches_every_probe(small_dataset, tmp_path):
    from slovo.config import load_config
    from slovo.tune.run import probe_sweep_yaml

    cfg = load_config(preset="tiny", overrides={"train.seed": 7, "data.path": str(small_dataset)})
    plan = _plan()
    doc = yaml.safe_load(probe_sweep_yaml(plan, "tiny", False, cfg))
    assert doc["parameters"]["train.seed"] == {"value": 7}
