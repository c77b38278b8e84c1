"""Does `slovo tune` make more of a total time than the default a user would otherwise run?

`slovo tune --data DATA --time T` (probes and final run together within T) against
`slovo train --data DATA --preset tiny --time T` (T of training time, evals and samples on top: what a user
runs today), each as a subprocess exactly as a user types it, alternating (tune first in the first repeat,
train first in the next, ...), --repeats each (default 3). Repeat i runs both sides with --seed base + i, so
the two sides pair by seed and the repeats differ in init and data order (before, every run had seed 1337 and
two repeats could not say whether a 0.006 bpb gap was noise). Both final runs score the tiny preset's eval set
(the same `eval.tokens` windows of the validation split, every window at the final eval), so their final
eval/bpb compare directly.

It prints a table (per run: wall seconds on an outside clock, eval/bpb ± its eval standard error, params, tokens,
and for tune its time against T, what it chose and how sure), then each side's median bpb with its min-max and
the paired verdict (slovo.stats: "tune lower by X ± Y (p = ...)" only when p < 0.05, else "no difference
detectable with N seeds"), and whether every tune ended within 2% of T (plus its final eval and report). A JSON
of it all goes to runs/bench/bench-tune-<time>.json (--json PATH).

    .venv/bin/python bench/bench_tune.py                                # 20 min x 3 repeats x 2 sides: 2 h
    .venv/bin/python bench/bench_tune.py --total 3m --repeats 1         # a quick check that everything runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO / "data" / "ruslit-8k"
DEFAULT_RUNS = REPO / "runs" / "bench"
PRESET = "tiny"


def run_tune(args, data: Path, stamp: str, index: int) -> dict:
    name = f"bench-tune-{stamp}-{index}"
    tune_dir = Path(args.runs_dir) / "tune"
    cmd = [
        sys.executable,
        "-m",
        "slovo",
        "tune",
        "--data",
        str(data),
        "--time",
        args.total,
        "--name",
        name,
        "--tune-dir",
        str(tune_dir),
        "--preset-base",
        PRESET,
        "--seed",
        str(args.seed + index),
    ]
    wall, code = _run(cmd)
    result = _read(tune_dir / name / "tune.json")
    summary = _read(tune_dir / name / "final" / "summary.json")
    return {
        "side": "tune",
        "run": str(tune_dir / name),
        "seed": args.seed + index,
        "exit": code,
        "wall_s": wall,
        "eval/bpb": summary.get("eval/bpb"),
        "eval/bpb_se": summary.get("eval/bpb_se"),
        "decision": result.get("decision"),
        "params": summary.get("params"),
        "tokens": summary.get("tokens"),
        "spent_s": result.get("spent_s"),
        "final_eval_s": result.get("final_eval_s"),
        "report_s": result.get("report_s"),
        "choice": result.get("choice"),
        "why": result.get("why"),
        "probe_s": result.get("probe_s"),
        "final_budget_s": result.get("final_budget_s"),
    }


def run_train(args, data: Path, stamp: str, index: int) -> dict:
    name = f"bench-tiny-{stamp}-{index}"
    cmd = [
        sys.executable,
        "-m",
        "slovo",
        "train",
        "--data",
        str(data),
        "--preset",
        PRESET,
        "--time",
        args.total,
        "--name",
        name,
        "--runs-dir",
        str(args.runs_dir),
        "--seed",
        str(args.seed + index),
        "--quiet",
    ]
    wall, code = _run(cmd)
    summary = _read(Path(args.runs_dir) / name / "summary.json")
    return {
        "side": "train",
        "run": str(Path(args.runs_dir) / name),
        "seed": args.seed + index,
        "exit": code,
        "wall_s": wall,
        "eval/bpb": summary.get("eval/bpb"),
        "eval/bpb_se": summary.get("eval/bpb_se"),
        "params": summary.get("params"),
        "tokens": summary.get("tokens"),
    }


def _run(cmd: list[str]) -> tuple[float, int]:
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    code = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"), check=False).returncode
    return time.monotonic() - start, code


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _bpbs(rows: list[dict]) -> dict[int, float]:
    return {r["seed"]: r["eval/bpb"] for r in rows if isinstance(r.get("eval/bpb"), (int, float))}


def main() -> int:
    from slovo import stats
    from slovo.config import parse_duration
    from slovo.format import format_bpb

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--total", default="20m", help="total time of each side (default 20m)")
    p.add_argument("--repeats", type=int, default=3, help="runs per side, one seed each (default 3)")
    p.add_argument("--seed", type=int, default=1337, help="seed of the first repeat; repeat i uses seed + i")
    p.add_argument("--data", default=str(DEFAULT_DATASET), help="prepared dataset folder (default data/ruslit-8k)")
    p.add_argument("--runs-dir", default=str(DEFAULT_RUNS), help="where the runs go (default runs/bench)")
    p.add_argument("--json", default=None, help="where the figures go (default runs/bench/bench-tune-<time>.json)")
    args = p.parse_args()
    total_s = parse_duration(args.total, "--total")
    data = Path(args.data)
    if not (data / "meta.json").exists():
        sys.exit(
            f"{data}: not a prepared dataset; run slovo prepare --data ../shared/corpora/ruslit.jsonl.gz "
            f"--vocab-size 8192 --out {data}"
        )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    rows: list[dict] = []
    for i in range(args.repeats):
        sides = (run_tune, run_train) if i % 2 == 0 else (run_train, run_tune)
        for side in sides:
            rows.append(side(args, data, stamp, i))

    tune_rows = [r for r in rows if r["side"] == "tune"]
    train_rows = [r for r in rows if r["side"] == "train"]
    print(
        f"\nbench_tune: {args.total} each on {data.name}, {args.repeats} repeat(s), {platform.node()}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'side':<6} {'seed':>5} {'wall s':>8} {'eval/bpb ± se':>16} {'params':>9} {'tokens':>10}  notes")
    for r in rows:
        bpb = format_bpb(r.get("eval/bpb"), r.get("eval/bpb_se"))
        note = f"exit {r['exit']}" if r["exit"] else ""
        if r["side"] == "tune" and r.get("spent_s") is not None:
            c = r.get("choice") or {}
            note += (
                f"spent {r['spent_s']:.0f}s of {total_s:.0f}s (probes {r['probe_s']:.0f}s, final "
                f"{r['final_budget_s']:.0f}s; final eval {r['final_eval_s'] or 0:.1f}s, report "
                f"{r['report_s']:.1f}s); chose {c.get('model.n_layer')}x{c.get('model.n_embd')} batch "
                f"{c.get('train.per_device_train_batch_size')} "
                + " ".join(f"{k.split('.')[1]} {v}" for k, v in c.items() if k in ("optim.lr", "optim.muon_lr"))
            )
        print(
            f"{r['side']:<6} {r['seed']:>5} {r['wall_s']:>8.1f} {bpb:>16} {r.get('params') or 0:>9,} "
            f"{r.get('tokens') or 0:>10,}  {note}"
        )
    for r in tune_rows:
        for line in r.get("why") or []:
            print(f"  tune {Path(r['run']).name} chose: {line}")
    tune_bpb, train_bpb = _bpbs(tune_rows), _bpbs(train_rows)
    t_med = stats.spread(list(tune_bpb.values())).median if tune_bpb else None
    b_med = stats.spread(list(train_bpb.values())).median if train_bpb else None
    seeds = sorted(set(tune_bpb) & set(train_bpb))
    within = [
        r["wall_s"] <= total_s * 1.02 + (r.get("final_eval_s") or 0) + (r.get("report_s") or 0) + 10 for r in tune_rows
    ]  # + 10 s: the subprocess's own start (python, torch import) is on this clock
    decided = None
    if t_med is not None and b_med is not None:
        print(
            f"median eval/bpb (min-max): tune {stats.spread(list(tune_bpb.values())).text()}, train --preset "
            f"{PRESET} {stats.spread(list(train_bpb.values())).text()}"
        )
        if len(seeds) >= 2:
            result = stats.paired([tune_bpb[k] for k in seeds], [train_bpb[k] for k in seeds])
            decided = stats.verdict_line("tune", f"train --preset {PRESET}", result)
        else:
            decided = f"{len(seeds)} paired seed(s): no verdict (a paired comparison needs 2 or more; --repeats)"
        print(f"verdict over seeds {seeds}: {decided}")
    print(f"tune ended within 2% of {args.total} (+ final eval, report, process start): {sum(within)} of {len(within)}")
    out = Path(args.json) if args.json else Path(args.runs_dir) / f"bench-tune-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "total": args.total,
                "repeats": args.repeats,
                "data": str(data),
                "rows": rows,
                "median": {"tune": t_med, "train": b_med},
                "verdict": decided,
                "within_2pct": within,
            },
            indent=2,
        )
    )
    print(f"figures: {out}")
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
