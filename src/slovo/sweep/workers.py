"""Sweep workers: each trains one trial after another as an ordinary run, and `run_sweep` drives the whole sweep.

A worker loops: take the sweep lock, mark lost trials failed, ask for the next trial (slovo.sweep.study),
release the lock, train it with a `PruningReporter` callback and a heartbeat thread, tell Optuna how it
ended. With nothing left to start it waits while trials run elsewhere, so that a trial whose worker dies
(here or on another machine) is retried. `--workers N` starts N such workers as processes on this machine;
more machines join the same study through `--storage postgresql://...` and a sweep folder on a shared
filesystem (slovo.sweep.storage).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import slovo.sweep.study as study_mod
from slovo.errors import SlovoError
from slovo.format import format_value
from slovo.sweep.results import print_leaderboard, write_results
from slovo.sweep.spec import SweepSpec, describe, load_sweep
from slovo.sweep.storage import (
    STORAGE_ENV,
    bind_sweep_folder,
    check_sweep_folder,
    find_sweep_dir,
    import_optuna,
    is_database_url,
    open_storage,
    sweep_lock,
)
from slovo.sweep.study import (
    expected_trial_seconds,
    fail_lost_trials,
    next_trial,
    open_study,
    retry_failed_trials,
    retry_trial,
    running_trials,
)
from slovo.train.callbacks import Callback
from slovo.utils import read_json_dict

# ---------------------------------------------------------------------------------------------
# one trial = one ordinary training run


class PruningReporter(Callback):
    """Training callback: report the metric at each eval's progress index and stop the run when Optuna says so."""

    def __init__(self, trial, metric: str, eval_every: int, prune: bool):
        self.trial, self.metric, self.every, self.prune = trial, metric, max(1, eval_every), prune
        self.reported: set[int] = set()
        self.pruned_at: float | None = None
        self.taken_over = False  # set by the heartbeat when another worker has failed this trial as lost

    def on_log(self, state, control, metrics: dict) -> None:
        if self.taken_over:  # checkpoint and stop: the retry resumes from here, and two writers never meet
            control.stop("interrupted")

    def on_eval(self, state, control, metrics: dict) -> None:
        self.on_log(state, control, metrics)
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(float(value)) or self.pruned_at is not None:
            return
        step = max(1, round(float(state.progress) * self.every))
        if step in self.reported:
            return
        self.reported.add(step)
        self.trial.report(float(value), step)
        # The end-of-run eval is the result, not a checkpoint to prune at.
        if self.prune and step < self.every and self.trial.should_prune():
            self.pruned_at = float(state.progress)
            control.stop("pruned")


class _Heartbeat:
    """A thread that stamps the trial every HEARTBEAT_S seconds, so other workers can tell it is alive.

    If the stamp is refused because the trial is already finished, another worker took it as lost (this one
    was cut off from the database for too long): the reporter then stops the run at its next log."""

    def __init__(self, trial, reporter: PruningReporter | None = None, interval: float | None = None):
        self.trial, self.reporter = trial, reporter
        self.interval = study_mod.HEARTBEAT_S if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        finished_error = import_optuna().exceptions.UpdateFinishedTrialError
        while not self._stop.wait(self.interval):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except finished_error:
                if self.reporter is not None:
                    self.reporter.taken_over = True
                return
            except Exception:  # noqa: BLE001 - the database is unreachable for now: try again next beat
                continue

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _default_train(cfg, run_dir, resume=False, callbacks=(), quiet=False):
    from slovo.train import train

    return train(cfg, run_dir, resume=resume, callbacks=callbacks, quiet=quiet)


def _has_checkpoint(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("step_*")) if (run_dir / "checkpoints").is_dir() else False


def _clear_lost_run_lock(run_dir: Path, previous_worker: str | None) -> None:
    """Let a retry take over the run lock its lost first attempt left on another machine.

    RUN/.lock (slovo.train.runlock) names its holder; a holder on another host cannot be checked from here, so
    RunLock counts it as alive. The study knows better: that attempt was failed as lost. The lock file is
    removed when it names that worker and no live process holds its flock."""
    from slovo.train.runlock import LOCK_FILE

    host, _, pid = (previous_worker or "").rpartition(":")
    path = run_dir / LOCK_FILE
    if not host or host == socket.gethostname() or not path.exists():
        return  # on this host RunLock checks the holder itself
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # someone holds it: not a leftover
        except (ImportError, OSError):
            pass  # no flock here (Windows, some network filesystems): the record decides
        holder = read_json_dict(path)
        if holder.get("host") == host and str(holder.get("pid")) == pid:
            path.unlink(missing_ok=True)
            print(f"[sweep] {run_dir.name}: took over the run lock of lost worker {previous_worker}", flush=True)
    finally:
        os.close(fd)


def _run_trial(study, trial, spec: SweepSpec, sweep_dir: Path, train_fn: Callable, extra: dict) -> str:
    """Train one trial's run and tell Optuna how it ended; returns the trial's final state name."""
    attrs = trial.user_attrs
    run_name, seed_index = attrs["run_name"], int(attrs.get("seed_index", 0))
    run_dir = sweep_dir / "trials" / run_name
    shown = " ".join(f"{p.name}={format_value(p.decode(trial.params[p.name]))}" for p in spec.params)
    started = time.time()
    summary = read_json_dict(run_dir / "summary.json")
    reporter = PruningReporter(trial, spec.metric, spec.eval_every, prune=spec.early_terminate is not None)
    trained = not (summary and summary.get("status") in ("finished", "pruned"))
    try:
        if trained:
            # A killed worker's run continues from its checkpoint; one that left none starts over.
            _clear_lost_run_lock(run_dir, attrs.get("previous_worker"))
            resume = _has_checkpoint(run_dir)
            if run_dir.exists() and not resume:
                shutil.rmtree(run_dir)
            cfg = spec.build_config(dict(trial.params), seed_index, extra)
            print(f"[sweep {spec.name}] {run_name}: {shown}{' (resuming)' if resume else ''}", flush=True)
            with _Heartbeat(trial, reporter):
                summary = (
                    train_fn(cfg, run_dir, resume=resume, callbacks=[reporter])
                    or read_json_dict(run_dir / "summary.json")
                    or {}
                )
    except KeyboardInterrupt:
        _give_up(study, trial, "interrupted")
        raise
    except Exception as e:  # noqa: BLE001 - one broken configuration must not end the sweep
        message = str(e) if isinstance(e, SlovoError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, SlovoError):
            traceback.print_exc()
        # An error (out of memory, a bug since fixed) is worth another attempt on the next invocation;
        # a run that trained and diverged is a result.
        summary = {"status": "failed", "error": message, "retryable": True}
    value = summary.get(spec.metric)
    wall = time.time() - started
    try:
        state = _tell(study, trial, spec, summary, reporter, wall if trained else None)
    except import_optuna().exceptions.UpdateFinishedTrialError:
        # Another worker failed this trial as lost meanwhile and queued a retry, which resumes the run folder.
        print(f"[sweep {spec.name}] {run_name}: taken over by another worker (this one was taken as lost)", flush=True)
        return "lost"
    shown_value = f"{spec.metric} {float(value):.4f}" if isinstance(value, (int, float)) else "no result"
    extra_note = f" at {reporter.pruned_at:.0%} of its budget" if reporter.pruned_at is not None else ""
    note = f" ({summary.get('error')})" if state == "failed" and summary.get("error") else ""
    print(f"[sweep {spec.name}] {run_name}: {state}{extra_note}, {shown_value}, {wall:.1f}s{note}", flush=True)
    return state


def _tell(study, trial, spec: SweepSpec, summary: dict, reporter: PruningReporter, wall: float | None) -> str:
    """Record the run's figures on the trial and tell Optuna how it ended; returns the state's name."""
    TrialState = import_optuna().trial.TrialState
    status, value = summary.get("status", "failed"), summary.get(spec.metric)
    for key in ("eval/bpb", "eval/loss", "train_runtime", "error", "retryable"):
        if summary.get(key) is not None:
            trial.set_user_attr(key, summary[key])
    trial.set_user_attr("status", status)
    if wall is not None:  # not for a result a killed worker left behind: it would skew the --time estimate
        trial.set_user_attr("wall_seconds", round(wall, 2))
    trial.set_user_attr("run_dir", str(Path("trials") / trial.user_attrs["run_name"]))
    if status == "interrupted":
        _give_up(study, trial, "interrupted")
        raise KeyboardInterrupt
    if status == "pruned" or reporter.pruned_at is not None:
        study.tell(trial, state=TrialState.PRUNED)
        return "pruned"
    if status == "finished" and value is not None and math.isfinite(float(value)):
        study.tell(trial, float(value))
        return "finished"
    if status == "finished":
        trial.set_user_attr("error", f"{spec.metric} is {value} (diverged?)")
    study.tell(trial, state=TrialState.FAIL)
    return "failed"


def _give_up(study, trial, why: str) -> None:
    """The run stopped without a result (Ctrl-C): fail the trial and queue it to resume next time."""
    TrialState = import_optuna().trial.TrialState
    with contextlib.suppress(Exception):
        trial.set_user_attr("error", why)
        frozen = study.tell(trial, state=TrialState.FAIL)
        retry_trial(study, frozen)


# ---------------------------------------------------------------------------------------------
# workers and the whole sweep


def run_worker(
    spec_path: str | Path,
    sweep_dir: str | Path,
    *,
    name: str | None = None,
    data: str | None = None,
    storage: str | None = None,
    deadline: float | None = None,
    worker_index: int = 0,
    worker_count: int = 1,
    train_fn: Callable | None = None,
    quiet: bool = False,
) -> int:
    """Run trials of an existing sweep until none is left to start and none runs elsewhere; returns how many
    it ran.

    Worker `worker_index` of `worker_count` on this machine takes its share of the CPU threads or its GPU;
    `quiet` turns off each run's progress display (several workers share one terminal)."""
    spec = load_sweep(spec_path, data=data, name=name)
    sweep_dir = Path(sweep_dir)
    store = open_storage(storage, sweep_dir)
    study = open_study(spec, store)
    check_sweep_folder(study, sweep_dir)
    train_fn = train_fn or functools.partial(_default_train, quiet=quiet)
    extra = worker_overrides(spec, worker_index, worker_count)
    ran, waiting_said = 0, False
    while True:
        with sweep_lock(store, sweep_dir, spec.name):
            fail_lost_trials(study)
            trial = next_trial(study, spec, deadline)
        if trial is not None:
            _run_trial(study, trial, spec, sweep_dir, train_fn, dict(extra))
            ran, waiting_said = ran + 1, False
            continue
        # Nothing to start. A trial running elsewhere may yet be lost (its worker killed, its machine gone):
        # stay to retry it, unless the sweep's time is up.
        running = running_trials(study)
        if not running or (
            deadline is not None
            and time.time() + expected_trial_seconds(spec, study.get_trials(deepcopy=False)) > deadline
        ):
            return ran
        if not waiting_said:
            print(
                f"[sweep {spec.name}] nothing to start; waiting while {running} trial(s) run elsewhere, "
                f"to retry any whose worker is lost",
                flush=True,
            )
            waiting_said = True
        time.sleep(study_mod.POLL_S)


def _threads_per_worker(spec: SweepSpec, workers: int) -> int | None:
    if workers <= 1 or "train.num_threads" in spec.fixed or any(p.name == "train.num_threads" for p in spec.params):
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def worker_overrides(spec: SweepSpec, index: int, workers: int) -> dict:
    """Config overrides for worker `index` of `workers`: one GPU each (round robin) where there are GPUs,
    else an equal share of the CPU threads; whatever the sweep file sets itself is left alone."""
    if workers <= 1:
        return {}
    if "train.device" not in spec.fixed and not any(p.name == "train.device" for p in spec.params):
        import torch  # the worker is about to train with it anyway

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return {"train.device": f"cuda:{index % torch.cuda.device_count()}"}
    threads = _threads_per_worker(spec, workers)
    return {"train.num_threads": threads} if threads else {}


def _spawn_workers(
    spec: SweepSpec, sweeps_dir: Path, storage: str | None, data: str | None, deadline: float | None, workers: int
) -> None:
    """Start N `slovo sweep --worker` processes on this machine and wait for them."""
    procs = []
    threads = _threads_per_worker(spec, workers)
    for index in range(workers):
        cmd = [
            sys.executable,
            "-m",
            "slovo",
            "sweep",
            str(spec.path),
            "--worker",
            "--name",
            spec.name,
            "--sweeps-dir",
            str(sweeps_dir),
            "--worker-index",
            str(index),
            "--worker-count",
            str(workers),
        ]
        cmd += ["--data", data] if data else []
        cmd += ["--deadline", repr(deadline)] if deadline else []
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if storage:  # through the environment: a command line (with a password in the URL) is seen by `ps`
            env[STORAGE_ENV] = storage
        if threads:  # keeps each worker's OpenMP pool to its share from the first import on
            env["OMP_NUM_THREADS"] = str(threads)
        procs.append(subprocess.Popen(cmd, env=env))
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        # The terminal sent Ctrl-C to the workers too; let them fail their trials and queue retries.
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=60)
        raise
    bad = [c for c in codes if c not in (0, None)]
    if bad:
        print(
            f"[sweep {spec.name}] {len(bad)} of {workers} workers exited with an error (codes {bad})", file=sys.stderr
        )


def run_sweep(
    spec_path: str | Path,
    *,
    sweeps_dir: str | Path | None = None,
    name: str | None = None,
    workers: int = 1,
    storage: str | None = None,
    time_limit: str | float | None = None,
    data: str | None = None,
    train_fn: Callable | None = None,
    print_table: bool = True,
) -> dict:
    """Run (or resume) a sweep end to end and write its results; returns the results dict of slovo.sweep.results.

    The sweep folder is SWEEPS_DIR/NAME; with a database --storage and no `sweeps_dir`, the folder the study
    was started in when this machine reaches it (slovo.sweep.storage.find_sweep_dir), else sweeps/NAME."""
    from slovo.config import parse_duration
    from slovo.utils import atomic_write_text

    if workers < 1:
        raise SlovoError(f"--workers: must be 1 or more, got {workers}")
    spec = load_sweep(spec_path, data=data, name=name)
    deadline = time.time() + parse_duration(time_limit, "--time") if time_limit is not None else None
    if spec.method != "grid" and spec.run_cap is None and deadline is None:
        raise SlovoError(f"{spec.path}: a {spec.method} sweep needs run_cap in the file or --time (e.g. --time 2h)")
    if is_database_url(storage):  # the study says where its folder is; it is opened before the folder
        store = open_storage(storage, None)
        study = open_study(spec, store, create=True)
        sweep_dir = find_sweep_dir(study, sweeps_dir, spec.name)
    else:  # the journal file is in the folder
        sweep_dir = Path(sweeps_dir or "sweeps") / spec.name
        store = open_storage(storage, sweep_dir)
        study = open_study(spec, store, create=True)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with sweep_lock(store, sweep_dir, spec.name):
        bind_sweep_folder(study, sweep_dir, storage)
        fail_lost_trials(study)
        retried = retry_failed_trials(study)
    # Same search space as before (checked above); the copy follows the file's latest run_cap and comments.
    atomic_write_text(sweep_dir / "sweep.yaml", Path(spec.path).read_text(encoding="utf-8"))
    print(describe(spec), flush=True)
    if retried:
        print(f"[sweep {spec.name}] {retried} failed trial(s) queued for another attempt")
    try:
        if workers == 1:
            ran = run_worker(
                spec.path, sweep_dir, name=spec.name, data=data, storage=storage, deadline=deadline, train_fn=train_fn
            )
            if ran == 0 and deadline is None:
                print(f"[sweep {spec.name}] nothing left to run", flush=True)
        else:
            _spawn_workers(spec, sweep_dir.parent, storage, data, deadline, workers)
    finally:
        results = write_results(study, spec, sweep_dir)
        if print_table:
            print_leaderboard(results, spec, sweep_dir)
    if not results["runs"] and deadline is not None:
        print(
            f"[sweep {spec.name}] nothing started: a run takes about "
            f"{expected_trial_seconds(spec, []):.0f}s, more than --time {time_limit}"
        )
    return results
