"""bench/speedrun.py's arithmetic: where a curve first reaches the target, and the HF/slovo time ratio."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

SPEEDRUN = Path(__file__).resolve().parents[1] / "bench" / "speedrun.py"
sys.path.insert(0, str(SPEEDRUN.parent))  # speedrun imports bench/peer.py


@pytest.fixture(scope="module")
def speedrun():
    spec = importlib.util.spec_from_file_location("speedrun", SPEEDRUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_first_reach_interpolates_between_the_eval_points_around_the_crossing(speedrun):
    curve = [(100, 1.6), (200, 1.4), (300, 1.2)]
    assert speedrun.first_reach(curve, 1.3) == pytest.approx(250.0)
    assert speedrun.first_reach(curve, 1.7) == 100  # already there at the first eval
    assert speedrun.first_reach(curve, 1.1) is None  # never reached


def test_first_reach_takes_the_first_crossing_not_a_later_one(speedrun):
    curve = [(10, 2.0), (20, 1.0), (30, 1.5), (40, 0.9)]
    assert speedrun.first_reach(curve, 1.2) == pytest.approx(18.0)


def run(seed, curve_steps, compiled=False):
    return {
        "seed": seed,
        "eval_bpb": curve_steps[-1][1],
        "steps": curve_steps[-1][0],
        "curve_steps": curve_steps,
        "curve_seconds": [(s * 0.5, b) for s, b in curve_steps],
        "compiled": compiled,
    }


def test_step_budget_time_is_steps_to_target_times_measured_seconds_per_step_plus_compile(speedrun):
    args = argparse.Namespace(time=None, label="t")
    target = {"target_bpb": 1.3, "steps": 552}
    speed = {"hf_seconds_per_step": 3.0, "slovo_seconds_per_step": 0.5, "slovo_compile_seconds": 20.0}
    out = speedrun.report(args, target, speed, [run(1, [(100, 1.6), (200, 1.4), (300, 1.2)])])
    row = out["runs"][0]
    assert row["steps_to_target"] == pytest.approx(250.0)
    assert row["seconds_to_target"] == pytest.approx(125.0)
    assert out["summary"]["ratio_median"] == pytest.approx(552 * 3.0 / 125.0)
    compiled = speedrun.report(args, target, speed, [run(1, [(100, 1.6), (200, 1.4), (300, 1.2)], compiled=True)])
    assert compiled["runs"][0]["seconds_to_target"] == pytest.approx(145.0)


def test_a_seed_that_never_reaches_the_target_is_counted_but_given_no_time(speedrun):
    args = argparse.Namespace(time="150s", label="t")
    target = {"target_bpb": 1.3, "steps": 552}
    speed = {"hf_seconds_per_step": 3.0, "slovo_seconds_per_step": 0.5, "slovo_compile_seconds": 0.0}
    out = speedrun.report(args, target, speed, [run(1, [(100, 1.6), (300, 1.2)]), run(2, [(100, 1.6), (300, 1.4)])])
    assert out["summary"]["reached"] == 1 and out["summary"]["seeds"] == 2
    assert out["runs"][1]["seconds_to_target"] is None
    assert out["runs"][0]["seconds_to_target"] == pytest.approx(0.5 * (100 + 200 * 0.3 / 0.4))  # training clock


def test_recipe_overrides_are_read_as_slovo_train_reads_them(speedrun, tmp_path):
    args = argparse.Namespace(
        seed=7, threads=0, device="cpu", preset="tiny", set=["model.zero_init_residual=true", "optim.lr=3e-2"]
    )
    cfg = speedrun.slovo_config(args, tmp_path, {"budget.max_steps": 5})
    assert cfg.model.zero_init_residual is True and cfg.optim.lr == 0.03 and cfg.train.seed == 7
