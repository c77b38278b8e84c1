"""The training loop: `train` builds the run, then each step reads

    set the lr -> train_step -> ranks agree (one collective) -> guard -> log -> evaluator.maybe_run
    -> checkpointer.maybe_save -> stop?

and the run ends with a final eval, a final checkpoint and the summary. Time spent on eval, samples, checkpoints
and compile warm-up goes to the ledger, not the budget. Callbacks (`slovo.callbacks.Callback`, HF Trainer style)
see the state after each log and eval and may ask the loop to stop through `Control`; the loop acts on it after
the current step.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

import slovo.optim
from slovo.callbacks import Control, StopOnSigint
from slovo.checkpoint import clean_staging
from slovo.config import Config, require_budget
from slovo.distributed import Agreed, Dist
from slovo.extra_evals import prepare_eval_extras
from slovo.run_folder import RunFolder, now_iso
from slovo.runlock import RunLock
from slovo.schedules import lr_factor
from slovo.terminal import TrainDisplay
from slovo.train.checkpointer import Checkpointer
from slovo.train.evaluator import Evaluator
from slovo.train.guard import Diverged, DivergenceGuard
from slovo.train.metrics import TrainMetrics, write_summary
from slovo.train.run import Run, build_run, remember_speed, warn_slow_bf16
from slovo.train.state import Budget, Clock, TrainState


@dataclass
class StepResult:
    loss: float  # mean loss over the accumulated micro-batches (this rank)
    grad_norm: float  # global grad norm before clipping
    data_time: float  # seconds spent fetching batches


def train_step(
    model, optimizer, loader, accumulation: int, grad_clip: float, autocast, scaler, dist, clock
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

    The run folder is locked (`slovo.runlock`) while this process trains in it: a second writer fails with
    one line naming the holder, before anything is written."""
    run_dir = Path(run_dir)
    require_budget(cfg)
    dist = Dist()
    lock = RunLock(run_dir).acquire() if dist.is_main else None
    try:
        if dist.is_main:
            clean_staging(run_dir)  # what killed checkpoint saves left behind
        dist.barrier()  # no rank looks for a checkpoint while rank 0 tidies the folder
        return _train(cfg, run_dir, resume, callbacks, clock or Clock(), quiet, dist)
    finally:
        if lock is not None:
            lock.release()


@dataclass(frozen=True)
class _Parts:
    """What the loop works with besides the state: the run and the components that own their timing."""

    run: Run
    budget: Budget
    clock: Clock
    folder: RunFolder
    display: TrainDisplay
    guard: DivergenceGuard
    metrics: TrainMetrics
    evaluator: Evaluator
    checkpointer: Checkpointer
    callbacks: tuple


def _train(cfg: Config, run_dir: Path, resume: bool, callbacks, clock: Clock, quiet: bool, dist: Dist) -> dict:
    budget = Budget.from_config(cfg)
    display = TrainDisplay(quiet=quiet or not dist.is_main)
    run = build_run(cfg, dist, budget)
    extras = prepare_eval_extras(cfg, run.tokenizer)  # eval.extra, eval.suites: a bad one stops us here, one line
    state, control = TrainState(), Control()
    checkpointer = Checkpointer(run, run_dir, clock, display.say)
    if resume:
        checkpointer.restore(state, budget)
    folder = RunFolder(run_dir, cfg, writer=dist.is_main, resume=resume, resume_step=state.step)
    folder.describe(run.description(budget), run.ds.tokenizer_path, resume)
    write_summary(run, folder, state, clock, "running")
    _say_start(display, run, budget)
    warn_slow_bf16(run, clock, display.say)
    guard = DivergenceGuard(cfg.guard, cfg.debug.lr_spike, run.trained, run.optimizer, run.scaler, clock, display.say)
    guard.snapshot(state)
    parts = _Parts(
        run,
        budget,
        clock,
        folder,
        display,
        guard,
        TrainMetrics(run, folder, clock, state),
        Evaluator(run, clock, folder, display, tuple(callbacks), extras),
        checkpointer,
        tuple(callbacks),
    )
    stop_reason = budget.exhausted(state.train_time, state.step, state.tokens)
    try:
        if stop_reason is None:
            stop_reason = _loop(parts, state, control)
        status = stop_reason if stop_reason in ("interrupted", "pruned") else "finished"
        if parts.evaluator.is_final_needed(state):  # not when it stopped right after a full eval
            parts.evaluator.run_eval(state, control, final=True)
        checkpointer.save(state, final=status == "finished")
    except Diverged as e:
        status = "failed"
        folder.summary["error"] = str(e)
        display.say(f"[red]stopped: {e}[/]")
    except BaseException as e:
        folder.summary["error"] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        write_summary(run, folder, state, clock, status, ended=now_iso(), stop_reason=stop_reason)
        folder.close()
        dist.close(wait=False)  # another rank may be gone: meeting it could hang
        raise
    return _finish(parts, state, run_dir, status, stop_reason)


def _say_start(display: TrainDisplay, run: Run, budget: Budget) -> None:
    """The run's first lines: model, budget, batch, and what was chosen for it and why."""
    display.start(run.cfg, run.model, run.device, run.tokens_per_step, budget, run.ds)
    display.say(f"  compile: {run.compile_reason}")
    display.say(f"  dtype: {run.dtype_reason}")
    if run.muon_ns_reason:
        display.say(f"  muon: Newton-Schulz in {run.muon_ns_reason}")
    if run.cache_notice:
        display.say(f"  [yellow]{run.cache_notice}[/]")


def _loop(parts: _Parts, state: TrainState, control: Control) -> str:
    """Train until a budget limit, a callback or Ctrl-C stops the run; returns why it stopped."""
    guard, budget, cfg = parts.guard, parts.budget, parts.run.cfg
    with StopOnSigint(parts.display.say) as sigint, parts.display.progress_bar(budget):
        parts.clock.start_lap()
        while True:
            # the lr scale left by rollbacks multiplies the schedule, not the groups' `initial_lr`: a restored
            # optimizer state dict brings its saved `initial_lr` back, the factor is set anew every step
            factor = lr_factor(cfg.schedule, state.progress, state.step) * guard.before_step(state)
            slovo.optim.set_lr_factor(parts.run.optimizer, factor)
            lrs = _learning_rates(cfg, factor)
            result, agreed = _step(parts, state, sigint.requested)
            diverged = guard.check(state, agreed.loss, agreed.nonfinite, result.grad_norm)
            if diverged is not None:
                _roll_back(parts, state, diverged)
            else:
                guard.accept(state, agreed.loss)
                parts.display.show_step(state, parts.clock, agreed.loss, *lrs.values())
                _log(parts, state, control, agreed.loss, lrs, result.grad_norm)
            stop_reason = "interrupted" if agreed.stop else _stop_reason(budget, state, control)
            if diverged is None:
                if stop_reason is None:  # the last step's eval is the final one
                    parts.evaluator.maybe_run(state, control)
                    stop_reason = _stop_reason(budget, state, control)
                parts.checkpointer.maybe_save(state)
            if stop_reason is not None:
                return stop_reason


def _step(parts: _Parts, state: TrainState, stop_wish: bool) -> tuple[StepResult, Agreed]:
    """`train_step`, its lap on the ledger (with the bookkeeping since the previous step), and the ranks' one
    agreement on the loss, the clock and stopping; the state moves on by a step, in agreed training time and
    progress."""
    run, clock = parts.run, parts.clock
    result = train_step(
        run.train_model,
        run.optimizer,
        run.loader,
        run.cfg.train.gradient_accumulation_steps,
        run.cfg.optim.grad_clip,
        run.autocast,
        run.scaler,
        run.dist,
        clock,
    )
    parts.metrics.step_timed(result.data_time)
    state.step += 1
    state.tokens += run.tokens_per_step
    nonfinite = not math.isfinite(result.loss) or (run.scaler is None and not math.isfinite(result.grad_norm))
    agreed = run.dist.agree_step(result.loss, clock.train_time, stop_wish, nonfinite, run.device)
    state.train_time = agreed.train_time
    state.progress = parts.budget.progress_of(state)
    return result, agreed


def _learning_rates(cfg: Config, factor: float) -> dict[str, float]:
    """The records' lrs this step: optim.lr's share (AdamW's groups), and with Muon optim.muon_lr's share too."""
    lrs = {"train/learning_rate": cfg.optim.lr * factor}
    if cfg.optim.name == "muon":
        lrs["train/muon_learning_rate"] = cfg.optim.muon_lr * factor
    return lrs


def _log(parts: _Parts, state: TrainState, control: Control, loss: float, lrs: dict, grad_norm: float) -> None:
    """The step's loss into the log window; when a train record is written, the callbacks' `on_log`."""
    record = parts.metrics.add(state, loss, lrs, grad_norm)
    if record is not None:
        for cb in parts.callbacks:
            cb.on_log(state, control, record)


def _roll_back(parts: _Parts, state: TrainState, reason: str) -> None:
    """The guard's rollback (or the run's end when it has none left), as a `guard/*` metrics record stamped with
    the step the run goes on from, and a line."""
    guard, cfg = parts.guard, parts.run.cfg
    if not guard.can_roll_back(state):
        raise Diverged(guard.failure(state, reason))
    bad_step = state.step
    event = guard.rollback(state, reason)
    parts.checkpointer.after_rollback(state)
    state.progress = parts.budget.progress_of(state)
    parts.metrics.restart(state)
    parts.folder.record(state, {**event, "guard/peak_lr": cfg.optim.lr * state.lr_scale})
    parts.display.say(
        f"[yellow]guard: {reason} at step {bad_step}; back to step {state.step} with the peak lr x "
        f"{state.lr_scale:g} (optim.lr {cfg.optim.lr * state.lr_scale:.3g}), skipping the batches of the "
        f"lost steps (rollback {state.rollbacks} of at most {cfg.guard.max_rollbacks})[/]"
    )


def _stop_reason(budget: Budget, state: TrainState, control: Control) -> str | None:
    """Why the loop stops after this step, or None: a callback asked, or a budget limit is reached."""
    if control.should_stop:
        return control.stop_reason or "stopped"
    return budget.exhausted(state.train_time, state.step, state.tokens)


def _finish(parts: _Parts, state: TrainState, run_dir: Path, status: str, stop_reason: str | None) -> dict:
    """The final summary, the speed kept for train.compile=auto, the trackers closed, the report, the last lines."""
    run, folder = parts.run, parts.folder
    summary = write_summary(run, folder, state, parts.clock, status, ended=now_iso(), stop_reason=stop_reason)
    remember_speed(run, parts.clock, state)
    folder.close()
    run.dist.close()
    report = _write_report(run_dir, parts.display) if run.cfg.tracking.report and run.dist.is_main else None
    parts.display.finish(run_dir, summary, folder.tracker, report)
    return summary


def _write_report(run_dir: Path, display: TrainDisplay) -> Path | None:
    """The run's own HTML report; a failure here must not fail a run that trained fine."""
    from slovo.report import write_report  # matplotlib and the sweep readers load only when a report is written

    try:
        write_report([run_dir], run_dir / "report.html")
        return run_dir / "report.html"
    except Exception as e:  # noqa: BLE001 - reported, and the run's files are all there already
        display.say(f"[yellow]could not write the report: {e}[/]")
        return None
