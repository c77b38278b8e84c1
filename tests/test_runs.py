"""`slovo runs`: finding run folders, their status, sorting and filtering, and the command's output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from slovo.cli import main
from slovo.runs import SILENT_RUN_STALE_AFTER_S, filter_runs, find_runs, load_run, load_runs, sort_runs
from tests.fake_runs import make_fake_run, make_fake_sweep


@pytest.fixture()
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    make_fake_run(root, "lr-high", lr=1e-2, seed=1)
    make_fake_run(root, "lr-mid", lr=3e-3, seed=2)
    make_fake_run(root, "other", lr=3e-4, seed=3, status="failed")
    return root


def test_find_runs_includes_sweep_trials_and_skips_run_internals(tmp_path, runs_dir):
    make_fake_sweep(tmp_path / "sweeps", "lr", trials=2)
    (runs_dir / "lr-high" / "checkpoints" / "step_0000010").mkdir(parents=True)
    names = sorted(p.name for p in find_runs(tmp_path))
    assert names == ["lr-high", "lr-mid", "other", "trial-000", "trial-001"]
    trial = load_run(tmp_path / "sweeps" / "lr" / "trials" / "trial-000")
    assert trial.sweep == "lr"
    assert find_runs(runs_dir / "lr-mid") == [runs_dir / "lr-mid"]  # a run folder itself


def test_running_run_that_stopped_writing_shows_stale(runs_dir):
    run = make_fake_run(runs_dir, "live", status="running")
    assert load_run(run).status == "running"
    old = time.time() - SILENT_RUN_STALE_AFTER_S - 60
    for name in ("summary.json", "metrics.jsonl"):
        os.utime(run / name, (old, old))
    assert load_run(run).status == "stale"
    assert load_run(runs_dir / "other").status == "failed"  # a final status is taken as written


def test_running_run_whose_process_is_gone_shows_stale_at_once(runs_dir):
    import socket

    run = make_fake_run(runs_dir, "live", status="running")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "pid": child.pid, "host": socket.gethostname()}))
    assert load_run(run).status == "stale"
    (run / "summary.json").write_text(json.dumps({**summary, "pid": os.getpid(), "host": socket.gethostname()}))
    assert load_run(run).status == "running"


def test_live_run_counts_steps_from_metrics_not_the_lagging_summary(runs_dir):
    run = make_fake_run(runs_dir, "live", status="running", steps=100)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "train/global_step": 20, "tokens": 1}))
    info = load_run(run)
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert info.steps == last["train/global_step"] > 20 and info.tokens == last["tokens"]


def test_sort_by_bpb_and_filter_by_glob(runs_dir):
    runs = load_runs(runs_dir)
    by_bpb = sort_runs(runs, "bpb")
    values = [r.eval_bpb for r in by_bpb]
    assert values == sorted(values) and len(values) == 3
    assert [r.name for r in sort_runs(runs, "-bpb")] == [r.name for r in reversed(by_bpb)]
    assert sorted(r.name for r in filter_runs(runs, "lr-*")) == ["lr-high", "lr-mid"]


def test_runs_without_a_value_sort_last_both_ways(runs_dir):
    run = make_fake_run(runs_dir, "no-eval", evals=0, steps=20)
    assert load_run(run).eval_bpb is None
    runs = load_runs(runs_dir)
    assert sort_runs(runs, "bpb")[-1].name == "no-eval"
    assert sort_runs(runs, "bpb", reverse=True)[-1].name == "no-eval"


def test_cli_table_lists_runs_with_status(runs_dir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["runs", str(runs_dir), "--sort", "name"]) == 0
    out = capsys.readouterr().out
    assert out.index("lr-high") < out.index("lr-mid") < out.index("other")
    assert "failed" in out and "finished" in out and "3 runs" in out


def test_cli_filters_a_sweep_and_prints_json(tmp_path, runs_dir, capsys):
    make_fake_sweep(tmp_path / "sweeps", "lr", trials=3)
    make_fake_sweep(tmp_path / "sweeps", "wd", trials=2)
    assert main(["runs", str(tmp_path), "--sweep", "lr", "--json", "--sort=-bpb"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["name"] for r in rows) == ["trial-000", "trial-001", "trial-002"]
    assert {r["sweep"] for r in rows} == {"lr"}
    bpbs = [r["eval_bpb"] for r in rows]
    assert bpbs == sorted(bpbs, reverse=True)


def test_cli_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "missing")]) == 2
    assert "missing: no such folder" in capsys.readouterr().err
    assert main(["runs", str(tmp_path), "--sort", "colour"]) == 2
    assert "unknown column" in capsys.readouterr().err
    assert main(["runs", str(tmp_path)]) == 0
    assert "no runs in" in capsys.readouterr().out
