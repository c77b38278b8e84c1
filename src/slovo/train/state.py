"""What changes during a run: the loop's `TrainState` (checkpointed), the `Clock` and its ledger, and the
`Budget` that says how far the run has come.

The budget counts training time: the seconds spent in forward/backward/optimizer steps, in fetching their batches
and in the loop's bookkeeping between two steps. Evaluation, sampling, checkpointing, the guard's snapshots and
compile warm-up are measured into the ledger but kept off the budget, so a run with more evals trains for as long
as one with fewer; under DDP the ranks that do not save or sample wait for rank 0 on the ledger too. `progress`
(0..1) is what schedules and eval points are keyed on: with a time budget a cooldown ends exactly at the deadline
whatever the hardware does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from slovo.config import Config, budget_seconds

# Ledger categories that count against the budget.
ON_THE_CLOCK = ("train", "data")
# eval: evals during training (a subset of the eval windows); final_eval: the last eval, on every window;
# probe: speed checks; guard: the divergence guard's snapshots and rollbacks (the lost steps stay in train)
LEDGER_KEYS = ("train", "data", "eval", "final_eval", "sample", "checkpoint", "compile", "probe", "guard")


class OwnState:
    """state_dict / load_state_dict over a component's own STATE_FIELDS (the checkpointer's `states=` parts);
    a field missing from an older checkpoint keeps its fresh value."""

    STATE_FIELDS: tuple[str, ...] = ()

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.STATE_FIELDS}

    def load_state_dict(self, d: dict) -> None:
        for k in self.STATE_FIELDS:
            if k in d:
                setattr(self, k, d[k])


@dataclass
class TrainState:
    """Where the run is, as the ranks agreed; saved in every checkpoint. Only the Trainer writes it; the
    components and callbacks read it. What else changes lives in the component that uses it (`Evaluator`,
    `Checkpointer`, `DivergenceGuard`), each with its own `state_dict`."""

    step: int = 0
    tokens: int = 0
    train_time: float = 0.0  # seconds on the budget clock, as the ranks agreed
    progress: float = 0.0

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def load_state_dict(self, d: dict) -> None:
        """Takes its own keys (an old checkpoint's flat `loop` dict holds the other components' too)."""
        for k, v in d.items():
            if k in self.__dataclass_fields__:
                setattr(self, k, v)


class RngState:
    """torch's (and CUDA's) random generators as a stateful part of a checkpoint."""

    @staticmethod
    def state_dict() -> dict:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def load_state_dict(state: dict) -> None:
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


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
    """Measures time into a ledger; `now` is injectable so tests can drive a fake clock.

    The loop books each step by `lap`: every second since the previous lap that the ledger has not booked (the step
    itself and the bookkeeping around it: the ranks' agreement, the guard's check, the bar, the records, callbacks),
    so the budget clock counts everything between two steps except the evals, samples, checkpoints and snapshots
    `measure` books off it."""

    now: Callable[[], float] = time.perf_counter
    ledger: dict[str, float] = field(default_factory=lambda: {k: 0.0 for k in LEDGER_KEYS})
    lap_start: float | None = None  # when the current lap began (None: no lap started yet)
    booked_at_lap_start: float = 0.0  # the ledger's total then

    def start_lap(self) -> None:
        """Begin counting laps from now (the loop's start, after a resume loaded another ledger)."""
        self.lap_start, self.booked_at_lap_start = self.now(), sum(self.ledger.values())

    def lap(self, shares: dict[str, float], rest: str) -> float:
        """Book the seconds since the last lap that the ledger has not booked: `shares` (e.g. {"data": s}) as given,
        the rest into `rest`; returns the lap's seconds and starts the next lap."""
        if self.lap_start is None:
            self.start_lap()
        now = self.now()
        seconds = (now - self.lap_start) - (sum(self.ledger.values()) - self.booked_at_lap_start)
        for what, share in shares.items():
            self.ledger[what] = self.ledger.get(what, 0.0) + share
        self.ledger[rest] = self.ledger.get(rest, 0.0) + seconds - sum(shares.values())
        self.lap_start, self.booked_at_lap_start = now, sum(self.ledger.values())
        return seconds

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
