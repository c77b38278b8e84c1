"""`slovo tune`: which model size, batch and lr make the most of this much time on this machine.

The total time is spent in two parts on one clock. The probe phase (`--probe-fraction`, 25% by default)
measures this machine's tokens/s for a few depth x width shapes, picks candidate sizes with a stated rule
(Chinchilla's loss law at the tokens each shape would see here; `slovo.tune.plan` says why not a fixed
20 tokens/param) and runs short probes of lr (and batch where it matters) on them as one ordinary slovo sweep
with successive halving. The final run trains the winner for the rest of the time as an ordinary run folder,
its cooldown ending at the overall deadline. Killed and run again with the same arguments, a tune continues:
finished probes are not rerun (the sweep's journal) and the final run resumes from its checkpoint.

`plan` measures and decides; `run` drives the phases and writes tune/NAME/ (see its docstring).
"""

from slovo.tune.plan import Plan, Shape, horizon_lr, make_plan, predicted_loss
from slovo.tune.run import MIN_TOTAL_S, WallClock, run_tune

__all__ = ["MIN_TOTAL_S", "Plan", "Shape", "WallClock", "horizon_lr", "make_plan", "predicted_loss", "run_tune"]
