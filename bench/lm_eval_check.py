"""lm-evaluation-harness on a slovo export reproduces `slovo eval --suite rublimp` on the same pairs.

Exports the run, writes a local lm-eval task over the first N pairs of each RuBLiMP phenomenon (a JSON-lines file
and a task YAML: `output_type: multiple_choice`, an empty context, no target delimiter, so each choice is a whole
sentence scored after the BOS token, as slovo scores it), runs the `lm_eval` command on the export, runs
`slovo eval RUN --suite rublimp:DIR --pairs N --pairs-select first`, and compares them pair by pair: each pair's
two log-likelihoods and which sentence each side prefers. Exit 0 when the accuracies are equal (or every
disagreeing pair is a tie slovo counts as half, or a sentence longer than the context that lm-eval cuts).

    pip install -e '.[interop]'
    .venv/bin/python bench/lm_eval_check.py runs/demo --pairs 100
    .venv/bin/python bench/lm_eval_check.py runs/demo --pairs 10 --suite-dir ../shared/benchmarks/rublimp/datasets
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "rublimp" / "datasets"

TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: ""
target_delimiter: ""
doc_to_choice: "{{{{[good, bad]}}}}"
doc_to_target: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def write_task(suite, indices, folder: Path, name: str) -> None:
    rows = [{"good": suite.good[i], "bad": suite.bad[i], "phenomenon": suite.phenomenon[i]} for i in indices]
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (folder / f"{name}.yaml").write_text(TASK.format(name=name, data=data), encoding="utf-8")


def run_lm_eval(export: Path, task_dir: Path, name: str, out: Path, batch: int) -> list[dict]:
    """The lm_eval command as a user runs it; returns its logged samples (one per pair, in the file's order)."""
    cmd = [
        _lm_eval_command(),
        *("--model hf --device cpu --log_samples --tasks".split()),
        name,
        *("--model_args", f"pretrained={export},dtype=float32"),
        *("--include_path", str(task_dir), "--output_path", str(out), "--batch_size", str(batch)),
    ]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    found = sorted(out.rglob(f"samples_{name}_*.jsonl"))
    samples = [json.loads(line) for line in found[-1].read_text(encoding="utf-8").splitlines()]
    return sorted(samples, key=lambda s: s["doc_id"])


def _lm_eval_command() -> str:
    """The `lm_eval` script beside this Python (a venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "lm_eval"
    return str(beside) if beside.exists() else "lm_eval"


def slovo_logprobs(run: str, suite, indices) -> tuple[np.ndarray, np.ndarray, bool]:
    """slovo's own scorer on the same pairs: (good, bad) summed log-probs, and whether any sentence is longer
    than the context (slovo scores it in windows; lm-eval cuts it from the left)."""
    from slovo.checkpoint import load_for_inference
    from slovo.suites.scoring import encode_pairs, sentence_logprobs

    model, cfg, tokenizer = load_for_inference(run, "cpu")
    pairs = encode_pairs(suite, tokenizer, indices)
    good, bad = sentence_logprobs(model, pairs, cfg.model.seq_len, 64, "cpu")
    lengths = [len(tokenizer.encode(s[i]).ids) for i in indices for s in (suite.good, suite.bad)]
    return np.asarray(good), np.asarray(bad), max(lengths) + 1 > cfg.model.seq_len


def slovo_command(run: str, suite_dir: Path, pairs: int) -> dict:
    cmd = [sys.executable, "-m", "slovo", "eval", run, "--suite", f"rublimp:{suite_dir}", "--pairs", str(pairs)]
    cmd += ["--pairs-select", "first", "--json", "--device", "cpu"]
    print("$", " ".join(cmd[2:]).replace("-m slovo", "slovo"), flush=True)
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def _loglik(resp) -> float:
    """One choice's log-likelihood from a logged sample: (ll, is_greedy), maybe nested, maybe as strings."""
    while isinstance(resp, list | tuple):
        resp = resp[0]
    return float(resp)


def compare(samples: list[dict], good: np.ndarray, bad: np.ndarray) -> dict:
    """Pair by pair: lm-eval's two log-likelihoods against slovo's, and the preferred sentence."""
    theirs = np.array([[_loglik(r) for r in s["filtered_resps"]] for s in samples])  # (pairs, [good, bad])
    ours = np.stack([good, bad], axis=1)
    lm_acc = np.array([s["acc"] for s in samples], dtype=float)
    slovo_acc = np.where(good > bad, 1.0, np.where(good == bad, 0.5, 0.0))  # ties count half, as slovo reports
    disagree = np.flatnonzero(lm_acc != slovo_acc)
    return {
        "pairs": len(samples),
        "lm_eval_acc": float(lm_acc.mean()),
        "slovo_acc_pooled": float(slovo_acc.mean()),
        "max_abs_loglik_diff": float(np.abs(theirs - ours).max()),
        "disagreeing_pairs": [
            {"doc_id": int(i), "lm_eval": theirs[i].tolist(), "slovo": ours[i].tolist()} for i in disagree
        ],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run folder or checkpoint")
    ap.add_argument("--pairs", type=int, default=100, help="the first N pairs of each phenomenon (default 100)")
    ap.add_argument("--suite-dir", default=os.environ.get("SLOVO_RUBLIMP_DIR", str(SHARED)))
    ap.add_argument("--work", default=None, help="folder for the export, the task and lm-eval's output (default tmp)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--json", default=None, help="write the comparison here")
    args = ap.parse_args()

    from slovo.export import export_run
    from slovo.suites import load_suite
    from slovo.suites.rublimp import select_pairs

    work = Path(args.work or tempfile.mkdtemp(prefix="lm-eval-check-"))
    work.mkdir(parents=True, exist_ok=True)
    suite = load_suite(f"rublimp:{args.suite_dir}")
    indices = select_pairs(suite, args.pairs, first=True)
    name = f"rublimp_first{args.pairs}"
    export = export_run(args.run, work / "hf", force=True)
    write_task(suite, indices, work, name)
    samples = run_lm_eval(export, work, name, work / "lm-eval-out", args.batch_size)
    good, bad, windowed = slovo_logprobs(args.run, suite, indices)
    result = compare(samples, good, bad)
    command = slovo_command(args.run, Path(args.suite_dir), args.pairs)
    result |= {"slovo_eval_overall": command["overall"]["sum"]["acc"], "slovo_eval_pairs": command["pairs"]}
    result["windowed"] = bool(windowed)
    n_dis = len(result["disagreeing_pairs"])
    print(
        f"pairs {result['pairs']}: lm-eval acc {result['lm_eval_acc']:.4f}, slovo (same pairs, pooled) "
        f"{result['slovo_acc_pooled']:.4f}, slovo eval --suite overall {result['slovo_eval_overall']:.4f} "
        f"({result['slovo_eval_pairs']} pairs); {n_dis} pairs decided differently; "
        f"max |log-likelihood difference| {result['max_abs_loglik_diff']:.2e} nats"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0 if n_dis == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
