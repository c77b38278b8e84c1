"""The train records: the loss window between two records, the step time on the ledger, and the summary's
figures."""

from __future__ import annotations

from slovo.run_folder import RunFolder, run_figures
from slovo.train.run import Run
from slovo.train.state import Clock, TrainState


class TrainMetrics:
    """Keeps the agreed losses since the last train record and writes one every `train.log_every` steps, or sooner
    once `train.log_every_seconds` of training passed (a slow machine's run still gets curves); puts each step's
    seconds on the ledger (the first step of a compiled model is mostly compiling: `compile`, not `train`)."""

    def __init__(self, run: Run, folder: RunFolder, clock: Clock, state: TrainState):
        self.run, self.folder, self.clock = run, folder, clock
        self.compiling = run.compiled  # until the first step is done
        self.restart(state)

    def restart(self, state: TrainState) -> None:
        """Open a new window at where the run is (start, resume, rollback)."""
        self.losses: list[float] = []
        self.start_time, self.start_tokens = state.train_time, state.tokens

    def step_timed(self, step_s: float, data_s: float) -> None:
        """Put a step's seconds on the ledger: fetching batches on `data`, the rest on `train` (or `compile`)."""
        self.clock.ledger["compile" if self.compiling else "train"] += step_s - data_s
        self.clock.ledger["data"] += data_s
        self.compiling = False

    def add(self, state: TrainState, loss: float, lr: float, grad_norm: float) -> dict | None:
        """A healthy step's agreed loss joins the window; returns the record written when one is due, else None."""
        self.losses.append(loss)
        if not self.is_due(state):
            return None
        record = self.folder.record(state, self.figures(state, lr, grad_norm))
        self.restart(state)
        return record

    def is_due(self, state: TrainState) -> bool:
        """A record is due at this step; decided from agreed values only."""
        every, seconds = self.run.cfg.train.log_every, self.run.cfg.train.log_every_seconds
        return state.step % every == 0 or bool(seconds and state.train_time - self.start_time >= seconds)

    def figures(self, state: TrainState, lr: float, grad_norm: float) -> dict:
        run = self.run
        elapsed = state.train_time - self.start_time
        tokens_per_s = (state.tokens - self.start_tokens) / elapsed if elapsed > 0 else 0.0
        per_device = tokens_per_s / run.dist.world
        return {
            "train/loss": sum(self.losses) / len(self.losses),
            "train/learning_rate": lr,
            "train/grad_norm": grad_norm,
            "train/epoch": state.tokens / len(run.ds.train),
            "train/tokens_per_second": tokens_per_s,
            "train/mfu": (run.flops_per_token * per_device / run.peak_flops) if run.peak_flops else None,
            "total_flos": run.flops_per_token * state.tokens,
        }


def write_summary(run: Run, folder: RunFolder, state: TrainState, clock: Clock, status: str, **extra) -> dict:
    """summary.json with the run's figures as they are now."""
    figures = run_figures(state, clock.ledger, len(run.ds.train), run.cfg.model.seq_len, run.flops_per_token)
    figures.update(rollbacks=state.rollbacks, lr_scale=state.lr_scale)
    return folder.write_summary(status, figures, **extra)
