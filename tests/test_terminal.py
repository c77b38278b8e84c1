"""The terminal: the one progress bar train, tune and prepare draw (its text and amount on a terminal, nothing
when disabled), and the eval figures (bpb with its standard error, subset evals told apart from the full final
eval)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from rich.console import Console

from slovo.terminal import ProgressBar, TrainDisplay, split_eval_series
from slovo.train.state import Budget, Clock, TrainState


def _evals(*pairs):
    return [{"eval/loss": loss, "eval/windows": w, "train/global_step": i} for i, (loss, w) in enumerate(pairs)]


def test_subset_evals_and_the_full_final_eval_are_told_apart():
    series, final = split_eval_series(_evals((4.0, 8), (3.5, 8), (3.2, 8), (3.6, 32)), "eval/loss")
    assert series == [4.0, 3.5, 3.2] and final == (3.6, 32)
    same, none = split_eval_series(_evals((4.0, 32), (3.0, 32)), "eval/loss")
    assert same == [4.0, 3.0] and none is None


def test_run_summary_shows_bpb_with_se_and_the_full_eval_apart_from_the_curve(tmp_path):
    records = [{"train/loss": 5.0, "train/global_step": 1}, *_evals((4.0, 8), (3.2, 8), (3.9, 32))]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    console = Console(record=True, width=200)
    summary = {"name": "r", "status": "finished", "eval/bpb": 1.2345, "eval/bpb_se": 0.0067, "ledger": {}}
    TrainDisplay(console=console).finish(tmp_path, summary)
    text = console.export_text()
    assert "1.2345 ± 0.0067" in text
    assert "4 → 3.2; all 32 windows: 3.9" in text  # the curve ends at the last subset eval


def test_eval_line_shows_the_standard_error():
    console = Console(record=True, width=200)
    state = SimpleNamespace(step=10, progress=0.5)
    metrics = {"eval/loss": 3.0, "eval/bpb": 1.5, "eval/bpb_se": 0.01, "eval/perplexity": 20.0}
    TrainDisplay(console=console).eval_line(state, SimpleNamespace(train_time=5.0), metrics)
    assert "bpb 1.5000 ± 0.0100" in console.export_text()


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=160, color_system=None), out


def test_a_disabled_progress_bar_writes_nothing():
    console, out = _terminal()
    with ProgressBar(console, "tune", 100, enabled=False) as bar:
        bar.update(50, "0:50 / 1:40  final run")
        bar.complete()
    assert out.getvalue() == ""


def test_a_byte_bar_shows_the_amount_and_completes_to_its_total():
    console, out = _terminal()
    with ProgressBar(console, "encoding", 2000, enabled=True, in_bytes=True) as bar:
        bar.update(500)
        bar.complete()
    assert "encoding" in out.getvalue() and "2.0/2.0 kB" in out.getvalue()


def test_the_train_bar_shows_time_left_step_loss_and_speed():
    console, out = _terminal()
    display = TrainDisplay(console=console)
    clock = Clock()
    clock.ledger["train"] = 15.0
    with display.progress_bar(Budget(time_s=60)):
        display.show_step(TrainState(step=3, tokens=3000, progress=0.25), clock, 4.5, 1e-3)
    text = out.getvalue()
    assert "25%" in text and "left 45s" in text and "step 3" in text and "loss 4.5000" in text and "200 tok/s" in text
    display.show_step(TrainState(step=4), clock, 4.4, 1e-3)  # after the loop: no bar, nothing drawn
