"""The sweep's Optuna study: sampler and pruner, and which trial runs next.

Each worker takes the sweep lock (slovo.sweep.storage: in the database when the study is in one), marks
trials whose worker died as failed (queuing a retry that resumes from the run folder's checkpoint), asks
Optuna for the next trial and releases the lock. Everything a worker decides from is in the study's storage
(trial states, the heartbeat and worker attrs), so workers on different machines decide alike. A trial is
lost when its worker's process on this host is gone, or when its heartbeat (stamped every `HEARTBEAT_S` by
the worker) is older than `HEARTBEAT_LOST_AFTER_S` (a worker on another machine; the machines' clocks must
agree to well within that).
"""

from __future__ import annotations

import os
import statistics
import time

from slovo.errors import SlovoError
from slovo.sweep.spec import SweepSpec
from slovo.sweep.storage import import_optuna, worker_name
from slovo.utils import process_alive, process_started

HEARTBEAT_S = 30.0  # how often a running trial writes its heartbeat into the study
HEARTBEAT_LOST_AFTER_S = 300.0  # a trial whose heartbeat is this old is taken as lost (its worker died)
POLL_S = 5.0  # how often a worker with nothing to start looks again while trials run elsewhere
MAX_ATTEMPTS = 3  # a run is tried at most this many times (lost workers, errors on a previous invocation)
_IDENTITY_ATTRS = ("run_name", "seed_index", "config_trial", "grid_index")  # user attrs a retry keeps
_RETRY_SYSTEM_ATTRS = ("fixed_params",)  # system attrs a retry keeps
LOST_ATTR = "lost_trial_{}"  # the study's user attr saying why trial N was failed as lost (its worker died)


def make_sampler(spec: SweepSpec):
    optuna = import_optuna()
    if spec.method in ("grid", "random"):
        # a grid's points are enqueued one by one in the YAML's order (next_trial), so its sampler never samples
        return optuna.samplers.RandomSampler()
    # Workers sample independently; a fixed seed would make them all propose the same point.
    return optuna.samplers.TPESampler(n_startup_trials=min(10, max(2, (spec.run_cap or 20) // 4)))


def make_pruner(spec: SweepSpec):
    optuna = import_optuna()
    if not spec.early_terminate:
        return optuna.pruners.NopPruner()
    et = spec.early_terminate
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=et["min_iter"], reduction_factor=et["eta"])


def open_study(spec: SweepSpec, storage, create: bool = False):
    """Create (or load) the sweep's study; a rerun with another search space is refused."""
    optuna = import_optuna()
    sampler, pruner = make_sampler(spec), make_pruner(spec)
    if create:
        study = optuna.create_study(
            storage=storage,
            study_name=spec.name,
            direction=spec.goal,
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
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


def superseded(trials) -> set[int]:
    """Numbers of trials that a later attempt replaced (Optuna's `retry_history` system attr)."""
    out: set[int] = set()
    for t in trials:
        out.update(t.system_attrs.get("retry_history", []))
    return out


def _lost_reason(t) -> str | None:
    """Why a RUNNING trial is taken as abandoned, or None when its worker may still be at it."""
    worker = t.user_attrs.get("worker", "")
    beat = t.user_attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else time.time())
    host, _, pid = worker.rpartition(":")
    # process_alive can only tell for this host; another machine's worker is judged by its heartbeat
    started = t.user_attrs.get("worker_started")  # tells the worker from a later process given its pid
    if host and pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid), host, started):
        return f"worker {worker} is gone"
    if time.time() - beat > HEARTBEAT_LOST_AFTER_S:
        return f"no heartbeat for {time.time() - beat:.0f}s"
    return None


def retry_trial(study, frozen) -> bool:
    """Queue a new attempt of a failed trial with the same parameters and run folder.

    Uses the system attrs of Optuna's RetryHeartbeatStaleTrialCallback (failed_trial, retry_history),
    so Optuna's tools see the lineage, but keeps only identity attrs: a retry must not inherit the
    pruner's rung records or the old worker's heartbeat.
    """
    optuna = import_optuna()
    history = list(frozen.system_attrs.get("retry_history", [])) + [frozen.number]
    if len(history) >= MAX_ATTEMPTS:
        return False
    system_attrs = {k: frozen.system_attrs[k] for k in _RETRY_SYSTEM_ATTRS if k in frozen.system_attrs}
    system_attrs.update(failed_trial=history[0], retry_history=history)
    user_attrs = {k: frozen.user_attrs[k] for k in _IDENTITY_ATTRS if k in frozen.user_attrs}
    if frozen.user_attrs.get("worker"):  # whose run lock the retry may take over (slovo.sweep.workers)
        user_attrs["previous_worker"] = frozen.user_attrs["worker"]
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=frozen.params,
            distributions=frozen.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
        )
    )
    return True


def fail_lost_trials(study) -> None:
    """Mark trials whose worker died as failed and queue a retry (Optuna's heartbeat idea, for any storage)."""
    optuna = import_optuna()
    TrialState = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _lost_reason(t)
        if reason is None:
            continue
        frozen = study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if frozen.state != TrialState.FAIL:
            continue  # its worker finished it meanwhile
        study.set_user_attr(LOST_ATTR.format(t.number), f"lost: {reason}")
        retried = retry_trial(study, frozen)
        print(
            f"[sweep] {t.user_attrs.get('run_name', t.number)}: {reason}; "
            f"{'queued again (resumes from its checkpoint)' if retried else 'not retried (too many attempts)'}"
        )


def retry_failed_trials(study) -> int:
    """At the start of an invocation, give trials that failed with an error (not a diverged run) another attempt."""
    TrialState = import_optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    done = superseded(trials)
    n = 0
    for t in trials:
        if (
            t.state == TrialState.FAIL
            and t.number not in done
            and "run_name" in t.user_attrs
            and t.user_attrs.get("retryable")
        ):
            n += retry_trial(study, t)
    return n


def running_trials(study) -> int:
    """Trials some worker is training now (here or on another machine)."""
    TrialState = import_optuna().trial.TrialState
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def expected_trial_seconds(spec: SweepSpec, trials) -> float:
    """How long the next trial will likely take: the median of finished ones, else the budget plus a margin."""
    TrialState = import_optuna().trial.TrialState
    walls = [
        t.user_attrs["wall_seconds"]
        for t in trials
        if t.state == TrialState.COMPLETE and t.user_attrs.get("wall_seconds")
    ]
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
        return next_grid_index(trials, spec.grid_size) is not None
    return True


def _grid_point(spec: SweepSpec, index: int) -> dict:
    """Point `index` of grid_points(spec) (the last axis varies fastest), without listing the others."""
    point = {}
    for p in reversed(spec.params):
        values = p.grid_values()
        index, i = divmod(index, len(values))
        point[p.name] = values[i]
    return {p.name: point[p.name] for p in spec.params}


def next_grid_index(trials, grid_size: int) -> int | None:
    """The first grid point, in the YAML's order (slovo.sweep.spec.grid_points), that no trial has taken."""
    used = {t.user_attrs.get("grid_index") for t in trials}
    return next((i for i in range(grid_size) if i not in used), None)


def next_trial(study, spec: SweepSpec, deadline: float | None):
    """Ask Optuna for the next trial (a queued one first), or None when the sweep has nothing left to start."""
    TrialState = import_optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    if deadline is not None and time.time() + expected_trial_seconds(spec, trials) > deadline:
        return None
    waiting = any(t.state == TrialState.WAITING for t in trials)
    if not waiting:
        if not _can_start_new_config(spec, trials):
            return None
        if spec.method == "grid":  # the next point in the YAML's order, through Optuna's queue
            index = next_grid_index(trials, spec.grid_size)
            study.enqueue_trial(_grid_point(spec, index), user_attrs={"grid_index": index})
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
            study.enqueue_trial(
                dict(trial.params),
                user_attrs={
                    "run_name": f"{base}-seed{i}",
                    "seed_index": i,
                    "config_trial": trial.number,
                    **({"grid_index": trial.user_attrs["grid_index"]} if "grid_index" in trial.user_attrs else {}),
                },
            )
    trial.set_user_attr("worker", worker_name())
    trial.set_user_attr("worker_started", process_started())
    trial.set_user_attr("heartbeat", time.time())
    return trial
