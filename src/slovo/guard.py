"""The divergence guard: a run that blows up goes back to its last good state and goes on with a lower lr.

After every step the loop asks `check` whether the step diverged:
  - a non-finite loss;
  - a non-finite grad norm, except under fp16's GradScaler: there an overflow is a step the scaler skips while it
    lowers its scale, which is how fp16 training works, not a divergence (a non-finite loss still is one);
  - a loss spike: the loss above `guard.spike_factor` x the median of the last `guard.spike_window` losses (from
    the 5th step on). The median, not the mean, so one earlier outlier does not raise the bar; early in a run the
    loss falls, so the median of the past lies above the present and warmup never looks like a spike.
The loop passes the loss and the non-finite flag the ranks agreed on (`Dist.agree_step`), and the loss history is
made of agreed losses, so under torchrun every rank takes the same decision at the same step.

On a divergence (`rollback`) the guard restores the older of its two in-memory snapshots (weights, optimizer and
GradScaler state, RNG; the step and token counts and the loss history of that moment), multiplies the peak lr by
`guard.lr_factor` for the rest of the run, and leaves the data loader where it is, so the batches of the
discarded steps are skipped. The training clock is not rewound: the seconds spent on the discarded steps stay
spent. After `guard.max_rollbacks` rollbacks the next divergence fails the run. `TrainState` carries the lr
scale, the rollback count, the loss history and the state of the debug lr spike, so all survive a resume.

Snapshots: every `guard.snapshot_every` steps (default 5), after a step that passed the check, a copy of the
model's and the optimizer's state on their own device (a clone of every tensor); by step, which every rank
agrees on. Two are kept and a rollback takes the older, 6 to 10 steps back: a step's loss measures the weights
*before* that step's update, and damage can take a few more steps to grow into a spike (an lr spike that began
at step 12 showed at step 14 on ruslit-8k), so the newest snapshot may already hold it. Why not fewer steps
apart: a 60 s CPU run on a busy machine snapshotted every step restored a state two steps old that was already
damaged. Why not more: every snapshot interval is steps a rollback throws away. The copies cost memory (two of
weights + optimizer state: with AdamW 6x the weights) and time, kept off the budget clock in the ledger's `guard`
entry like a checkpoint's, so they cost wall time but never training. On the development CPU (2 cores) a
snapshot of the tiny preset (4.5M parameters, AdamW, vocabulary 8192) took a median 7.6 ms against 333 ms per
step (5 of each), so every 5 steps adds ~0.5% of wall time; with the machine overloaded by other jobs, 0.44 s
against 5.5 s. On a GPU it is a device-to-device copy.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from slovo.budget import Clock
    from slovo.config import GuardConfig, LrSpikeConfig


SPIKE_MIN_HISTORY = 5  # losses seen before the spike check starts (a short run's window may never fill)


@dataclass
class Snapshot:
    step: int
    tokens: int
    recent_losses: list[float]
    model: dict
    optimizer: dict
    scaler: dict | None
    rng: dict


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class DivergenceGuard:
    """Detects a diverging step and rolls the run back to a snapshot (see the module doc)."""

    def __init__(
        self, cfg: GuardConfig, lr_spike: LrSpikeConfig, model: torch.nn.Module, optimizer, scaler, clock: Clock
    ):
        self.cfg, self.lr_spike = cfg, lr_spike
        self.model, self.optimizer, self.scaler, self.clock = model, optimizer, scaler, clock
        self.snapshots: list[Snapshot] = []

    # ---- the lr ---------------------------------------------------------------------------------------------

    def lr_multiplier(self, state, say: Callable[[str], None] | None = None) -> float:
        """What multiplies the schedule's lr this step: the scale left by rollbacks, times the debug lr spike while
        it lasts (`debug.lr_spike`: fires once, when progress first reaches `at`, for `steps` steps)."""
        multiplier = state.lr_scale
        spike = self.lr_spike
        if state.lr_spike_left < 0 and spike.at is not None and state.progress >= spike.at:
            state.lr_spike_left = spike.steps
            if say:
                say(
                    f"[yellow]debug.lr_spike: the lr x {spike.factor:g} for {spike.steps} steps "
                    f"from step {state.step + 1}[/]"
                )
        if state.lr_spike_left > 0:
            state.lr_spike_left -= 1
            multiplier *= spike.factor
        return multiplier

    # ---- detecting --------------------------------------------------------------------------------------------

    def check(self, state, loss: float, nonfinite: bool, grad_norm: float) -> str | None:
        """Why this step diverged, or None. `loss` and `nonfinite` are the values the ranks agreed on; `nonfinite`
        is already false for a grad-norm overflow under a GradScaler (see the module doc)."""
        if not math.isfinite(loss):
            return f"loss became {loss}"
        if nonfinite:
            return f"the grad norm became {grad_norm} (loss {loss:.4g})"
        history = state.recent_losses
        if self.cfg.spike_factor and len(history) >= min(SPIKE_MIN_HISTORY, self.cfg.spike_window):
            median = statistics.median(history)
            if loss > self.cfg.spike_factor * median:
                return (
                    f"loss spiked to {loss:.4g}, {loss / median:.1f}x the median {median:.4g} "
                    f"of the last {len(history)} steps"
                )
        return None

    def accept(self, state, loss: float) -> None:
        """A healthy step: its loss joins the history, and a snapshot is taken when one is due (module doc)."""
        state.recent_losses = (state.recent_losses + [loss])[-self.cfg.spike_window :]
        if not self.cfg.enabled:
            return
        if not self.snapshots or state.step - self.snapshots[-1].step >= self.cfg.snapshot_every:
            self.snapshot(state)

    # ---- snapshots and rollback -----------------------------------------------------------------------------------

    def snapshot(self, state) -> None:
        """Copy what a rollback restores; keeps the newest two."""
        if not self.cfg.enabled:
            return
        with self.clock.measure("guard"):
            snap = Snapshot(
                step=state.step,
                tokens=state.tokens,
                recent_losses=list(state.recent_losses),
                model={k: v.detach().clone() for k, v in self.model.state_dict().items()},
                optimizer=copy.deepcopy(self.optimizer.state_dict()),
                scaler=self.scaler.state_dict() if self.scaler is not None else None,
                rng=rng_state(),
            )
            self.snapshots = (self.snapshots + [snap])[-2:]

    def can_roll_back(self, state) -> bool:
        return self.cfg.enabled and bool(self.snapshots) and state.rollbacks < self.cfg.max_rollbacks

    def failure(self, state, reason: str) -> str:
        """The one line a run that diverged for good ends with."""
        after = f" after {state.rollbacks} rollback{'s' * (state.rollbacks != 1)}" if state.rollbacks else ""
        return f"{reason} at step {state.step}{after} (try a lower optim.lr)"

    def rollback(self, state, reason: str) -> dict:
        """Restore the older snapshot, lower the lr, skip the bad batches (the loader is not rewound); returns the
        `guard/*` metrics of this rollback. The clock is not touched: the lost steps' seconds stay spent."""
        with self.clock.measure("guard"):
            snap = self.snapshots[0]
            self.snapshots = [snap]  # a newer one may hold the damage
            bad_step = state.step
            self.model.load_state_dict(snap.model)
            # load_state_dict keeps the tensors it is given: load a copy, so the snapshot can serve again
            self.optimizer.load_state_dict(copy.deepcopy(snap.optimizer))
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None and snap.scaler is not None:
                self.scaler.load_state_dict(snap.scaler)
            set_rng_state(snap.rng)
            state.step, state.tokens, state.recent_losses = snap.step, snap.tokens, list(snap.recent_losses)
            state.rollbacks += 1
            state.lr_scale *= self.cfg.lr_factor
            state.lr_spike_left = 0 if state.lr_spike_left >= 0 else -1  # a spike that broke the run is over
        return {
            "guard/rollback": state.rollbacks,
            "guard/reason": reason,
            "guard/bad_step": bad_step,
            "guard/to_step": snap.step,
            "guard/lr_scale": state.lr_scale,
        }
