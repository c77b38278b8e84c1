"""The clock: how much of the budget is spent, and a ledger of where the time went.

The budget counts training time only: the seconds spent in forward/backward/optimizer steps and in
fetching their batches. Evaluation, sampling, checkpointing and compile warm-up are measured into
the ledger but kept off the budget, so a run with more evals trains for as long as one with fewer.
`progress` (0..1) is what schedules and eval points are keyed on: with a time budget a cooldown
ends exactly at the deadline whatever the hardware does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# Ledger categories that count against the budget.
ON_THE_CLOCK = ("train", "data")
# eval: evals during training (a subset of the eval windows); final_eval: the last eval, on every window;
# probe: speed checks; guard: the divergence guard's snapshots and rollbacks (the lost steps stay in train)
LEDGER_KEYS = ("train", "data", "eval", "final_eval", "sample", "checkpoint", "compile", "probe", "guard")


@dataclass
class Budget:
    """Limits of one run; 0 / None means no limit of that kind. The first limit reached stops the run."""

    time_s: float | None = None
    max_steps: int = 0
    max_tokens: int = 0

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


def progress(budget: Budget, train_time: float, step: int, tokens: int) -> float:
    """Fraction of the budget spent: the largest of time, steps and tokens fractions (the first limit wins)."""
    fractions = [0.0]
    if budget.time_s:
        fractions.append(train_time / budget.time_s)
    if budget.max_steps:
        fractions.append(step / budget.max_steps)
    if budget.max_tokens:
        fractions.append(tokens / budget.max_tokens)
    return min(1.0, max(fractions))


def exhausted(budget: Budget, train_time: float, step: int, tokens: int) -> str | None:
    """Which limit is reached ('time', 'max_steps', 'max_tokens'), or None to go on."""
    if budget.max_steps and step >= budget.max_steps:
        return "max_steps"
    if budget.max_tokens and tokens >= budget.max_tokens:
        return "max_tokens"
    if budget.time_s and train_time >= budget.time_s:
        return "time"
    return None
