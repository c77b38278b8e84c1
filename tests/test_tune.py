"""slovo tune: the size rule, the final run's wall clock, bad input, the whole tune on the clock, kill and rerun."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slovo.cli import main as cli_main
from slovo.tune import WallClock, horizon_lr, predicted_loss
from slovo.utils import read_json_dict

REPO = Path(__file__).resolve().parents[1]

# The base the candidate shapes are drawn from: 1 layer x 32 wide, so every probe takes a second or two.
TINY_BASE = """\
model: {n_layer: 1, n_head: 2, n_embd: 32, seq_len: 32}
train: {per_device_train_batch_size: 4, log_every: 1, num_threads: 1}
optim: {lr: 3.0e-3}
eval: {every: 4, tokens: 1024}
sample: {max_new_tokens: 8}
checkpoint: {every_seconds: 0}
budget: {time: 10s}
"""


@pytest.fixture
def tiny_base(tmp_path) -> Path:
    path = tmp_path / "tiny-base.yaml"
    path.write_text(TINY_BASE)
    return path


# ---------------------------------------------------------------------------------------------
# the rules


def _best_ratio(speed_of) -> float:
    """tokens/param of the size the loss law picks among 0.5M..200M params for 1e16 FLOPs' worth of time."""
    sizes = [10 ** (5.7 + i / 20) for i in range(52)]
    seconds = 1000.0
    best = min(sizes, key=lambda n: predicted_loss(n, speed_of(n) * seconds, unique=1e12))
    return speed_of(best) * seconds / best


def test_size_rule_gives_chinchilla_ratio_when_speed_falls_as_one_over_params():
    flops_per_s = 1e16 / 1000.0
    ratio = _best_ratio(lambda n: flops_per_s / (6 * n))
    assert 10 < ratio < 40  # Chinchilla's ~20 tokens/param (a little more at these small budgets)


def test_size_rule_picks_a_smaller_ratio_when_small_models_are_not_faster():
    flops_per_s = 1e16 / 1000.0
    compute_bound = _best_ratio(lambda n: flops_per_s / (6 * n))
    # a CPU's fixed costs per step: halving the model buys far less than twice the tokens
    overhead_bound = _best_ratio(lambda n: flops_per_s / (6 * (n + 2e7)))
    assert overhead_bound < compute_bound / 2


def test_repeated_data_is_worth_less_than_fresh_data():
    fresh = predicted_loss(1e6, 1e8, unique=1e9)
    repeated = predicted_loss(1e6, 1e8, unique=1e7)  # ten epochs of a small dataset
    assert repeated > fresh


def test_longer_final_run_takes_a_lower_lr_than_the_probe_winner():
    assert horizon_lr(4e-3, 1e5, 1e5) == 4e-3
    assert horizon_lr(4e-3, 1e5, 1e6) == pytest.approx(4e-3 * 10**-0.3)
    assert horizon_lr(4e-3, 1e5, 1e6) < horizon_lr(4e-3, 1e5, 2e5) < 4e-3


def test_final_run_clock_counts_evals_and_checkpoints_but_not_the_final_eval():
    now = [100.0]
    clock = WallClock()
    clock.now = lambda: now[0]
    clock.origin = now[0]
    with clock.measure("train"):
        now[0] += 5
    with clock.measure("eval"):
        now[0] += 2
    now[0] += 0.5  # between the ledger's entries (logging, the bar): wall time all the same
    assert clock.train_time == pytest.approx(7.5)
    with clock.measure("final_eval"):
        now[0] += 3
    assert clock.train_time == pytest.approx(7.5)
    state = clock.state_dict()
    later = WallClock()
    later.now = lambda: 1000.0
    later.load_state_dict(state)  # a resumed run goes on from the wall seconds it had spent
    assert later.train_time == pytest.approx(7.5)
    assert later.ledger["eval"] == pytest.approx(2)


# ---------------------------------------------------------------------------------------------
# bad input


def test_a_total_too_short_to_probe_and_train_is_one_line_naming_the_minimum(small_dataset, tmp_path, capsys):
    code = cli_main(["tune", "--data", str(small_dataset), "--time", "90s", "--tune-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "at least 2m00s" in err and "90s" in err
    assert not any(tmp_path.iterdir())


def test_a_dataset_smaller_than_one_batch_is_one_line(small_dataset, tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text(
        "model: {n_layer: 1, n_head: 2, n_embd: 32, seq_len: 4096}\ntrain: {per_device_train_batch_size: 512}\n"
    )
    code = cli_main(
        [
            "tune",
            "--data",
            str(small_dataset),
            "--time",
            "5m",
            "--preset-base",
            str(big),
            "--tune-dir",
            str(tmp_path / "tune"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "fewer than one batch of windows" in err and "512 x 4097" in err
    assert not (tmp_path / "tune").exists()


def test_another_tune_with_the_same_name_is_refused(small_dataset, tiny_base, tmp_path, capsys, monkeypatch):
    import slovo.tune.run as tune_run

    monkeypatch.setattr(tune_run, "MIN_TOTAL_S", 5.0)
    folder = tmp_path / "tune" / "x"
    folder.mkdir(parents=True)
    (folder / "plan.json").write_text(json.dumps({"args": {"data": "elsewhere"}, "plan": {}}))
    code = cli_main(
        [
            "tune",
            "--data",
            str(small_dataset),
            "--time",
            "20s",
            "--preset-base",
            str(tiny_base),
            "--tune-dir",
            str(tmp_path / "tune"),
            "--name",
            "x",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "other arguments" in err and len(err.splitlines()) == 1


def test_probe_cost_counts_every_trial_to_the_first_rung_and_a_third_of_them_past_it():
    from slovo.tune.plan import probe_cost

    # rungs at evals 1 and 3 of 9: 12 trials x 1/9, then 5 (12/3 + the first) x 2/9, then 2.33 x 6/9
    assert probe_cost(12, evals=9, eta=3, min_iter=1) == pytest.approx(12 / 9 + 5 * 2 / 9 + (12 / 9 + 1) * 6 / 9)
    # one rung at eval 3 of 9: 12 x 3/9 to it, then 5 x 6/9 to the end
    assert probe_cost(12, evals=9, eta=3, min_iter=3) == pytest.approx(12 * 3 / 9 + 5 * 6 / 9)
    for trials in (3, 12, 36):
        assert trials * 3 / 9 < probe_cost(trials, min_iter=3) < trials  # pruning saves time, never all of it


def test_probes_vary_lr_and_batch_on_the_rules_shape_and_drop_the_batch_rather_than_be_too_short():
    from slovo.config import load_config
    from slovo.tune.plan import MIN_PROBE_STEPS, Plan, Shape, _choose_axes

    cfg = load_config(preset="tiny", overrides={"model.vocab_size": 8192})

    def plan_for(sweep_s: float, compile_speedup: float = 1.0) -> Plan:
        plan = Plan(1200, 300, 900, "tiny", "data", "cpu", False, "", base_lr=0.015, base_batch=8)
        plan.compile_speedup = compile_speedup
        for (depth, width), speed, loss in (((2, 256), 8000, 9.7), ((2, 192), 10000, 9.8), ((3, 256), 6500, 9.9)):
            plan.shapes.append(Shape(depth, width, params=1, tokens_per_s=speed, predicted_loss=loss))
        _choose_axes(plan, cfg, [8, 4], sweep_s)
        return plan

    roomy = plan_for(600.0)
    assert (roomy.depths, roomy.widths, roomy.batches) == ([2], [256], [8, 4])  # the rule's best shape only
    assert roomy.lrs == [0.015, 0.03, 0.0075] and roomy.trials == 6
    # 6 probes would get 25 s each in 120 s: ~100 steps; 3 probes get 47 s, ~180 steps
    tight = plan_for(120.0)
    assert tight.batches == [8] and tight.trials == 3
    assert tight.trial_s * 8000 / (8 * 256) >= MIN_PROBE_STEPS
    # the speeds are the compiled final run's; the probes train eager, 1.6x slower, so they need longer
    assert plan_for(160.0).batches == [8, 4]
    assert plan_for(160.0, compile_speedup=1.6).batches == [8]


def test_probes_vary_muon_lr_when_the_base_trains_with_muon(small_dataset, tiny_base, tmp_path):
    import yaml

    from slovo.config import load_config
    from slovo.tune.plan import LR_FACTORS, make_plan
    from slovo.tune.run import probe_sweep_yaml

    plans = {}
    for name in ("adamw", "muon"):
        cfg = load_config(
            config_file=tiny_base,
            overrides={"data.path": str(small_dataset), "optim.name": name, "optim.muon_lr": 0.04},
        )
        cfg.model.vocab_size = 300
        plan = make_plan(cfg, str(tiny_base), 60.0, 0.5, "cpu", train_tokens=10_000, say=lambda *_: None)
        plans[name] = (plan, yaml.safe_load(probe_sweep_yaml(plan, str(tiny_base), True, cfg))["parameters"])
    adamw, adamw_params = plans["adamw"]
    muon, muon_params = plans["muon"]
    assert adamw.lr_key == "optim.lr" and adamw.lrs == [3e-3 * f for f in LR_FACTORS]
    assert muon.lr_key == "optim.muon_lr" and muon.lrs == [0.04 * f for f in LR_FACTORS]
    assert muon_params["optim.muon_lr"] == {"values": muon.lrs} and "optim.lr" not in muon_params
    assert adamw_params["optim.lr"] == {"values": adamw.lrs} and "optim.muon_lr" not in adamw_params


# ---------------------------------------------------------------------------------------------
# the whole tune


def test_dry_run_prints_the_plan_and_writes_nothing(small_dataset, tiny_base, tmp_path, capsys, monkeypatch):
    import slovo.tune.run as tune_run

    monkeypatch.setattr(tune_run, "MIN_TOTAL_S", 5.0)
    code = cli_main(
        [
            "tune",
            "--data",
            str(small_dataset),
            "--time",
            "40s",
            "--preset-base",
            str(tiny_base),
            "--tune-dir",
            str(tmp_path / "tune"),
            "--dry-run",
            "--probe-fraction",
            "0.5",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "probe phase" in out and "final run" in out and "tokens/param" in out
    assert not (tmp_path / "tune").exists()


def test_tune_ends_within_two_percent_of_the_total_continuing_the_winning_probe(
    small_dataset, tiny_base, tmp_path, monkeypatch
):
    import slovo.tune.run as tune_run
    from slovo.config import load_config

    monkeypatch.setattr(tune_run, "MIN_TOTAL_S", 5.0)
    total = 24.0
    start = time.monotonic()
    result = tune_run.run_tune(
        str(small_dataset),
        f"{total:g}s",
        base=str(tiny_base),
        name="t",
        tune_dir=tmp_path / "tune",
        probe_fraction=0.4,
        quiet=True,
    )
    wall = time.monotonic() - start
    assert result["status"] == "finished"
    assert wall <= total * 1.02 + result["final_eval_s"] + result["report_s"]
    assert wall >= total * 0.9  # the final run used the time left, it did not stop early
    folder = tmp_path / "tune" / "t"
    trials = sorted((folder / "probes" / "trials").iterdir())
    assert trials and all((t / "summary.json").exists() for t in trials)
    final = read_json_dict(folder / "final" / "summary.json")
    assert final["status"] == "finished" and final["stop_reason"] == "time"
    chosen = load_config(config_file=folder / "choice.yaml")  # ready for slovo train --config
    assert chosen.model.n_layer == read_json_dict(folder / "tune.json")["choice"]["model.n_layer"]
    assert (folder / "report.html").stat().st_size > 0
    # the final run went on from the winning probe's decay-start checkpoint: it holds the probe's records up to
    # there (not those of the probe's cooldown) and its own after, at the lr carried to the final horizon
    winner = Path(read_json_dict(folder / "tune.json")["winner"])
    assert winner.parent == folder / "probes" / "trials"
    decay_step = _decay_start_step(winner)
    probe = [r for r in _records(winner) if r["train/global_step"] <= decay_step]
    records = _records(folder / "final")
    assert records[: len(probe)] == probe
    after = [r for r in records[len(probe) :] if "train/loss" in r]
    assert after[0]["train/global_step"] == decay_step + 1
    assert after[0]["train/learning_rate"] == pytest.approx(chosen.optim.lr)
    per_step = chosen.train.per_device_train_batch_size * chosen.model.seq_len
    assert final["tokens"] == final["train/global_step"] * per_step  # the probe's tokens count as the run's


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _decay_start_step(run_dir: Path) -> int:
    tagged = [p for p in (run_dir / "checkpoints").glob("step_*") if read_json_dict(p / "checkpoint.json").get("tag")]
    assert len(tagged) == 1
    return int(tagged[0].name.removeprefix("step_"))


def _start(args: list[str]) -> subprocess.Popen:
    code = (
        "import sys; import slovo.tune.run as r; r.MIN_TOTAL_S = 5.0; from slovo.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"tune ended before the kill: {proc.stdout.read()}"
        assert time.monotonic() < deadline, "timed out waiting for the moment to kill"
        time.sleep(0.1)


def _finished_trials(folder: Path) -> dict[str, str]:
    out = {}
    for t in sorted((folder / "probes" / "trials").glob("trial-*")):
        if read_json_dict(t / "summary.json").get("status") in ("finished", "pruned"):
            out[t.name] = (t / "metrics.jsonl").read_text()
    return out


@pytest.mark.slow
def test_killed_tune_reruns_no_finished_probe_and_resumes_its_final_run(small_dataset, tiny_base, tmp_path):
    folder = tmp_path / "tune" / "k"
    args = [
        "tune",
        "--data",
        str(small_dataset),
        "--time",
        "30s",
        "--preset-base",
        str(tiny_base),
        "--tune-dir",
        str(tmp_path / "tune"),
        "--name",
        "k",
        "--probe-fraction",
        "0.5",
        "--quiet",
    ]
    # 1. kill during the probes, once one probe has finished
    proc = _start(args)
    _wait_for(proc, lambda: bool(_finished_trials(folder)))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = _finished_trials(folder)
    assert not (folder / "final").exists()
    # 2. kill during the final run, once it has a checkpoint of its own (besides the probe's it continues from)
    proc = _start(args)
    _wait_for(proc, lambda: len(list((folder / "final" / "checkpoints").glob("step_*"))) >= 2)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # 3. the rerun finishes
    proc = _start(args)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    for name, metrics in finished.items():  # no finished probe was trained again
        assert (folder / "probes" / "trials" / name / "metrics.jsonl").read_text() == metrics
    records = _records(folder / "final")
    started = _decay_start_step(Path(read_json_dict(folder / "tune.json")["winner"]))
    own = [r for r in records if r["train/global_step"] > started]
    assert own[0]["wall_time"] < killed_at  # the final run resumed: its first own steps are from before the kill
    summary = read_json_dict(folder / "final" / "summary.json")
    assert summary["status"] == "finished"
    assert summary["train_runtime"] >= summary["budget"]["time_s"] - 1e-6
    assert not math.isnan(summary["eval/bpb"])
