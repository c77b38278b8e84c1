"""`slovo sweep`: hyperparameter sweeps on Optuna, from a wandb-style sweep YAML.

    sweeps/<name>/
      sweep.yaml          copy of the sweep file
      study.json          which study the folder holds (its id, its storage)
      optuna.journal      the Optuna study (JournalFileBackend; `optuna-dashboard optuna.journal` opens it)
      trials/<run>/       one ordinary run folder per trial: generate / eval / report work on it
      leaderboard.csv/.md best.yaml  importances.json   (written and read back by slovo.sweep.results)

The package, by stage: `spec` reads and checks the sweep file; `storage` opens the study's storage, ties
it to its sweep folder and holds the lock workers take turns under; `study` is the Optuna study and decides
which trial runs next; `workers` trains trials and drives the whole sweep (`run_sweep`); `results` writes the
leaderboard, best.yaml and importances, and reads a sweep folder back for the report.

The engine is plain Optuna: grid -> GridSampler (in the YAML's order, as wandb runs a grid), random ->
RandomSampler, bayes -> TPESampler; wandb's `early_terminate: hyperband` -> Optuna's asynchronous
successive halving (ASHA), which is what wandb's hyperband does: at eval min_iter * eta^k a run that is not
in the best 1/eta of the runs that reached that eval stops. Runs report their metric at the same progress
points (eval k of `eval.every`, evenly spaced over the time budget), so the comparison is fair whatever
each configuration's throughput.

Each worker loops: take the sweep lock, mark trials whose worker died as failed (and queue a retry that
resumes from the run folder's checkpoint), ask Optuna for a trial, release the lock, train it, tell Optuna.
`--workers N` starts N such workers as processes on this machine; more machines can join the same study
through `--storage postgresql://...` (the lock is then in the database, and the sweep folder on a shared
filesystem). A configuration with `seeds: 3` is three Optuna trials with the same
parameters: the first one sampled, the other two queued with `enqueue_trial` so any worker can pick them up.
"""

from slovo.sweep.results import SweepFolder, print_leaderboard, read_sweep_folder, write_results
from slovo.sweep.spec import ParamSpec, SweepSpec, describe, grid_points, load_sweep
from slovo.sweep.storage import open_storage
from slovo.sweep.study import open_study, retry_trial, superseded
from slovo.sweep.workers import PruningReporter, run_sweep, run_worker, worker_overrides

__all__ = [
    "ParamSpec",
    "PruningReporter",
    "SweepFolder",
    "SweepSpec",
    "describe",
    "grid_points",
    "load_sweep",
    "open_storage",
    "open_study",
    "print_leaderboard",
    "read_sweep_folder",
    "retry_trial",
    "run_sweep",
    "run_worker",
    "superseded",
    "worker_overrides",
    "write_results",
]
