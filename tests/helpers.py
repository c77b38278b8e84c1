"""Small pieces several test files use: a callback that stops a run, the train losses of a run, the tiny run as
`--set` flags for CLI tests."""

from __future__ import annotations

from slovo.train.callbacks import Callback
from slovo.utils import read_jsonl
from tests.conftest import TINY_RUN

# tests/conftest.py's TINY_RUN as `slovo train` flags
TINY_SETS = [f"--set={k}={'null' if v is None else v}" for k, v in TINY_RUN.items()]


class StopAt(Callback):
    """Stops the run at a step: gracefully like Ctrl-C, or abruptly like a kill."""

    def __init__(self, step, abrupt=False):
        self.step, self.abrupt = step, abrupt

    def on_log(self, state, control, metrics):
        if state.step == self.step:
            if self.abrupt:
                raise KeyboardInterrupt
            control.stop("interrupted")


def train_losses(run_dir) -> list[float]:
    return [r["train/loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]


def tiny_train_args(dataset, runs_dir, name: str, *extra: str) -> list[str]:
    """`slovo train` arguments of a quiet tiny run on `dataset` into runs_dir/name; `extra` flags come last."""
    return ["train", "--data", str(dataset), "--runs-dir", str(runs_dir), "--name", name, "--quiet", *TINY_SETS, *extra]


class TickingTime:
    """A fake clock that moves 0.25 s every time it is read: eval speed and training time are known."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 0.25
        return self.t
