"""Sweep leaderboards that know their noise: configs indistinguishable from the best are marked, from seeds
when there are any, else window by window on the eval windows every run scored (Holm over every pair); an lr the
divergence guard cut shows as trained."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from slovo import window_losses
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


def _run(lr, seed, bpb, se=None, lr_scale=None, status="finished", run_dir="x"):
    return {
        "trial": int(lr * 1e4) * 10 + seed,
        "run": f"lr{lr}-s{seed}",
        "run_dir": str(run_dir),
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
    assert "paired t-test" in to_markdown(rows, spec) and "Holm" in to_markdown(rows, spec)


def _single_run(tmp_path, lr, nats, n_bytes):
    """A finished single run whose final eval left per-window losses; its bpb is theirs."""
    folder = tmp_path / f"lr{lr}"
    window_losses.save(folder, nats, n_bytes, step=10)
    bpb = float(nats.sum() / math.log(2) / n_bytes.sum())
    return _run(lr, 0, bpb, se=0.011, run_dir=folder)


def test_without_seeds_runs_are_compared_window_by_window_on_the_windows_they_share(spec, tmp_path):
    # windows differ a lot (an se of ~0.011 bpb each), the runs little: 1.96 x the combined se (~0.03) called a
    # steady 0.02 lead "within noise"; paired window by window it is far outside eval noise
    rng = np.random.default_rng(0)
    n_bytes = np.full(256, 1000.0)
    base = rng.normal(1.0, 0.09, 256) * math.log(2) * 1000  # nats giving bpb ~1.0
    wobble = 0.002 * math.log(2) * 1000
    runs = [
        _single_run(tmp_path, 0.001, base + rng.normal(0, wobble, 256), n_bytes),
        _single_run(tmp_path, 0.002, base + rng.normal(0, wobble, 256), n_bytes),  # eval noise apart
        _single_run(tmp_path, 0.004, base + 0.02 * math.log(2) * 1000 + rng.normal(0, wobble, 256), n_bytes),
    ]
    rows = leaderboard(runs, spec)
    assert rows[2]["eval/bpb"] - rows[0]["eval/bpb"] < 1.96 * math.hypot(0.011, 0.011)  # the old band's "noise"
    assert [r["vs_best"] for r in rows] == ["best", "within noise", ""]
    assert all(r["noise"] == "windows" for r in rows)
    csv_text = to_csv(rows, spec)
    assert "eval/bpb_se,vs_best,lr_scale" in csv_text.splitlines()[0]
    assert "within noise" in csv_text
    assert "seed noise too" in to_markdown(rows, spec)


def test_no_per_window_losses_means_no_noise_marks_beyond_the_best(spec):
    rows = leaderboard([_run(0.001, 0, 1.0, se=0.01), _run(0.002, 0, 1.0001, se=0.01)], spec)
    assert [r["vs_best"] for r in rows] == ["best", ""]
    assert "no noise estimate" in to_markdown(rows, spec)


def test_an_lr_the_divergence_guard_cut_shows_as_the_lr_it_trained_at(spec):
    rows = leaderboard([_run(0.004, 0, 1.0, lr_scale=0.25), _run(0.001, 0, 1.1)], spec)
    md = to_markdown(rows, spec)
    assert "| 0.001 (0.004 x 1/4) |" in md  # effective lr first, the nominal and the cut after
    assert "| 0.001 |" in md
    assert rows[0]["lr_scale"] == 0.25 and rows[1]["lr_scale"] is None
