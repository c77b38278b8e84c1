"""`slovo sweep SWEEP.yaml`: a hyperparameter sweep (wandb sweep YAML, Optuna engine, no server).

Rerunning the same command resumes the sweep: finished trials are skipped, trials a killed worker left
running are retried from their checkpoint. `--workers N` trains N trials at once on this machine; other
machines join with the same `--storage postgresql://...` URL and the sweep folder on a shared filesystem.

examples:
  slovo sweep configs/sweeps/tiny_recipe.yaml --time 2h
  slovo sweep my_sweep.yaml --workers 2
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sweep", metavar="SWEEP.yaml", help="sweep file (wandb sweep schema + preset/data/budget/seeds)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="trials trained at once on this machine (default 1)"
    )
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage URL shared by several machines (postgresql://USER@HOST/DB, "
        "needs pip install 'slovo-lm[postgres]'; the sweep folder must then be on a "
        "filesystem every machine reaches); default: $SLOVO_STORAGE, else a journal file in the sweep folder. "
        "Keep the password off the command line: PGPASSWORD or ~/.pgpass, or the URL in $SLOVO_STORAGE",
    )
    parser.add_argument(
        "--time",
        default=None,
        metavar="DURATION",
        help="total time for this sweep, e.g. 2h: no trial starts that would not finish in it",
    )
    parser.add_argument(
        "--name", default=None, metavar="NAME", help="sweep name (default: the file's `name`, else its stem)"
    )
    parser.add_argument(
        "--sweeps-dir",
        "--out",
        dest="sweeps_dir",
        default=None,
        metavar="DIR",
        help="folder holding sweep folders (default: sweeps; with a database --storage, the "
        "folder the sweep was started in when this machine reaches it)",
    )
    parser.add_argument("--data", default=None, metavar="DIR", help="dataset folder (replaces the file's `data`)")
    parser.add_argument("--dry-run", action="store_true", help="check the sweep file and print its size, run nothing")
    # Used by `--workers N` to start its worker processes; not for people.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker-count", type=int, default=1, help=argparse.SUPPRESS)


def run(args) -> int:
    from pathlib import Path

    from slovo.sweep import describe, load_sweep, run_sweep, run_worker
    from slovo.sweep.storage import storage_url

    if args.dry_run:
        print(describe(load_sweep(args.sweep, data=args.data, name=args.name)))
        return 0
    if args.worker:
        spec = load_sweep(args.sweep, data=args.data, name=args.name)
        run_worker(
            args.sweep,
            Path(args.sweeps_dir or "sweeps") / spec.name,
            name=spec.name,
            data=args.data,
            storage=storage_url(args.storage),
            deadline=args.deadline,
            worker_index=args.worker_index,
            worker_count=args.worker_count,
            quiet=True,
        )
        return 0
    run_sweep(
        args.sweep,
        sweeps_dir=args.sweeps_dir,
        name=args.name,
        workers=args.workers,
        storage=storage_url(args.storage),
        time_limit=args.time,
        data=args.data,
    )
    return 0
