"""Faults from the command line: a run killed at random moments (inside checkpoint writes too) resumes and
finishes exactly; a truncated newest checkpoint is passed over with one line; a second writer is refused."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slovo.cli import main
from slovo.utils import read_json, read_jsonl
from tests.helpers import TINY_SETS, tiny_train_args

# `slovo train`, with every checkpoint save slowed down between its files (state.pt is written 30 ms after
# model.safetensors, checkpoint.json 30 ms after state.pt), so that a kill lands inside a save often
SLOW_SAVES = """
import sys, time
import slovo.train.checkpoint as checkpoint
real_write_state = checkpoint._write_state
def slow_write_state(path, state):
    time.sleep(0.03)
    real_write_state(path, state)
    time.sleep(0.03)
checkpoint._write_state = slow_write_state
from slovo.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}


def _slovo(*args, slow_saves=False, **kw) -> subprocess.Popen:
    head = ["-c", SLOW_SAVES] if slow_saves else ["-m", "slovo"]
    return subprocess.Popen(
        [sys.executable, *head, "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        **kw,
    )


def _newest_step(run: Path) -> int:
    steps = [int(p.name[5:]) for p in (run / "checkpoints").glob("step_*") if (p / "checkpoint.json").exists()]
    return max(steps, default=-1)


def _wait(proc: subprocess.Popen, condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) while waiting for {what}:\n{err[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.mark.slow
def test_a_run_killed_at_ten_random_moments_resumes_each_time_and_ends_exactly_like_an_unbroken_one(
    small_dataset, tmp_path
):
    steps = 90
    common = [
        "--data",
        str(small_dataset),
        "--preset",
        "tiny",
        "--max-steps",
        str(steps),
        "--quiet",
        *TINY_SETS,
        "--set=checkpoint.every_steps=3",
        "--set=checkpoint.keep_last=1",
        "--set=train.num_threads=1",
    ]
    straight = _slovo(*common, "--runs-dir", str(tmp_path), "--name", "straight")
    run = tmp_path / "killed"
    rng = random.Random(1234)
    inside_saves = 0
    for i in range(10):
        before = _newest_step(run) if run.exists() else -1
        args = (
            ["--resume", str(run), "--max-steps", str(steps), "--quiet"]
            if i
            else [*common, "--runs-dir", str(tmp_path), "--name", "killed"]
        )
        proc = _slovo(*args, slow_saves=True)
        _wait(proc, lambda before=before: run.exists() and _newest_step(run) > before, "a new checkpoint")
        if i % 2 == 0:  # inside the next checkpoint save: its staging folder exists and the save sleeps between files
            _wait(proc, lambda: any((run / "checkpoints").glob(".step_*.tmp-*")), "a checkpoint being written")
            time.sleep(rng.uniform(0.0, 0.06))
        else:  # anywhere: a step, an eval, a sample, a save
            time.sleep(rng.uniform(0.0, 0.4))
        inside_saves += any((run / "checkpoints").glob(".step_*.tmp-*"))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL  # it was still training: no resume failed on its own
    assert inside_saves >= 3
    last = subprocess.run(
        [sys.executable, "-m", "slovo", "train", "--resume", str(run), "--max-steps", str(steps)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert last.returncode == 0, last.stderr[-3000:]
    straight.communicate(timeout=300)
    assert straight.returncode == 0
    summary, unbroken = read_json(run / "summary.json"), read_json(tmp_path / "straight" / "summary.json")
    assert summary["status"] == "finished" and summary["train/global_step"] == steps
    assert not list((run / "checkpoints").glob(".*"))  # no leftovers of the killed saves
    # a damaged checkpoint loaded anywhere along the way would show here: the trajectory is the unbroken one's
    assert summary["eval/loss"] == pytest.approx(unbroken["eval/loss"], rel=1e-6)
    losses = [r["train/loss"] for r in read_jsonl(run / "metrics.jsonl") if "train/loss" in r]
    assert losses == pytest.approx(
        [r["train/loss"] for r in read_jsonl(tmp_path / "straight" / "metrics.jsonl") if "train/loss" in r], rel=1e-6
    )


def test_a_truncated_newest_checkpoint_is_passed_over_with_one_line(small_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # the terminal's lines are not wrapped
    run = tmp_path / "r"
    extra = ("--max-steps", "8", "--set=checkpoint.every_steps=2", "--set=schedule.name=constant")
    assert main(tiny_train_args(small_dataset, tmp_path, "r", *extra)) == 0
    weights = run / "checkpoints" / "step_0000008" / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 2)
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    notices = [line for line in out.splitlines() if "damaged" in line]
    assert notices == [
        f"checkpoint step_0000008 is damaged (model.safetensors is {size // 2} bytes, "
        f"checkpoint.json says {size}); resuming from step_0000006"
    ]
    summary = read_json(run / "summary.json")
    assert summary["status"] == "finished" and summary["train/global_step"] == 8


@pytest.mark.slow
def test_a_second_writer_of_a_live_run_is_refused_with_one_line_and_resume_works_after_a_kill(
    small_dataset, tmp_path, capsys
):
    run = tmp_path / "X"
    first = _slovo(
        "--data",
        str(small_dataset),
        "--runs-dir",
        str(tmp_path),
        "--name",
        "X",
        "--time",
        "300s",
        "--quiet",
        *TINY_SETS,
        "--set=checkpoint.every_steps=2",
    )
    try:
        _wait(first, lambda: run.exists() and _newest_step(run) >= 2, "a checkpoint")
        capsys.readouterr()
        base = ["train", "--data", str(small_dataset), "--runs-dir", str(tmp_path), "--max-steps", "5", *TINY_SETS]
        for args, needle in (
            (["train", "--resume", str(run), "--max-steps", "5"], f"pid {first.pid}"),
            ([*base, "--name", "X", "--overwrite"], "another slovo process is training in it"),
            ([*base, "--name", "X"], "already exists"),
        ):
            assert main(args) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
        assert first.poll() is None  # the refused writers left the live run alone
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    step = _newest_step(run)
    assert main(["train", "--resume", str(run), "--max-steps", str(step + 3), "--quiet"]) == 0
    summary = read_json(run / "summary.json")
    assert summary["status"] == "finished" and summary["train/global_step"] == step + 3
