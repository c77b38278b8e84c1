"""What changes during a run: the loop's `TrainState` (checkpointed), the `Clock` and its ledger, and the
`Budget` that says how far the run has come.

The budget counts training time only: the seconds spent in forward/backward/optimizer steps and in fetching
their batches. Evaluation, sampling, checkpointing and compile warm-up are measured into the ledger but kept off
the budget, so a run with more evals trains for as long as one with fewer. `progress` (0..1) is what schedules and
eval points are keyed on: with a time budget a cooldown ends exactly at the deadline whatever the hardware does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from slovo.config import Config, budget_seconds

# Ledger categories that count against the budget.
ON_THE_CLOCK = ("train", "data")
# eval: evals during training (a subset of the eval windows); final_eval: the last eval, on every window;
# probe: speed checks; guard: the divergence guard's snapshots and rollbacks (the lost steps stay in train)
LEDGER_KEYS = ("train", "data", "eval", "final_eval", "sample", "checkpoint", "compile", "probe", "guard")


@dataclass
class TrainState:
    """What the loop knows about itself; saved in every checkpoint. Callbacks read it."""

    step: int = 0
    tokens: int = 0
    train_time: float = 0.0  # seconds on the budget clock, as the ranks agreed
    progress: float = 0.0
    next_eval: int = 1  # index of the next eval point (progress next_eval / eval.every)
    last_ckpt_train_time: float = 0.0
    last_eval_train_time: float = 0.0
    last_eval_step: int = -1
    best_eval_loss: float = math.inf
    best_eval_bpb: float = math.inf
    last_eval: dict = field(default_factory=dict)
    # the divergence guard (slovo/train/guard.py)
    rollbacks: int = 0  # times the guard went back to a snapshot
    lr_scale: float = 1.0  # multiplies every group's peak lr: guard.lr_factor per rollback
    recent_losses: list = field(default_factory=list)  # agreed losses of the last guard.spike_window healthy steps
    lr_spike_left: int = -1  # debug.lr_spike: -1 not fired yet, then the spiked steps still to come
    decay_ckpt_step: int = -1  # step of the checkpoint saved where the lr began to decay; -1 none yet

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            if k in self.__dataclass_fields__:
                setattr(self, k, v)


@dataclass(frozen=True)
class Budget:
    """Limits of one run; 0 / None means no limit of that kind. The first limit reached stops the run."""

    time_s: float | None = None
    max_steps: int = 0
    max_tokens: int = 0

    @classmethod
    def from_config(cls, cfg: Config) -> Budget:
        return cls(budget_seconds(cfg), cfg.budget.max_steps, cfg.budget.max_tokens)

    def progress(self, train_time: float, step: int, tokens: int) -> float:
        """Fraction of the budget spent: the largest of time, steps and tokens fractions (the first limit wins)."""
        fractions = [0.0]
        if self.time_s:
            fractions.append(train_time / self.time_s)
        if self.max_steps:
            fractions.append(step / self.max_steps)
        if self.max_tokens:
            fractions.append(tokens / self.max_tokens)
        return min(1.0, max(fractions))

    def progress_of(self, state: TrainState) -> float:
        return self.progress(state.train_time, state.step, state.tokens)

    def exhausted(self, train_time: float, step: int, tokens: int) -> str | None:
        """Which limit is reached ('time', 'max_steps', 'max_tokens'), or None to go on."""
        if self.max_steps and step >= self.max_steps:
            return "max_steps"
        if self.max_tokens and tokens >= self.max_tokens:
            return "max_tokens"
        if self.time_s and train_time >= self.time_s:
            return "time"
        return None

    def as_dict(self) -> dict:
        return {"time_s": self.time_s, "max_steps": self.max_steps, "max_tokens": self.max_tokens}


@dataclass
class Clock:
    """Measures time into a ledger; `now` is injectable so tests can drive a fake clock."""

    now: Callable[[], float] = time.perf_counter
    ledger: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in LEDGER_KEYS})

    @contextmanager
    def measure(self, what: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            self.ledger[what] = self.ledger.get(what, 0.0) + (self.now() - start)

    @property
    def train_time(self) -> float:
        """Seconds on the budget clock."""
        return sum(self.ledger.get(k, 0.0) for k in ON_THE_CLOCK)

    def state_dict(self) -> dict:
        return {"ledger": dict(self.ledger)}

    def load_state_dict(self, state: dict) -> None:
        self.ledger = {k: 0.0 for k in LEDGER_KEYS} | dict(state["ledger"])
