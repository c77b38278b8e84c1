"""The training run as one object: `Trainer(cfg, run_dir, ...)` builds the run and its components, `fit()` trains,
and each step reads

    set the lr -> train_step -> ranks agree (one collective) -> guard -> log -> evaluator -> checkpointer -> stop?

Each component decides for itself when to act (`evaluator.maybe_run` evaluates when an eval is due,
`checkpointer.save` saves when one is due) and keeps its own state (`state_dict` / `load_state_dict`); the Trainer
alone writes `TrainState`. The run ends with a final eval, a final checkpoint and the summary. Time spent on eval,
samples, checkpoints and compile warm-up goes to the ledger, not the budget. Callbacks (`Callback`, HF Trainer
style) see the state after each log and eval and may ask the run to stop through `Control`; it stops after the
current step.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

import slovo.optim
from slovo.config import Config, require_budget
from slovo.distributed import Agreed, Dist
from slovo.extra_evals import prepare_eval_extras
from slovo.schedules import lr_factor
from slovo.terminal import TrainDisplay
from slovo.train.callbacks import Control, StopOnSigint
from slovo.train.checkpoint import clean_staging
from slovo.train.checkpointer import Checkpointer, check_same_data
from slovo.train.evaluator import Evaluator, Scoring
from slovo.train.guard import Diverged, DivergenceGuard
from slovo.train.metrics import Throughput, TrainMetrics
from slovo.train.run import build_run, remember_speed, warn_slow_bf16
from slovo.train.run_folder import RunFolder, now_iso, run_figures
from slovo.train.runlock import RunLock
from slovo.train.state import Budget, Clock, RngState, TrainState


@dataclass
class StepResult:
    loss: float  # mean loss over the accumulated micro-batches (this rank)
    grad_norm: float  # global grad norm before clipping
    data_time: float  # seconds spent fetching batches


def train_step(
    *, model, optimizer, loader, accumulation: int, grad_clip: float, autocast, scaler, dist, clock
) -> StepResult:
    """One optimizer step: forward/backward over `accumulation` micro-batches, clip, step, zero the grads."""
    data_time = 0.0
    loss_sum = torch.zeros((), device=loader.device)
    for micro in range(accumulation):
        t = clock.now()
        x, y = loader.next_batch()
        data_time += clock.now() - t
        with dist.no_sync(model, micro == accumulation - 1), autocast or nullcontext():
            _, loss = model(x, y)
            loss = loss / accumulation
        loss_sum += loss.detach()
        (scaler.scale(loss) if scaler else loss).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor whose local value is this rank's shards' norm
        grad_norm = grad_norm.full_tensor()
    if scaler is not None:
        scaler.step(optimizer)  # skips the step when the grads overflowed
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    t = clock.now()
    loader.prefetch()  # the next step's first batch, while the card still works on this one
    data_time += clock.now() - t
    # the step's one wait for the card: both figures in one copy (the step's time is then real)
    loss, norm = torch.stack([loss_sum.float(), torch.as_tensor(grad_norm, dtype=torch.float32)]).tolist()
    return StepResult(loss, norm, data_time)


def train(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    callbacks: tuple | list = (),
    clock: Clock | None = None,
    quiet: bool = False,
) -> dict:
    """Train `cfg` into `run_dir` until the budget is spent; returns the summary (also in summary.json).

    The run folder is locked (`slovo.train.runlock`) while this process trains in it: a second writer fails with
    one line naming the holder, before anything is written."""
    run_dir = Path(run_dir)
    require_budget(cfg)
    dist = Dist()
    lock = RunLock(run_dir).acquire() if dist.is_main else None
    try:
        if dist.is_main:
            clean_staging(run_dir)  # what killed checkpoint saves left behind
        dist.barrier()  # no rank looks for a checkpoint while rank 0 tidies the folder
        trainer = Trainer(cfg, run_dir, dist, resume=resume, callbacks=callbacks, clock=clock, quiet=quiet)
        return trainer.fit()
    finally:
        if lock is not None:
            lock.release()


class Trainer:
    """One run: the fixed parts (`run`), the state the ranks agree on (`state`) and the components."""

    def __init__(self, cfg: Config, run_dir: Path, dist: Dist, *, resume=False, callbacks=(), clock=None, quiet=False):
        self.cfg, self.dir, self.dist, self.clock = cfg, Path(run_dir), dist, clock or Clock()
        self.budget = Budget.from_config(cfg)
        self.display = TrainDisplay(quiet=quiet or not dist.is_main)
        self.run = run = build_run(cfg, dist, self.budget)
        extras = prepare_eval_extras(cfg, run.eval_data.tokenizer)  # eval.extra, eval.suites: a bad one stops here
        self.state, self.control, self.callbacks = TrainState(), Control(), tuple(callbacks)
        self.folder = RunFolder(self.dir, cfg, writer=dist.is_main)  # opened once a resume has found its step
        say = self.display.say
        self.guard = DivergenceGuard(
            cfg.guard, cfg.debug.lr_spike, run.models.trained, run.optimizer, run.scaler, self.clock, say
        )
        rates = Throughput(run.flops_per_token, run.peak_flops, dist.world, len(run.ds.train))
        self.metrics = TrainMetrics(cfg.train, rates, self.folder, self.clock, compiled=run.compiled)
        scoring = Scoring(run.models, run.device, run.autocast, dist)
        self.evaluator = Evaluator(
            cfg, run.eval_data, scoring, self.clock, self.folder, self.display, self.callbacks, extras
        )
        fsdp = cfg.distributed.strategy == "fsdp"  # a sharded checkpoint keeps the optimizer in its dcp/ folder
        states = {
            "train": self.state, "evaluator": self.evaluator, "guard": self.guard,
            "optimizer": None if fsdp else run.optimizer, "scaler": run.scaler, "loader": run.loader,
            "clock": self.clock, "rng": RngState(),
        }  # fmt: skip
        self.checkpointer = Checkpointer(
            self.dir, cfg.checkpoint, cfg.schedule, run.models, run.optimizer, states, self.clock, say, fsdp=fsdp
        )
        if resume:
            self._resume()
        self.folder.open(resume=resume, resume_step=self.state.step)
        self.folder.describe(run.description(self.budget), run.ds.tokenizer_path, resume)
        self.write_summary("running")
        self._say_start()
        warn_slow_bf16(run, self.clock, say)
        self.guard.snapshot(self.state)

    def fit(self) -> dict:
        """Train until a budget limit, a callback or a stop signal (Ctrl-C, SIGTERM) ends the run; then the final eval,
        the last checkpoint and the summary, which it returns."""
        state, guard, clock, budget = self.state, self.guard, self.clock, self.budget
        stop = budget.exhausted(state.train_time, state.step, state.tokens)
        try:
            with StopOnSigint(self.display.say) as sigint, self.display.progress_bar(budget):
                clock.start_lap()
                while stop is None:
                    # the rollbacks' lr scale multiplies the schedule, not the groups' `initial_lr`: a restored
                    # optimizer state dict brings its saved `initial_lr` back, so the factor is set every step
                    factor = lr_factor(self.cfg.schedule, state.progress, state.step) * guard.before_step(state)
                    slovo.optim.set_lr_factor(self.run.optimizer, factor)
                    result, agreed = self._step(stop_wish=sigint.requested)
                    diverged = guard.check(agreed.loss, agreed.nonfinite, result.grad_norm)
                    if diverged is not None:
                        self._roll_back(diverged)
                    else:
                        guard.accept(state, agreed.loss)
                        self._log(agreed.loss, learning_rates(self.cfg, factor), result.grad_norm)
                    stop = "interrupted" if agreed.stop else self._stop_reason()
                    if diverged is None:
                        if stop is None:  # the last step's eval is the final one
                            if self.evaluator.maybe_run(state, self.control) is not None:
                                self.write_summary("running")
                            stop = self._stop_reason()
                        self.checkpointer.save(state)
            status = stop if stop in ("interrupted", "pruned") else "finished"
            if self.evaluator.is_final_needed(state):  # not when it stopped right after a full eval
                self.evaluator.run_eval(state, self.control, final=True)
                self.write_summary("running")
            self.checkpointer.save(state, last_step=True, finished=status == "finished")
        except Diverged as e:
            status = "failed"
            self.folder.summary["error"] = str(e)
            self.display.say(f"[red]stopped: {e}[/]")
        except BaseException as e:
            self._crashed(e, stop)
            raise
        return self._finish(status, stop)

    def write_summary(self, status: str, **extra) -> dict:
        """summary.json with the run's figures as they are now: the evaluator's, the run's, the guard's."""
        run = self.run
        figures = run_figures(
            self.state, self.clock.ledger, len(run.ds.train), self.cfg.model.seq_len, run.flops_per_token
        )
        figures = {**self.evaluator.summary(), **figures, **self.guard.summary()}
        return self.folder.write_summary(status, figures, **extra)

    # ---- the steps fit() takes -----------------------------------------------------------------------------------

    def _resume(self) -> None:
        """The newest good checkpoint into every component; a run resumed under another budget follows it
        (progress, the eval points, the decay-start checkpoint)."""
        check_same_data(self.dir, self.run.ds)
        self.checkpointer.restore(self.budget)
        state = self.state
        self.display.say(
            f"resuming [bold]{self.dir}[/] from step {state.step} ({state.train_time:.1f}s of training spent)"
        )
        progress = self.budget.progress_of(state)
        if progress != state.progress:
            state.progress = progress
            self.evaluator.follow_budget(progress)
            self.checkpointer.follow_budget(progress)
        self.metrics.restart(state)

    def _step(self, stop_wish: bool) -> tuple[StepResult, Agreed]:
        """`train_step`, its lap on the ledger (with the bookkeeping since the previous step), and the ranks' one
        agreement on the loss, the clock and stopping; the state moves on by a step, in agreed time and progress."""
        run, state, clock = self.run, self.state, self.clock
        result = train_step(
            model=run.models.train_model,
            optimizer=run.optimizer,
            loader=run.loader,
            accumulation=self.cfg.train.gradient_accumulation_steps,
            grad_clip=self.cfg.optim.grad_clip,
            autocast=run.autocast,
            scaler=run.scaler,
            dist=self.dist,
            clock=clock,
        )
        self.metrics.step_timed(result.data_time)
        state.step += 1
        state.tokens += run.tokens_per_step
        nonfinite = not math.isfinite(result.loss) or (run.scaler is None and not math.isfinite(result.grad_norm))
        agreed = self.dist.agree_step(result.loss, clock.train_time, stop_wish, nonfinite, run.device)
        state.train_time = agreed.train_time
        state.progress = self.budget.progress_of(state)
        return result, agreed

    def _log(self, loss: float, lrs: dict, grad_norm: float) -> None:
        """The bar; the step's loss into the log window; when a train record is written, the callbacks' `on_log`."""
        self.display.show_step(self.state, self.clock, loss, *lrs.values())
        record = self.metrics.add(self.state, loss, lrs, grad_norm)
        if record is not None:
            for cb in self.callbacks:
                cb.on_log(self.state, self.control, record)

    def _roll_back(self, reason: str) -> None:
        """The guard's rollback (or the run's end when it has none left), as a `guard/*` metrics record stamped with
        the step the run goes on from, and a line."""
        guard, state, cfg = self.guard, self.state, self.cfg
        if not guard.can_roll_back():
            raise Diverged(guard.failure(state, reason))
        bad_step = state.step
        snapshot, event = guard.rollback(state, reason)
        state.step, state.tokens = snapshot.step, snapshot.tokens
        self.checkpointer.after_rollback(state)
        state.progress = self.budget.progress_of(state)
        self.metrics.restart(state)
        peak_lr = cfg.optim.lr * guard.lr_scale
        self.folder.record(state, {**event, "guard/peak_lr": peak_lr})
        self.display.say(
            f"[yellow]guard: {reason} at step {bad_step}; back to step {state.step} with the peak lr x "
            f"{guard.lr_scale:g} (optim.lr {peak_lr:.3g}), skipping the batches of the lost steps (rollback "
            f"{guard.rollbacks} of at most {cfg.guard.max_rollbacks})[/]"
        )

    def _stop_reason(self) -> str | None:
        """Why the run stops after this step, or None: a callback asked, or a budget limit is reached."""
        if self.control.should_stop:
            return self.control.stop_reason or "stopped"
        state = self.state
        return self.budget.exhausted(state.train_time, state.step, state.tokens)

    def _crashed(self, e: BaseException, stop: str | None) -> None:
        """An exception leaves the run: the summary says so before it goes on up."""
        self.folder.summary["error"] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        self.write_summary(status, ended=now_iso(), stop_reason=stop)
        self.folder.close()
        self.dist.close(wait=False)  # another rank may be gone: meeting it could hang

    def _finish(self, status: str, stop: str | None) -> dict:
        """The final summary, the speed kept for train.compile=auto, the trackers closed, the report, the last
        lines."""
        run = self.run
        summary = self.write_summary(status, ended=now_iso(), stop_reason=stop)
        remember_speed(run, self.clock, self.state)
        self.folder.close()
        self.dist.close()
        report = _write_report(self.dir, self.display) if self.cfg.tracking.report and self.dist.is_main else None
        self.display.finish(self.dir, summary, self.folder.tracker, report)
        return summary

    def _say_start(self) -> None:
        """The run's first lines: model, budget, batch, and what was chosen for it and why."""
        run, say = self.run, self.display.say
        self.display.start(self.cfg, run.models.model, run.device, run.tokens_per_step, self.budget, run.ds)
        say(f"  compile: {run.compile_reason}")
        say(f"  dtype: {run.dtype_reason}")
        if run.muon_ns_reason:
            say(f"  muon: Newton-Schulz in {run.muon_ns_reason}")
        if run.cache_notice:
            say(f"  [yellow]{run.cache_notice}[/]")


def learning_rates(cfg: Config, factor: float) -> dict[str, float]:
    """The records' lrs this step: optim.lr's share (AdamW's groups), and with Muon optim.muon_lr's share too."""
    lrs = {"train/learning_rate": cfg.optim.lr * factor}
    if cfg.optim.name == "muon":
        lrs["train/muon_learning_rate"] = cfg.optim.muon_lr * factor
    return lrs


def _write_report(run_dir: Path, display: TrainDisplay) -> Path | None:
    """The run's own HTML report; a failure here must not fail a run that trained fine."""
    from slovo.report import write_report  # matplotlib and the sweep readers load only when a report is written

    try:
        write_report([run_dir], run_dir / "report.html")
        return run_dir / "report.html"
    except Exception as e:  # noqa: BLE001 - reported, and the run's files are all there already
        display.say(f"[yellow]could not write the report: {e}[/]")
        return None
