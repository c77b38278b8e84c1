"""Sweep leaderboards that know their noise: configs indistinguishable from the best are marked, from seeds
when there are any, else from the eval standard errors; an lr the divergence guard cut shows as trained."""

from __future__ import annotations

import pytest
import yaml

from slovo.sweep import load_sweep
from slovo.sweep.results import leaderboard, to_csv, to_markdown


@pytest.fixture
def spec(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    path = tmp_path / "s.yaml"
    body = {"preset": "tiny", "data": str(data), "budget": {"max_steps": 10}}
    path.write_text(yaml.safe_dump({**body, "parameters": {"optim.lr": {"values": [0.001, 0.002, 0.004]}}}))
    return load_sweep(path)


def _run(lr, seed, bpb, se=None, lr_scale=None, status="finished"):
    return {
        "trial": int(lr * 1e4) * 10 + seed,
        "run": f"lr{lr}-s{seed}",
        "run_dir": "x",
        "seed_index": seed,
        "status": status,
        "params": {"optim.lr": lr},
        "key": str(lr),
        "error": None,
        "eval/bpb": bpb,
        "eval/loss": bpb * 2,
        "train_runtime": 1.0,
        "eval/bpb_se": se,
        "lr_scale": lr_scale,
    }


def test_with_seeds_configs_a_paired_test_cannot_tell_from_the_best_are_marked(spec):
    runs = [
        *(_run(0.001, s, v) for s, v in enumerate([1.000, 1.010, 1.005])),
        *(_run(0.002, s, v) for s, v in enumerate([1.002, 1.008, 1.009])),  # within noise of the best
        *(_run(0.004, s, v) for s, v in enumerate([1.050, 1.061, 1.054])),  # clearly worse, every seed
    ]
    rows = leaderboard(runs, spec)
    assert [(r["params"]["optim.lr"], r["vs_best"]) for r in rows] == [
        (0.001, "best"),
        (0.002, "within noise"),
        (0.004, ""),
    ]
    assert all(r["noise"] == "seeds" for r in rows)
    assert "paired t-test" in to_markdown(rows, spec)


def test_without_seeds_the_eval_standard_error_sets_the_noise_floor(spec):
    runs = [_run(0.001, 0, 1.000, se=0.004), _run(0.002, 0, 1.006, se=0.004), _run(0.004, 0, 1.030, se=0.004)]
    rows = leaderboard(runs, spec)
    assert [r["vs_best"] for r in rows] == ["best", "within noise", ""]  # 0.006 < 1.96*0.0057 < 0.030
    csv_text = to_csv(rows, spec)
    assert "eval/bpb_se,vs_best,lr_scale" in csv_text.splitlines()[0]
    assert "within noise" in csv_text
    assert "seed noise too" in to_markdown(rows, spec)


def test_no_standard_error_means_no_noise_marks_beyond_the_best(spec):
    rows = leaderboard([_run(0.001, 0, 1.0), _run(0.002, 0, 1.0001)], spec)
    assert [r["vs_best"] for r in rows] == ["best", ""]


def test_an_lr_the_divergence_guard_cut_shows_as_the_lr_it_trained_at(spec):
    rows = leaderboard([_run(0.004, 0, 1.0, lr_scale=0.25), _run(0.001, 0, 1.1)], spec)
    md = to_markdown(rows, spec)
    assert "| 0.001 (0.004 x 1/4) |" in md  # effective lr first, the nominal and the cut after
    assert "| 0.001 |" in md
    assert rows[0]["lr_scale"] == 0.25 and rows[1]["lr_scale"] is None
