"""Time to quality, recipe against recipe: slovo's tiny preset against HF Trainer + GPT-2 with the user's settings.

Both train for the same training-time budget (--time, default 300 s) on the same prepared dataset and the same
device (--device, default: the GPU where there is one, else the CPU; bench/peer.py), with several seeds each
(--seeds, default 3), alternating (slovo first for the first seed, HF first for the next, ...), each run in its own
subprocess. Both final models are scored the same way: on exactly the same validation windows (slovo's eval set:
windows spread evenly over the whole validation split, `eval.tokens` of the tiny preset, every window, special
targets left out), by slovo's own `evaluate`, in true float32 on that device, whatever precision each trained in.
Each run records its device and precision; results from different devices are refused.

- slovo: `slovo.train.train` on the tiny preset as shipped, except what does not touch training: evals at 20
  points (`eval.every=20`, --eval-points) on the full eval set (`eval.max_fraction=0`) so the curve can be
  read, no samples, no periodic checkpoints, no HTML report. Its figures come from its summary.json and metrics.jsonl.
- HF: `transformers.Trainer` on a `GPT2LMHeadModel` of the tiny preset's depth, width and heads, with the
  settings the user trained with: batch 6 x accumulation 6, lr 5e-4, constant after a linear warmup
  (--hf-warmup-steps, default 10), in --hf-precision (auto: bf16 on a GPU with native bf16, fp16 on an older
  one, float32 on the CPU), Trainer's other defaults (AdamW, grad clip 1.0, GPT-2's dropout 0.1), fed
  random 256-token windows of train.bin; a callback stops it after the optimizer step at which its training
  time reaches the budget (clock started at on_train_begin).

It prints, per run, the training time each side reported and the same time on an outside clock (see
`outside_*` below), whether the run stopped within one step of the budget, and the final bpb; then each side's
median bpb with its min-max, and the training time slovo needed to reach HF's median final bpb (read from
slovo's eval curve, linear between eval points; the curve's evals are slovo's own, in its training precision, so
the target moves by the difference between slovo's own final eval and its float32 score).
Nothing is compared with figures from elsewhere.

    .venv/bin/python bench/bench_train.py                             # 300 s x 3 seeds x 2 sides (~40 min)
    .venv/bin/python bench/bench_train.py --time 20s --seeds 1        # a quick check that everything runs
    .venv/bin/python bench/bench_train.py --only hf --data data/ruslit-8k --threads 2
    python bench/bench_train.py --preset small --time 2m --seeds 1 --hf-precision bf16   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from peer import (  # noqa: E402 - bench/peer.py puts the checkout's src/ on the path
    HF_ACCUM,
    HF_BATCH,
    HF_LR,
    HF_PRECISIONS,
    bench_device,
    eval_set,
    first_reach,
    gpt2_like,
    hf_precision,
    logits_only,
    random_windows,
    refuse_mixed_devices,
    score_float32,
    side_facts,
    user_training_args,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "ruslit.jsonl.gz"
DEFAULT_DATASET = REPO / "data" / "ruslit-8k"
DEFAULT_RUNS = REPO / "runs" / "bench"
VOCAB_SIZE = 8192
DEFAULT_PRESET = "tiny"  # --preset: base and small for bench/gpu_check.py on a GPU


# ---- the dataset ----------------------------------------------------------------------------------


def ensure_dataset(args) -> Path:
    """The dataset folder: `--data` as given, else ruslit prepared (or reused) by `slovo prepare`."""
    if args.data:
        return Path(args.data)
    corpus = Path(args.corpus)
    if not corpus.exists():
        sys.exit(f"{corpus}: corpus not found; pass --corpus FILE or --data DATASET_DIR")
    out = Path(args.dataset_dir)
    cmd = [
        sys.executable,
        "-m",
        "slovo",
        "prepare",
        "--data",
        str(corpus),
        "--vocab-size",
        str(VOCAB_SIZE),
        "--out",
        str(out),
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return out


# ---- slovo (child process) ------------------------------------------------------------------------------


def run_slovo(args, data: Path) -> dict:
    """The tiny preset under the budget (its compile warm-up on the budget clock); an outside clock times the steps
    between its evals."""
    from slovo.config import load_config
    from slovo.train import Clock, train
    from slovo.train.callbacks import Callback
    from slovo.utils import read_jsonl

    class CompileOnTheClock(Clock):
        """slovo's budget clock plus its compile warm-up (ledger `compile`, off the clock in a normal run): HF's
        clock covers its whole train() and it compiles nothing, so each side's budget pays for its own start."""

        @property
        def train_time(self) -> float:
            return super().train_time + self.ledger.get("compile", 0.0)

    class StepClock(Callback):
        """perf_counter after every step's log (log_every=1) and after every eval (its samples included)."""

        def __init__(self):
            self.logs: list[float] = []
            self.evals: list[float] = []

        def on_log(self, state, control, metrics):
            self.logs.append(time.perf_counter())

        def on_eval(self, state, control, metrics):
            self.evals.append(time.perf_counter())

    overrides = {
        "data.path": str(data),
        "budget.time": args.time,
        "train.seed": args.seed,
        "eval.every": args.eval_points,
        "eval.max_fraction": 0.0,
        "sample.enabled": False,
        "checkpoint.every_seconds": 0,
        "tracking.report": False,
        "train.log_every": 1,
        "train.device": args.device,
    }
    if args.threads:
        overrides["train.num_threads"] = args.threads
    cfg = load_config(preset=args.preset, overrides=overrides)
    run_dir = Path(args.runs_dir) / f"bench-slovo-{args.stamp}-seed{args.seed}"
    clock = StepClock()
    summary = train(cfg, run_dir, callbacks=[clock], clock=CompileOnTheClock(), quiet=True)
    final = rescore_final(run_dir, args)
    records = read_jsonl(run_dir / "metrics.jsonl")
    train_recs = [r for r in records if "train/loss" in r]
    curve = [(r["train_runtime"], r["eval/bpb"]) for r in records if "eval/bpb" in r]
    steps = summary["train/global_step"]
    # Outside clock: the first step as slovo timed it, then every gap between consecutive step logs, less the
    # part of the gap after the previous step that an eval (and its samples) took.
    outside = train_recs[0]["train_runtime"]
    evals = iter(sorted(clock.evals))
    pending = next(evals, None)
    for before, after in zip(clock.logs, clock.logs[1:]):
        start = before
        while pending is not None and pending < after:
            start = max(start, pending)
            pending = next(evals, None)
        outside += after - start
    # Like evals, the divergence guard's snapshots and the checkpoint saved where the decay begins are kept off the
    # budget clock by design; they happen between step logs with no hook to time them from outside, so their
    # seconds come from slovo's ledger (about 1.4 s of a 300 s run).
    ledger = summary.get("ledger") or {}
    off_clock = ledger.get("guard", 0.0) + ledger.get("checkpoint", 0.0)
    return {
        "side": "slovo",
        "seed": args.seed,
        "run_dir": str(run_dir),
        "status": summary["status"],
        "params": summary["params"],
        "train_seconds": summary["train_runtime"],
        "outside_seconds": outside - off_clock,
        "off_clock_seconds": off_clock,
        "steps": steps,
        "seconds_per_step": summary["train_runtime"] / steps if steps else None,
        "tokens": summary["tokens"],
        "tokens_per_second": summary["train_tokens_per_second"],
        **final,
        "own_eval_bpb": summary["eval/bpb"],  # slovo's own final eval, in its training precision
        "curve": curve,
        "ledger": summary["ledger"],
    }


def rescore_final(run_dir: Path, args) -> dict:
    """slovo's final checkpoint scored as HF's final model is (bench/peer.py), with where and how it trained."""
    from slovo.train.checkpoint import load_for_inference
    from slovo.utils import read_json

    model, cfg, _ = load_for_inference(run_dir, device=args.device)
    windows, token_bytes = eval_set(Path(args.data), args.preset)
    m = score_float32(
        model, windows, token_bytes, cfg.eval.batch_size or cfg.train.per_device_train_batch_size, args.device
    )
    precision = read_json(run_dir / "run.json").get("dtype")
    return {
        **side_facts(args.device, precision),
        "eval_bpb": m["eval/bpb"],
        "eval_loss": m["eval/loss"],
        "eval_windows": m["eval/windows"],
        "eval_tokens": m["eval/tokens"],
    }


# ---- HF Trainer + GPT-2 (child process) ------------------------------------------------------------------


def run_hf(args, data: Path) -> dict:
    """HF Trainer with the user's settings on a same-size GPT-2, stopped after the step that reaches the budget."""
    import torch
    import transformers
    from transformers import Trainer, TrainerCallback

    from slovo.config import load_config
    from slovo.data import load_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_warning()
    cfg = load_config(preset=args.preset)
    ds = load_dataset(data)
    seq_len = cfg.model.seq_len

    class StopAtTime(TrainerCallback):
        """Stops after the optimizer step at which training time reaches the budget (like slovo's clock)."""

        def __init__(self, seconds: float):
            self.seconds, self.start, self.elapsed, self.steps = seconds, None, 0.0, 0

        def on_train_begin(self, args_, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args_, state, control, **kwargs):
            self.elapsed, self.steps = time.perf_counter() - self.start, state.global_step
            if self.elapsed >= self.seconds:
                control.should_training_stop = True

    precision = hf_precision(args.hf_precision, args.device)
    transformers.set_seed(args.seed)
    model = gpt2_like(cfg.model, ds)
    out_dir = Path(args.runs_dir) / f"bench-hf-{args.stamp}-seed{args.seed}"
    training_args = user_training_args(  # the clock stops it; a streaming dataset needs some max_steps
        out_dir,
        warmup_steps=args.hf_warmup_steps,
        max_steps=10**7,
        logging_steps=args.hf_logging_steps,
        precision=precision,  # the same device as slovo's side, in --hf-precision
        device=args.device,
        seed=args.seed,
    )
    stopper = StopAtTime(args.seconds)
    windows = random_windows(ds.train, seq_len, args.seed)
    trainer = Trainer(model=model, args=training_args, train_dataset=windows, callbacks=[stopper])
    t0 = time.perf_counter()
    trainer.train()
    outside = time.perf_counter() - t0  # the outside clock: the whole train() call, nothing else happens in it

    windows, token_bytes = eval_set(data, args.preset)
    device = str(next(model.parameters()).device)  # where Trainer trained it
    if device.split(":")[0] != args.device.split(":")[0]:
        sys.exit(f"HF Trainer trained on {device}, not on --device {args.device}")
    batch = cfg.eval.batch_size or cfg.train.per_device_train_batch_size
    metrics = score_float32(logits_only(model), windows, token_bytes, batch, device)
    tokens = stopper.steps * HF_BATCH * HF_ACCUM * seq_len
    return {
        "side": "hf",
        "seed": args.seed,
        "run_dir": str(out_dir),
        "status": "finished",
        "params": model.num_parameters(),
        "train_seconds": stopper.elapsed,
        "outside_seconds": outside,
        "steps": stopper.steps,
        "seconds_per_step": stopper.elapsed / stopper.steps if stopper.steps else None,
        "tokens": tokens,
        "tokens_per_second": tokens / stopper.elapsed if stopper.elapsed else None,
        **side_facts(device, precision),
        "eval_bpb": metrics["eval/bpb"],
        "eval_loss": metrics["eval/loss"],
        "eval_windows": metrics["eval/windows"],
        "eval_tokens": metrics["eval/tokens"],
        "transformers": transformers.__version__,
        "settings": {
            "per_device_train_batch_size": HF_BATCH,
            "gradient_accumulation_steps": HF_ACCUM,
            "learning_rate": HF_LR,
            "lr_scheduler_type": "constant_with_warmup",
            "warmup_steps": args.hf_warmup_steps,
            "optim": getattr(training_args.optim, "value", str(training_args.optim)),
        },
    }


# ---- the parent: alternate, then report ------------------------------------------------------------------


def spawn(side: str, seed: int, args, data: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--seed",
        str(seed),
        "--time",
        args.time,
        "--data",
        str(data),
        "--runs-dir",
        str(args.runs_dir),
        "--stamp",
        args.stamp,
        "--preset",
        args.preset,
        "--threads",
        str(args.threads),
        "--eval-points",
        str(args.eval_points),
        "--hf-warmup-steps",
        str(args.hf_warmup_steps),
        "--hf-logging-steps",
        str(args.hf_logging_steps),
        "--device",
        args.device,
        "--hf-precision",
        args.hf_precision,
    ]
    print(f"\n[{side} seed {seed}] $ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{side} seed {seed} failed ({proc.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


def median_spread(values: list[float], spec: str) -> str:
    """'median (min-max)' through slovo.stats, '-' for no values."""
    from slovo.stats import spread

    return spread(values).text(spec) if values else "-"


def report(runs: list[dict], seconds: float) -> dict:
    from slovo.stats import paired, spread, verdict_line

    refuse_mixed_devices(runs)
    for side in ("slovo", "hf"):
        facts = {(r["device_name"], r["train_precision"]) for r in runs if r["side"] == side}
        for name, precision in sorted(facts):
            print(f"{side:6} trained on {name} in {precision}; scored in float32 (TF32 off)")

    print(
        f"\n{'side':6} {'seed':>5} {'train s':>8} {'outside s':>9} {'s/step':>7} {'steps':>6} {'tokens/s':>9} "
        f"{'stop check':>11} {'eval bpb':>9}"
    )
    for r in runs:
        step = r["seconds_per_step"] or math.inf
        within = abs(r["train_seconds"] - seconds) <= step and abs(r["outside_seconds"] - r["train_seconds"]) <= step
        r["stopped_within_one_step"] = within
        print(
            f"{r['side']:6} {r['seed']:>5} {r['train_seconds']:>8.1f} {r['outside_seconds']:>9.1f} {step:>7.3f} "
            f"{r['steps']:>6} {r['tokens_per_second']:>9,.0f} {'yes' if within else 'NO':>11} {r['eval_bpb']:>9.4f}"
        )
    print(
        "stop check: the reported training time is within one step of the budget, and so is the outside clock's "
        "(slovo: gaps between step logs minus evals; HF: the whole Trainer.train call)"
    )
    sides = {s: [r for r in runs if r["side"] == s] for s in ("slovo", "hf")}
    summary: dict = {}
    for side, rs in sides.items():
        if rs:
            bpbs = spread([r["eval_bpb"] for r in rs])
            summary[side] = {"bpb_median": bpbs.median, "bpb_min": bpbs.min, "bpb_max": bpbs.max}
            bpbs = [r["eval_bpb"] for r in rs]
            print(
                f"{side:6} eval bpb median (min-max) {median_spread(bpbs, '.4f')} over {len(rs)} seeds; tokens/s "
                f"{median_spread([r['tokens_per_second'] for r in rs], ',.0f')}"
            )
    if sides["slovo"] and sides["hf"]:
        target = summary["hf"]["bpb_median"]
        # slovo's curve is its own evals, in its training precision: each run's target moves by what that
        # precision added to its final bpb against the float32 score both sides' finals got
        reach = [first_reach(r["curve"], target + r["own_eval_bpb"] - r["eval_bpb"]) for r in sides["slovo"]]
        reached = [t for t in reach if t is not None]
        summary["slovo_seconds_to_hf_median_bpb"] = reach
        text = ", ".join("not reached" if t is None else f"{t:.0f} s" for t in reach)
        print(
            f"slovo reached HF's median final bpb {target:.4f} after {text} of training "
            f"(median {median_spread(reached, '.0f')} s of a {seconds:g} s budget)"
        )
        windows = {r["eval_windows"] for r in runs}
        print(f"both scored on the same {windows.pop() if len(windows) == 1 else windows} eval windows")
        # the same seeds on both sides (init and data order are each tool's own, so the pairing is by repeat)
        by_seed = {s: {r["seed"]: r["eval_bpb"] for r in rs} for s, rs in sides.items()}
        seeds = sorted(set(by_seed["slovo"]) & set(by_seed["hf"]))
        if len(seeds) >= 2:
            result = paired([by_seed["slovo"][k] for k in seeds], [by_seed["hf"][k] for k in seeds])
            summary["verdict"] = verdict_line("slovo", "HF", result)
            print(f"verdict: {summary['verdict']}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time", default="300s", help="training-time budget of each run (default 300s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per side (default 3)")
    parser.add_argument("--seed", type=int, default=1337, help="first seed; the others follow (default 1337)")
    parser.add_argument("--data", help="an existing dataset folder (default: prepare ruslit into --dataset-dir)")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="text source for `slovo prepare`")
    parser.add_argument("--dataset-dir", default=str(DEFAULT_DATASET), help="where to prepare (or reuse) ruslit")
    parser.add_argument(
        "--eval-points",
        type=int,
        default=20,
        help="slovo evals per run (full eval set), to read its time to HF's bpb (default 20)",
    )
    parser.add_argument("--only", choices=("slovo", "hf"), help="run one side only (quick checks)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads for both (0 = torch's default)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, help="slovo's preset; HF's GPT-2 takes its shape")
    parser.add_argument("--runs-dir", default=str(DEFAULT_RUNS), help="folder for the runs' outputs")
    parser.add_argument("--hf-warmup-steps", type=int, default=10, help="HF linear warmup steps (default 10)")
    parser.add_argument("--hf-logging-steps", type=int, default=25, help="HF Trainer's logging_steps")
    parser.add_argument(
        "--device", default="auto", help="both sides' device: auto (the GPU where there is one), cuda or cpu"
    )
    parser.add_argument(
        "--hf-precision",
        choices=HF_PRECISIONS,
        default="auto",
        help="HF Trainer's precision: auto (bf16 on a GPU with native bf16, fp16 on an older one, fp32 on the CPU)",
    )
    parser.add_argument("--json", help="write the results here (default: RUNS_DIR/bench-train-<time>.json)")
    parser.add_argument("--side", choices=("slovo", "hf"), help=argparse.SUPPRESS)  # child process
    parser.add_argument("--stamp", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from slovo.config import parse_duration
    from slovo.errors import SlovoError

    try:
        args.seconds = parse_duration(args.time, "--time")
    except SlovoError as e:
        sys.exit(str(e))
    args.device = bench_device(args.device)
    if args.side:  # child: one run, its figures as one JSON line
        result = (run_slovo if args.side == "slovo" else run_hf)(args, Path(args.data))
        print("RESULT " + json.dumps(result), flush=True)
        return

    import torch

    from slovo.utils import atomic_write_json, code_version

    args.stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
    try:
        data = ensure_dataset(args)
    except subprocess.CalledProcessError as e:  # slovo already printed its one-line reason
        sys.exit(f"failed ({e.returncode}): {' '.join(map(str, e.cmd))}")
    runs = []
    sides = [args.only] if args.only else ["slovo", "hf"]
    for i in range(args.seeds):
        for side in sides if i % 2 == 0 else sides[::-1]:  # alternate which side goes first
            runs.append(spawn(side, args.seed + i, args, data))
    summary = report(runs, args.seconds)

    out = Path(args.json) if args.json else Path(args.runs_dir) / f"bench-train-{args.stamp}.json"
    atomic_write_json(
        out,
        {
            "benchmark": "train",
            "time_s": args.seconds,
            "dataset": str(Path(data).resolve()),
            "preset": args.preset,
            "device": args.device,
            "hf_precision": args.hf_precision,
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "code": code_version(),
            "runs": runs,
            "summary": summary,
            "created": datetime.now().isoformat(timespec="seconds"),
        },
    )
    print(f"results: {out}")
    if any(not math.isfinite(r["eval_bpb"]) for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
