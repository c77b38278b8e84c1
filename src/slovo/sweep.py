"""`slovo sweep`: hyperparameter sweeps on Optuna, from a wandb-style sweep YAML.

    sweeps/<name>/
      sweep.yaml          copy of the sweep file
      optuna.journal      the Optuna study (JournalFileBackend; `optuna-dashboard optuna.journal` opens it)
      trials/<run>/       one ordinary run folder per trial: generate / eval / report work on it
      leaderboard.csv/.md best.yaml  importances.json   (written by slovo.sweep_results)

The engine is plain Optuna: grid -> GridSampler (in the YAML's order, as wandb runs a grid), random ->
RandomSampler, bayes -> TPESampler; wandb's `early_terminate: hyperband` -> Optuna's asynchronous
successive halving (ASHA), which is what wandb's hyperband does: at eval min_iter * eta^k a run that is not
in the best 1/eta of the runs that reached that eval stops. Runs report their metric at the same progress
points (eval k of `eval.every`, evenly spaced over the time budget), so the comparison is fair whatever
each configuration's throughput.

Each worker loops: take the sweep lock, mark trials whose worker died as failed (and queue a retry that
resumes from the run folder's checkpoint), ask Optuna for a trial, release the lock, train it, tell Optuna.
`--workers N` starts N such workers as processes on this machine; more machines can join the same study
through `--storage postgresql://...`. A configuration with `seeds: 3` is three Optuna trials with the same
parameters: the first one sampled, the other two queued with `enqueue_trial` so any worker can pick them up.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from slovo.callbacks import Callback
from slovo.errors import SlovoError
from slovo.sweep_spec import SweepSpec, describe, grid_points, load_sweep
from slovo.utils import read_json_dict

STORAGE_FILE = "optuna.journal"
HEARTBEAT_S = 30.0  # how often a running trial writes its heartbeat into the study
STALE_AFTER_S = 300.0  # a trial on another machine with no heartbeat for this long is taken as lost
MAX_ATTEMPTS = 3  # a run is tried at most this many times (lost workers, errors on a previous invocation)
_IDENTITY_ATTRS = ("run_name", "seed_index", "config_trial")  # user attrs a retry keeps
_RETRY_SYSTEM_ATTRS = ("grid_id", "search_space", "fixed_params")  # system attrs a retry keeps


# ---------------------------------------------------------------------------------------------
# the Optuna study


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # slovo prints its own one line per trial
    return optuna


def open_storage(url: str | None, sweep_dir: Path):
    """The study's storage: a journal file in the sweep folder, or an RDB URL (postgresql://, sqlite:///)."""
    optuna = _optuna()
    if url and "://" in url:
        try:
            return optuna.storages.RDBStorage(url)
        except ImportError as e:
            raise SlovoError(f"--storage {url}: needs a database driver ({e}); e.g. pip install psycopg2-binary")
        except Exception as e:  # noqa: BLE001 - any connection problem is the user's to fix
            raise SlovoError(f"--storage {url}: cannot open ({type(e).__name__}: {e})") from None
    from optuna.storages.journal import JournalFileBackend

    path = Path(url) if url else sweep_dir / STORAGE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def make_sampler(spec: SweepSpec):
    optuna = _optuna()
    if spec.method == "grid":
        return _ordered_grid_sampler(spec)
    if spec.method == "random":
        return optuna.samplers.RandomSampler()
    # Workers sample independently; a fixed seed would make them all propose the same point.
    return optuna.samplers.TPESampler(n_startup_trials=min(10, max(2, (spec.run_cap or 20) // 4)))


def _ordered_grid_sampler(spec: SweepSpec):
    """Optuna's GridSampler, visiting the points in the YAML's order (as wandb does; Optuna shuffles them)."""
    from optuna.samplers import GridSampler

    class SweepGridSampler(GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            # GridSampler calls study.stop() here when the grid is done, which only works inside
            # study.optimize(); slovo's workers use ask/tell and stop on their own when the grid is done.
            pass

    sampler = SweepGridSampler({p.name: p.grid_values() for p in spec.params}, seed=0)
    if hasattr(sampler, "_all_grids") and hasattr(sampler, "_param_names"):
        # GridSampler keys a trial's point as a tuple in sorted-name order; keep that, change the order.
        sampler._all_grids = [tuple(point[n] for n in sampler._param_names) for point in grid_points(spec)]
    return sampler


def make_pruner(spec: SweepSpec):
    optuna = _optuna()
    if not spec.early_terminate:
        return optuna.pruners.NopPruner()
    et = spec.early_terminate
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=et["min_iter"], reduction_factor=et["eta"])


def open_study(spec: SweepSpec, storage, create: bool = False):
    """Create (or load) the sweep's study; a rerun with another search space is refused."""
    optuna = _optuna()
    sampler, pruner = make_sampler(spec), make_pruner(spec)
    if create:
        study = optuna.create_study(storage=storage, study_name=spec.name, direction=spec.goal,
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
        stored = study.user_attrs.get("slovo_fingerprint")
        if stored is None:
            study.set_user_attr("slovo_fingerprint", spec.fingerprint())
            study.set_user_attr("slovo_method", spec.method)
            study.set_user_attr("slovo_metric", spec.metric)
        elif stored != spec.fingerprint():
            raise SlovoError(
                f"{spec.path}: sweep {spec.name!r} already exists with different parameters/method/budget; "
                f"give it a new --name (or delete its folder)"
            )
        if study.direction.name.lower() != spec.goal:
            raise SlovoError(f"{spec.path}: sweep {spec.name!r} exists with goal {study.direction.name.lower()}")
        return study
    return optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)


# ---------------------------------------------------------------------------------------------
# which trial runs next: lost workers, retries, run caps and the sweep's time


@contextlib.contextmanager
def _sweep_lock(sweep_dir: Path):
    """Workers on this machine take turns choosing trials, so run_cap and the grid are never overrun."""
    try:
        import fcntl
    except ImportError:  # Windows: journal writes are still locked by Optuna; only the choice may race
        yield
        return
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def superseded(trials) -> set[int]:
    """Numbers of trials that a later attempt replaced (Optuna's `retry_history` system attr)."""
    out: set[int] = set()
    for t in trials:
        out.update(t.system_attrs.get("retry_history", []))
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lost_reason(t) -> str | None:
    """Why a RUNNING trial is taken as abandoned, or None when its worker may still be at it."""
    worker = t.user_attrs.get("worker", "")
    beat = t.user_attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else time.time())
    host, _, pid = worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
        return f"worker {worker} is gone"
    if time.time() - beat > STALE_AFTER_S:
        return f"no heartbeat for {time.time() - beat:.0f}s"
    return None


def retry_trial(study, frozen) -> bool:
    """Queue a new attempt of a failed trial with the same parameters and run folder.

    Uses the system attrs of Optuna's RetryHeartbeatStaleTrialCallback (failed_trial, retry_history),
    so Optuna's tools see the lineage, but keeps only identity attrs: a retry must not inherit the
    pruner's rung records or the old worker's heartbeat.
    """
    optuna = _optuna()
    history = list(frozen.system_attrs.get("retry_history", [])) + [frozen.number]
    if len(history) >= MAX_ATTEMPTS:
        return False
    system_attrs = {k: frozen.system_attrs[k] for k in _RETRY_SYSTEM_ATTRS if k in frozen.system_attrs}
    system_attrs.update(failed_trial=history[0], retry_history=history)
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params=frozen.params, distributions=frozen.distributions,
        user_attrs={k: frozen.user_attrs[k] for k in _IDENTITY_ATTRS if k in frozen.user_attrs},
        system_attrs=system_attrs,
    ))
    return True


def _fail_lost_trials(study) -> None:
    """Mark trials whose worker died as failed and queue a retry (Optuna's heartbeat idea, for any storage)."""
    optuna = _optuna()
    TrialState = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _lost_reason(t)
        if reason is None:
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "error", f"lost: {reason}")
            if not study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # its worker finished it meanwhile, or another worker got here first
        retried = retry_trial(study, study._storage.get_trial(t._trial_id))
        print(f"[sweep] {t.user_attrs.get('run_name', t.number)}: {reason}; "
              f"{'queued again (resumes from its checkpoint)' if retried else 'not retried (too many attempts)'}")


def retry_failed_trials(study) -> int:
    """At the start of an invocation, give trials that failed with an error (not a diverged run) another attempt."""
    TrialState = _optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    done = superseded(trials)
    n = 0
    for t in trials:
        if (t.state == TrialState.FAIL and t.number not in done and "run_name" in t.user_attrs
                and t.user_attrs.get("retryable")):
            n += retry_trial(study, t)
    return n


def expected_trial_seconds(spec: SweepSpec, trials) -> float:
    """How long the next trial will likely take: the median of finished ones, else the budget plus a margin."""
    TrialState = _optuna().trial.TrialState
    walls = [t.user_attrs["wall_seconds"] for t in trials
             if t.state == TrialState.COMPLETE and t.user_attrs.get("wall_seconds")]
    if walls:
        return float(statistics.median(walls))
    return spec.budget_s * 1.2 if spec.budget_s else 0.0  # evals, samples and start-up come on top


def _can_start_new_config(spec: SweepSpec, trials) -> bool:
    runs = [t for t in trials if t.number not in superseded(trials)]
    if spec.target is not None:
        values = [t.value for t in trials if t.value is not None and t.state.name == "COMPLETE"]
        if values and (min(values) <= spec.target if spec.goal == "minimize" else max(values) >= spec.target):
            return False
    if spec.run_cap is not None and len(runs) + spec.seeds > spec.run_cap:
        return False
    if spec.method == "grid":
        used = {t.system_attrs.get("grid_id") for t in trials}
        return any(i not in used for i in range(spec.grid_size))
    return True


def _next_trial(study, spec: SweepSpec, deadline: float | None):
    """Ask Optuna for the next trial (a queued one first), or None when the sweep has nothing left to start."""
    TrialState = _optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    if deadline is not None and time.time() + expected_trial_seconds(spec, trials) > deadline:
        return None
    waiting = any(t.state == TrialState.WAITING for t in trials)
    if not waiting and not _can_start_new_config(spec, trials):
        return None
    trial = study.ask()
    for p in spec.params:  # a queued trial gets its fixed values back; a new one is sampled
        if p.kind == "categorical":
            trial.suggest_categorical(p.name, p.choices())
        elif p.kind == "int":
            trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    if "run_name" not in trial.user_attrs:  # a new configuration: name it and queue its other seeds
        base = f"trial-{trial.number:03d}"
        name = f"{base}-seed0" if spec.seeds > 1 else base
        for k, v in {"run_name": name, "seed_index": 0, "config_trial": trial.number}.items():
            trial.set_user_attr(k, v)
        for i in range(1, spec.seeds):
            study.enqueue_trial(dict(trial.params),
                                user_attrs={"run_name": f"{base}-seed{i}", "seed_index": i,
                                            "config_trial": trial.number})
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("heartbeat", time.time())
    return trial


# ---------------------------------------------------------------------------------------------
# one trial = one ordinary training run


class PruningReporter(Callback):
    """Training callback: report the metric at each eval's progress index and stop the run when Optuna says so."""

    def __init__(self, trial, metric: str, eval_every: int, prune: bool):
        self.trial, self.metric, self.every, self.prune = trial, metric, max(1, eval_every), prune
        self.reported: set[int] = set()
        self.pruned_at: float | None = None

    def on_eval(self, state, control, metrics: dict) -> None:
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
    """A thread that stamps the trial every HEARTBEAT_S seconds, so other workers can tell it is alive."""

    def __init__(self, trial, interval: float = HEARTBEAT_S):
        self.trial, self.interval = trial, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.trial.set_user_attr("heartbeat", time.time())
            except Exception:  # noqa: BLE001 - the trial was finished or failed meanwhile
                return

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


def _run_trial(study, trial, spec: SweepSpec, sweep_dir: Path, train_fn: Callable, extra: dict) -> str:
    """Train one trial's run and tell Optuna how it ended; returns the trial's final state name."""
    optuna = _optuna()
    TrialState = optuna.trial.TrialState
    attrs = trial.user_attrs
    run_name, seed_index = attrs["run_name"], int(attrs.get("seed_index", 0))
    run_dir = sweep_dir / "trials" / run_name
    shown = " ".join(f"{p.name}={_fmt(p.decode(trial.params[p.name]))}" for p in spec.params)
    started = time.time()
    summary = read_json_dict(run_dir / "summary.json")
    reporter = PruningReporter(trial, spec.metric, spec.eval_every, prune=spec.early_terminate is not None)
    trained = not (summary and summary.get("status") in ("finished", "pruned"))
    try:
        if trained:
            # A killed worker's run continues from its checkpoint; one that left none starts over.
            resume = _has_checkpoint(run_dir)
            if run_dir.exists() and not resume:
                shutil.rmtree(run_dir)
            cfg = spec.build_config(dict(trial.params), seed_index, extra)
            print(f"[sweep {spec.name}] {run_name}: {shown}{' (resuming)' if resume else ''}", flush=True)
            with _Heartbeat(trial):
                summary = train_fn(cfg, run_dir, resume=resume, callbacks=[reporter]) or read_json_dict(run_dir / "summary.json") or {}
    except KeyboardInterrupt:
        _give_up(study, trial, "interrupted")
        raise
    except Exception as e:  # noqa: BLE001 - one broken configuration must not end the sweep
        message = str(e) if isinstance(e, SlovoError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, SlovoError):
            traceback.print_exc()
        summary = {"status": "failed", "error": message}
        # An error (out of memory, a bug since fixed) is worth another attempt on the next invocation;
        # a run that trained and diverged is a result.
        trial.set_user_attr("retryable", True)
    status = summary.get("status", "failed")
    value = summary.get(spec.metric)
    wall = time.time() - started
    for key in ("eval/bpb", "eval/loss", "train_runtime", "error"):
        if summary.get(key) is not None:
            trial.set_user_attr(key, summary[key])
    trial.set_user_attr("status", status)
    if trained:  # not for a result a killed worker left behind: it would skew the --time estimate
        trial.set_user_attr("wall_seconds", round(wall, 2))
    trial.set_user_attr("run_dir", str(Path("trials") / run_name))
    if status == "interrupted":
        _give_up(study, trial, "interrupted")
        raise KeyboardInterrupt
    if status == "pruned" or reporter.pruned_at is not None:
        study.tell(trial, state=TrialState.PRUNED)
        state = "pruned"
    elif status == "finished" and value is not None and math.isfinite(float(value)):
        study.tell(trial, float(value))
        state = "finished"
    else:
        if status == "finished":
            trial.set_user_attr("error", f"{spec.metric} is {value} (diverged?)")
        study.tell(trial, state=TrialState.FAIL)
        state = "failed"
    shown_value = f"{spec.metric} {float(value):.4f}" if isinstance(value, (int, float)) else "no result"
    extra_note = f" at {reporter.pruned_at:.0%} of its budget" if reporter.pruned_at is not None else ""
    note = f" ({summary.get('error')})" if state == "failed" and summary.get("error") else ""
    print(f"[sweep {spec.name}] {run_name}: {state}{extra_note}, {shown_value}, {wall:.1f}s{note}", flush=True)
    return state


def _give_up(study, trial, why: str) -> None:
    """The run stopped without a result (Ctrl-C): fail the trial and queue it to resume next time."""
    TrialState = _optuna().trial.TrialState
    with contextlib.suppress(Exception):
        trial.set_user_attr("error", why)
        frozen = study.tell(trial, state=TrialState.FAIL)
        retry_trial(study, frozen)


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------------------------
# workers and the whole sweep


def run_worker(spec_path: str | Path, sweep_dir: str | Path, *, name: str | None = None, data: str | None = None,
               storage: str | None = None, deadline: float | None = None, worker_index: int = 0,
               worker_count: int = 1, train_fn: Callable | None = None, quiet: bool = False) -> int:
    """Run trials of an existing sweep until none is left to start; returns how many it ran.

    Worker `worker_index` of `worker_count` on this machine takes its share of the CPU threads or its GPU;
    `quiet` turns off each run's progress display (several workers share one terminal)."""
    spec = load_sweep(spec_path, data=data, name=name)
    sweep_dir = Path(sweep_dir)
    study = open_study(spec, open_storage(storage, sweep_dir))
    train_fn = train_fn or functools.partial(_default_train, quiet=quiet)
    extra = worker_overrides(spec, worker_index, worker_count)
    ran = 0
    while True:
        with _sweep_lock(sweep_dir):
            _fail_lost_trials(study)
            trial = _next_trial(study, spec, deadline)
        if trial is None:
            return ran
        _run_trial(study, trial, spec, sweep_dir, train_fn, dict(extra))
        ran += 1


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


def _spawn_workers(spec: SweepSpec, sweeps_dir: Path, storage: str | None, data: str | None,
                   deadline: float | None, workers: int) -> None:
    """Start N `slovo sweep --worker` processes on this machine and wait for them."""
    procs = []
    threads = _threads_per_worker(spec, workers)
    for index in range(workers):
        cmd = [sys.executable, "-m", "slovo", "sweep", str(spec.path), "--worker", "--name", spec.name,
               "--sweeps-dir", str(sweeps_dir), "--worker-index", str(index), "--worker-count", str(workers)]
        cmd += ["--storage", storage] if storage else []
        cmd += ["--data", data] if data else []
        cmd += ["--deadline", repr(deadline)] if deadline else []
        env = dict(os.environ, PYTHONUNBUFFERED="1")
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
        print(f"[sweep {spec.name}] {len(bad)} of {workers} workers exited with an error (codes {bad})", file=sys.stderr)


def run_sweep(spec_path: str | Path, *, sweeps_dir: str | Path = "sweeps", name: str | None = None,
              workers: int = 1, storage: str | None = None, time_limit: str | float | None = None,
              data: str | None = None, train_fn: Callable | None = None, print_table: bool = True) -> dict:
    """Run (or resume) a sweep end to end and write its results; returns the results dict of sweep_results."""
    from slovo.config import parse_duration
    from slovo.sweep_results import write_results
    from slovo.utils import atomic_write_text

    if workers < 1:
        raise SlovoError(f"--workers: must be 1 or more, got {workers}")
    spec = load_sweep(spec_path, data=data, name=name)
    deadline = time.time() + parse_duration(time_limit, "--time") if time_limit is not None else None
    if spec.method != "grid" and spec.run_cap is None and deadline is None:
        raise SlovoError(f"{spec.path}: a {spec.method} sweep needs run_cap in the file or --time (e.g. --time 2h)")
    sweep_dir = Path(sweeps_dir) / spec.name
    sweep_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(spec, open_storage(storage, sweep_dir), create=True)
    # Same search space as before (checked above); the copy follows the file's latest run_cap and comments.
    atomic_write_text(sweep_dir / "sweep.yaml", Path(spec.path).read_text(encoding="utf-8"))
    print(describe(spec), flush=True)
    with _sweep_lock(sweep_dir):
        _fail_lost_trials(study)
        retried = retry_failed_trials(study)
    if retried:
        print(f"[sweep {spec.name}] {retried} failed trial(s) queued for another attempt")
    try:
        if workers == 1:
            ran = run_worker(spec.path, sweep_dir, name=spec.name, data=data, storage=storage, deadline=deadline,
                             train_fn=train_fn)
            if ran == 0 and deadline is None:
                print(f"[sweep {spec.name}] nothing left to run", flush=True)
        else:
            _spawn_workers(spec, Path(sweeps_dir), storage, data, deadline, workers)
    finally:
        results = write_results(study, spec, sweep_dir)
        if print_table:
            from slovo.sweep_results import print_leaderboard

            print_leaderboard(results, spec, sweep_dir)
    if not results["runs"] and deadline is not None:
        print(f"[sweep {spec.name}] nothing started: a run takes about "
              f"{expected_trial_seconds(spec, []):.0f}s, more than --time {time_limit}")
    return results
