"""Speedrun: how much sooner slovo reaches the quality HF Trainer reaches in 30 minutes, on this machine.

The target is the eval bpb that the user's old stack reaches after HF_TARGET_STEPS (552) optimizer steps, the
steps it makes in 30 minutes on a 2-core CPU: `transformers.Trainer` + `GPT2LMHeadModel` of the preset's depth,
width and heads, batch 6 x accumulation 6, lr 5e-4 constant after 10 warmup steps, Trainer's defaults otherwise.
Its curve by steps does not depend on the processor, so it is measured once per dataset (seeded) and kept in
`bench/results/speedrun_hf_curve-<dataset fingerprint>.json`; a later run reuses it.

Three phases, each in its own subprocess (`--phase` runs one):
- target: the HF curve above (reused when its file is there), scored on slovo's full eval set of the preset.
- speed: seconds per optimizer step of both sides on this machine, alternating, `--rounds` rounds: HF's short
  run (its warmup steps untimed), slovo's recipe for `--speed-steps` steps (its compile warm-up and first steps
  untimed, the compile seconds kept apart). HF's time to the target here = 552 x its median seconds per step.
- slovo: the recipe (the preset plus `--set` overrides) for `--seeds` seeds, evals at `--eval-points` points on
  the full eval set (off the clock), trained either for `--time` (its own budget clock is the time to target:
  the way a user runs it, right on a quiet machine) or for `--steps` optimizer steps (the schedule over steps;
  time = steps to target x the speed phase's seconds per step + its compile seconds: right on a busy machine,
  where a training clock measures the other jobs too). Steps or seconds to target: where the eval curve first
  reaches it, linear between eval points.

The figure: HF's time / slovo's time to the target, per seed, median (min-max), and with 2+ seeds the paired
verdict of two recipes is `slovo compare`'s (run the speedrun once per recipe; see bench/results/speedrun.md).

    .venv/bin/python bench/speedrun.py                                   # tiny, 3 seeds x 180 s, ~45 min + target
    .venv/bin/python bench/speedrun.py --steps 400 --threads 1           # step budget, time from measured speed
    .venv/bin/python bench/speedrun.py --steps 400 --set schedule.decay_fraction=0.5 --label warmdown-0.5
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python bench/speedrun.py --phase speed
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

from peer import (  # bench/peer.py puts src/ on the path
    HF_ACCUM,
    HF_BATCH,
    HF_LR,
    bench_device,
    eval_set,
    first_reach,
    gpt2_like,
    logits_only,
    random_windows,
    user_training_args,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEFAULT_DATASET = REPO / "data" / "ruslit-8k"
DEFAULT_CORPUS = REPO.parent / "shared" / "corpora" / "ruslit.jsonl.gz"
HF_TARGET_STEPS = 552  # HF Trainer's optimizer steps in 1,800 s on a 2-core AMD EPYC Zen 4 (issue 26)
HF_WARMUP = 10  # the user left the warmup unstated; bench_train.py takes 10 too

# ---- shared pieces ---------------------------------------------------------------------------------------


def processor() -> str:
    from slovo.accel import processor_id

    return processor_id()


# ---- HF Trainer + GPT-2 (child) ----------------------------------------------------------------------------


def hf_trainer(args, data: Path, max_steps: int, callbacks: list):
    """A Trainer with the user's settings on a GPT-2 of the preset's shape, fed random windows of train.bin."""
    import torch
    import transformers
    from transformers import Trainer

    from slovo.config import load_config
    from slovo.data import load_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_warning()
    cfg = load_config(preset=args.preset)
    ds = load_dataset(data)
    seq_len = cfg.model.seq_len

    transformers.set_seed(args.seed)
    training_args = user_training_args(
        Path(args.runs_dir) / f"speedrun-hf-{os.getpid()}",
        warmup_steps=HF_WARMUP,
        max_steps=max_steps,
        logging_steps=50,
        precision="fp32",  # the user's settings: float32
        device=bench_device(args.device),
        seed=args.seed,
    )
    model = gpt2_like(cfg.model, ds)
    windows = random_windows(ds.train, seq_len, args.seed)
    return Trainer(model=model, args=training_args, train_dataset=windows, callbacks=callbacks), model


def phase_target(args, data: Path) -> dict:
    """HF's eval curve by optimizer steps up to --target-steps, on slovo's full eval set."""
    from transformers import TrainerCallback

    from slovo.evaluate import evaluate

    windows, token_bytes = eval_set(data, args.preset)
    at = sorted({*range(args.hf_eval_every, args.target_steps, args.hf_eval_every), args.target_steps})
    curve: list[tuple[int, float]] = []

    class EvalAtSteps(TrainerCallback):
        def on_step_end(self, _args, state, control, model=None, **kwargs):
            if state.global_step in at:
                bpb = evaluate(logits_only(model), windows, token_bytes, 8, str(model.device))["eval/bpb"]
                curve.append((state.global_step, bpb))
                print(f"hf step {state.global_step}: eval bpb {bpb:.4f}", flush=True)

    trainer, _ = hf_trainer(args, data, args.target_steps, [EvalAtSteps()])
    start = time.perf_counter()
    trainer.train()
    return {"curve": curve, "seconds": time.perf_counter() - start, "target_bpb": curve[-1][1]}


def phase_hf_speed(args, data: Path) -> dict:
    """HF's seconds per optimizer step here: steps after the warm-up ones, on the wall clock."""
    from transformers import TrainerCallback

    ends: list[float] = []

    class StepEnds(TrainerCallback):
        def on_step_end(self, _args, state, control, **kwargs):
            ends.append(time.perf_counter())

    trainer, _ = hf_trainer(args, data, args.hf_speed_steps + 2, [StepEnds()])
    trainer.train()
    timed = ends[2:]  # the first two steps warm up (allocations, the data worker)
    return {"seconds_per_step": (timed[-1] - ends[1]) / len(timed), "steps": len(timed)}


# ---- slovo (child) -----------------------------------------------------------------------------------------


def slovo_config(args, data: Path, overrides: dict):
    from slovo.config import load_config, parse_override

    base = {
        "data.path": str(data),
        "train.seed": args.seed,
        "sample.enabled": False,
        "checkpoint.every_seconds": 0,
        "tracking.report": False,
        "train.log_every": 1,
        "train.log_every_seconds": 0,
        "train.device": bench_device(args.device),
    }
    if args.threads:
        base["train.num_threads"] = args.threads
    return load_config(preset=args.preset, overrides={**base, **dict(parse_override(s) for s in args.set), **overrides})


def phase_slovo(args, data: Path) -> dict:
    """One seed of the recipe with evals on the full eval set: its curve in steps and in training seconds."""
    from slovo.train import train
    from slovo.utils import read_jsonl

    budget = {"budget.time": args.time} if args.time else {"budget.time": None, "budget.max_steps": args.steps}
    cfg = slovo_config(args, data, {**budget, "eval.every": args.eval_points, "eval.max_fraction": 0.0})
    run_dir = Path(args.runs_dir) / f"speedrun-{args.label}-{args.stamp}-seed{args.seed}"
    summary = train(cfg, run_dir, quiet=True)
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "eval/bpb" in r]
    run = json.loads((run_dir / "run.json").read_text())
    return {
        "seed": args.seed,
        "run_dir": str(run_dir),
        "steps": summary["train/global_step"],
        "train_seconds": summary["train_runtime"],
        "compile_seconds": (summary.get("ledger") or {}).get("compile", 0.0),
        "eval_bpb": summary["eval/bpb"],
        "curve_steps": [(r["train/global_step"], r["eval/bpb"]) for r in evals],
        "curve_seconds": [(r["train_runtime"], r["eval/bpb"]) for r in evals],
        "dtype": run.get("dtype"),
        "compiled": run.get("compiled"),
        "muon_ns_dtype": run.get("muon_ns_dtype"),
    }


def phase_slovo_speed(args, data: Path) -> dict:
    """slovo's seconds per optimizer step for the recipe: the steps after the first few, on the wall clock of
    its step records; its compile seconds apart (a compiled run pays them once)."""
    from slovo.train import train
    from slovo.utils import read_jsonl

    skip = 5
    overrides = {"budget.time": None, "budget.max_steps": args.speed_steps + skip, "eval.every": 0}
    if args.compile is not None:
        overrides["train.compile"] = args.compile
    cfg = slovo_config(args, data, overrides)
    run_dir = Path(args.runs_dir) / f"speedrun-speed-{os.getpid()}"
    summary = train(cfg, run_dir, quiet=True)
    walls = [r["wall_time"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    timed = walls[skip:]
    run = json.loads((run_dir / "run.json").read_text())
    return {
        "seconds_per_step": (timed[-1] - walls[skip - 1]) / len(timed),
        "steps": len(timed),
        "compile_seconds": (summary.get("ledger") or {}).get("compile", 0.0),
        "dtype": run.get("dtype"),
        "compiled": run.get("compiled"),
        "muon_ns_dtype": run.get("muon_ns_dtype"),
    }


PHASES = {"target": phase_target, "hf-speed": phase_hf_speed, "slovo": phase_slovo, "slovo-speed": phase_slovo_speed}


# ---- the parent ----------------------------------------------------------------------------------------------


def spawn(phase: str, args, data: Path, seed: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", phase, "--data", str(data), "--seed", str(seed or args.seed)]
    cmd += ["--preset", args.preset, "--threads", str(args.threads), "--runs-dir", str(args.runs_dir)]
    cmd += ["--device", args.device]
    cmd += ["--stamp", args.stamp, "--label", args.label, "--eval-points", str(args.eval_points)]
    cmd += ["--speed-steps", str(args.speed_steps), "--hf-speed-steps", str(args.hf_speed_steps)]
    cmd += ["--hf-eval-every", str(args.hf_eval_every), "--target-steps", str(args.target_steps)]
    cmd += ["--time", args.time] if args.time else ["--steps", str(args.steps)]
    cmd += ["--compile", args.compile] if args.compile else []
    for s in args.set:
        cmd += ["--set", s]
    print(f"[{phase}] $ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"speedrun: the {phase} phase failed (exit {proc.returncode}): {' '.join(cmd)}")
    return json.loads(lines[-1][len("RESULT ") :])


def target_curve(args, data: Path) -> dict:
    """HF's curve for this dataset and preset: from its results file, else measured now and kept there."""
    from slovo.data import load_dataset
    from slovo.utils import atomic_write_json

    fingerprint = load_dataset(data).meta["fingerprint"][:12]
    name = f"speedrun_hf_curve-{args.preset}-{fingerprint}-{args.target_steps}steps.json"
    path = Path(args.target_file or RESULTS / name)
    if path.exists():
        print(f"target: HF's curve from {path}", flush=True)
        return json.loads(path.read_text())
    result = spawn("target", args, data, seed=args.hf_seed)
    record = {
        **result,
        "steps": args.target_steps,
        "dataset": str(data),
        "fingerprint": fingerprint,
        "preset": args.preset,
        "seed": args.hf_seed,
        "processor": processor(),
        "settings": {"batch": HF_BATCH, "accumulation": HF_ACCUM, "lr": HF_LR, "warmup": HF_WARMUP},
        "command": " ".join(sys.argv),
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    atomic_write_json(path, record)
    print(f"target: HF's curve kept in {path}", flush=True)
    return record


def measure_speed(args, data: Path) -> dict:
    """Both sides' seconds per step, alternating which goes first, `--rounds` rounds."""
    from slovo.stats import spread

    hf, slovo = [], []
    for i in range(args.rounds):
        order = ("hf-speed", "slovo-speed") if i % 2 == 0 else ("slovo-speed", "hf-speed")
        for phase in order:
            result = spawn(phase, args, data)
            (hf if phase == "hf-speed" else slovo).append(result)
            print(f"  {phase}: {result['seconds_per_step']:.3f} s/step", flush=True)
    hf_s = spread([r["seconds_per_step"] for r in hf])
    slovo_s = spread([r["seconds_per_step"] for r in slovo])
    ratios = spread([h["seconds_per_step"] / s["seconds_per_step"] for h, s in zip(hf, slovo)])
    print(
        f"speed: HF {hf_s.text('.3f')} s/step, slovo {slovo_s.text('.3f')} s/step; HF/slovo per step "
        f"{ratios.text('.2f')} ({args.rounds} alternating rounds; slovo {slovo[0]['dtype']}, "
        f"compiled {slovo[0]['compiled']})",
        flush=True,
    )
    return {
        "hf": hf,
        "slovo": slovo,
        "hf_seconds_per_step": hf_s.median,
        "slovo_seconds_per_step": slovo_s.median,
        "slovo_compile_seconds": max(r["compile_seconds"] for r in slovo),
    }


def report(args, target: dict, speed: dict | None, runs: list[dict]) -> dict:
    from slovo.stats import spread

    goal = target["target_bpb"]
    hf_seconds = target["steps"] * speed["hf_seconds_per_step"] if speed else None
    rows = []
    for r in runs:
        steps = first_reach(r["curve_steps"], goal)
        if args.time:
            seconds = first_reach(r["curve_seconds"], goal)
        else:
            seconds = None if steps is None or not speed else steps * speed["slovo_seconds_per_step"]
            seconds = seconds + speed["slovo_compile_seconds"] if seconds is not None and r["compiled"] else seconds
        rows.append({**r, "steps_to_target": steps, "seconds_to_target": seconds})
        ratio = f"{hf_seconds / seconds:.2f}x" if seconds and hf_seconds else "-"
        reach = f"reached at step {steps:.0f}" if steps is not None else "NOT reached"
        reach += f", {seconds:.1f} s" if seconds else ""
        print(
            f"seed {r['seed']}: final bpb {r['eval_bpb']:.4f} after {r['steps']} steps; target {goal:.4f} "
            f"{reach}; HF/slovo time {ratio}",
            flush=True,
        )
    reached = [r for r in rows if r["seconds_to_target"]]
    summary: dict = {"target_bpb": goal, "hf_seconds": hf_seconds, "seeds": len(rows), "reached": len(reached)}
    if reached and hf_seconds:
        ratios = spread([hf_seconds / r["seconds_to_target"] for r in reached])
        secs = spread([r["seconds_to_target"] for r in reached])
        steps = spread([r["steps_to_target"] for r in reached])
        summary.update(
            ratio_median=ratios.median,
            ratio_min=ratios.min,
            ratio_max=ratios.max,
            seconds_median=secs.median,
            steps_median=steps.median,
        )
        print(
            f"speedrun [{args.label}]: HF reaches {goal:.4f} bpb in {hf_seconds:.0f} s ({target['steps']} steps x "
            f"{speed['hf_seconds_per_step']:.3f} s); slovo in {secs.text('.1f')} s ({steps.text('.0f')} steps), "
            f"{len(reached)}/{len(rows)} seeds: {ratios.text('.2f')}x faster",
            flush=True,
        )
    return {"summary": summary, "runs": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", choices=("all", "target", "speed", "slovo"), default="all", help="what to run")
    p.add_argument("--data", help="a prepared dataset (default: data/ruslit-8k, prepared when missing)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--set", action="append", default=[], help="a recipe override KEY=VALUE (repeatable)")
    p.add_argument("--label", default="tiny", help="the recipe's name in run folders and the JSON")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=1337, help="first seed of slovo's runs")
    p.add_argument("--hf-seed", type=int, default=1337, help="the seed of HF's target curve")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--time", help="slovo's training-time budget per seed (default 180s)")
    budget.add_argument("--steps", type=int, help="... or its optimizer steps (time from the speed phase)")
    p.add_argument("--eval-points", type=int, default=20, help="slovo's evals per run on the full eval set")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of the speed phase")
    p.add_argument("--speed-steps", type=int, default=40, help="slovo's timed steps per speed round")
    p.add_argument("--hf-speed-steps", type=int, default=6, help="HF's timed steps per speed round")
    p.add_argument("--target-steps", type=int, default=HF_TARGET_STEPS, help="HF's steps to the target (552)")
    p.add_argument("--hf-eval-every", type=int, default=46, help="HF's target curve: steps between evals")
    p.add_argument("--compile", choices=("auto", "true", "false"), help="train.compile for the speed phase")
    p.add_argument("--device", default="cpu", help="where both sides train: cpu, cuda or auto (default cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch threads for both sides (0: torch's default)")
    p.add_argument("--runs-dir", default=str(REPO / "runs" / "speedrun"))
    p.add_argument("--target-file", help="HF's curve file (default: bench/results/speedrun_hf_curve-...json)")
    p.add_argument("--json", help="write the results here (default: RUNS_DIR/speedrun-LABEL-TIME.json)")
    p.add_argument("--speed-from", help="take the speed phase's figures from an earlier speedrun JSON")
    p.add_argument("--runs-from", action="append", default=[], help="slovo runs from earlier logs (RESULT lines)")
    p.add_argument("--against", help="an earlier speedrun JSON (the previous record): a paired verdict by seed")
    p.add_argument("--child", choices=tuple(PHASES), help=argparse.SUPPRESS)
    p.add_argument("--stamp", default=datetime.now().strftime("%Y%m%d-%H%M%S"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print("RESULT " + json.dumps(PHASES[args.child](args, Path(args.data))), flush=True)
        return
    if not args.time and not args.steps:
        args.time = "180s"
    Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
    data = ensure_dataset(args)
    out: dict = {"label": args.label, "set": args.set, "processor": processor(), "argv": sys.argv[1:]}
    if args.phase != "speed":
        out["target"] = target_curve(args, data)
    if args.speed_from:
        out["speed"] = json.loads(Path(args.speed_from).read_text())["speed"]
    elif args.phase in ("all", "speed") or (args.phase == "slovo" and args.steps and not args.runs_from):
        out["speed"] = measure_speed(args, data)
    if args.phase in ("all", "slovo"):
        runs = earlier_runs(args.runs_from) or [
            spawn("slovo", args, data, seed=args.seed + i) for i in range(args.seeds)
        ]
        out.update(report(args, out["target"], out.get("speed"), runs))
        if args.against:
            out["against"] = against(out, json.loads(Path(args.against).read_text()))
    from slovo.utils import atomic_write_json

    path = Path(args.json or Path(args.runs_dir) / f"speedrun-{args.label}-{args.stamp}.json")
    atomic_write_json(path, {**out, "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}})
    print(f"results: {path}")


def earlier_runs(paths: list[str]) -> list[dict]:
    """slovo runs from the RESULT lines of earlier `--child slovo` logs (a run resumed elsewhere, or several
    recipes trained side by side), in the order given."""
    runs = []
    for path in paths:
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.startswith("RESULT ")]
        if not lines:
            sys.exit(f"{path}: no RESULT line (not a finished `--child slovo` log)")
        runs.append(json.loads(lines[-1][len("RESULT ") :]))
    return runs


def against(new: dict, old: dict) -> dict:
    """This recipe against the previous record, paired by seed (same seed: same init and data order): steps to
    the target, and the time when both have one. Through slovo.stats, the verdict `slovo compare` prints."""
    from slovo.stats import paired, verdict_line

    result = {}
    for key in ("steps_to_target", "seconds_to_target"):
        a = {r["seed"]: r[key] for r in new["runs"] if r.get(key) is not None}
        b = {r["seed"]: r[key] for r in old["runs"] if r.get(key) is not None}
        seeds = sorted(set(a) & set(b))
        if len(seeds) < 2:
            continue
        test = paired([a[k] for k in seeds], [b[k] for k in seeds])
        line = verdict_line(new["label"], old["label"], test, metric=key.split("_")[0], digits=1)
        result[key] = {"seeds": seeds, "diff": test.diff, "p": test.p, "line": line}
        print(f"against {old['label']} ({key}, {len(seeds)} seeds): {line}", flush=True)
    return result


def ensure_dataset(args) -> Path:
    """`--data` as given, else ruslit prepared with an 8192-token vocabulary (reused when already prepared)."""
    if args.data:
        return Path(args.data)
    corpus = DEFAULT_CORPUS if DEFAULT_CORPUS.exists() else REPO / "data" / "sample" / "ruslit-sample.jsonl.gz"
    out = DEFAULT_DATASET if corpus == DEFAULT_CORPUS else REPO / "data" / "ruslit-sample-8k"
    cmd = [sys.executable, "-m", "slovo", "prepare", "--data", str(corpus), "--vocab-size", "8192", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    if subprocess.run(cmd, env=env).returncode != 0:
        sys.exit(f"speedrun: preparing {corpus} failed: {' '.join(cmd)}")
    return out


if __name__ == "__main__":
    main()
