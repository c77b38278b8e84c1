"""`slovo tune`: spend a total time on probing this machine and then training the best model it found.

Rerunning the same command continues a killed tune: finished probes are kept, the final run resumes.

examples:
  slovo tune --data data/ruslit-8k --time 30m --name tuned
  slovo tune --data data/ruslit-8k --time 30m --dry-run
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder written by `slovo prepare`")
    p.add_argument("--time", required=True, help="the total time, probes included, e.g. 20m, 1h")
    p.add_argument(
        "--preset-base",
        default="tiny",
        metavar="PRESET",
        help="preset (tiny, small, base) or config YAML the candidates are shaped from (default tiny)",
    )
    p.add_argument("--name", help="tune name (default: dataset folder and time, e.g. ruslit-8k-20m)")
    p.add_argument("--tune-dir", default="tune", help="folder for tune folders (default: tune)")
    p.add_argument(
        "--probe-fraction",
        type=float,
        default=0.25,
        metavar="F",
        help="share of the total spent probing (default 0.25)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="measure the shapes' speed and print the plan (candidates, probe and final budgets); "
        "train nothing, write nothing",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="train.seed of every probe and the final run (default: the base's); repeats of a tune with other "
        "seeds measure how much of its result is luck",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, tables or summary")


def run(args) -> int:
    from slovo.device import warn_unused_gpu
    from slovo.tune import run_tune

    if not args.dry_run:
        warn_unused_gpu("tune")

    result = run_tune(
        args.data,
        args.time,
        base=args.preset_base,
        name=args.name,
        tune_dir=args.tune_dir,
        probe_fraction=args.probe_fraction,
        dry_run=args.dry_run,
        quiet=args.quiet,
        seed=args.seed,
    )
    if result.get("status") == "interrupted":
        from slovo.callbacks import stop_exit_status

        return stop_exit_status()  # Ctrl-C (130) or SIGTERM (143), after saving (as `slovo train`)
    return 0 if result.get("dry_run") or result.get("status") == "finished" else 1
