"""Training: `train(cfg, run_dir)` builds a `Trainer` (trainer.py) over the parts built in run.py and calls its
`fit()` (see docs/ARCHITECTURE.md, "Training package")."""

from slovo.callbacks import Callback, Control
from slovo.train.state import Budget, Clock, TrainState
from slovo.train.step import StepResult, train_step
from slovo.train.trainer import Trainer, train

__all__ = [
    "Budget", "Callback", "Clock", "Control", "StepResult", "TrainState", "Trainer", "train", "train_step",
]  # fmt: skip
