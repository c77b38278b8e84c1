"""GPU check: what slovo can only show on a CUDA card, in one run that fits a short GPU slot.

    python3 bench/gpu_check.py --out "$OUT"           # one H100 or H200, within --deadline 540 s (9 minutes)
    python3 bench/gpu_check.py --device cpu --smoke   # the same stages on a CPU at a toy size (a few minutes)

Stages, in priority order; each starts only when the time left is at least what it needs, runs in its own
process with a timeout that ends before the deadline, and its figures are written to OUT/gpu_check.json and
OUT/gpu_check.md (its log to OUT/logs/) as soon as it ends, so whatever finished is kept when the slot ends early.
Datasets and run folders (checkpoints of `base` are gigabytes) go to --work (runs/gpu_check), not to OUT:

1. `cuda_tests`: tests/test_cuda.py (bf16, fp16 with the GradScaler, a guard rollback, suite scoring, compile and
   resume, flash attention, Muon, generation, export);
2. `data`: the dataset, prepared in the background while the tests run: --data when given, else the full corpus
   beside the checkout (../shared/corpora/ruslit.jsonl.gz), else the sample tracked in data/sample/; and a small
   minimal-pair suite (word order swapped in the corpus' own sentences, RuBLiMP's CSV format) unless --suite-dir;
3. `base_adamw`, `base_muon`: `base` for --time each (compiled, bf16), with evals, the suite subset and samples;
   tokens/s, MFU, eval bpb, suite accuracy, a sample, recompiles (TORCH_LOGS=recompiles) from each;
4. `rescore`: the base_adamw run re-scored by `slovo eval` (the run's precision, which reproduces its own final
   bpb), in true float32 (no autocast, TF32 off), and its suite by `slovo eval --suite` (true float32);
5. `fp16`: a short run in train.dtype=float16 through the GradScaler;
6. `rollback`: a short run with a forced lr spike (debug.lr_spike) the divergence guard must roll back;
7. `small`: `small` for --time, if time is left;
8. `hf`: bench/bench_train.py (`small`, one seed, both sides on the card, HF in bf16), if time is left.

Nothing here needs `PYTHONPATH=src`: bench/peer.py puts the checkout's own src/ first on the path.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer  # noqa: E402 - puts the checkout's src/ on sys.path and PYTHONPATH

ROOT = Path(__file__).resolve().parents[1]
FULL_CORPUS = ROOT.parent / "shared" / "corpora" / "ruslit.jsonl.gz"
SAMPLE_CORPUS = ROOT / "data" / "sample" / "ruslit-sample.jsonl.gz"
RESERVE_S = 5.0  # kept back at the deadline for writing the results
SUITE_FINAL_PAIRS = 20  # per phenomenon, at a run's final eval and in the rescore's `slovo eval --suite`


@dataclass(frozen=True)
class Plan:
    """Sizes of one mode: the GPU check, or the CPU smoke run of the same stages."""

    vocab: int
    max_bytes: str  # prepare reads at most this much text ("0": all)
    base: str
    small: str
    quick: str  # the preset of the fp16 and rollback runs
    time: str  # --time of the base and small runs
    quick_steps: int
    hf_time: str
    sets: tuple[str, ...]  # --set for every training run
    needs: dict = field(default_factory=dict)  # stage -> (least seconds worth starting with, most it may take)


GPU = Plan(
    vocab=8192,
    max_bytes="0",
    base="base",
    small="small",
    quick="tiny",
    time="40s",
    quick_steps=60,
    hf_time="45s",
    sets=("train.compile=true", "eval.every=4", "tracking.report=false"),
    needs={
        "cuda_tests": (60, 180),
        "data": (5, 150),
        "base_adamw": (80, 170),
        "base_muon": (80, 170),
        "rescore": (20, 60),
        "fp16": (20, 60),
        "rollback": (20, 60),
        "small": (80, 150),
        "hf": (150, 300),
    },
)
SMOKE = Plan(
    vocab=512,
    max_bytes="1MB",
    base="tiny",
    small="tiny",
    quick="tiny",
    time="3s",
    quick_steps=6,
    hf_time="3s",
    sets=(
        "model.n_layer=1",
        "model.n_embd=64",
        "model.n_head=2",
        "model.seq_len=64",
        "train.per_device_train_batch_size=4",
        "eval.tokens=2048",
        "eval.every=2",
        "sample.max_new_tokens=8",
        "train.compile=false",
        "train.dtype=float32",
        "tracking.report=false",
    ),
    needs=dict.fromkeys(
        ("cuda_tests", "data", "base_adamw", "base_muon", "rescore", "fp16", "rollback", "small", "hf"), (3, 120)
    ),
)


class Check:
    """The deadline, the results (rewritten after every stage) and the stages' processes."""

    def __init__(
        self,
        out: Path,
        deadline_s: float,
        plan: Plan,
        device: str,
        now: Callable[[], float] = time.monotonic,
        work: Path | None = None,
    ):
        self.out, self.deadline_s, self.plan, self.device, self.now = out, deadline_s, plan, device, now
        self.work = work or out / "work"  # datasets and run folders: gigabytes, kept out of OUT
        self.started = now()
        self.results: dict = {"deadline_s": deadline_s, "device": device, "stages": {}}
        self.ctx: dict = {}  # what stages hand on: the dataset, the suite folder, run folders
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline_s - (self.now() - self.started)

    def run(self, name: str, cmd: list[str], most_s: float, env: dict | None = None) -> int:
        """`cmd` with its output in OUT/logs/NAME.log; killed at `most_s` or before the deadline (exit 124)."""
        timeout = max(1.0, min(most_s, self.left() - RESERVE_S))
        with open(self.out / "logs" / f"{name}.log", "w") as log:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return 124

    def log_text(self, name: str) -> str:
        path = self.out / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stage(self, name: str, fn: Callable[[Check], dict]) -> None:
        """Run one stage if its least time is left, and write the results whatever happened."""
        least, _ = self.plan.needs[name]
        if self.left() < least:
            self.results["stages"][name] = {"status": "skipped", "why": f"{self.left():.0f} s left, needs {least}"}
            self.save()
            return
        start = self.now()
        try:
            figures = fn(self)
            figures.setdefault("status", "done")
        except Exception as e:  # noqa: BLE001 - one stage's failure must not lose the others' figures
            figures = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        figures["seconds"] = round(self.now() - start, 1)
        self.results["stages"][name] = figures
        self.save()
        print(f"{name}: {one_line(figures)}", flush=True)

    def save(self) -> None:
        self.results["elapsed_s"] = round(self.now() - self.started, 1)
        for path, text in (
            (self.out / "gpu_check.json", json.dumps(self.results, indent=2, ensure_ascii=False)),
            (self.out / "gpu_check.md", markdown(self.results)),
        ):
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)


def one_line(figures: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in figures.items() if not isinstance(v, (dict, list)))


# ---- stages ---------------------------------------------------------------------------------------------


def python() -> list[str]:
    return [sys.executable]


def stage_cuda_tests(check: Check) -> dict:
    cmd = [*python(), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"]
    rc = check.run("cuda_tests", cmd, check.plan.needs["cuda_tests"][1])
    tail = check.log_text("cuda_tests").strip().splitlines()[-1:] or [""]
    return {"status": "done" if rc == 0 else f"exit {rc}", "summary": tail[0]}


def choose_corpus(plan: Plan) -> Path:
    """The full corpus beside the checkout for the GPU check where it is there, else the sample in the repo
    (what travels with the working tree to a GPU machine)."""
    return FULL_CORPUS if FULL_CORPUS.exists() and plan is GPU else SAMPLE_CORPUS


def start_prepare(check: Check, data: str | None) -> None:
    """Prepare the dataset in the background (CPU work, while the tests use the card)."""
    if data:
        check.ctx["data"] = Path(data)
        return
    corpus = choose_corpus(check.plan)
    out = check.work / "data" / f"{corpus.name.split('.')[0]}-{check.plan.vocab}"
    check.ctx.update(data=out, corpus=corpus)
    if (out / "meta.json").exists():
        return
    cmd = [*python(), "-m", "slovo", "prepare", "--data", str(corpus), "--out", str(out), "--quiet"]
    cmd += ["--vocab-size", str(check.plan.vocab), "--max-bytes", check.plan.max_bytes]
    log = open(check.out / "logs" / "prepare.log", "w")  # noqa: SIM115 - closed by stage_data
    check.ctx["prepare"] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log)


def stage_data(check: Check) -> dict:
    proc, log = check.ctx.pop("prepare", (None, None))
    if proc is not None:
        try:
            proc.wait(timeout=max(1.0, min(check.plan.needs["data"][1], check.left() - RESERVE_S)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    data = check.ctx["data"]
    if not (data / "meta.json").exists():
        raise RuntimeError(f"{data}: not prepared (logs/prepare.log)")
    meta = json.loads((data / "meta.json").read_text())
    if "suite" not in check.ctx:
        check.ctx["suite"] = write_word_order_suite(check.work / "suite", check.ctx.get("corpus", SAMPLE_CORPUS))
    return {"data": str(data), "train_tokens": meta["splits"]["train"]["tokens"], "suite": str(check.ctx["suite"])}


def write_word_order_suite(folder: Path, corpus: Path, pairs: int = 40) -> Path:
    """A minimal-pair suite in RuBLiMP's CSV format from the corpus' own sentences: two adjacent words swapped
    (phenomenon `adjacent_swap`) or the words shuffled (`shuffled`); the good sentence is the original."""
    import csv
    import gzip

    rng, sentences = random.Random(0), []
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        for line in f:
            text = json.loads(line).get("text", "")
            sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 6 <= len(s.split()) <= 14]
            if len(sentences) > 20 * pairs:
                break
    rng.shuffle(sentences)
    folder.mkdir(parents=True, exist_ok=True)
    columns = ["id", "source_sentence", "target_sentence", "level", "phenomenon", "PID", "subtype", "domain"]
    for k, pid in enumerate(("adjacent_swap", "shuffled")):
        with open(folder / f"{pid}.csv", "w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            for i, good in enumerate(sentences[k * pairs : (k + 1) * pairs]):
                words = good.split()
                if pid == "adjacent_swap":
                    j = rng.randrange(1, len(words) - 1)
                    words[j], words[j + 1] = words[j + 1], words[j]
                else:
                    rng.shuffle(words)
                bad = " ".join(words)
                if bad != good:
                    row = {"id": f"{pid}-{i}", "source_sentence": good, "target_sentence": bad}
                    writer.writerow(row | {"level": "Syntax", "phenomenon": "Word order", "PID": pid, "subtype": pid})
    return folder


def train_cmd(check: Check, label: str, preset: str, budget: list[str], sets: list[str]) -> list[str]:
    """`slovo train` of `preset` into OUT/runs/LABEL on the check's device, with the plan's and the stage's sets."""
    cmd = [*python(), "-m", "slovo", "train", "--data", str(check.ctx["data"]), "--preset", preset, *budget]
    cmd += ["--name", label, "--runs-dir", str(check.work / "runs"), "--overwrite", "--quiet"]
    sets = [f"train.device={check.device}", *check.plan.sets, *sets]
    return cmd + [f"--set={s}" for s in sets]


def suite_sets(check: Check) -> list[str]:
    suite = f"eval.suites=[rublimp:{check.ctx['suite']}]"
    return [suite, "eval.suite_pairs=10", f"eval.suite_final_pairs={SUITE_FINAL_PAIRS}"]


def train_stage(check: Check, label: str, preset: str, sets: list[str]) -> dict:
    """A --time run with evals, the suite subset and samples; its figures, recompiles counted from torch's log."""
    cmd = train_cmd(check, label, preset, ["--time", check.plan.time], [*suite_sets(check), *sets])
    rc = check.run(label, cmd, check.plan.needs.get(label, (0, 170))[1], env={"TORCH_LOGS": "recompiles"})
    figures = run_figures(check.work / "runs" / label)
    figures["recompiles"] = len(re.findall(r"Recompiling function", check.log_text(label)))
    check.ctx[label] = check.work / "runs" / label
    return {"status": "done" if rc == 0 else f"exit {rc}", **figures}


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def run_figures(run_dir: Path) -> dict:
    """A run's speed (medians past its first fifth: allocator and clocks warm up), eval, suite and a sample."""
    summary, info = read_json(run_dir / "summary.json"), read_json(run_dir / "run.json")
    records = read_jsonl(run_dir / "metrics.jsonl")
    later = records[len(records) // 5 :]
    mfus = [r["train/mfu"] for r in later if r.get("train/mfu") is not None]
    tps = [r["train/tokens_per_second"] for r in later if r.get("train/tokens_per_second")]
    suite = [r for r in records if r.get("eval/rublimp_acc") is not None]
    samples = read_jsonl(run_dir / "samples.jsonl")
    ledger = summary.get("ledger") or {}
    return {
        "run_status": summary.get("status"),
        "dtype": info.get("dtype"),
        "compiled": info.get("compiled"),
        "params_M": round((summary.get("params") or 0) / 1e6, 1),
        "steps": summary.get("train/global_step"),
        "tokens_per_s": round(statistics.median(tps)) if tps else None,
        "mfu": round(statistics.median(mfus), 4) if mfus else None,
        "peak_memory_gb": summary.get("peak_memory_gb"),
        "compile_s": ledger.get("compile"),
        "eval_s": round(sum(v for k, v in ledger.items() if "eval" in k), 1),
        "eval_bpb": summary.get("eval/bpb"),
        "suite_acc": suite[-1]["eval/rublimp_acc"] if suite else None,
        "suite_pairs": suite[-1].get("eval/rublimp_pairs") if suite else None,
        "rollbacks": summary.get("rollbacks"),
        "sample": " ".join(samples[-1]["text"].split())[:80].replace("|", "/") if samples else None,
    }


def stage_rescore(check: Check) -> dict:
    """The base AdamW run scored again: `slovo eval` in the run's precision (its own final bpb again), in true
    float32 (this script's child mode, bench/peer.py's scoring), and its suite by `slovo eval --suite`."""
    run_dir = check.ctx.get("base_adamw")
    if run_dir is None or not (run_dir / "checkpoints").is_dir():
        return {"status": "skipped", "why": "no base_adamw checkpoint"}
    most = check.plan.needs["rescore"][1] / 3
    outs = {}
    for name, cmd in (
        ("eval_run_dtype", [*python(), "-m", "slovo", "eval", str(run_dir), "--json"]),
        ("eval_fp32", [*python(), __file__, "--rescore-fp32", str(run_dir)]),
        (
            "eval_suite",
            [
                *python(),
                "-m",
                "slovo",
                "eval",
                str(run_dir),
                "--suite",
                f"rublimp:{check.ctx['suite']}",
                "--pairs",
                str(SUITE_FINAL_PAIRS),
            ],
        ),
    ):
        rc = check.run(f"rescore-{name}", cmd + (["--json"] if name == "eval_suite" else []), most)
        lines = [ln for ln in check.log_text(f"rescore-{name}").splitlines() if ln.startswith("{")]
        outs[name] = json.loads(lines[-1]) if rc == 0 and lines else {"exit": rc}
    summary = read_json(run_dir / "summary.json")
    suite = json.loads((run_dir / "evals" / "rublimp.json").read_text()) if (run_dir / "evals").is_dir() else {}
    return {
        "train_final_bpb": summary.get("eval/bpb"),
        "slovo_eval_bpb": outs["eval_run_dtype"].get("eval/bpb"),
        "fp32_bpb": outs["eval_fp32"].get("eval/bpb"),
        "train_final_suite_acc": run_figures(run_dir)["suite_acc"],
        "slovo_eval_suite_acc": ((suite.get("overall") or {}).get("sum") or {}).get("acc"),
    }


def stage_quick(check: Check, label: str, sets: list[str]) -> dict:
    """A short run of the quick preset for --max-steps, eager, with `sets` (fp16, a forced rollback)."""
    budget = ["--max-steps", str(check.plan.quick_steps)]
    cmd = train_cmd(check, label, check.plan.quick, budget, ["train.compile=false", "eval.every=2", *sets])
    rc = check.run(label, cmd, check.plan.needs[label][1])
    figures = run_figures(check.work / "runs" / label)
    guard = [r for r in read_jsonl(check.work / "runs" / label / "metrics.jsonl") if "guard/rollback" in r]
    figures["rollback_events"] = [f"step {r.get('guard/bad_step')}: {r.get('guard/reason')}" for r in guard]
    return {"status": "done" if rc == 0 else f"exit {rc}", **figures}


def stage_fp16(check: Check) -> dict:
    figures = stage_quick(check, "fp16", ["train.dtype=float16"])
    if figures["status"] == "done" and figures["dtype"] != "float16":
        figures["status"] = f"trained in {figures['dtype']}"
    return figures


def stage_rollback(check: Check) -> dict:
    figures = stage_quick(check, "rollback", ["debug.lr_spike.at=0.5", "debug.lr_spike.factor=1000"])
    if figures["status"] == "done" and not figures["rollback_events"]:
        figures["status"] = "no rollback"
    return figures


def stage_hf(check: Check) -> dict:
    """Time to quality against HF Trainer on the same card (bench/bench_train.py, one seed)."""
    out_json = check.out / "bench_train.json"
    cmd = [*python(), str(ROOT / "bench" / "bench_train.py"), "--preset", check.plan.small, "--seeds", "1"]
    cmd += ["--time", check.plan.hf_time, "--data", str(check.ctx["data"]), "--eval-points", "4"]
    cmd += ["--runs-dir", str(check.work / "bench-runs"), "--json", str(out_json), "--device", check.device]
    rc = check.run("hf", cmd, check.plan.needs["hf"][1])
    got = read_json(out_json)
    sides = {r["side"]: r for r in got.get("runs", [])}
    figures = {
        f"{side}_{k}": sides[side].get(k)
        for side in sides
        for k in ("eval_bpb", "tokens_per_second", "device_name", "train_precision")
    }
    reach = (got.get("summary") or {}).get("slovo_seconds_to_hf_median_bpb")
    return {"status": "done" if rc == 0 else f"exit {rc}", **figures, "slovo_s_to_hf_bpb": reach}


# ---- the results as a table -----------------------------------------------------------------------------

TRAIN_COLUMNS = ("status", "dtype", "params_M", "steps", "tokens_per_s", "mfu", "peak_memory_gb", "compile_s")
TRAIN_COLUMNS += ("eval_s", "eval_bpb", "suite_acc", "recompiles", "rollbacks")


def markdown(results: dict) -> str:
    """OUT/gpu_check.md: the training runs as one table, every stage's other figures as a line."""
    stages = results.get("stages", {})
    lines = [
        f"# bench/gpu_check.py on {results.get('device_name', results.get('device'))}",
        "",
        f"torch {results.get('torch')}; deadline {results.get('deadline_s')} s, {results.get('elapsed_s')} s used.",
        "",
        "| run | " + " | ".join(TRAIN_COLUMNS) + " |",
        "|---" * (len(TRAIN_COLUMNS) + 1) + "|",
    ]
    for name, fig in stages.items():
        if "steps" in fig:
            lines.append(f"| {name} | " + " | ".join(_cell(c, fig.get(c)) for c in TRAIN_COLUMNS) + " |")
    lines += ["", "MFU goals (issue 29): `small` at least 35%, `base` at least 50%."]
    adamw, muon = stages.get("base_adamw", {}), stages.get("base_muon", {})
    if adamw.get("tokens_per_s") and muon.get("tokens_per_s"):
        lines += ["", f"Muon / AdamW tokens/s on `base`: {muon['tokens_per_s'] / adamw['tokens_per_s']:.2f}"]
    lines += ["", "| stage | status | seconds | figures |", "|---|---|---|---|"]
    for name, fig in stages.items():
        rest = {k: v for k, v in fig.items() if k not in ("status", "seconds", *TRAIN_COLUMNS)}
        lines.append(f"| {name} | {fig.get('status')} | {fig.get('seconds', '-')} | {one_line(rest)} |")
    return "\n".join(lines) + "\n"


def _cell(column: str, value) -> str:
    if value is None:
        return "-"
    if column in ("mfu", "suite_acc"):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


# ---- the whole check --------------------------------------------------------------------------------------

STAGES: tuple[tuple[str, Callable[[Check], dict]], ...] = (
    ("cuda_tests", stage_cuda_tests),
    ("data", stage_data),
    ("base_adamw", lambda c: train_stage(c, "base_adamw", c.plan.base, ["optim.name=adamw"])),
    ("base_muon", lambda c: train_stage(c, "base_muon", c.plan.base, ["optim.name=muon"])),
    ("rescore", stage_rescore),
    ("fp16", stage_fp16),
    ("rollback", stage_rollback),
    ("small", lambda c: train_stage(c, "small", c.plan.small, [])),
    ("hf", stage_hf),
)


def rescore_fp32(run_dir: str) -> None:
    """Child mode: the run's final model scored on its own eval set in true float32; one JSON line."""
    from slovo.checkpoint import load_for_inference
    from slovo.data import load_dataset, load_tokenizer, token_byte_lengths
    from slovo.device import pick_device
    from slovo.evaluate import eval_windows

    device = pick_device("auto")
    model, cfg, _ = load_for_inference(run_dir, device)
    ds = load_dataset(cfg.data.path)
    windows = eval_windows(ds.val, cfg.model.seq_len, cfg.eval.tokens)
    token_bytes = token_byte_lengths(load_tokenizer(ds.tokenizer_path))
    batch = cfg.eval.batch_size or cfg.train.per_device_train_batch_size
    print(json.dumps(peer.score_float32(model, windows, token_bytes, batch, device)), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deadline", type=float, default=540.0, help="seconds for everything (default 540: 9 minutes)")
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"), help="results folder (default $OUT)")
    ap.add_argument(
        "--work",
        default=str(ROOT / "runs" / "gpu_check"),
        help="datasets and run folders (checkpoints: gigabytes), outside --out (default runs/gpu_check)",
    )
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: only with --smoke")
    ap.add_argument("--smoke", action="store_true", help="the stages at a toy size (a CPU check of this script)")
    ap.add_argument("--data", help="a prepared dataset (default: prepared here from the corpus)")
    ap.add_argument("--suite-dir", help="a RuBLiMP CSV folder (default: a word-order suite made from the corpus)")
    ap.add_argument("--stages", help="comma-separated stage names to run (default: all, in priority order)")
    ap.add_argument("--rescore-fp32", help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args(argv)
    if args.rescore_fp32:
        rescore_fp32(args.rescore_fp32)
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (--device cpu --smoke checks this script on the CPU)")
        return 2
    if args.device == "cpu" and not args.smoke:
        print("gpu_check: --device cpu needs --smoke: the full sizes are for a GPU")
        return 2
    out = Path(args.out)
    check = Check(out, args.deadline, SMOKE if args.smoke else GPU, args.device, work=Path(args.work))
    from slovo.device import PEAK_BF16_FLOPS, device_name

    name = device_name(args.device)
    check.results.update(device_name=name, peak_bf16_flops=PEAK_BF16_FLOPS.get(name), torch=torch.__version__)
    if args.suite_dir:
        check.ctx["suite"] = Path(args.suite_dir)
    start_prepare(check, args.data)
    wanted = set(args.stages.split(",")) if args.stages else None
    for stage_name, fn in STAGES:
        if wanted is None or stage_name in wanted or stage_name == "data":
            check.stage(stage_name, fn)
    print(markdown(check.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
