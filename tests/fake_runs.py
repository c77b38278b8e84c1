"""Fabricated run and sweep folders in the documented layout (docs/ARCHITECTURE.md, "Run folder"), with
synthetic but plausible curves, so `slovo runs` and `slovo report` can be tested without training."""

from __future__ import annotations

import csv
import json
import math
import random
import time
from pathlib import Path

from slovo.config import load_config, save_config
from slovo.schedules import lr_factor
from slovo.utils import atomic_write_json

SCRIPT_SAMPLE = "<script>alert(1)</script>"


def make_fake_run(
    parent: str | Path,
    name: str,
    *,
    schedule: str = "cosine",
    lr: float = 3e-3,
    steps: int = 200,
    log_every: int = 10,
    evals: int = 5,
    status: str = "finished",
    tokens_per_step: int = 4096,
    seconds_per_step: float = 0.5,
    sample_texts: list[str] | None = None,
    overrides: dict | None = None,
    seed: int = 0,
    sweep: str | None = None,
) -> Path:
    """Write RUN_DIR = parent/name with config.yaml, run.json, metrics.jsonl, samples.jsonl, summary.json.

    A run with status `running` stops part-way (60% of `steps`) and its summary says so.
    """
    rng = random.Random(seed)
    run_dir = Path(parent) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    sets = {
        "schedule.name": schedule,
        "optim.lr": lr,
        "budget.max_steps": steps,
        "train.log_every": log_every,
        "eval.every": evals,
    }
    if schedule == "step_drop":
        sets["schedule.drop_at"] = [0.5, 0.8]
    sets.update(overrides or {})
    cfg = load_config(preset="tiny", overrides=sets)
    save_config(cfg, run_dir / "config.yaml")

    last_step = steps if status != "running" else int(steps * 0.6)
    start_wall = time.time() - last_step * seconds_per_step - 5
    metrics, samples = [], []
    eval_steps = {round(steps * (i + 1) / evals) for i in range(evals)}
    floor = 3.0 + 0.3 * math.log10(3e-3 / lr) ** 2 + 0.05 * rng.random()  # the lr away from 3e-3 ends worse
    best_loss = best_bpb = math.inf
    eval_loss = eval_bpb = None
    for step in range(1, last_step + 1):
        progress = step / steps
        tokens = step * tokens_per_step
        train_time = step * seconds_per_step
        factor = lr_factor(cfg.schedule, progress, step)
        # loss falls with tokens, a little faster while the lr anneals at the end
        loss = floor + 6.0 * math.exp(-tokens / (steps * tokens_per_step / 6)) + 0.25 * factor
        stamp = {
            "train/global_step": step,
            "train_runtime": round(train_time, 4),
            "tokens": tokens,
            "progress": round(progress, 6),
            "wall_time": start_wall + train_time,
        }
        if step % log_every == 0 or step == 1:
            tps = tokens_per_step / seconds_per_step * (1 + 0.05 * rng.uniform(-1, 1))
            metrics.append(
                {
                    **stamp,
                    "train/loss": loss + 0.08 * rng.gauss(0, 1),
                    "train/learning_rate": lr * factor,
                    "train/grad_norm": 0.4 + 2.0 * math.exp(-step / 30) + 0.05 * rng.random(),
                    "train/epoch": tokens / 5e6,
                    "train/tokens_per_second": tps,
                    "train/mfu": None,
                    "total_flos": 6 * 3e6 * tokens,
                }
            )
        if step in eval_steps:
            eval_loss = loss + 0.05
            eval_bpb = eval_loss / math.log(2) / 3.2
            best_loss, best_bpb = min(best_loss, eval_loss), min(best_bpb, eval_bpb)
            metrics.append(
                {
                    **stamp,
                    "eval/loss": eval_loss,
                    "eval/perplexity": math.exp(eval_loss),
                    "eval/bpb": eval_bpb,
                    "eval/runtime": 1.5,
                }
            )
            texts = sample_texts or [f" и было слово {step} у {name}."]
            for prompt in cfg.sample.prompts:
                for index, text in enumerate(texts):
                    samples.append(
                        {
                            "train/global_step": step,
                            "train_runtime": round(train_time, 4),
                            "tokens": tokens,
                            "prompt": prompt,
                            "text": text,
                            "index": index,
                        }
                    )
    with open(run_dir / "metrics.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in metrics)
    with open(run_dir / "samples.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in samples)
    run_json = {
        "name": name,
        "dataset": {"path": "data/fake", "fingerprint": "0" * 16},
        "params": 3_000_000,
        "tokens_per_step": tokens_per_step,
        "command": f"slovo train --name {name}",
    }
    if sweep:
        run_json["sweep"] = sweep
    atomic_write_json(run_dir / "run.json", run_json)
    summary = {
        "name": name,
        "status": status,
        "preset": "tiny",
        "eval/loss": eval_loss,
        "eval/bpb": eval_bpb,
        "eval/perplexity": math.exp(eval_loss) if eval_loss else None,
        "best/eval_loss": best_loss if eval_loss else None,
        "best/eval_bpb": best_bpb if eval_bpb else None,
        "train/global_step": last_step,
        "train_runtime": last_step * seconds_per_step,
        "tokens": last_step * tokens_per_step,
        "train_tokens_per_second": tokens_per_step / seconds_per_step,
        "params": 3_000_000,
        "budget": {"time_s": None, "max_steps": steps, "max_tokens": 0},
        "ledger": {"train": last_step * seconds_per_step, "eval": evals * 1.5},
        "stop_reason": "max_steps",
        "started": "2026-01-01T00:00:00",
        "ended": None if status == "running" else "2026-01-01T00:10:00",
    }
    atomic_write_json(run_dir / "summary.json", summary)
    return run_dir


def make_fake_sweep(parent: str | Path, name: str, trials: int = 4, importances: bool = True) -> Path:
    """parent/name with trials/<trial>/ run folders, leaderboard.csv and (optionally) importances.json."""
    sweep_dir = Path(parent) / name
    rows = []
    for i in range(trials):
        lr = 3e-3 * (2.0 ** (i - trials // 2))
        schedule = ("cosine", "wsd", "constant", "triangular")[i % 4]
        trial = f"trial-{i:03d}"
        make_fake_run(sweep_dir / "trials", trial, schedule=schedule, lr=lr, steps=120, seed=i, sweep=name)
        summary = json.loads((sweep_dir / "trials" / trial / "summary.json").read_text())
        rows.append(
            {
                "rank": 0,
                "trial": i,
                "run": trial,
                "eval/bpb": summary["eval/bpb"],
                "eval/loss": summary["eval/loss"],
                "optim.lr": lr,
                "schedule.name": schedule,
                "status": "finished",
            }
        )
    rows.sort(key=lambda r: r["eval/bpb"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    with open(sweep_dir / "leaderboard.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if importances:
        atomic_write_json(sweep_dir / "importances.json", {"optim.lr": 0.8, "schedule.name": 0.2})
    return sweep_dir


__all__ = ["make_fake_run", "make_fake_sweep", "SCRIPT_SAMPLE"]
