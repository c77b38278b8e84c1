"""Hooks into the training loop, after HF Trainer's `TrainerCallback` / `TrainerControl`.

A callback subclasses `Callback` and overrides the hooks it needs; each gets the loop's `TrainState`
(read it, don't write it), a `Control` through which it can ask the loop to stop, and the record just
logged. The loop stops after the current step when a callback sets `control.should_stop`, and ends the run
with `control.stop_reason` as its status where that is a status (`pruned`). Callbacks see the same agreed
figures on every rank, so under torchrun they decide the same way everywhere.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass
class Control:
    """What callbacks (and Ctrl-C) ask of the loop."""

    should_stop: bool = False
    stop_reason: str | None = None

    def stop(self, reason: str) -> None:
        if not self.should_stop:
            self.should_stop, self.stop_reason = True, reason


class Callback:
    """No-op hooks; override the ones you need."""

    def on_log(self, state, control: Control, metrics: dict) -> None:
        """After a train record (every train.log_every steps) is written."""

    def on_eval(self, state, control: Control, metrics: dict) -> None:
        """After an eval record is written (also the final eval)."""


# The signals that ask a run to stop after the current step and save: Ctrl-C, and SIGTERM (SLURM preemption,
# `docker stop`, spot instances, torchrun's teardown), which otherwise kills the process without a save.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # the stop signals this process got, for its exit status


def stop_exit_status() -> int:
    """A run stopped by a signal exits 128 + that signal, the shell's convention: 130 after Ctrl-C (also when no
    signal came here: another rank's), 143 after SIGTERM."""
    return 128 + int(_received[-1] if _received else signal.SIGINT)


class StopOnSigint:
    """The first Ctrl-C or SIGTERM asks the loop to stop after the current step (and checkpoint); a second one
    aborts.

    It sets its own `requested` flag rather than `Control`: a signal reaches each rank at its own moment,
    so the loop shares the flag with the other ranks before acting on it."""

    def __init__(self, say):
        self.say, self.previous, self.requested = say, {}, False

    def __enter__(self):
        for signum in STOP_SIGNALS:
            try:
                self.previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread (e.g. a sweep worker thread): no handler
                break
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        _received.append(signum)
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.say(f"[yellow]{name}: stopping after this step and saving a checkpoint ({name} again to abort)[/]")

    def __exit__(self, *exc):
        for signum, previous in self.previous.items():
            if previous is not None:
                signal.signal(signum, previous)
