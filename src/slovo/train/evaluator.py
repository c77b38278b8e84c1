"""Evals during and at the end of training: when they are due, which windows they score, the record, the samples
and the callbacks' `on_eval`. The evaluator owns its figures (the next eval point, the last and best evals) and
saves them through its own `state_dict`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from slovo import window_losses
from slovo.config import Config
from slovo.distributed import Dist
from slovo.evaluate import evaluate, in_training_windows, probe_window_seconds, subset_indices
from slovo.extra_evals import EvalExtras, suite_metrics
from slovo.generate import sample_texts
from slovo.terminal import TrainDisplay
from slovo.train.callbacks import Control
from slovo.train.guard import Diverged
from slovo.train.run import EvalData, Models
from slovo.train.run_folder import RunFolder
from slovo.train.state import Clock, OwnState, TrainState

LAST_EVAL_KEYS = ("eval/loss", "eval/bpb", "eval/bpb_se", "eval/perplexity", "eval/tokens", "eval/windows")
RECORD_KEYS = (
    "eval/loss", "eval/perplexity", "eval/bpb", "eval/bpb_se", "eval/runtime", "eval/tokens", "eval/windows"
)  # fmt: skip


@dataclass(frozen=True)
class Scoring:
    """How the evaluator runs a model: on which device, in which precision, over which ranks."""

    models: Models
    device: str
    autocast: object
    dist: Dist


class Evaluator(OwnState):
    """Evals score each rank's share of the windows. The final eval scores every window (ledger `final_eval`);
    evals during training score the same evenly spread subset every time (ledger `eval`), sized at the first of
    them from its measured speed so all of them take about `eval.max_fraction` of training time."""

    STATE_FIELDS = (
        "next_eval", "last_eval_train_time", "last_eval_step", "best_eval_loss", "best_eval_bpb",
        "best_eval_windows", "last_eval",
    )  # fmt: skip

    def __init__(
        self,
        cfg: Config,
        data: EvalData,
        scoring: Scoring,
        clock: Clock,
        folder: RunFolder,
        display: TrainDisplay,
        callbacks: tuple,
        extras: EvalExtras,
    ):
        self.cfg, self.data, self.scoring, self.clock = cfg, data, scoring, clock
        self.folder, self.display, self.callbacks = folder, display, callbacks
        self.note = data.note  # said once, at the first eval
        self.subset: np.ndarray | None = None  # window indices evals during training score, fixed at the first
        self.batch = cfg.eval.batch_size or cfg.train.per_device_train_batch_size
        # eval.extra and eval.suites, read before the run folder was written (a bad one is one line then); extra_s:
        # what scoring them takes at an eval during training, measured at the first, booked against max_fraction
        self.extras = extras
        self.extra_s: float | None = None
        self.next_eval = 1  # index of the next eval point (progress next_eval / eval.every)
        self.last_eval_train_time = 0.0
        self.last_eval_step = -1
        # best over the evals that scored the same windows (those during training, or every eval when none scored a
        # subset): a noisier subset eval and the full final eval are never mixed in one minimum
        self.best_eval_loss = math.inf
        self.best_eval_bpb = math.inf
        self.best_eval_windows = 0  # how many windows each of those evals scored; 0 none yet
        self.last_eval: dict = {}

    def summary(self) -> dict:
        """summary.json's eval figures: the last eval and the best."""
        return {
            **self.last_eval,
            "best/eval_loss": self.best_eval_loss if math.isfinite(self.best_eval_loss) else None,
            "best/eval_bpb": self.best_eval_bpb if math.isfinite(self.best_eval_bpb) else None,
            "best/eval_windows": self.best_eval_windows or None,  # the window count each eval of the best scored
        }

    def follow_budget(self, progress: float) -> None:
        """A run resumed under another budget: the eval points follow the new progress, so a longer run evaluates
        over its extension."""
        every = self.cfg.eval.every
        if every:
            self.next_eval = min(every, int(progress * every) + 1)

    def next_point(self, state: TrainState) -> int:
        """The eval point after the ones the run's progress has passed; with eval.every."""
        every, point = self.cfg.eval.every, self.next_eval
        while point < every and state.progress >= point / every:
            point += 1
        return point

    def should_eval(self, state: TrainState) -> bool:
        """Whether the run has passed its next eval point; decided from agreed values only."""
        cfg = self.cfg.eval
        if cfg.every_seconds:
            return state.train_time - self.last_eval_train_time >= cfg.every_seconds
        return bool(cfg.every) and self.next_point(state) != self.next_eval

    def maybe_run(self, state: TrainState, control: Control) -> dict | None:
        """Evaluate when due (the caller knows this is not the run's last step); the metrics, or None."""
        if not self.should_eval(state):
            return None
        self.next_eval = self.next_point(state)
        return self.run_eval(state, control, final=state.progress >= 1.0)

    def is_final_needed(self, state: TrainState) -> bool:
        """False only when the run stopped right after an eval that scored every window."""
        scored_all = self.last_eval.get("eval/windows") == len(self.data.windows)
        return self.last_eval_step != state.step or not scored_all

    def run_eval(self, state: TrainState, control: Control, final: bool) -> dict:
        """Score, keep the figures, write the record and the samples, call `on_eval`."""
        data, scoring = self.data, self.scoring
        scoring.models.gather_weights()  # FSDP: evals and samples use the whole weights
        if self.note:
            self.display.say(f"  eval: {self.note}")
            self.note = None
        with self.clock.measure("final_eval" if final else "eval"):
            extra = self._score_extras(final)  # first: the subset's size needs its time
            if not final and self.subset is None:
                # every rank measures (collectives); rank 0's size for all: each rank's own timing could differ
                self.subset = subset_indices(len(data.windows), scoring.dist.broadcast(self._subset_size(state)))
                self._say_subset()
            metrics = self._score(data.windows if final else data.windows[self.subset])
            per_window = metrics.pop("per_window_nats"), metrics.pop("per_window_bytes")
            if metrics["eval/windows"] == len(data.windows):
                self._save_window_losses(state, *per_window)
        if not math.isfinite(metrics["eval/loss"]):
            raise Diverged(f"eval loss became {metrics['eval/loss']} at step {state.step} (try a lower optim.lr)")
        self._keep(state, metrics)
        self.last_eval.update({k: v for k, v in extra.items() if k.endswith(("_acc", "_acc_se", "_pairs", "/bpb"))})
        metrics.update(extra)
        full = self.folder.record(state, {k: metrics[k] for k in RECORD_KEYS} | extra)
        self.display.eval_line(state, self.clock, metrics)
        if self.cfg.sample.enabled:
            with self.clock.measure("sample"):  # rank 0 samples; the others wait here, not on their budget clock
                if scoring.dist.is_main:
                    texts = sample_texts(scoring.models.model, data.tokenizer, self.cfg.sample, scoring.device)
                    self.folder.samples(state, texts)
                scoring.dist.barrier()
        for cb in self.callbacks:
            cb.on_eval(state, control, full)
        return metrics

    def _score(self, windows: np.ndarray) -> dict:
        s = self.scoring
        reduce = (lambda v: s.dist.sum(v, s.device)) if s.dist.enabled else None
        mine = windows[s.dist.rank :: s.dist.world]
        return evaluate(
            s.models.eval_model, mine, self.data.token_bytes, self.batch, s.device, s.autocast, reduce=reduce,
            per_window=True,
        )  # fmt: skip

    def _save_window_losses(self, state: TrainState, nats: np.ndarray, n_bytes: np.ndarray) -> None:
        """An eval of every window: its per-window losses in the run folder (`slovo.window_losses`), in window
        order, for comparisons paired window by window; each rank scored every world-th window."""
        dist, n = self.scoring.dist, len(self.data.windows)
        both = np.zeros(2 * n)
        both[dist.rank : n : dist.world] = nats
        both[n + dist.rank :: dist.world] = n_bytes
        if dist.enabled:
            both = np.asarray(dist.sum(both.tolist(), self.scoring.device))
        if dist.is_main:
            window_losses.save(self.folder.dir, both[:n], both[n:], state.step)

    def _score_extras(self, final: bool) -> dict:
        """eval.extra's bpb and eval.suites' accuracy (`extra_evals.suite_metrics`); every rank scores the same."""
        if not (self.extras.extra or self.extras.suites):
            return {}
        s, start = self.scoring, self.clock.now()
        # the plain model: a compiled one would recompile for every sentence length the suites bring
        extra = suite_metrics(
            s.models.model, self.extras, self.data.tokenizer, self.cfg, self.data.token_bytes, s.device, s.autocast,
            final,
        )  # fmt: skip
        if not final and self.extra_s is None:
            self.extra_s = self.clock.now() - start
        return extra

    def _subset_size(self, state: TrainState) -> int:
        """Windows each eval during training scores: a resumed run keeps the size it started with; else
        eval.subset_windows when set; else sized from this eval's measured speed and the number of evals to come."""
        if self.last_eval.get("eval/subset_windows"):
            return self.last_eval["eval/subset_windows"]
        cfg, windows, dist = self.cfg.eval, self.data.windows, self.scoring.dist
        if cfg.subset_windows:
            return min(cfg.subset_windows, len(windows))
        reduce = (lambda v: dist.sum(v, self.scoring.device)) if dist.enabled else None
        per_window = probe_window_seconds(
            self._score, windows, self.batch * dist.world, self.clock.now, reduce, dist.world
        )
        total = state.train_time / state.progress if state.progress > 0 else 0.0  # the run's training time
        evals = int(total // cfg.every_seconds) if cfg.every_seconds else cfg.every - 1
        other_s = self.extra_s or 0.0
        final_other_s = other_s * self.extras.final_cost_ratio()
        return in_training_windows(
            len(windows), per_window, total, evals, cfg.max_fraction, self.batch * dist.world, other_s, final_other_s
        )

    def _say_subset(self) -> None:
        n, of = len(self.subset), len(self.data.windows)
        if n < of:
            self.display.say(
                f"  eval: evals during training score {n} of the {of} eval windows ({self._subset_rule()}); "
                f"the final eval scores all"
            )

    def _subset_rule(self) -> str:
        cfg = self.cfg.eval
        return (
            f"eval.subset_windows={cfg.subset_windows}"
            if cfg.subset_windows
            else f"eval.max_fraction={cfg.max_fraction:g}"
        )

    def _keep(self, state: TrainState, metrics: dict) -> None:
        """The eval's figures (checkpointed with the evaluator; summary.json shows `last_eval`)."""
        subset = len(self.subset) if self.subset is not None else self.last_eval.get("eval/subset_windows")
        self.last_eval = {k: metrics[k] for k in LAST_EVAL_KEYS}
        if subset:  # a resumed run's evals during training score as many windows
            self.last_eval["eval/subset_windows"] = subset
        if self.data.val_documents is not None:
            self.last_eval["eval/val_documents"] = self.data.val_documents
        self.last_eval_train_time, self.last_eval_step = state.train_time, state.step
        self._keep_best(metrics)

    def _keep_best(self, metrics: dict) -> None:
        """`best/*` compares like with like: the minimum over the evals that scored the same windows as the first
        one (the subset evals during training; the final full eval joins only when it scored as many)."""
        windows = metrics["eval/windows"]
        if self.best_eval_windows and windows != self.best_eval_windows:
            return
        self.best_eval_windows = windows
        self.best_eval_loss = min(self.best_eval_loss, metrics["eval/loss"])
        self.best_eval_bpb = min(self.best_eval_bpb, metrics["eval/bpb"])
