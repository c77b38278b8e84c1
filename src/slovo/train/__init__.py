"""Training: `train(cfg, run_dir)` builds a `Trainer` (trainer.py) over the parts built in run.py and calls its
`fit()` (see docs/ARCHITECTURE.md, "Training package").

The names below load on first use, so `slovo.train.checkpoint` (read by generate, eval, export and tune) does not
bring the whole training stack with it."""

from __future__ import annotations

import importlib

_WHERE = {
    "Budget": "slovo.train.state",
    "Clock": "slovo.train.state",
    "TrainState": "slovo.train.state",
    "Callback": "slovo.train.callbacks",
    "Control": "slovo.train.callbacks",
    "StepResult": "slovo.train.trainer",
    "Trainer": "slovo.train.trainer",
    "train": "slovo.train.trainer",
    "train_step": "slovo.train.trainer",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'slovo.train' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
