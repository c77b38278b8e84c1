"""Evals during and at the end of training: when they are due, which windows they score, the record, the samples
and the callbacks' `on_eval`."""

from __future__ import annotations

import math

import numpy as np

from slovo import window_losses
from slovo.callbacks import Control
from slovo.evaluate import evaluate, in_training_windows, probe_window_seconds, subset_indices
from slovo.extra_evals import prepare_eval_extras, suite_metrics
from slovo.generate import sample_texts
from slovo.run_folder import RunFolder
from slovo.terminal import TrainDisplay
from slovo.train.guard import Diverged
from slovo.train.metrics import write_summary
from slovo.train.run import Run
from slovo.train.state import Clock, TrainState

LAST_EVAL_KEYS = ("eval/loss", "eval/bpb", "eval/bpb_se", "eval/perplexity", "eval/tokens", "eval/windows")
RECORD_KEYS = (
    "eval/loss", "eval/perplexity", "eval/bpb", "eval/bpb_se", "eval/runtime", "eval/tokens", "eval/windows"
)  # fmt: skip


class Evaluator:
    """Evals score each rank's share of the windows. The final eval scores every window (ledger `final_eval`);
    evals during training score the same evenly spread subset every time (ledger `eval`), sized at the first of
    them from its measured speed so all of them take about `eval.max_fraction` of training time."""

    def __init__(self, run: Run, clock: Clock, folder: RunFolder, display: TrainDisplay, callbacks, extras=None):
        self.run, self.clock, self.folder, self.display, self.callbacks = run, clock, folder, display, callbacks
        self.note = run.eval_note  # said once, at the first eval
        self.subset: np.ndarray | None = None  # window indices evals during training score, fixed at the first
        self.batch = run.cfg.eval.batch_size or run.cfg.train.per_device_train_batch_size
        # eval.extra and eval.suites (`extras`: read by the caller before the run folder is written, so a bad one
        # is one line then); extra_s: what scoring them takes at an eval during training, measured at the first,
        # booked against eval.max_fraction
        self.extras = extras if extras is not None else prepare_eval_extras(run.cfg, run.tokenizer)
        self.extra_s: float | None = None

    def next_point(self, state: TrainState) -> int:
        """The eval point (`state.next_eval`) after the ones the run's progress has passed; with eval.every."""
        every, point = self.run.cfg.eval.every, state.next_eval
        while point < every and state.progress >= point / every:
            point += 1
        return point

    def due(self, state: TrainState) -> bool:
        """Whether the run has passed its next eval point; decided from agreed values only."""
        cfg = self.run.cfg.eval
        if cfg.every_seconds:
            return state.train_time - state.last_eval_train_time >= cfg.every_seconds
        return bool(cfg.every) and self.next_point(state) != state.next_eval

    def maybe_run(self, state: TrainState, control: Control) -> None:
        """Evaluate when due (the caller knows this is not the run's last step)."""
        if self.due(state):
            state.next_eval = self.next_point(state)
            self.run_eval(state, control, final=state.progress >= 1.0)

    def is_final_needed(self, state: TrainState) -> bool:
        """False only when the run stopped right after an eval that scored every window."""
        scored_all = state.last_eval.get("eval/windows") == len(self.run.windows)
        return state.last_eval_step != state.step or not scored_all

    def run_eval(self, state: TrainState, control: Control, final: bool) -> dict:
        """Score, keep the figures in `state`, write the record, the samples and the summary, call `on_eval`."""
        run = self.run
        run.gather_weights()  # FSDP: evals and samples use the whole weights
        if self.note:
            self.display.say(f"  eval: {self.note}")
            self.note = None
        with self.clock.measure("final_eval" if final else "eval"):
            extra = self._score_extras(final)  # first: the subset's size needs its time
            if not final and self.subset is None:
                # every rank measures (collectives); rank 0's size for all: each rank's own timing could differ
                self.subset = subset_indices(len(run.windows), run.dist.broadcast(self._subset_size(state)))
                self._say_subset()
            metrics = self._score(run.windows if final else run.windows[self.subset])
            per_window = metrics.pop("per_window_nats"), metrics.pop("per_window_bytes")
            if metrics["eval/windows"] == len(run.windows):
                self._save_window_losses(state, *per_window)
        if not math.isfinite(metrics["eval/loss"]):
            raise Diverged(f"eval loss became {metrics['eval/loss']} at step {state.step} (try a lower optim.lr)")
        self._keep(state, metrics)
        state.last_eval.update({k: v for k, v in extra.items() if k.endswith(("_acc", "_acc_se", "_pairs", "/bpb"))})
        metrics.update(extra)
        full = self.folder.record(state, {k: metrics[k] for k in RECORD_KEYS} | extra)
        self.display.eval_line(state, self.clock, metrics)
        if run.cfg.sample.enabled:
            with self.clock.measure("sample"):  # rank 0 samples; the others wait here, not on their budget clock
                if run.dist.is_main:
                    self.folder.samples(state, sample_texts(run.model, run.tokenizer, run.cfg.sample, run.device))
                run.dist.barrier()
        for cb in self.callbacks:
            cb.on_eval(state, control, full)
        write_summary(run, self.folder, state, self.clock, "running")
        return metrics

    def _score(self, windows: np.ndarray) -> dict:
        run, dist = self.run, self.run.dist
        reduce = (lambda v: dist.sum(v, run.device)) if dist.enabled else None
        mine = windows[dist.rank :: dist.world]
        return evaluate(
            run.eval_model, mine, run.token_bytes, self.batch, run.device, run.autocast, reduce=reduce, per_window=True
        )

    def _save_window_losses(self, state: TrainState, nats: np.ndarray, n_bytes: np.ndarray) -> None:
        """An eval of every window: its per-window losses in the run folder (`slovo.window_losses`), in window
        order, for comparisons paired window by window; each rank scored every world-th window."""
        run, dist, n = self.run, self.run.dist, len(self.run.windows)
        both = np.zeros(2 * n)
        both[dist.rank : n : dist.world] = nats
        both[n + dist.rank :: dist.world] = n_bytes
        if dist.enabled:
            both = np.asarray(dist.sum(both.tolist(), run.device))
        if dist.is_main:
            window_losses.save(self.folder.dir, both[:n], both[n:], state.step)

    def _score_extras(self, final: bool) -> dict:
        """eval.extra's bpb and eval.suites' accuracy (`extra_evals.suite_metrics`); every rank scores the same."""
        if not (self.extras.extra or self.extras.suites):
            return {}
        run, start = self.run, self.clock.now()
        # the plain model: a compiled one would recompile for every sentence length the suites bring
        extra = suite_metrics(
            run.model, self.extras, run.tokenizer, run.cfg, run.token_bytes, run.device, run.autocast, final
        )
        if not final and self.extra_s is None:
            self.extra_s = self.clock.now() - start
        return extra

    def _subset_size(self, state: TrainState) -> int:
        """Windows each eval during training scores: a resumed run keeps the size it started with; else
        eval.subset_windows when set; else sized from this eval's measured speed and the number of evals to come."""
        if state.last_eval.get("eval/subset_windows"):
            return state.last_eval["eval/subset_windows"]
        run, cfg = self.run, self.run.cfg.eval
        if cfg.subset_windows:
            return min(cfg.subset_windows, len(run.windows))
        dist = run.dist
        reduce = (lambda v: dist.sum(v, run.device)) if dist.enabled else None
        per_window = probe_window_seconds(
            self._score, run.windows, self.batch * dist.world, self.clock.now, reduce, dist.world
        )
        total = state.train_time / state.progress if state.progress > 0 else 0.0  # the run's training time
        evals = int(total // cfg.every_seconds) if cfg.every_seconds else cfg.every - 1
        other_s = self.extra_s or 0.0
        final_other_s = other_s * self.extras.final_cost_ratio()
        return in_training_windows(
            len(run.windows),
            per_window,
            total,
            evals,
            cfg.max_fraction,
            self.batch * dist.world,
            other_s,
            final_other_s,
        )

    def _say_subset(self) -> None:
        n, of = len(self.subset), len(self.run.windows)
        if n < of:
            self.display.say(
                f"  eval: evals during training score {n} of the {of} eval windows ({self._subset_rule()}); "
                f"the final eval scores all"
            )

    def _subset_rule(self) -> str:
        cfg = self.run.cfg.eval
        return (
            f"eval.subset_windows={cfg.subset_windows}"
            if cfg.subset_windows
            else f"eval.max_fraction={cfg.max_fraction:g}"
        )

    def _keep(self, state: TrainState, metrics: dict) -> None:
        """The eval's figures into `state` (checkpointed; summary.json shows `last_eval`)."""
        subset = len(self.subset) if self.subset is not None else state.last_eval.get("eval/subset_windows")
        state.last_eval = {k: metrics[k] for k in LAST_EVAL_KEYS}
        if subset:  # a resumed run's evals during training score as many windows
            state.last_eval["eval/subset_windows"] = subset
        val_documents = (self.run.ds.meta.get("split") or {}).get("val_documents")
        if val_documents is not None:
            state.last_eval["eval/val_documents"] = val_documents
        state.last_eval_train_time, state.last_eval_step = state.train_time, state.step
        self._keep_best(state, metrics)

    @staticmethod
    def _keep_best(state: TrainState, metrics: dict) -> None:
        """`best/*` compares like with like: the minimum over the evals that scored the same windows as the first
        one (the subset evals during training; the final full eval joins only when it scored as many)."""
        windows = metrics["eval/windows"]
        if state.best_eval_windows and windows != state.best_eval_windows:
            return
        state.best_eval_windows = windows
        state.best_eval_loss = min(state.best_eval_loss, metrics["eval/loss"])
        state.best_eval_bpb = min(state.best_eval_bpb, metrics["eval/bpb"])
