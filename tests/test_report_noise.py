"""The report knows its noise: bpb with its standard error, runs within eval noise of the best marked (window by
window), the lr a run trained at after rollbacks, and the full final eval drawn apart from the subset evals'
curve."""

from __future__ import annotations

import json
import math
import re

import numpy as np

from slovo import window_losses
from slovo.cli import main
from tests.fake_runs import make_fake_run


def _final_windows(run, base, lead, seed):
    """Per-window losses of the run's final eval: shared window difficulty `base`, `lead` bpb added on every
    window, a little noise of the run's own; the summary's and the last record's bpb made theirs."""
    n_bytes = np.full(base.size, 1000.0)
    noise = np.random.default_rng(seed).normal(0, 0.002, base.size)
    nats = (base + lead + noise) * math.log(2) * n_bytes
    window_losses.save(run, nats, n_bytes, step=1)
    bpb = float(nats.sum() / math.log(2) / n_bytes.sum())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    [r for r in records if "eval/bpb" in r][-1]["eval/bpb"] = bpb
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "eval/bpb": bpb}))


def _subset_then_full(run, bpb_se):
    """Rewrite the fake run's evals as a real run writes them: 8-window subsets, then the full 32-window eval."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/bpb" in r]
    for r in evals:
        r["eval/windows"] = 8
    evals[-1]["eval/windows"], evals[-1]["eval/bpb_se"] = 32, bpb_se
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "eval/bpb_se": bpb_se}))
    return summary["eval/bpb"]


def _two_runs_on_the_same_windows(tmp_path, gap: float):
    """Runs a and b whose final evals score the same 32 windows, b `gap` bpb worse on each, each run's se 0.2 (far
    above a small gap): (the runs folder, a's folder, a's bpb, b's bpb)."""
    root = tmp_path / "runs"
    a = make_fake_run(root, "a", seed=0, overrides={"optim.name": "adamw", "optim.lr": 0.004})
    b = make_fake_run(root, "b", seed=1, overrides={"optim.name": "adamw", "optim.lr": 0.003})
    base = np.random.default_rng(9).normal(1.5, 0.2, 32)
    _final_windows(a, base, 0.0, 1)
    _final_windows(b, base, gap, 2)
    return root, a, _subset_then_full(a, 0.2), _subset_then_full(b, 0.2)


def test_report_shows_intervals_noise_marks_effective_lr_and_the_full_eval_apart(tmp_path):
    root, a, bpb_a, bpb_b = _two_runs_on_the_same_windows(tmp_path, gap=0.0005)  # eval noise apart
    summary = json.loads((a / "summary.json").read_text())
    (a / "summary.json").write_text(json.dumps({**summary, "lr_scale": 0.5, "rollbacks": 1}))
    out = tmp_path / "report.html"
    assert main(["report", str(root), "-o", str(out)]) == 0
    page = out.read_text()
    assert f"{bpb_a:.4f} ± 0.2000" in page and f"{bpb_b:.4f} ± 0.2000" in page
    assert "within noise" in page and 'class="tied"' in page
    assert "0.002 (0.004 x 1/2)" in page
    # one full-eval point per run on each eval plot (loss and bpb, against time and tokens)
    assert len(re.findall(r'id="run[01]-f\d+-full"', page)) == 2 * 4
    assert "full final eval" in page


def test_a_steady_lead_on_the_same_windows_is_not_within_noise_however_wide_each_runs_se(tmp_path):
    root, *_ = _two_runs_on_the_same_windows(tmp_path, gap=0.02)  # 0.02 bpb worse on every window
    out = tmp_path / "report.html"
    assert main(["report", str(root), "-o", str(out)]) == 0
    page = out.read_text()
    assert "within noise</td>" not in page and 'class="tied"' not in page
