"""The train records: the loss window between two records, the step time on the ledger, and the run's figures for
the summary."""

from __future__ import annotations

from dataclasses import dataclass

from slovo.config import TrainConfig
from slovo.train.run_folder import RunFolder
from slovo.train.state import Clock, TrainState


@dataclass(frozen=True)
class Throughput:
    """What turns tokens into the records' rates: FLOPs per token, the device's peak, ranks, the train split."""

    flops_per_token: float
    peak_flops: float | None
    world: int
    train_tokens: int  # tokens in the train split (for train/epoch)


class TrainMetrics:
    """Keeps the agreed losses since the last train record and writes one every `train.log_every` steps, or sooner
    once `train.log_every_seconds` of training passed (a slow machine's run still gets curves); puts each step's
    seconds on the ledger (the first step of a compiled model is mostly compiling: `compile`, not `train`)."""

    def __init__(self, cfg: TrainConfig, rates: Throughput, folder: RunFolder, clock: Clock, *, compiled: bool):
        self.cfg, self.rates, self.folder, self.clock = cfg, rates, folder, clock
        self.compiling = compiled  # until the first step is done
        self.restart(TrainState())

    def restart(self, state: TrainState) -> None:
        """Open a new window at where the run is (start, resume, rollback)."""
        self.losses: list[float] = []
        self.start_time, self.start_tokens = state.train_time, state.tokens

    def step_timed(self, data_s: float) -> None:
        """Put the step's lap on the ledger (`Clock.lap`: the step and the bookkeeping since the previous one):
        fetching batches on `data`, the rest on `train` (or `compile`)."""
        self.clock.lap({"data": data_s}, "compile" if self.compiling else "train")
        self.compiling = False

    def add(self, state: TrainState, loss: float, lrs: dict[str, float], grad_norm: float) -> dict | None:
        """A healthy step's agreed loss joins the window; returns the record written when one is due, else None."""
        self.losses.append(loss)
        if not self.is_due(state):
            return None
        record = self.folder.record(state, self.figures(state, lrs, grad_norm))
        self.restart(state)
        return record

    def is_due(self, state: TrainState) -> bool:
        """A record is due at this step; decided from agreed values only."""
        every, seconds = self.cfg.log_every, self.cfg.log_every_seconds
        return state.step % every == 0 or bool(seconds and state.train_time - self.start_time >= seconds)

    def figures(self, state: TrainState, lrs: dict[str, float], grad_norm: float) -> dict:
        """The train record; `lrs`: train/learning_rate, and train/muon_learning_rate for Muon runs."""
        r = self.rates
        elapsed = state.train_time - self.start_time
        tokens_per_s = (state.tokens - self.start_tokens) / elapsed if elapsed > 0 else 0.0
        per_device = tokens_per_s / r.world
        return {
            "train/loss": sum(self.losses) / len(self.losses),
            **lrs,
            "train/grad_norm": grad_norm,
            "train/epoch": state.tokens / r.train_tokens,
            "train/tokens_per_second": tokens_per_s,
            "train/mfu": (r.flops_per_token * per_device / r.peak_flops) if r.peak_flops else None,
            "total_flos": r.flops_per_token * state.tokens,
        }
