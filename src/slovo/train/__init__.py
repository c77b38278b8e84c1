"""Training: `train(cfg, run_dir)` runs the loop in loop.py over the parts built in run.py (see
docs/ARCHITECTURE.md, "Training package")."""

from slovo.callbacks import Callback, Control
from slovo.train.loop import StepResult, train, train_step
from slovo.train.state import Budget, Clock, TrainState

__all__ = ["Budget", "Callback", "Clock", "Control", "StepResult", "TrainState", "train", "train_step"]
