"""`slovo compare CONFIG_OR_RUN... --seeds N`: train two or more configs over the same N seeds, then say
whether one is better, by how much, and how sure (slovo.compare, slovo.stats).

Rerunning the same command resumes the comparison (it is a sweep: finished runs are kept, a killed one resumes
from its checkpoint); `--workers` and `--storage` spread it as they do a sweep.

examples:
  slovo compare tiny configs/my.yaml --seeds 3 --time 5m
  slovo compare --variant optim.lr=0.002 --variant optim.lr=0.004 --seeds 4 --time 5m
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "configs",
        nargs="*",
        metavar="CONFIG_OR_RUN",
        help="a preset name, a config YAML file, or a finished run folder (its config.yaml)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="one more config: the base (--preset/--config) with these values, e.g. --variant optim.lr=0.002 "
        "(repeatable; each --variant is one config)",
    )
    p.add_argument("--preset", default=None, help="the base config of --variant (default tiny)")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="the base config of --variant, a YAML file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a value for every config compared, e.g. --set optim.name=adamw (repeatable)",
    )
    p.add_argument("--seeds", type=int, required=True, metavar="N", help="paired seeds per config (2 or more)")
    p.add_argument("--seed", type=int, default=None, help="the first seed (default: the configs' train.seed)")
    p.add_argument("--data", default=None, metavar="DIR", help="dataset folder (default: the run folders' own)")
    p.add_argument("--time", default=None, metavar="DURATION", help="training time per run, e.g. 5m")
    p.add_argument("--max-steps", type=int, default=0, metavar="N", help="optimizer steps per run")
    p.add_argument("--max-tokens", type=int, default=0, metavar="N", help="training tokens per run")
    p.add_argument("--name", default=None, help="comparison name (default: compare-<hash of what is compared>)")
    p.add_argument("--out", default="compares", metavar="DIR", help="folder holding comparisons (default compares)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="runs trained at once on this machine")
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage shared by several machines (as slovo sweep; default $SLOVO_STORAGE)",
    )


def run(args) -> int:
    from pathlib import Path

    import yaml

    from slovo.compare import (
        build_candidates,
        check_comparable,
        group_results,
        print_verdict,
        sweep_document,
        verdict,
        write_verdict,
    )
    from slovo.config import parse_override
    from slovo.errors import SlovoError
    from slovo.sweep import load_sweep, run_sweep
    from slovo.sweep.storage import storage_url
    from slovo.utils import atomic_write_text

    if args.seeds < 2:  # before anything is read: the one line the user needs
        raise SlovoError(f"--seeds: a comparison needs at least 2 paired seeds to estimate its noise, got {args.seeds}")
    pairs = [parse_override(o) for o in args.overrides]
    keys = [k for k, _ in pairs]
    repeated = next((k for k in keys if keys.count(k) > 1), None)
    if repeated and len(args.configs) + len(args.variant) < 2:
        raise SlovoError(
            f"--set {repeated}=... is given twice: --set applies to every config compared; give each config as "
            f"--variant {repeated}=VALUE"
        )
    candidates = build_candidates(args.configs, args.variant, args.preset, args.config)
    sets = dict(pairs)
    if args.seed is not None:
        sets["train.seed"] = args.seed
    budget = {"time": args.time, "max_steps": args.max_steps, "max_tokens": args.max_tokens}
    doc = sweep_document(candidates, args.data, args.seeds, budget, sets, args.name)
    folder = Path(args.out) / doc["name"]
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / "compare.yaml"
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if spec_path.exists() and spec_path.read_text(encoding="utf-8") != text:
        raise SlovoError(f"{folder}: holds another comparison; choose another --name")
    atomic_write_text(spec_path, text)
    spec = load_sweep(spec_path)
    check_comparable(spec)
    results = run_sweep(
        spec_path, sweeps_dir=args.out, workers=args.workers, storage=storage_url(args.storage), print_table=False
    )
    order = [c.name for c in candidates]
    outcome = verdict(group_results(results["runs"]), order)
    seeds = ", ".join(str(spec.base_seed + i) for i in range(args.seeds))
    title = f"compare {doc['name']}: eval/bpb over {args.seeds} paired seeds (train.seed {seeds})"
    write_verdict(outcome, folder, title)
    print_verdict(outcome, title)
    print(f"verdict: {folder / 'verdict.md'}; rerun the same command to resume")
    return 0
