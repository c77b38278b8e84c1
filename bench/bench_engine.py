"""The training engine alone: slovo's loop against HF Trainer on the same model, data and settings.

Both sides train the same maths for the same number of optimizer steps: slovo's GPT, and a transformers
`LlamaForCausalLM` built from the config `slovo export` writes for it (src/slovo/export.py: RMSNorm, rotate-half
RoPE, SwiGLU, no biases, tied head). Same batch x accumulation, peak lr, AdamW betas / eps / weight decay,
grad clip, precision (float32, or bf16 / fp16 autocast on both with --precision), torch threads, device (--device:
the GPU where there is one, else the CPU; both sides on it, bench/peer.py), and the same training windows in the
same order (HF reads the batches of slovo's own BatchLoader with the same seed). Neither side evaluates, samples
or checkpoints while timed. Each side records its device and precision; rounds from different devices are refused.

Throughput is tokens/s between the end of warm-up step W and the end of the last step, on the wall clock:
slovo's metrics.jsonl `wall_time` of those steps, and a Trainer callback's time.perf_counter at on_step_end.
The two sides alternate (slovo first in odd rounds, HF first in even ones) over --rounds rounds, each in its own
subprocess so neither inherits the other's allocator or thread state; the script prints each round, the median
ratio slovo / HF with its min-max, and each side's median tokens/s with min-max.

    .venv/bin/python bench/bench_engine.py                          # tiny preset, 60 steps, 3 rounds
    .venv/bin/python bench/bench_engine.py --steps 20 --warmup 5 --rounds 3 --threads 2
    .venv/bin/python bench/bench_engine.py --precision bf16 --slovo-set train.compile=true
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from peer import bench_device, hf_device_args, refuse_mixed_devices, side_facts  # noqa: E402 - puts src/ on the path

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = {"float32": ("float32", "fp32"), "bf16": ("bfloat16", "bf16"), "fp16": ("float16", "fp16")}
DEFAULT_DATASET = REPO / "data" / "ruslit-8k"
DEFAULT_RUNS = REPO / "runs" / "bench"


def slovo_config(args):
    """The preset as slovo trains it, made to run exactly --steps steps with nothing else on the loop."""
    from slovo.config import load_config

    overrides = {
        "data.path": str(args.data),
        "budget.time": None,
        "budget.max_steps": args.steps,
        "train.log_every": 1,
        "train.num_threads": args.threads,
        "train.compile": "false",
        "train.dtype": PRECISIONS[args.precision][0],
        "train.device": args.device,
        "optim.name": "adamw",  # the HF side runs AdamW: the same maths whatever optimizer the preset chose
        "eval.every": 0,
        "eval.tokens": 1,
        "sample.enabled": False,  # the one final eval scores one window
        "checkpoint.every_seconds": 0,
        "tracking.report": False,
    }
    # --slovo-set: an engine setting of slovo's side only (train.compile=true, optim.fused=true), to measure
    # what each buys; the maths stays the same
    return load_config(
        preset=args.preset,
        overrides=[f"{k}={'null' if v is None else v}" for k, v in overrides.items()] + list(args.slovo_set),
    )


def tokens_per_second(step_times: list[float], tokens_per_step: int, warmup: int) -> float:
    """Tokens/s from the end of step `warmup` to the end of the last step (step_times[i] = end of step i+1)."""
    return (len(step_times) - warmup) * tokens_per_step / (step_times[-1] - step_times[warmup - 1])


def run_slovo(args) -> dict:
    from slovo.train import train
    from slovo.utils import read_jsonl

    cfg = slovo_config(args)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, Path(tmp) / "run", quiet=True)
        records = [r for r in read_jsonl(Path(tmp) / "run" / "metrics.jsonl") if "train/loss" in r]
    tokens_per_step = records[0]["tokens"]
    times = [r["wall_time"] for r in records]
    return {
        "side": "slovo",
        **side_facts(args.device, cfg.train.dtype),
        "tokens_per_second": tokens_per_second(times, tokens_per_step, args.warmup),
        "steps": len(records),
        "params": summary["params"],
        "first_loss": records[0]["train/loss"],
        "last_loss": records[-1]["train/loss"],
    }


def run_hf(args) -> dict:
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    from slovo.data import load_dataset
    from slovo.data.loader import BatchLoader
    from slovo.export import llama_config

    cfg = slovo_config(args)
    ds = load_dataset(cfg.data.path)
    cfg.model.vocab_size = cfg.model.vocab_size or ds.vocab_size
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    t = cfg.train
    batch, accum, seq_len = t.per_device_train_batch_size, t.gradient_accumulation_steps, cfg.model.seq_len

    class SlovoBatches(torch.utils.data.IterableDataset):
        """The rows of slovo's own batches, in order: the same windows slovo trains on."""

        def __iter__(self):
            loader = BatchLoader(ds.train, batch, seq_len, t.seed, device="cpu")
            while True:
                x, _ = loader.next_batch()
                for row in x:
                    yield {"input_ids": row, "labels": row}  # Llama shifts the labels itself

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_end(self, args_, state, control, **kwargs):
            self.times.append(time.perf_counter())

    torch.manual_seed(t.seed)
    model = LlamaForCausalLM(LlamaConfig(**llama_config(cfg, ds.eot_id)))
    o = cfg.optim
    with tempfile.TemporaryDirectory() as tmp:
        training_args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accum,
            learning_rate=o.lr,
            weight_decay=o.weight_decay,
            adam_beta1=o.beta1,
            adam_beta2=o.beta2,
            adam_epsilon=o.eps,
            max_grad_norm=o.grad_clip,
            lr_scheduler_type="constant",
            optim="adamw_torch",
            max_steps=args.steps,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            # the same device as slovo's side; bf16 / fp16: torch.autocast around forward, as slovo's train.dtype
            **hf_device_args(PRECISIONS[args.precision][1], args.device),
            dataloader_pin_memory=False,
            disable_tqdm=True,
            seed=t.seed,
        )
        times = StepTimes()
        trainer = Trainer(model=model, args=training_args, train_dataset=SlovoBatches(), callbacks=[times])
        out = trainer.train()
    device = str(next(model.parameters()).device)  # where Trainer trained it
    if device.split(":")[0] != args.device.split(":")[0]:
        sys.exit(f"HF Trainer trained on {device}, not on --device {args.device}")
    return {
        "side": "hf",
        **side_facts(device, PRECISIONS[args.precision][1]),
        "tokens_per_second": tokens_per_second(times.times, batch * accum * seq_len, args.warmup),
        "steps": len(times.times),
        "params": model.num_parameters(),
        "train_loss": out.training_loss,
        "transformers": transformers.__version__,
    }


def one_side(args) -> None:
    """Child process: run one side and print its figures as one JSON line."""
    result = run_slovo(args) if args.side == "slovo" else run_hf(args)
    print("RESULT " + json.dumps(result), flush=True)


def spawn(side: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--data",
        str(args.data),
        "--preset",
        args.preset,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--precision",
        args.precision,
        "--device",
        args.device,
        *[f"--slovo-set={o}" for o in args.slovo_set],
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{side} side failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def spread(values: list[float], spec: str = ",.0f") -> str:
    """median (min-max), through slovo.stats"""
    from slovo.stats import spread as stats_spread

    return stats_spread(values).text(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATASET), help="a prepared dataset (default data/ruslit-8k)")
    parser.add_argument("--preset", default="tiny", help="slovo preset giving model and training settings")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per side and round (default 60)")
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the timing (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads for both (0 = torch's default)")
    parser.add_argument("--json", help="write the results here (default: runs/bench/bench-engine-<time>.json)")
    parser.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default="float32",
        help="both sides: float32, or bf16 / fp16 autocast (slovo train.dtype, HF TrainingArguments bf16 / fp16)",
    )
    parser.add_argument("--device", default="auto", help="both sides: auto (the GPU where there is one), cuda, cpu")
    parser.add_argument(
        "--slovo-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an engine setting for slovo's side, e.g. train.compile=true (repeatable)",
    )
    parser.add_argument("--side", choices=("slovo", "hf"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    args.device = bench_device(args.device)
    if args.side:
        one_side(args)
        return
    if not (Path(args.data) / "meta.json").exists():
        sys.exit(f"{args.data}: not a prepared dataset; run `slovo prepare ... --out {args.data}` first")
    if not 1 <= args.warmup < args.steps:
        sys.exit("--warmup must be at least 1 and below --steps")

    rounds = []
    for r in range(args.rounds):
        order = ("slovo", "hf") if r % 2 == 0 else ("hf", "slovo")
        got = {side: spawn(side, args) for side in order}
        refuse_mixed_devices([got["slovo"], got["hf"], *[r[side] for r in rounds for side in ("slovo", "hf")]])
        ratio = got["slovo"]["tokens_per_second"] / got["hf"]["tokens_per_second"]
        rounds.append({"order": list(order), **got, "ratio": ratio})
        print(
            f"round {r + 1} ({' then '.join(order)}): slovo {got['slovo']['tokens_per_second']:,.0f} tokens/s, "
            f"HF Trainer {got['hf']['tokens_per_second']:,.0f} tokens/s, slovo / HF = {ratio:.3f}",
            flush=True,
        )
    s, h = rounds[0]["slovo"], rounds[0]["hf"]
    print(
        f"\nboth sides: {args.precision} on {s['device_name']}; slovo settings: {' '.join(args.slovo_set) or 'eager'}"
    )
    print(
        f"{args.preset} preset: slovo GPT {s['params']:,} params, LlamaForCausalLM {h['params']:,} params; "
        f"{args.steps} steps, tokens/s over steps {args.warmup + 1}-{args.steps}"
    )
    print(f"slovo tokens/s      median {spread([r['slovo']['tokens_per_second'] for r in rounds])}")
    print(f"HF Trainer tokens/s median {spread([r['hf']['tokens_per_second'] for r in rounds])}")
    print(f"slovo / HF          median {spread([r['ratio'] for r in rounds], '.3f')}  over {len(rounds)} rounds")

    import torch

    from slovo import stats
    from slovo.utils import atomic_write_json, code_version

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.json) if args.json else DEFAULT_RUNS / f"bench-engine-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out,
        {
            "benchmark": "engine",
            "preset": args.preset,
            "steps": args.steps,
            "warmup": args.warmup,
            "threads": args.threads,
            "precision": args.precision,
            "device": args.device,
            "device_name": s["device_name"],
            "slovo_set": args.slovo_set,
            "dataset": str(Path(args.data).resolve()),
            "rounds": rounds,
            "median_ratio": stats.spread([r["ratio"] for r in rounds]).median,
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "code": code_version(),
            "created": datetime.now().isoformat(timespec="seconds"),
        },
    )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
