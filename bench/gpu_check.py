"""GPU check: everything slovo can only show on a CUDA machine, in one run, ending in one table.

    python bench/gpu_check.py --data data/ruslit-8k [--time 2m] [--presets base,small,base@optim.name=muon] [--out DIR]

1. the tests that need CUDA (tests/test_cuda.py: compile + exact-ish resume, bf16 autocast, fused AdamW,
   flash attention through SDPA, Muon, generation, export);
2. a `--time` run of each preset (default: base, small, and small at 4x its batch), each in its own process;
3. bench/bench_train.py for each of --bench-presets (base, small): slovo against HF Trainer + GPT-2 with the
   user's original settings, same data and eval windows, --bench-time a side, one seed;
4. one table: tokens/s, MFU against the card's dense bf16 peak (per device, the card matched by its exact
   name in slovo.device.PEAK_BF16_FLOPS), peak GPU memory, compile seconds, eval seconds, final bpb.
Results also go to OUT/gpu_check.json (and the runs to OUT/runs), written after each stage, so a run cut short
still leaves what it measured. No peer here: tokens/s and MFU on one card are absolute figures, not ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], timeout: float, log: Path) -> tuple[int, float]:
    start = time.perf_counter()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "PYTHONUNBUFFERED": "1",
    }
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, time.perf_counter() - start


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def preset_figures(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    records = read_jsonl(run_dir / "metrics.jsonl")
    mfus = [r["train/mfu"] for r in records if r.get("train/mfu") is not None]
    tps = [r["train/tokens_per_second"] for r in records if r.get("train/tokens_per_second")]
    later = len(mfus) // 5  # the first fifth warms up (allocator, clocks)
    ledger = summary.get("ledger") or {}
    return {
        "status": summary.get("status"),
        "params_M": round((summary.get("params") or 0) / 1e6, 1),
        "steps": summary.get("train/global_step"),
        "tokens_per_s": round(statistics.median(tps[later:]), 0) if tps[later:] else None,
        "mfu": round(statistics.median(mfus[later:]), 4) if mfus[later:] else None,
        "peak_memory_gb": summary.get("peak_memory_gb"),
        "compile_s": ledger.get("compile"),
        "train_s": summary.get("train_runtime"),
        "eval_s": round(sum(v for k, v in ledger.items() if "eval" in k), 1),
        "eval_bpb": summary.get("eval/bpb"),
        "device_name": info.get("device_name"),
        "tokens_per_step": info.get("tokens_per_step"),
    }


def table(results: dict) -> str:
    cols = [
        "preset",
        "status",
        "params_M",
        "steps",
        "tokens_per_s",
        "mfu",
        "peak_memory_gb",
        "compile_s",
        "train_s",
        "eval_s",
        "eval_bpb",
    ]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, fig in results.get("presets", {}).items():
        cells = [name] + [fig.get(c) for c in cols[1:]]
        lines.append("| " + " | ".join(_cell(k, c) for k, c in zip(cols, cells)) + " |")
    return "\n".join(lines)


def _cell(column: str, value) -> str:
    if value is None:
        return "-"
    if column == "mfu":
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/ruslit-8k")
    ap.add_argument("--time", default="2m", help="training budget of each preset run")
    # small at 4x its batch: its 16k tokens a step leave an H200 waiting on kernel launches (19.7% MFU)
    ap.add_argument("--presets", default="base,small,small@train.per_device_train_batch_size=128")
    ap.add_argument(
        "--bench-presets",
        default="base,small",
        help="presets bench/bench_train.py runs against HF Trainer (original settings), --bench-time each side",
    )
    ap.add_argument("--bench-time", default="2m")
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"))
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra --set for every preset run")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    from slovo.device import PEAK_BF16_FLOPS

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; nothing to check")
        return 2
    name = torch.cuda.get_device_name(0)
    results: dict = {
        "device_name": name,
        "peak_bf16_flops": PEAK_BF16_FLOPS.get(name),
        "torch": torch.__version__,
        "presets": {},
    }
    print(f"device {name}; dense bf16 peak {PEAK_BF16_FLOPS.get(name)}; torch {torch.__version__}", flush=True)

    def save() -> None:
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2))

    if not args.skip_tests:
        rc, secs = run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"],
            timeout=240,
            log=out / "tests.log",
        )
        tail = (out / "tests.log").read_text().strip().splitlines()[-1:] or [""]
        results["cuda_tests"] = {"exit": rc, "seconds": round(secs, 1), "summary": tail[0]}
        print(f"CUDA tests: exit {rc} in {secs:.0f}s: {tail[0]}", flush=True)
        save()

    for spec in [p for p in args.presets.split(",") if p]:
        # "base" or "base@optim.name=muon;optim.muon_lr=0.02": a preset with its own extra settings
        preset, _, extra = spec.partition("@")
        label = preset + "".join("-" + kv.split("=", 1)[1] for kv in extra.split(";") if kv)
        cmd = [
            sys.executable,
            "-m",
            "slovo",
            "train",
            "--data",
            args.data,
            "--preset",
            preset,
            "--time",
            args.time,
            "--name",
            f"gpu-{label}",
            "--runs-dir",
            str(out / "runs"),
            "--overwrite",
            "--quiet",
            "--set",
            "tracking.report=false",
            *[f"--set={o}" for o in args.overrides],
            *[f"--set={kv}" for kv in extra.split(";") if kv],
        ]
        rc, secs = run(cmd, timeout=900, log=out / f"train-{label}.log")
        fig = preset_figures(out / "runs" / f"gpu-{label}")
        fig.update(exit=rc, wall_s=round(secs, 1))
        results["presets"][label] = fig
        print(f"{label}: exit {rc} in {secs:.0f}s: {fig}", flush=True)
        save()

    for preset in [p for p in args.bench_presets.split(",") if p]:
        log = out / f"bench-train-{preset}.log"
        cmd = [sys.executable, "bench/bench_train.py", "--preset", preset, "--time", args.bench_time, "--seeds", "1"]
        cmd += ["--data", args.data, "--runs-dir", str(out / "bench-runs"), "--eval-points", "4"]
        rc, secs = run(cmd, timeout=900, log=log)
        tail = log.read_text().strip().splitlines()[-12:]
        results.setdefault("bench_train", {})[preset] = {"exit": rc, "seconds": round(secs, 1), "tail": tail}
        print(f"bench_train {preset}: exit {rc} in {secs:.0f}s", *tail, sep="\n", flush=True)
        save()

    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
