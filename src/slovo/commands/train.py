"""`slovo train`: train a preset or config under a budget, or `--resume` a run folder.

examples:
  slovo train --data data/ruslit-8k --preset tiny --time 5m --name demo
  slovo train --data data/ruslit-8k --config my.yaml --set optim.lr=3e-3 --set model.n_layer=6
  slovo train --resume runs/demo --time 10m
"""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import datetime
from pathlib import Path

from slovo.errors import SlovoError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset folder written by `slovo prepare`")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help="a preset from configs/ (tiny, small, base)")
    src.add_argument("--config", help="a run config YAML")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    p.add_argument("--time", help="training-time budget, e.g. 300s, 30m, 1h30m")
    p.add_argument("--max-steps", type=int, help="optimizer-step budget")
    p.add_argument("--max-tokens", type=int, help="training-token budget")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by dotted path, e.g. --set optim.lr=1e-3 (repeatable)",
    )
    p.add_argument("--seed", type=int, help="shorthand for --set train.seed=N")
    p.add_argument("--name", help="run name (default: preset and time)")
    p.add_argument("--runs-dir", default="runs", help="folder for run folders (default: runs)")
    p.add_argument("--report-to", help="comma-separated trackers: wandb, tensorboard, trackio")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder of the same name")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _budget_overrides(args) -> dict:
    out: dict = {}
    if args.time is not None:
        from slovo.config import parse_duration

        parse_duration(args.time, "--time")  # checked here so the message names the flag
        out["budget.time"] = args.time
    for flag, key in (("max_steps", "budget.max_steps"), ("max_tokens", "budget.max_tokens")):
        value = getattr(args, flag)
        if value is not None:
            if value <= 0:
                raise SlovoError(f"--{flag.replace('_', '-')}: must be positive, got {value}")
            out[key] = value
    return out


def _new_run_dir(args, cfg) -> Path:
    """The new run's folder: --name or preset-and-time, refused when it holds a run and --overwrite is not given."""
    name = args.name or f"{cfg.preset or Path(args.config).stem}-{datetime.now():%Y%m%d-%H%M%S}"
    if "/" in name or name in (".", ".."):
        raise SlovoError(f"--name {name!r}: a run name is a single folder name")
    run_dir = Path(args.runs_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()) and not args.overwrite:
        raise SlovoError(f"{run_dir}: already exists; use --resume {run_dir}, another --name, or --overwrite")
    return run_dir


def _overwrite(run_dir: Path) -> None:
    """--overwrite: delete the old run folder, unless a live process trains in it."""
    from slovo.runlock import describe_holder, lock_holder

    if not run_dir.exists():
        return
    holder = lock_holder(run_dir)
    if holder is not None:
        raise SlovoError(
            f"{run_dir}: cannot --overwrite: another slovo process is training in it ({describe_holder(holder)}); "
            "wait for it or stop it"
        )
    shutil.rmtree(run_dir)


def run(args) -> int:
    try:
        return _run(args)
    except SlovoError as e:
        if "slovo.distributed" in sys.modules:  # under torchrun the process group may exist by now
            sys.modules["slovo.distributed"].exit_in_group(f"slovo train: error: {e}", e.exit_code)
        raise


def _run(args) -> int:
    from slovo.config import load_config, parse_override
    from slovo.distributed import on_rank0

    overrides = dict(parse_override(o) for o in args.overrides)
    overrides.update(_budget_overrides(args))
    if args.seed is not None:
        overrides["train.seed"] = args.seed
    if args.report_to:
        overrides["tracking.report_to"] = [s.strip() for s in args.report_to.split(",") if s.strip()]

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").exists():
            raise SlovoError(f"{run_dir}: not a run folder (no config.yaml)")
        if args.preset or args.config:
            raise SlovoError("--resume continues a run with its own config; drop --preset/--config")
        if args.data:
            overrides["data.path"] = args.data
        cfg = load_config(config_file=run_dir / "config.yaml", overrides=overrides)
        resume = True
    else:
        if not args.data:
            raise SlovoError("--data DATASET_DIR is required (a folder written by `slovo prepare`)")
        if not args.preset and not args.config:
            args.preset = "tiny"
        overrides["data.path"] = args.data
        cfg = load_config(preset=args.preset, config_file=args.config, overrides=overrides)
        # under torchrun rank 0 names the run and checks the folder: a timestamp per rank could differ
        run_dir = on_rank0(lambda: _new_run_dir(args, cfg))
        resume = False

    from slovo.config import require_budget
    from slovo.data import load_dataset

    require_budget(cfg)
    load_dataset(cfg.data.path)  # a bad dataset path fails here, before an old run folder is replaced
    if not resume and args.overwrite:
        on_rank0(lambda: _overwrite(run_dir))  # one rank deletes, the others wait for it

    if cfg.train.device == "auto":
        from slovo.device import warn_unused_gpu

        warn_unused_gpu("train")
    from slovo.train import train

    summary = train(cfg, run_dir, resume=resume, quiet=args.quiet)
    if summary["status"] == "interrupted":
        from slovo.callbacks import stop_exit_status

        # after saving: 130 (Ctrl-C) or 143 (SIGTERM), the shell's convention, so `slovo train ... && slovo generate`
        # stops, and a scheduler sees the run was terminated
        return stop_exit_status()
    return 0 if summary["status"] in ("finished", "pruned") else 1
