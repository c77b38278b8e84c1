"""The one progress bar train, tune and prepare draw: it shows its text and amount on a terminal, and nothing
when it is disabled (quiet runs, logs, pipes)."""

from __future__ import annotations

import io

from rich.console import Console

from slovo.terminal import ProgressBar, TrainDisplay
from slovo.train.state import Budget, Clock, TrainState


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
