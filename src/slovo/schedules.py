"""Learning-rate schedules as pure functions of progress (0..1) and optimizer step.

`lr_factor(cfg, progress, step)` is the multiplier on the peak lr. Progress is training time /
time budget when a time budget is set (else steps or tokens over their limit), so every shape's
cooldown ends at the deadline. Warmup is a ramp multiplied onto the shape; it counts in steps
when `warmup >= 1`, else in progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from slovo.errors import need, one_of


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: warmup, then a shape, keyed on progress in [0, 1].

    Progress is training time / time budget when a time budget is set (so a cooldown ends at the
    deadline whatever the throughput), else steps / max_steps or tokens / max_tokens.
    """

    name: str = "wsd"  # one of slovo.schedules.SHAPES: constant, step_drop, triangular, cosine, wsd
    warmup: float = 0.02  # below 1: a fraction of progress; 1 or more: a number of optimizer steps
    min_lr_ratio: float = 0.0  # floor as a fraction of the peak lr (cosine, wsd, triangular's low point)
    # step_drop: multiply the lr by drop_factor at each listed step and/or progress point
    drop_steps: list[int] = field(default_factory=list)  # optimizer steps at which to drop
    drop_at: list[float] = field(default_factory=list)  # progress points at which to drop
    drop_factor: float = 0.1  # lr multiplier applied at every drop
    # triangular: lr goes min -> peak -> min once per cycle
    cycle: float = 0.2  # cycle length; below 1: a fraction of progress, else optimizer steps
    # wsd: warmup - stable - decay
    decay_fraction: float = 0.2  # last fraction of progress spent decaying
    decay_shape: str = "linear"  # one of slovo.schedules.DECAY_SHAPES: linear, 1-sqrt, cosine

    def __post_init__(self):
        one_of("schedule.name", self.name, SHAPES)
        one_of("schedule.decay_shape", self.decay_shape, DECAY_SHAPES)
        need(self.warmup >= 0, f"schedule.warmup: must be 0 or more, got {self.warmup}")
        need(0 <= self.min_lr_ratio <= 1, f"schedule.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        need(self.drop_factor > 0, f"schedule.drop_factor: must be positive, got {self.drop_factor}")
        need(
            all(0 < p < 1 for p in self.drop_at),
            f"schedule.drop_at: progress points must be in (0, 1), got {self.drop_at}",
        )
        need(all(x > 0 for x in self.drop_steps), f"schedule.drop_steps: steps must be positive, got {self.drop_steps}")
        need(self.cycle > 0, f"schedule.cycle: must be positive, got {self.cycle}")
        need(0 < self.decay_fraction <= 1, f"schedule.decay_fraction: must be in (0, 1], got {self.decay_fraction}")
        if self.name == "step_drop":
            need(
                bool(self.drop_steps or self.drop_at),
                "schedule.name=step_drop needs schedule.drop_steps or schedule.drop_at",
            )


def warmup_factor(cfg: ScheduleConfig, progress: float, step: int) -> float:
    if cfg.warmup <= 0:
        return 1.0
    if cfg.warmup >= 1:  # a number of optimizer steps; step 0 already gets a small positive lr
        return min(1.0, (step + 1) / (cfg.warmup + 1))
    return min(1.0, max(progress, 0.0) / cfg.warmup)


def _constant(cfg: ScheduleConfig, progress: float, step: int) -> float:
    return 1.0


def _step_drop(cfg: ScheduleConfig, progress: float, step: int) -> float:
    """Drop the lr after N steps (a hand-written HF Trainer scheduler does this): multiply it by drop_factor at each
    drop step / progress point passed."""
    drops = sum(step >= s for s in cfg.drop_steps) + sum(progress >= p for p in cfg.drop_at)
    return cfg.drop_factor**drops


def _triangular(cfg: ScheduleConfig, progress: float, step: int) -> float:
    """Cyclic: min -> peak -> min once per cycle (cycle in progress if < 1, else in steps)."""
    x = progress if cfg.cycle < 1 else float(step)
    u = (x % cfg.cycle) / cfg.cycle
    tri = 1.0 - abs(2.0 * u - 1.0)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * tri


def _cosine(cfg: ScheduleConfig, progress: float, step: int) -> float:
    """Cosine from peak to the floor; starts after a progress-based warmup, so it ends exactly at progress 1."""
    start = cfg.warmup if 0 < cfg.warmup < 1 else 0.0
    t = min(1.0, max(0.0, (progress - start) / (1.0 - start)))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


# Cooldown shapes for wsd: 1 at t=0 down to 0 at t=1.
DECAY_SHAPES: dict[str, Callable[[float], float]] = {
    "linear": lambda t: 1.0 - t,
    "1-sqrt": lambda t: 1.0 - math.sqrt(t),
    "cosine": lambda t: 0.5 * (1.0 + math.cos(math.pi * t)),
}


def decay_shape(shape: str, t: float) -> float:
    """1 at t=0 down to 0 at t=1."""
    return DECAY_SHAPES[shape](min(1.0, max(0.0, t)))


def _wsd(cfg: ScheduleConfig, progress: float, step: int) -> float:
    """Warmup-stable-decay: peak until 1 - decay_fraction, then decay to the floor at progress 1."""
    decay_start = 1.0 - cfg.decay_fraction
    if progress <= decay_start:
        return 1.0
    t = (progress - decay_start) / cfg.decay_fraction
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * decay_shape(cfg.decay_shape, t)


# Schedules by `schedule.name`. Adding one: a function (cfg, progress, step) -> factor, an entry here, a test.
SHAPES: dict[str, Callable[[ScheduleConfig, float, int], float]] = {
    "constant": _constant,
    "step_drop": _step_drop,
    "triangular": _triangular,
    "cosine": _cosine,
    "wsd": _wsd,
}


def decay_start(cfg: ScheduleConfig) -> float | None:
    """Progress at which the lr leaves its peak for good, for schedules that hold a peak and then decay to the
    deadline (wsd; step_drop with progress points), else None.

    The training loop saves a checkpoint there, and a run resumed with a larger budget continues from it: the
    stable phase runs on and a new decay ends at the new deadline (the WSD way of extending a run). A cosine decays
    from its first step, so it has no such point (extending one continues from its end); step_drop's `drop_steps`
    are optimizer steps, which a larger budget does not move."""
    if cfg.name == "wsd":
        return 1.0 - cfg.decay_fraction
    if cfg.name == "step_drop" and cfg.drop_at:
        return min(cfg.drop_at)
    return None


def lr_factor(cfg: ScheduleConfig, progress: float, step: int) -> float:
    """Multiplier on the peak learning rate at this point of the run."""
    return warmup_factor(cfg, progress, step) * SHAPES[cfg.name](cfg, progress, step)
