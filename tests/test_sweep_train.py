"""slovo sweep with real training: a 1-layer model on a tiny generated corpus, a few dozen steps per trial."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from slovo.cli import main as cli_main
from slovo.config import load_config
from slovo.sweep import run_sweep

TINY_MODEL = {  # fixed for every trial: seconds per run on a CPU
    "model.n_layer": {"value": 1},
    "model.n_embd": {"value": 32},
    "model.n_head": {"value": 2},
    "model.seq_len": {"value": 32},
    "train.per_device_train_batch_size": {"value": 4},
    "eval.every": {"value": 5},
    "eval.tokens": {"value": 1024},
    "sample.enabled": {"value": False},
    "budget.time": {"value": None},
    "train.num_threads": {"value": 1},
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweepdata")
    rng = random.Random(0)
    words = "в начале было слово и слово было у бога и бог был слово оно было в начале у бога".split()
    text = "\n\n".join(" ".join(rng.choice(words) for _ in range(40)) for _ in range(300))
    (root / "corpus.txt").write_text(text, encoding="utf-8")
    out = root / "ds"
    assert (
        cli_main(["prepare", "--data", str(root / "corpus.txt"), "--out", str(out), "--vocab-size", "300", "--quiet"])
        == 0
    )
    return out


def write_sweep(tmp_path, dataset, lrs, threads=True, **extra):
    fixed = {k: v for k, v in TINY_MODEL.items() if threads or k != "train.num_threads"}
    spec = {
        "method": "grid",
        "preset": "tiny",
        "data": str(dataset),
        "budget": {"max_steps": 30},
        "parameters": {"optim.lr": {"values": lrs}, **fixed},
        **extra,
    }
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_real_grid_sweep_leaves_ordinary_run_folders_and_rerun_skips_them(tmp_path, dataset):
    from slovo.train.checkpoint import load_for_inference

    path = write_sweep(tmp_path, dataset, [1e-2, 3e-3])
    results = run_sweep(path, sweeps_dir=tmp_path / "sweeps", print_table=False)
    trials_dir = tmp_path / "sweeps" / "real" / "trials"
    runs = sorted(trials_dir.iterdir())
    assert [r.name for r in runs] == ["trial-000", "trial-001"]
    for run_dir in runs:
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["train/global_step"] == 30
        model, cfg, _ = load_for_inference(run_dir)  # what generate / eval / export open
        assert cfg.model.n_layer == 1
    assert [r["status"] for r in results["rows"]] == ["finished", "finished"]
    assert results["rows"][0]["eval/bpb"] <= results["rows"][1]["eval/bpb"]
    stamps = {r.name: (r / "summary.json").stat().st_mtime_ns for r in runs}

    again = run_sweep(path, sweeps_dir=tmp_path / "sweeps", print_table=False)
    assert {r.name: (r / "summary.json").stat().st_mtime_ns for r in runs} == stamps  # nothing retrained
    assert [r["eval/bpb"] for r in again["rows"]] == [r["eval/bpb"] for r in results["rows"]]

    from slovo.report import write_report  # the report reads a real sweep folder: both trials and the leaderboard

    out = write_report([tmp_path / "sweeps" / "real"], tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert out["runs"] == 2 and out["sweeps"] == 1
    assert "Leaderboard" in page and "optim.lr" in page and "trial-001" in page


def test_a_sweep_over_a_nested_key_trains_its_trials(tmp_path, dataset):
    path = write_sweep(tmp_path, dataset, [3e-3], budget={"max_steps": 6})
    spec = yaml.safe_load(path.read_text())
    spec["parameters"]["debug.lr_spike.at"] = {"values": [0.25, 0.75]}  # three levels deep
    path.write_text(yaml.safe_dump(spec))
    results = run_sweep(path, sweeps_dir=tmp_path / "sweeps", print_table=False)
    runs = sorted((tmp_path / "sweeps" / "real" / "trials").iterdir())
    assert [r["status"] for r in results["rows"]] == ["finished", "finished"]
    spikes = sorted(load_config(config_file=r / "config.yaml").debug.lr_spike.at for r in runs)
    assert spikes == [0.25, 0.75]


def test_real_hyperband_prunes_a_configuration_that_cannot_learn(tmp_path, dataset):
    path = write_sweep(tmp_path, dataset, [1e-2, 1e-7], early_terminate={"type": "hyperband", "min_iter": 1, "eta": 3})
    results = run_sweep(path, sweeps_dir=tmp_path / "sweeps", print_table=False)
    by_lr = {r["params"]["optim.lr"]: r for r in results["runs"]}
    assert by_lr[1e-2]["status"] == "finished"
    assert by_lr[1e-7]["status"] == "pruned"
    summary = json.loads((Path(by_lr[1e-7]["run_dir"]) / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["train/global_step"] < 30  # stopped before its budget


@pytest.mark.slow
def test_cli_two_workers_train_distinct_trials_in_one_study(tmp_path, dataset):
    lrs = [1e-2, 3e-3, 1e-3, 3e-4]
    path = write_sweep(tmp_path, dataset, lrs, threads=False)
    proc = subprocess.run(
        [sys.executable, "-m", "slovo", "sweep", str(path), "--workers", "2", "--sweeps-dir", str(tmp_path / "sweeps")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep_dir = tmp_path / "sweeps" / "real"
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(
        study_name="real", storage=optuna.storages.JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    )
    assert sorted(t.params["optim.lr"] for t in study.trials) == sorted(lrs)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2
    assert len(list((sweep_dir / "trials").iterdir())) == len(lrs)
    for run_dir in (sweep_dir / "trials").iterdir():  # each worker trained with its share of the cores
        cfg = load_config(config_file=run_dir / "config.yaml")
        assert cfg.train.num_threads == max(1, (os.cpu_count() or 1) // 2)
    assert "trial-003" in (sweep_dir / "leaderboard.md").read_text() and "best" in proc.stdout
