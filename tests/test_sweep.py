"""slovo sweep: the sweep file, the Optuna plumbing, workers, resume and results, against a fake trainer.

The fake trainer behaves like slovo.train.train from the sweep's side (evals at progress k/every through
`on_eval`, honours `should_stop`, writes summary.json and a checkpoint folder) but trains nothing, so these
tests take milliseconds per trial. tests/test_sweep_train.py runs the same paths with real training.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml

from slovo import sweep as sweep_mod
from slovo.cli import main as cli_main
from slovo.config import load_config, save_config
from slovo.errors import SlovoError
from slovo.sweep import load_sweep
from slovo.train.callbacks import Control
from slovo.utils import atomic_write_json

SWEEPS_DIR = Path(__file__).resolve().parents[1] / "src" / "slovo" / "configs" / "sweeps"


# ---------------------------------------------------------------------------------------------
# a fake trainer (module level, so worker processes started with 'spawn' can import it)


def _final_loss(cfg, progress: float) -> float:
    """Lower for learning rates near 3e-3 and bigger batches; a little noise per seed."""
    lr_gap = abs(math.log10(cfg.optim.lr / 3e-3))
    batch = cfg.train.per_device_train_batch_size * cfg.train.gradient_accumulation_steps
    floor = 3.0 + 0.5 * lr_gap - 0.01 * batch + 0.001 * (cfg.train.seed % 7)
    return 8.0 - (8.0 - floor) * progress**0.5


def fake_train(cfg, run_dir, resume=False, callbacks=(), sleep=0.0, calls=None):
    run_dir = Path(run_dir)
    if calls is not None:
        calls.append(
            {
                "run": run_dir.name,
                "resume": resume,
                "seed": cfg.train.seed,
                "lr": cfg.optim.lr,
                "threads": cfg.train.num_threads,
            }
        )
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=False)  # the sweep must hand over a fresh folder
    save_config(cfg, run_dir / "config.yaml")
    (run_dir / "checkpoints" / "step_0000001").mkdir(parents=True, exist_ok=True)
    state, control = SimpleNamespace(progress=0.0, step=0), Control()
    every, status, loss = cfg.eval.every, "finished", None
    for k in range(1, every + 1):
        if sleep:
            time.sleep(sleep / every)
        state.progress, state.step = k / every, k * 10
        loss = _final_loss(cfg, state.progress)
        for cb in callbacks:
            cb.on_eval(state, control, {"eval/loss": loss, "eval/bpb": loss / 2, "progress": state.progress})
        if control.should_stop:
            status = control.stop_reason
            break
    summary = {
        "name": run_dir.name,
        "status": status,
        "eval/loss": loss,
        "eval/bpb": loss / 2,
        "progress": state.progress,
        "train_runtime": state.progress * 10,
    }
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


def slow_fake_train(cfg, run_dir, resume=False, callbacks=()):
    """Sits in its trial long enough to be killed (used to leave a RUNNING trial behind)."""
    return fake_train(cfg, run_dir, resume, callbacks, sleep=60.0)


def _worker(spec_path, sweep_dir, train_name, sleep=0.0):
    fn = {"fake": fake_train, "slow": slow_fake_train}[train_name]
    if sleep:
        import functools

        fn = functools.partial(fake_train, sleep=sleep)
    sweep_mod.run_worker(spec_path, sweep_dir, train_fn=fn)


# ---------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def data_dir(tmp_path):
    """The sweep only checks that the dataset folder is one (meta.json); the fake trainer reads nothing."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "meta.json").write_text("{}")
    return d


def write_sweep(tmp_path, data_dir, name="s", **spec):
    body = {
        "preset": "tiny",
        "data": str(data_dir),
        "budget": {"max_steps": 100},
        "parameters": {"optim.lr": {"values": [1e-3, 3e-3]}, "schedule.name": {"values": ["constant", "wsd"]}},
    }
    body.update(spec)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def run(path, tmp_path, calls=None, **kw):
    def train_fn(cfg, run_dir, resume=False, callbacks=()):
        return fake_train(cfg, run_dir, resume, callbacks, calls=calls)

    return sweep_mod.run_sweep(path, sweeps_dir=tmp_path / "sweeps", train_fn=train_fn, print_table=False, **kw)


def journal_study(sweep_dir, name):
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    return optuna.load_study(study_name=name, storage=storage)


# ---------------------------------------------------------------------------------------------
# the sweep file


def test_example_sweep_files_load_and_validate(data_dir):
    files = sorted(SWEEPS_DIR.glob("*.yaml"))
    assert {"batch_x_accum", "lr_x_schedule", "bayes"} <= {f.stem for f in files}
    for f in files:
        spec = load_sweep(f, data=str(data_dir))
        assert spec.params
    batch_grid = load_sweep(SWEEPS_DIR / "batch_x_accum.yaml", data=str(data_dir))
    assert batch_grid.grid_size == 12 and batch_grid.fixed["optim.lr"] == 3e-3
    schedules = load_sweep(SWEEPS_DIR / "lr_x_schedule.yaml", data=str(data_dir)).param("schedule.name").values
    assert set(schedules) == {"constant", "step_drop", "triangular", "wsd"}


@pytest.mark.parametrize(
    "parameters, message",
    [
        ({"optim.lrr": {"values": [1e-3]}}, "did you mean 'optim.lr'"),
        ({"train.per_device_train_batch_size": {"values": [4, 0]}}, "per_device_train_batch_size"),
        ({"schedule.name": {"values": ["wsd", "linear"]}}, "schedule.name"),
        ({"train.per_device_train_batch_size": {"min": 2.0, "max": 8.5}}, "int_uniform"),
        ({"optim.lr": {"distribution": "normal", "mu": 0, "sigma": 1}}, "unknown key"),
        ({"optim.lr": {"distribution": "log_uniform_values", "min": 0.1, "max": 0.01}}, "must be less than max"),
        ({"optim.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}}, "grid needs a list"),
    ],
)
def test_bad_sweep_file_is_rejected_before_anything_runs(tmp_path, data_dir, parameters, message):
    path = write_sweep(tmp_path, data_dir, parameters=parameters)
    with pytest.raises(SlovoError, match=message):
        run(path, tmp_path)
    assert not (tmp_path / "sweeps").exists()


def test_bad_top_level_keys_and_missing_data_are_rejected(tmp_path, data_dir):
    with pytest.raises(SlovoError, match="program"):
        load_sweep(write_sweep(tmp_path, data_dir, program="train.py"))
    with pytest.raises(SlovoError, match="meta.json"):
        load_sweep(write_sweep(tmp_path, tmp_path / "nowhere"))
    with pytest.raises(SlovoError, match="run_cap in the file or --time"):
        run(write_sweep(tmp_path, data_dir, method="random"), tmp_path)


def test_cli_prints_one_line_for_a_bad_sweep_file(tmp_path, data_dir, capsys):
    path = write_sweep(tmp_path, data_dir, parameters={"optim.lrr": {"values": [1e-3]}})
    assert cli_main(["sweep", str(path), "--sweeps-dir", str(tmp_path / "sweeps")]) == 2
    err = capsys.readouterr().err
    assert "optim.lrr" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_wandb_distributions_become_optuna_distributions(tmp_path, data_dir):
    path = write_sweep(
        tmp_path,
        data_dir,
        method="random",
        run_cap=4,
        parameters={
            "optim": {"parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}}},
            "optim.weight_decay": {"distribution": "log_uniform", "min": math.log(0.01), "max": math.log(0.1)},
            "schedule.decay_fraction": {"distribution": "q_uniform", "min": 0.1, "max": 0.5, "q": 0.1},
            "train.per_device_train_batch_size": {"min": 2, "max": 8},
            "schedule.name": {"value": "cosine"},
        },
    )
    spec = load_sweep(path)
    dists = {p.name: p.distribution() for p in spec.params}
    assert dists["optim.lr"].log and dists["optim.lr"].low == pytest.approx(1e-4)
    assert dists["optim.weight_decay"].log and dists["optim.weight_decay"].high == pytest.approx(0.1)
    assert dists["schedule.decay_fraction"].step == pytest.approx(0.1)
    assert isinstance(dists["train.per_device_train_batch_size"], optuna.distributions.IntDistribution)
    assert spec.fixed["schedule.name"] == "cosine" and "schedule.name" not in dists
    results = run(path, tmp_path)
    for r in results["runs"]:
        cfg = load_config(config_file=Path(r["run_dir"]) / "config.yaml")
        assert 1e-4 <= cfg.optim.lr <= 1e-2 and cfg.schedule.name == "cosine"
        assert 2 <= cfg.train.per_device_train_batch_size <= 8


# ---------------------------------------------------------------------------------------------
# running sweeps


def test_grid_sweep_trains_each_configuration_once_and_rerun_skips_finished(tmp_path, data_dir):
    path = write_sweep(tmp_path, data_dir)
    calls: list = []
    results = run(path, tmp_path, calls=calls)
    sweep_dir = tmp_path / "sweeps" / "s"
    assert len(calls) == 4
    assert {
        (c["lr"], load_config(config_file=sweep_dir / "trials" / c["run"] / "config.yaml").schedule.name) for c in calls
    } == {(1e-3, "constant"), (1e-3, "wsd"), (3e-3, "constant"), (3e-3, "wsd")}
    assert sorted(p.name for p in (sweep_dir / "trials").iterdir()) == [f"trial-{i:03d}" for i in range(4)]
    for f in ("sweep.yaml", "optuna.journal", "leaderboard.csv", "leaderboard.md", "best.yaml", "importances.json"):
        assert (sweep_dir / f).exists(), f
    rows = results["rows"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4] and all(r["status"] == "finished" for r in rows)
    bpbs = [r["eval/bpb"] for r in rows]
    assert bpbs == sorted(bpbs) and rows[0]["params"]["optim.lr"] == 3e-3

    again: list = []
    run(path, tmp_path, calls=again)
    assert again == []
    assert len(journal_study(sweep_dir, "s").trials) == 4


def test_grid_sweep_visits_the_points_in_the_yaml_order(tmp_path, data_dir):
    # neither axis sorted: the first axis varies slowest, as wandb's grid (Optuna's own grid is shuffled)
    axes = {"optim.lr": {"values": [3e-3, 1e-3, 2e-3, 5e-4]}, "schedule.name": {"values": ["wsd", "constant"]}}
    calls: list = []
    run(write_sweep(tmp_path, data_dir, parameters=axes), tmp_path, calls=calls)
    sweep_dir = tmp_path / "sweeps" / "s"
    visited = [
        (c["run"], c["lr"], load_config(config_file=sweep_dir / "trials" / c["run"] / "config.yaml").schedule.name)
        for c in calls
    ]
    lrs, schedules = [3e-3, 1e-3, 2e-3, 5e-4], ["wsd", "constant"]
    expected = [(lr, name) for lr in lrs for name in schedules]
    assert visited == [(f"trial-{i:03d}", *point) for i, point in enumerate(expected)]


def test_leaderboard_files_and_best_yaml(tmp_path, data_dir):
    results = run(write_sweep(tmp_path, data_dir), tmp_path)
    sweep_dir = tmp_path / "sweeps" / "s"
    lines = (sweep_dir / "leaderboard.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["rank", "optim.lr", "schedule.name"] and "eval/bpb" in header and "status" in header
    assert len(lines) == 5
    assert "| 1 |" in (sweep_dir / "leaderboard.md").read_text()
    best = load_config(config_file=sweep_dir / "best.yaml")  # a full config `slovo train --config` accepts
    assert best.optim.lr == results["best"]["params"]["optim.lr"]
    assert best.schedule.name == results["best"]["params"]["schedule.name"]
    assert best.data.path == str(data_dir.resolve()) and best.budget.max_steps == 100


def test_seeds_train_each_configuration_several_times_and_report_mean_and_std(tmp_path, data_dir):
    path = write_sweep(tmp_path, data_dir, seeds=3, parameters={"optim.lr": {"values": [1e-3, 3e-3]}})
    calls: list = []
    results = run(path, tmp_path, calls=calls)
    assert len(calls) == 6
    base = load_config(preset="tiny").train.seed
    for lr in (1e-3, 3e-3):
        assert sorted(c["seed"] for c in calls if c["lr"] == lr) == [base, base + 1, base + 2]
    rows = results["rows"]
    assert len(rows) == 2 and all(r["seeds"] == 3 and len(r["runs"]) == 3 for r in rows)
    assert all(r["eval/bpb_std"] is not None and r["eval/bpb_std"] > 0 for r in rows)
    assert "±" in (tmp_path / "sweeps" / "s" / "leaderboard.md").read_text()


def test_hyperband_prunes_a_configuration_that_cannot_learn(tmp_path, data_dir):
    path = write_sweep(
        tmp_path,
        data_dir,
        parameters={"optim.lr": {"values": [3e-3, 2e-3, 1e-7]}},
        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 3},
    )
    results = run(path, tmp_path)
    by_lr = {r["params"]["optim.lr"]: r for r in results["runs"]}
    assert by_lr[1e-7]["status"] == "pruned"
    summary = json.loads((Path(by_lr[1e-7]["run_dir"]) / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["progress"] < 1.0
    assert by_lr[3e-3]["status"] == "finished"
    states = {t.params["optim.lr"]: t.state for t in journal_study(tmp_path / "sweeps" / "s", "s").trials}
    assert states[1e-7] == optuna.trial.TrialState.PRUNED


def test_random_sweep_stops_at_run_cap(tmp_path, data_dir):
    path = write_sweep(
        tmp_path,
        data_dir,
        method="random",
        run_cap=5,
        parameters={"optim.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}},
    )
    calls: list = []
    run(path, tmp_path, calls=calls)
    assert len(calls) == 5
    run(path, tmp_path, calls=calls)
    assert len(calls) == 5  # the cap counts runs across invocations


def test_metric_target_stops_new_configurations_once_reached(tmp_path, data_dir):
    # at batch 16 the fake trainer's eval/bpb is 1.42 at lr 3e-3 and 1.54 at lr 1e-3: the first run meets the target
    path = write_sweep(
        tmp_path,
        data_dir,
        metric={"name": "eval/bpb", "goal": "minimize", "target": 1.45},
        parameters={"optim.lr": {"values": [3e-3, 1e-3, 2e-3]}, "train.per_device_train_batch_size": {"value": 16}},
    )
    calls: list = []
    run(path, tmp_path, calls=calls)
    assert [c["lr"] for c in calls] == [3e-3]


def test_sweep_time_limit_stops_starting_trials(tmp_path, data_dir):
    path = write_sweep(tmp_path, data_dir, budget="60s")
    calls: list = []
    run(path, tmp_path, calls=calls, time_limit="30s")
    assert calls == []  # a 60 s run cannot fit in 30 s

    def slow(cfg, run_dir, resume=False, callbacks=()):
        return fake_train(cfg, run_dir, resume, callbacks, sleep=0.4, calls=calls)

    lrs = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3]
    path = write_sweep(tmp_path, data_dir, name="t", budget={"time": "0.5s"}, parameters={"optim.lr": {"values": lrs}})
    sweep_mod.run_sweep(path, sweeps_dir=tmp_path / "sweeps", train_fn=slow, print_table=False, time_limit="1.5s")
    assert 1 <= len(calls) < 6


def test_load_study_sees_every_trial_with_its_parameters_and_value(tmp_path, data_dir):
    run(write_sweep(tmp_path, data_dir), tmp_path)
    sweep_dir = tmp_path / "sweeps" / "s"
    study = journal_study(sweep_dir, "s")  # what optuna-dashboard opens: a standard JournalFileBackend file
    assert len(study.trials) == 4
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert set(t.params) == {"optim.lr", "schedule.name"}
        summary = json.loads((sweep_dir / "trials" / t.user_attrs["run_name"] / "summary.json").read_text())
        assert t.value == pytest.approx(summary["eval/bpb"])
        assert sorted(t.intermediate_values) == list(range(1, 11))
    assert study.best_trial.params["optim.lr"] == 3e-3


def test_importances_name_the_parameter_that_matters(tmp_path, data_dir):
    path = write_sweep(
        tmp_path,
        data_dir,
        parameters={
            "optim.lr": {"values": [1e-5, 1e-4, 1e-3, 3e-3]},  # the fake trainer's loss depends on lr only
            "optim.weight_decay": {"values": [0.0, 0.2]},
        },
    )
    results = run(path, tmp_path)
    imp = json.loads((tmp_path / "sweeps" / "s" / "importances.json").read_text())
    assert set(imp) == {"optim.lr", "optim.weight_decay"} and imp == results["importances"]
    assert imp["optim.lr"] > imp["optim.weight_decay"]


def test_changed_search_space_needs_a_new_name(tmp_path, data_dir):
    run(write_sweep(tmp_path, data_dir), tmp_path)
    changed = write_sweep(tmp_path, data_dir, parameters={"optim.lr": {"values": [1e-2]}})
    with pytest.raises(SlovoError, match="--name"):
        run(changed, tmp_path)
    calls: list = []
    run(changed, tmp_path, calls=calls, name="s2")
    assert len(calls) == 1 and (tmp_path / "sweeps" / "s2" / "trials" / "trial-000").is_dir()


# ---------------------------------------------------------------------------------------------
# failures, interruptions, workers


def test_interrupted_trial_is_resumed_from_its_checkpoint_on_rerun(tmp_path, data_dir):
    path = write_sweep(tmp_path, data_dir)
    calls: list = []

    def interrupted_once(cfg, run_dir, resume=False, callbacks=()):
        if len(calls) == 1:  # the second run gets Ctrl-C: it saves a checkpoint and says so
            calls.append({"run": Path(run_dir).name, "resume": resume})
            Path(run_dir, "checkpoints", "step_0000005").mkdir(parents=True)
            atomic_write_json(Path(run_dir) / "summary.json", {"status": "interrupted"})
            return {"status": "interrupted"}
        return fake_train(cfg, run_dir, resume, callbacks, calls=calls)

    with pytest.raises(KeyboardInterrupt):
        sweep_mod.run_sweep(path, sweeps_dir=tmp_path / "sweeps", train_fn=interrupted_once, print_table=False)
    assert (tmp_path / "sweeps" / "s" / "leaderboard.csv").exists()  # results are written even so
    interrupted_run = calls[1]["run"]
    results = sweep_mod.run_sweep(path, sweeps_dir=tmp_path / "sweeps", train_fn=interrupted_once, print_table=False)
    assert calls[2] == {**calls[2], "run": interrupted_run, "resume": True}
    assert len(calls) == 5 and all(r["status"] == "finished" for r in results["rows"])
    assert len({r["run"] for r in results["runs"]}) == 4  # one run folder per configuration, no extras
    assert len({r["key"] for r in results["runs"]}) == 4
    assert len(list((tmp_path / "sweeps" / "s" / "trials").iterdir())) == 4


def test_failed_trial_is_recorded_and_retried_on_the_next_invocation(tmp_path, data_dir):
    path = write_sweep(tmp_path, data_dir, parameters={"optim.lr": {"values": [1e-3, 3e-3]}})
    broken = {"on": True}

    def sometimes_broken(cfg, run_dir, resume=False, callbacks=()):
        if broken["on"] and cfg.optim.lr == 1e-3:
            raise RuntimeError("out of memory")
        return fake_train(cfg, run_dir, resume, callbacks)

    results = sweep_mod.run_sweep(path, sweeps_dir=tmp_path / "sweeps", train_fn=sometimes_broken, print_table=False)
    failed = [r for r in results["rows"] if r["status"] == "failed"]
    assert len(failed) == 1 and "out of memory" in failed[0]["errors"][0]
    broken["on"] = False
    results = sweep_mod.run_sweep(path, sweeps_dir=tmp_path / "sweeps", train_fn=sometimes_broken, print_table=False)
    assert [r["status"] for r in results["rows"]] == ["finished", "finished"]


def test_diverged_run_is_a_result_and_not_retried(tmp_path, data_dir):
    path = write_sweep(tmp_path, data_dir, parameters={"optim.lr": {"values": [3e-3, 1.0]}})
    calls: list = []

    def diverges_at_high_lr(cfg, run_dir, resume=False, callbacks=()):
        if cfg.optim.lr == 1.0:
            calls.append(cfg.optim.lr)
            Path(run_dir).mkdir(parents=True)
            return {"status": "failed", "error": "loss became nan at step 3 (try a lower optim.lr)"}
        return fake_train(cfg, run_dir, resume, callbacks)

    for _ in range(2):
        results = sweep_mod.run_sweep(
            path, sweeps_dir=tmp_path / "sweeps", train_fn=diverges_at_high_lr, print_table=False
        )
    assert calls == [1.0]
    assert [r["status"] for r in results["rows"]] == ["finished", "failed"]
    assert "nan" in results["rows"][1]["errors"][0]


def _spawn(target, *args):
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args)
    proc.start()
    return proc


@pytest.mark.slow
def test_two_worker_processes_share_one_journal_without_losing_or_duplicating_trials(tmp_path, data_dir):
    values = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3]
    path = write_sweep(tmp_path, data_dir, parameters={"optim.lr": {"values": values}})
    sweep_dir = tmp_path / "sweeps" / "s"
    spec = load_sweep(path)
    sweep_mod.open_study(spec, sweep_mod.open_storage(None, sweep_dir), create=True)
    workers = [_spawn(_worker, str(path), str(sweep_dir), "fake", 0.3) for _ in range(2)]
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    trials = journal_study(sweep_dir, "s").trials
    assert len(trials) == len(values)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.params["optim.lr"] for t in trials) == values
    assert len({t.user_attrs["run_name"] for t in trials}) == len(values)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers took part
    assert len(list((sweep_dir / "trials").iterdir())) == len(values)


@pytest.mark.slow
def test_trial_of_a_killed_worker_is_marked_failed_and_retried(tmp_path, data_dir):
    path = write_sweep(tmp_path, data_dir, parameters={"optim.lr": {"values": [1e-3, 3e-3]}})
    sweep_dir = tmp_path / "sweeps" / "s"
    spec = load_sweep(path)
    study = sweep_mod.open_study(spec, sweep_mod.open_storage(None, sweep_dir), create=True)
    victim = _spawn(_worker, str(path), str(sweep_dir), "slow")
    deadline = time.time() + 60
    while time.time() < deadline and not any(
        t.state.name == "RUNNING" and (sweep_dir / "trials" / "trial-000" / "checkpoints").exists()
        for t in study.get_trials(deepcopy=False)
    ):
        time.sleep(0.1)
    victim.kill()
    victim.join()
    assert [t.state.name for t in study.get_trials()] == ["RUNNING"]

    calls: list = []
    results = run(path, tmp_path, calls=calls)
    assert next(c for c in calls if c["run"] == "trial-000")["resume"] is True
    trials = journal_study(sweep_dir, "s").trials
    assert [t.state.name for t in trials].count("FAIL") == 1
    lost = next(t for t in trials if t.state.name == "FAIL")
    assert "lost" in journal_study(sweep_dir, "s").user_attrs[f"lost_trial_{lost.number}"]
    assert sorted(r["status"] for r in results["rows"]) == ["finished", "finished"]
    assert len(results["runs"]) == 2 and "trial-000" in {r["run"] for r in results["runs"]}
    assert len(list((sweep_dir / "trials").iterdir())) == 2


def test_a_running_trial_whose_worker_pid_now_belongs_to_a_later_process_is_lost():
    from datetime import datetime

    from slovo.sweep.study import _lost_reason
    from slovo.utils import process_started

    parent = os.getppid()  # alive, and not this process (a worker never judges its own trials lost)
    worker = f"{socket.gethostname()}:{parent}"
    now = time.time()

    def trial(started):
        attrs = {"worker": worker, "heartbeat": now, "worker_started": started}
        return SimpleNamespace(user_attrs=attrs, datetime_start=datetime.now())

    assert _lost_reason(trial(process_started(parent))) is None
    assert _lost_reason(trial(process_started(parent) - 3600)) == f"worker {worker} is gone"


def test_workers_split_cpu_threads_unless_the_sweep_sets_them(tmp_path, data_dir, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    spec = load_sweep(write_sweep(tmp_path, data_dir))
    assert [sweep_mod.worker_overrides(spec, i, 4) for i in range(4)] == [{"train.num_threads": 2}] * 4
    assert sweep_mod.worker_overrides(spec, 0, 1) == {}
    fixed = load_sweep(
        write_sweep(tmp_path, data_dir, parameters={"optim.lr": {"values": [1e-3]}, "train.num_threads": {"value": 3}})
    )
    assert sweep_mod.worker_overrides(fixed, 0, 4) == {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [sweep_mod.worker_overrides(spec, i, 3) for i in range(3)] == [
        {"train.device": "cuda:0"},
        {"train.device": "cuda:1"},
        {"train.device": "cuda:0"},
    ]


def test_sqlite_storage_url_holds_the_study(tmp_path, data_dir):
    pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run(write_sweep(tmp_path, data_dir), tmp_path, storage=url)
    study = optuna.load_study(study_name="s", storage=url)
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert not (tmp_path / "sweeps" / "s" / "optuna.journal").exists()


def test_seeds_start_from_the_train_seed_the_sweep_file_sets(tmp_path, data_dir):
    # the base config was built with the default seed already applied, then that seed copied back: every sweep
    # and comparison trained 1337, 1338, ... whatever train.seed said
    path = write_sweep(
        tmp_path, data_dir, seeds=2, parameters={"optim.lr": {"values": [1e-3, 3e-3]}, "train.seed": {"value": 7}}
    )
    spec = load_sweep(path)
    assert [spec.build_config({}, i).train.seed for i in range(2)] == [7, 8]


def test_compare_seed_sets_the_first_seed_of_every_config(tmp_path, data_dir):
    from slovo.compare import build_candidates, sweep_document

    candidates = build_candidates([], ["optim.lr=0.004", "optim.lr=0.006"], "tiny", None)
    doc = sweep_document(candidates, str(data_dir), 2, {"max_steps": 3}, {"train.seed": 7})
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(doc))
    spec = load_sweep(path)
    seeds = {(v, i): spec.build_config({"variant": v}, i).train.seed for v in spec.variants for i in range(2)}
    assert set(seeds.values()) == {7, 8} and seeds[("optim.lr=0.004", 1)] == seeds[("optim.lr=0.006", 1)] == 8
