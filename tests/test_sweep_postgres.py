"""slovo sweep across machines: the study in a throwaway PostgreSQL server (tests/postgres.py), workers as separate
processes that each pretend to be another machine (their own host name, so no worker can check another's pid
and only the database and the shared sweep folder connect them), short heartbeats so a lost worker is noticed
in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import quote, unquote

import optuna
import pytest
import yaml

from slovo.cli import main as cli_main
from slovo.errors import SlovoError
from slovo.sweep import run_sweep
from tests.postgres import ROLE, PostgresServer
from tests.test_sweep_train import TINY_MODEL

REPO = Path(__file__).resolve().parents[1]

# One "machine": its own host name, heartbeats every 0.5 s, then `slovo sweep ...`. Mode `fake` trains with
# test_sweep's fake trainer and takes its time to choose each trial; `stall` trains for real but hangs once
# its run has a checkpoint (to be killed).
MACHINE = textwrap.dedent("""
    import socket, sys, time
    host, mode, lost_after, repo = sys.argv[1:5]
    socket.gethostname = lambda: host
    sys.path.insert(0, repo)
    from slovo.train.callbacks import Callback
    from slovo.sweep import study, workers
    study.HEARTBEAT_S, study.HEARTBEAT_LOST_AFTER_S, study.POLL_S = 0.5, float(lost_after), 0.5
    real_train = workers._default_train
    if mode == "fake":
        from tests.test_sweep import fake_train
        def train(cfg, run_dir, resume=False, callbacks=(), quiet=False):
            return fake_train(cfg, run_dir, resume, callbacks, sleep=0.1)
        workers._default_train = train
        real_can_start = study._can_start_new_config
        def slow_choice(spec, trials):  # between reading the trials and asking: unlocked workers would overlap
            decision = real_can_start(spec, trials)
            time.sleep(0.3)
            return decision
        study._can_start_new_config = slow_choice
    elif mode == "stall":
        class Stall(Callback):
            def __init__(self, run_dir):
                self.run_dir = run_dir
            def on_log(self, state, control, metrics):
                if state.step >= 20:  # past the checkpoint at step 10: say where, then hang until killed
                    open(host + ".stalled", "w").write(str(self.run_dir))
                    time.sleep(600)
        def train(cfg, run_dir, resume=False, callbacks=(), quiet=False):
            return real_train(cfg, run_dir, resume, [*callbacks, Stall(run_dir)], quiet)
        workers._default_train = train
    from slovo.cli import main
    sys.exit(main(sys.argv[5:]))
""")


@pytest.fixture(scope="module")
def pg():
    with PostgresServer() as server:
        yield server


def start_machine(host: str, mode: str, args: list[str], cwd: Path, lost_after: float = 5.0) -> subprocess.Popen:
    log = open(cwd / f"{host}.log", "w")  # a file, not a pipe: a chatty worker must never block on it
    return subprocess.Popen(
        [sys.executable, "-c", MACHINE, host, mode, str(lost_after), str(REPO), *args],
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"),
    )


def wait_all(procs, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise


def latest_attempts(trials) -> list:
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return [t for t in trials if t.number not in replaced]


# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_machine_trial_is_resumed_by_the_other_from_its_checkpoint_within_run_cap(tmp_path, pg, small_dataset):
    lrs = [1e-2, 5e-3, 3e-3, 2e-3, 1e-3, 5e-4]
    fixed = {**TINY_MODEL, "checkpoint.every_steps": {"value": 10}, "train.log_every": {"value": 10}}
    sweep = tmp_path / "real.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "method": "grid",
                "preset": "tiny",
                "data": str(small_dataset),
                "run_cap": 4,
                "budget": {"max_steps": 40},
                "parameters": {"optim.lr": {"values": lrs}, **fixed},
            }
        )
    )
    shared = tmp_path / "shared"
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    a_home.mkdir(), b_home.mkdir()
    a = start_machine(
        "machine-a", "stall", ["sweep", str(sweep), "--storage", pg.url, "--sweeps-dir", str(shared)], a_home
    )
    # B joins once A has started the sweep, from elsewhere and without --sweeps-dir: the study says where it is
    deadline = time.time() + 120
    while not (shared / "real" / "study.json").exists():
        assert a.poll() is None and time.time() < deadline, (a_home / "machine-a.log").read_text()
        time.sleep(0.1)
    b = start_machine("machine-b", "real", ["sweep", str(sweep), "--storage", pg.url], b_home)
    while not (a_home / "machine-a.stalled").exists():
        assert a.poll() is None and time.time() < deadline, (a_home / "machine-a.log").read_text()
        time.sleep(0.1)
    victim_dir = Path((a_home / "machine-a.stalled").read_text())
    assert list((victim_dir / "checkpoints").glob("step_*"))
    a.send_signal(signal.SIGKILL)  # mid-trial, holding the run lock, the trial RUNNING in the study
    wait_all([a, b])
    b_log = (b_home / "machine-b.log").read_text()
    assert b.returncode == 0, b_log[-3000:]
    assert not (b_home / "sweeps").exists()  # B worked in the shared folder, not a local one

    study = optuna.load_study(study_name="real", storage=pg.url.replace("postgresql://", "postgresql+psycopg://"))
    trials = study.trials
    lost = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(lost) == 1 and study.user_attrs[f"lost_trial_{lost[0].number}"].startswith("lost: no heartbeat")
    assert lost[0].user_attrs["run_name"] == victim_dir.name and lost[0].user_attrs["worker"].startswith("machine-a:")
    runs = latest_attempts(trials)
    assert len(runs) == 4  # run_cap, counting the retry as the same run
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in runs)
    assert len({t.params["optim.lr"] for t in runs}) == 4 and len({t.user_attrs["run_name"] for t in runs}) == 4
    retry = next(t for t in runs if t.user_attrs["run_name"] == victim_dir.name)
    assert retry.system_attrs["retry_history"] == [lost[0].number]
    assert retry.user_attrs["worker"].startswith("machine-b:")
    assert sorted(p.name for p in (shared / "real" / "trials").iterdir()) == sorted(
        t.user_attrs["run_name"] for t in runs
    )
    # the retry resumed A's run folder from its checkpoint (step 10) instead of starting over
    assert f"took over the run lock of lost worker {lost[0].user_attrs['worker']}" in b_log
    assert f"{victim_dir.name}: optim.lr=" in b_log and "(resuming)" in b_log
    assert "from step 10" in b_log
    summary = json.loads((victim_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["train/global_step"] == 40
    # every other run was trained once, by one machine
    a_log = (a_home / "machine-a.log").read_text()
    for t in runs:
        name = t.user_attrs["run_name"]
        starts = a_log.count(f"] {name}: optim.lr=") + b_log.count(f"] {name}: optim.lr=")
        assert starts == (2 if name == victim_dir.name else 1), name


@pytest.mark.slow
def test_three_machines_never_overrun_run_cap_or_repeat_a_grid_point(tmp_path, pg):
    method = "grid"
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    values = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3, 9e-3]
    lr = {"values": values}
    sweep = tmp_path / f"{method}.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "method": method,
                "preset": "tiny",
                "data": str(data),
                "run_cap": 7,
                "budget": {"max_steps": 100},
                "parameters": {"optim.lr": lr},
            }
        )
    )
    shared = tmp_path / "shared"
    url = pg.new_database(f"three_{method}")  # empty: the machines also race to create Optuna's tables
    machines = []
    for i in range(3):
        home = tmp_path / f"m{i}"
        home.mkdir()
        machines.append(
            start_machine(
                f"machine-{i}",
                "fake",
                ["sweep", str(sweep), "--storage", url, "--sweeps-dir", str(shared)],
                home,
                lost_after=120,
            )
        )
    wait_all(machines)
    logs = [(tmp_path / f"m{i}" / f"machine-{i}.log").read_text() for i in range(3)]
    assert [m.returncode for m in machines] == [0, 0, 0], logs
    study = optuna.load_study(study_name=method, storage=url.replace("postgresql://", "postgresql+psycopg://"))
    trials = study.trials
    assert len(trials) == 7 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t.params["optim.lr"] for t in trials}) == 7  # no grid point twice
    assert len({t.user_attrs["run_name"] for t in trials}) == 7
    assert len(list((shared / method / "trials").iterdir())) == 7
    assert sum(log.count(": finished,") for log in logs) == 7


def test_a_worker_whose_sweep_folder_is_not_the_studys_is_refused(tmp_path, pg):
    sweep = _one_point_sweep(tmp_path, "bound")

    trained: list = []

    def train(cfg, run_dir, resume=False, callbacks=()):
        trained.append(Path(run_dir))
        Path(run_dir).mkdir(parents=True)
        return {"status": "finished", "eval/bpb": 1.0}

    shared = tmp_path / "shared"
    run_sweep(sweep, sweeps_dir=shared, storage=pg.url, train_fn=train, print_table=False)
    assert trained == [shared / "bound" / "trials" / "trial-000"]
    marker = json.loads((shared / "bound" / "study.json").read_text())
    assert marker["study"] == "bound" and unquote(marker["storage"]) == pg.url
    with pytest.raises(SlovoError, match="not the sweep folder of study 'bound'.*shared filesystem"):
        run_sweep(sweep, sweeps_dir=tmp_path / "local", storage=pg.url, train_fn=train, print_table=False)
    assert len(trained) == 1
    assert not (tmp_path / "local" / "bound" / "trials").exists()


def test_a_password_in_the_storage_url_is_in_no_file_and_no_message(tmp_path, pg, capsys):
    """The password, percent-encoded in the URL as it must be (`%40` for @), appears in no file under the sweep
    folder and in nothing printed: neither on a sweep that runs (the server trusts its socket, so any password
    is accepted) nor in the one line an unreachable database gets."""
    password = "hunter2@zx/q"
    encoded = quote(password, safe="")  # hunter2%40zx%2Fq
    url = pg.url.replace(f"{ROLE}@", f"{ROLE}:{encoded}@", 1)
    sweep = _one_point_sweep(tmp_path, "secret")

    def train(cfg, run_dir, resume=False, callbacks=()):
        Path(run_dir).mkdir(parents=True)
        return {"status": "finished", "eval/bpb": 1.0}

    sweeps = tmp_path / "sweeps"
    run_sweep(sweep, sweeps_dir=sweeps, storage=url, train_fn=train, print_table=True)
    unreachable = url.replace(str(pg.socket_dir), str(tmp_path / "nowhere"))
    assert cli_main(["sweep", str(sweep), "--storage", unreachable, "--sweeps-dir", str(tmp_path / "other")]) == 2
    printed = capsys.readouterr()
    assert "cannot open the database" in printed.err and f"{ROLE}:***@" in printed.err
    files = [p for p in sweeps.rglob("*") if p.is_file()]
    assert any(p.name == "study.json" for p in files)
    for form in (password, encoded, "hunter2"):
        assert form not in printed.out + printed.err
        assert not [p for p in files if form.encode() in p.read_bytes()], form


# ---------------------------------------------------------------------------------------------
# an unreachable database is one line, soon


@pytest.fixture
def one_point_sweep(tmp_path):
    return _one_point_sweep(tmp_path, "s")


def _one_point_sweep(folder: Path, name: str) -> Path:
    """`folder/<name>.yaml`: one lr on the tiny preset, over a stand-in dataset folder (the tests fake training)."""
    data = folder / "data"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    sweep = folder / f"{name}.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "preset": "tiny",
                "data": str(data),
                "budget": {"max_steps": 10},
                "parameters": {"optim.lr": {"values": [1e-3]}},
            }
        )
    )
    return sweep


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", ["socket", "tcp"])
def test_unreachable_database_is_one_line(tmp_path, one_point_sweep, capsys, where):
    url = (
        f"postgresql://slovo:secret@/postgres?host={tmp_path}"
        if where == "socket"  # a socket dir, no server
        else f"postgresql://slovo:secret@127.0.0.1:{_free_port()}/postgres"
    )  # a port nobody listens on
    assert cli_main(["sweep", str(one_point_sweep), "--storage", url, "--sweeps-dir", str(tmp_path / "sweeps")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "cannot open the database" in err and "secret" not in err and "slovo:***@" in err
    assert not (tmp_path / "sweeps").exists()


def test_database_that_never_answers_times_out(tmp_path, one_point_sweep):
    """A server that accepts the connection and says nothing (a firewall, a hung host): an error, not a hang."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections complete in the kernel's backlog; nothing ever answers them
    try:
        code = (
            "import sys; import slovo.sweep.storage as s; s.CONNECT_TIMEOUT_S = 2; from slovo.cli import main; "
            "sys.exit(main(sys.argv[1:]))"
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                code,
                "sweep",
                str(one_point_sweep),
                "--storage",
                f"postgresql://slovo@127.0.0.1:{silent.getsockname()[1]}/postgres",
                "--sweeps-dir",
                str(tmp_path / "sweeps"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        silent.close()
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "cannot open the database" in proc.stderr
    assert "timeout" in proc.stderr.lower()


def test_missing_driver_names_the_postgres_extra(tmp_path, one_point_sweep, capsys, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("psycopg", "psycopg2") else real_find_spec(name, *a),
    )
    assert (
        cli_main(
            [
                "sweep",
                str(one_point_sweep),
                "--storage",
                "postgresql://u@db.example/sweeps",
                "--sweeps-dir",
                str(tmp_path / "sweeps"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "pip install 'slovo-lm[postgres]'" in err and len(err.strip().splitlines()) == 1


def test_bare_postgresql_url_uses_the_installed_psycopg():
    pytest.importorskip("psycopg")
    from slovo.sweep.storage import _database_url

    assert _database_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert _database_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert _database_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg2"  # the user's choice


def test_the_storage_password_reaches_no_run_folder_and_no_worker_command_line(
    tmp_path, pg, small_dataset, monkeypatch, capsys
):
    """Real trials record the command they ran under (run.json) and `--workers N` starts worker processes: the
    password in `--storage` reached every trial's run.json and every worker's argv (`ps`)."""
    from slovo.sweep import workers

    password = "hunter2@zx/q"
    url = pg.url.replace(f"{ROLE}@", f"{ROLE}:{quote(password, safe='')}@", 1)
    sweep = tmp_path / "pw.yaml"
    fixed = {**TINY_MODEL, "optim.name": {"value": "adamw"}}
    body = {"method": "grid", "preset": "tiny", "data": str(small_dataset), "budget": {"max_steps": 2}}
    sweep.write_text(yaml.safe_dump({**body, "parameters": {**fixed, "optim.lr": {"values": [1e-3, 2e-3]}}}))
    argv = ["slovo", "sweep", str(sweep), "--storage", url, "--sweeps-dir", str(tmp_path / "sweeps")]
    monkeypatch.setattr(sys, "argv", argv)  # what run.json records is the command as typed
    assert cli_main(argv[1:]) == 0
    files = [p for p in (tmp_path / "sweeps").rglob("*") if p.is_file()]
    assert len([p for p in files if p.name == "run.json"]) == 2
    for form in (password, quote(password, safe=""), "hunter2"):
        assert not [p for p in files if form.encode() in p.read_bytes()], form
    assert f"{ROLE}:***@" in json.loads(next(p for p in files if p.name == "run.json").read_text())["command"]

    started = []

    class Proc:
        def __init__(self, cmd, env):
            started.append((cmd, env))

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(workers.subprocess, "Popen", Proc)
    spec = workers.load_sweep(sweep)
    workers._spawn_workers(spec, tmp_path / "sweeps", url, None, None, 2)
    assert len(started) == 2
    for cmd, env in started:
        assert not any("hunter2" in arg for arg in cmd)
        assert env["SLOVO_STORAGE"] == url  # the worker reads it from there

    # and the URL may come from the environment alone: the same study, nothing left to run
    monkeypatch.setenv("SLOVO_STORAGE", url)
    capsys.readouterr()
    assert cli_main(["sweep", str(sweep), "--sweeps-dir", str(tmp_path / "sweeps")]) == 0
    assert "nothing left to run" in capsys.readouterr().out


def test_a_recorded_command_line_masks_a_urls_password():
    from slovo.utils import command_line

    line = command_line(
        ["slovo", "sweep", "s.yaml", "--storage", "postgresql://u:p%40ss@h/db", "--storage=mysql://a:b@c/d"]
    )
    assert "p%40ss" not in line and ":b@" not in line
    assert "postgresql://u:***@h/db" in line and "--storage=mysql://a:***@c/d" in line
    assert command_line(["slovo", "train", "--data", "hf://org/name"]) == "slovo train --data hf://org/name"
