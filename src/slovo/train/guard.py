"""The divergence guard: a run that blows up goes back to an in-memory snapshot of a few steps ago and goes on
with a lower lr, instead of failing or training on from damaged weights (why the snapshots are spaced as they
are, and what they cost: bench/results/guard_snapshots.md).
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from slovo.train.state import OwnState, RngState

if TYPE_CHECKING:
    from slovo.config import GuardConfig, LrSpikeConfig
    from slovo.train.state import Clock, TrainState


SPIKE_MIN_HISTORY = 5  # losses seen before the spike check starts (a short run's window may never fill)


class Diverged(Exception):
    """The run diverged for good (the guard gave up, or the eval loss is not finite): it fails with this line."""


@dataclass
class Snapshot:
    step: int
    tokens: int
    recent_losses: list[float]
    model: dict
    optimizer: dict
    scaler: dict | None
    rng: dict


class DivergenceGuard(OwnState):
    """Detects a diverging step and rolls the run back to a snapshot.

    Divergence (`check`): a non-finite loss; a non-finite grad norm, except under fp16's GradScaler, where an
    overflow is a step the scaler skips while it lowers its scale; a loss above `guard.spike_factor` x the median of
    the last `guard.spike_window` losses (from the 5th step on; the median, so one earlier outlier does not raise the
    bar, and warmup's falling loss never looks like a spike). The loop passes the loss and the non-finite flag the
    ranks agreed on, so every rank decides the same at the same step.

    Rollback: the older of two snapshots (every `guard.snapshot_every` healthy steps: weights, optimizer, scaler,
    RNG, step, tokens, loss history) is restored, the peak lr is multiplied by `guard.lr_factor` for the rest of the
    run, and the loader is not rewound, so the discarded steps' batches are skipped. Their seconds stay spent on the
    clock. After `guard.max_rollbacks` rollbacks the next divergence fails the run. What must survive a resume (lr
    scale, rollback count, loss history, the debug lr spike) is the guard's own `state_dict`; it reads the
    `TrainState` and never writes it (a rollback returns the step and tokens the Trainer goes back to).
    """

    STATE_FIELDS = ("rollbacks", "lr_scale", "recent_losses", "lr_spike_left")

    def __init__(
        self,
        cfg: GuardConfig,
        lr_spike: LrSpikeConfig,
        model: torch.nn.Module,
        optimizer,
        scaler,
        clock: Clock,
        say: Callable[[str], None] | None = None,
    ):
        self.cfg, self.lr_spike = cfg, lr_spike
        self.model, self.optimizer, self.scaler, self.clock = model, optimizer, scaler, clock
        self.say = say or (lambda line: None)
        self.snapshots: list[Snapshot] = []
        self.rollbacks = 0  # times the guard went back to a snapshot
        self.lr_scale = 1.0  # multiplies every group's peak lr: guard.lr_factor per rollback
        self.recent_losses: list[float] = []  # agreed losses of the last guard.spike_window healthy steps
        self.lr_spike_left = -1  # debug.lr_spike: -1 not fired yet, then the spiked steps still to come

    def summary(self) -> dict:
        """summary.json's figures of the guard."""
        return {"rollbacks": self.rollbacks, "lr_scale": self.lr_scale}

    # ---- the lr ---------------------------------------------------------------------------------------------

    def before_step(self, state: TrainState) -> float:
        """Start or count down the debug lr spike (`debug.lr_spike`: fires once, when progress first reaches `at`,
        for `steps` steps) and return what multiplies the schedule's lr this step: the scale rollbacks left, times
        the spike while it lasts."""
        multiplier = self.lr_scale
        spike = self.lr_spike
        if self.lr_spike_left < 0 and spike.at is not None and state.progress >= spike.at:
            self.lr_spike_left = spike.steps
            self.say(
                f"[yellow]debug.lr_spike: the lr x {spike.factor:g} for {spike.steps} steps "
                f"from step {state.step + 1}[/]"
            )
        if self.lr_spike_left > 0:
            self.lr_spike_left -= 1
            multiplier *= spike.factor
        return multiplier

    # ---- detecting --------------------------------------------------------------------------------------------

    def check(self, loss: float, nonfinite: bool, grad_norm: float) -> str | None:
        """Why this step diverged, or None. `loss` and `nonfinite` are the values the ranks agreed on; `nonfinite`
        is already false for a grad-norm overflow under a GradScaler."""
        if not math.isfinite(loss):
            return f"loss became {loss}"
        if nonfinite:
            return f"the grad norm became {grad_norm} (loss {loss:.4g})"
        history = self.recent_losses
        if self.cfg.spike_factor and len(history) >= min(SPIKE_MIN_HISTORY, self.cfg.spike_window):
            median = statistics.median(history)
            if loss > self.cfg.spike_factor * median:
                return (
                    f"loss spiked to {loss:.4g}, {loss / median:.1f}x the median {median:.4g} "
                    f"of the last {len(history)} steps"
                )
        return None

    def accept(self, state, loss: float) -> None:
        """A healthy step: its loss joins the history, and a snapshot is taken when one is due."""
        self.recent_losses = (self.recent_losses + [loss])[-self.cfg.spike_window :]
        if not self.cfg.enabled:
            return
        if not self.snapshots or state.step - self.snapshots[-1].step >= self.cfg.snapshot_every:
            self.snapshot(state)

    # ---- snapshots and rollback -----------------------------------------------------------------------------------

    def snapshot(self, state) -> None:
        """Copy what a rollback restores; keeps the newest two (the newest may already hold damage that has not
        shown in the loss yet, so a rollback takes the older)."""
        if not self.cfg.enabled:
            return
        with self.clock.measure("guard"):
            snap = Snapshot(
                step=state.step,
                tokens=state.tokens,
                recent_losses=list(self.recent_losses),
                model={k: v.detach().clone() for k, v in self.model.state_dict().items()},
                optimizer=copy.deepcopy(self.optimizer.state_dict()),
                scaler=self.scaler.state_dict() if self.scaler is not None else None,
                rng=RngState.state_dict(),
            )
            self.snapshots = (self.snapshots + [snap])[-2:]

    def can_roll_back(self) -> bool:
        return self.cfg.enabled and bool(self.snapshots) and self.rollbacks < self.cfg.max_rollbacks

    def failure(self, state, reason: str) -> str:
        """The one line a run that diverged for good ends with."""
        after = f" after {self.rollbacks} rollback{'s' * (self.rollbacks != 1)}" if self.rollbacks else ""
        return f"{reason} at step {state.step}{after} (try a lower optim.lr)"

    def rollback(self, state, reason: str) -> tuple[Snapshot, dict]:
        """Restore the older snapshot, lower the lr, skip the bad batches (the loader is not rewound); returns the
        snapshot (the caller takes its step and tokens) and the `guard/*` metrics of this rollback. The clock is
        not touched: the lost steps' seconds stay spent."""
        with self.clock.measure("guard"):
            snap = self.snapshots[0]
            self.snapshots = [snap]  # a newer one may hold the damage
            self.model.load_state_dict(snap.model)
            # load_state_dict keeps the tensors it is given: load a copy, so the snapshot can serve again
            self.optimizer.load_state_dict(copy.deepcopy(snap.optimizer))
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None and snap.scaler is not None:
                self.scaler.load_state_dict(snap.scaler)
            RngState.load_state_dict(snap.rng)
            self.recent_losses = list(snap.recent_losses)
            self.rollbacks += 1
            self.lr_scale *= self.cfg.lr_factor
            self.lr_spike_left = 0 if self.lr_spike_left >= 0 else -1  # a spike that broke the run is over
        return snap, {
            "guard/rollback": self.rollbacks,
            "guard/reason": reason,
            "guard/bad_step": state.step,
            "guard/to_step": snap.step,
            "guard/lr_scale": self.lr_scale,
        }
