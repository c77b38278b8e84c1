"""The tiny preset as shipped (Muon) against the same preset with AdamW: training speed on this machine.

Both sides run `slovo train --preset tiny --time T` in their own subprocess, alternating (Muon first in odd
rounds, AdamW first in even ones), on the same prepared dataset, with evals, samples, checkpoints and the report
off, so the figures are the training loop's: `train_tokens_per_second` and steps from summary.json. It prints
each run, then the median (min-max) of each side and of the per-round ratio Muon / AdamW, the processor, and what
each run chose for its precision and Muon's Newton-Schulz (run.json).

`--imitate-avx2` runs both sides with ATen and oneDNN limited to AVX2 kernels (ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2): a CPU with bf16 instructions then behaves as one without (bf16 matmuls emulated).

    .venv/bin/python bench/bench_optimizer_speed.py --data data/ruslit-8k --time 60s --rounds 3 [--imitate-avx2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
QUIET_RUN = ["eval.every=0", "sample.enabled=false", "checkpoint.every_seconds=0", "tracking.report=false"]
SIDES = {"muon (as shipped)": [], "adamw": ["optim.name=adamw"]}


def train_once(args, side: str, runs: Path, name: str, env: dict) -> dict:
    sets = [f"--set={s}" for s in QUIET_RUN + SIDES[side] + args.set]
    cmd = [sys.executable, "-m", "slovo", "train", "--data", args.data, "--preset", "tiny", "--time", args.time]
    cmd += ["--runs-dir", str(runs), "--name", name, "--quiet", *sets]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{side}: slovo train failed: {proc.stderr.strip().splitlines()[-1:]}")
    summary = json.loads((runs / name / "summary.json").read_text())
    info = json.loads((runs / name / "run.json").read_text())
    return {
        "side": side,
        "tokens_per_s": summary["train_tokens_per_second"],
        "steps": summary["train/global_step"],
        "eval_bpb": summary.get("eval/bpb"),
        "dtype": info.get("dtype"),
        "muon_ns_dtype": info.get("muon_ns_dtype"),
    }


def median_spread(values: list[float], spec: str) -> str:
    return f"{statistics.median(values):{spec}} ({min(values):{spec}}-{max(values):{spec}})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REPO / "data" / "ruslit-8k"))
    p.add_argument("--time", default="60s")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--imitate-avx2", action="store_true")
    p.add_argument("--set", action="append", default=[], help="more --set for both sides")
    args = p.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(AVX2_ONLY if args.imitate_avx2 else {})}
    sys.path.insert(0, str(REPO / "src"))
    probe = subprocess.run(
        [sys.executable, "-c", "from slovo.accel import processor_id; print(processor_id())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    print(f"processor: {probe.stdout.strip()}", flush=True)
    runs, results = Path(tempfile.mkdtemp(prefix="bench-optim-")), []
    for r in range(args.rounds):
        order = list(SIDES) if r % 2 == 0 else list(SIDES)[::-1]
        for side in order:
            result = train_once(args, side, runs, f"r{r}-{side.split()[0]}", env)
            results.append({**result, "round": r})
            print(json.dumps(result), flush=True)
    imitated = " (imitated AVX2-only CPU)" if args.imitate_avx2 else ""
    print(f"\n{args.rounds} rounds of {args.time}, tiny preset{imitated}")
    for side in SIDES:
        mine = [x for x in results if x["side"] == side]
        print(
            f"{side:18} tokens/s {median_spread([x['tokens_per_s'] for x in mine], ',.0f')}  "
            f"steps {median_spread([x['steps'] for x in mine], 'd')}  dtype {mine[0]['dtype']}  "
            f"muon NS {mine[0]['muon_ns_dtype']}"
        )
    ratios = [
        next(x for x in results if x["round"] == r and x["side"].startswith("muon"))["tokens_per_s"]
        / next(x for x in results if x["round"] == r and x["side"] == "adamw")["tokens_per_s"]
        for r in range(args.rounds)
    ]
    print(f"muon / adamw tokens/s, per round: {median_spread(ratios, '.3f')}")


if __name__ == "__main__":
    main()
