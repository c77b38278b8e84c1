"""The training loop: `train` reads top to bottom as setup -> loop of `train_step` -> finish.

    setup (device, data, model, optimizer, run folder) -> maybe resume -> loop:
        lr from progress -> train_step (forward/backward x accumulation, clip, step)
        -> ranks agree (one collective) -> diverged? the guard rolls back (slovo/guard.py) -> log
        -> eval + samples when due -> checkpoint when due (and always where the lr begins to decay) -> stop?
    -> final eval, final checkpoint, summary

Time spent on eval, samples, checkpoints and compile warm-up goes to the ledger, not the budget.
Resuming with a larger budget extends the run: a schedule that decays to the deadline (wsd) goes back to the
checkpoint saved where its decay began, so the stable phase runs on and a new decay ends at the new deadline;
progress and the eval points follow the new budget.
Callbacks (`slovo.callbacks.Callback`, HF Trainer style) see the state after each log and eval and may
ask the loop to stop through `Control`; the loop acts on it after the current step.
"""

from __future__ import annotations

import dataclasses
import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from slovo import budget as budget_mod
from slovo.budget import Budget, Clock
from slovo.callbacks import Callback, Control, StopOnSigint
from slovo.config import Config, budget_seconds, require_budget
from slovo.errors import SlovoError
from slovo.guard import DivergenceGuard, rng_state, set_rng_state
from slovo.schedules import decay_start, lr_factor


@dataclass
class TrainState:
    """What the loop knows about itself; saved in every checkpoint. Callbacks read it."""

    step: int = 0
    tokens: int = 0
    train_time: float = 0.0  # seconds on the budget clock, as the ranks agreed
    progress: float = 0.0
    next_eval: int = 1  # index of the next eval point (progress next_eval / eval.every)
    last_ckpt_train_time: float = 0.0
    last_eval_train_time: float = 0.0
    last_eval_step: int = -1
    best_eval_loss: float = math.inf
    best_eval_bpb: float = math.inf
    last_eval: dict = field(default_factory=dict)
    # the divergence guard (slovo/guard.py)
    rollbacks: int = 0  # times the guard went back to a snapshot
    lr_scale: float = 1.0  # multiplies every group's peak lr: guard.lr_factor per rollback
    recent_losses: list = field(default_factory=list)  # agreed losses of the last guard.spike_window healthy steps
    lr_spike_left: int = -1  # debug.lr_spike: -1 not fired yet, then the spiked steps still to come
    decay_ckpt_step: int = -1  # step of the checkpoint saved where the lr began to decay; -1 none yet

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            if k in self.__dataclass_fields__:
                setattr(self, k, v)


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
    if scaler is not None:
        scaler.step(optimizer)  # skips the step when the grads overflowed
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(float(loss_sum), float(grad_norm), data_time)  # float() syncs: the step's time is real


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
    from slovo.checkpoint import clean_staging
    from slovo.distributed import Dist
    from slovo.runlock import RunLock

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


def _train(cfg: Config, run_dir: Path, resume: bool, callbacks, clock: Clock, quiet: bool, dist) -> dict:
    from slovo.run_folder import RunFolder, now_iso, run_figures
    from slovo.terminal import TrainDisplay

    budget = Budget(budget_seconds(cfg), cfg.budget.max_steps, cfg.budget.max_tokens)
    display = TrainDisplay(quiet=quiet or not dist.is_main)
    s = _Setup(cfg, dist, budget)
    state, control = TrainState(), Control()
    if resume:
        _restore(run_dir, s, state, clock, display)
        _follow_new_budget(cfg, budget, state)
    folder = RunFolder(run_dir, cfg, writer=dist.is_main, resume=resume, resume_step=state.step)
    folder.describe(s.info(budget), s.ds.tokenizer_path, resume)

    def finish_summary(status: str, **extra) -> dict:
        figures = run_figures(state, clock.ledger, len(s.ds.train), cfg.model.seq_len, s.flops_per_token)
        figures.update(rollbacks=state.rollbacks, lr_scale=state.lr_scale)
        return folder.write_summary(status, figures, **extra)

    finish_summary("running")
    display.start(cfg, s.model, s.device, s.tokens_per_step, budget, s.ds)
    display.say(f"  compile: {s.compile_reason}")
    display.say(f"  dtype: {s.dtype_reason}")
    if s.muon_ns_reason:
        display.say(f"  muon: Newton-Schulz in {s.muon_ns_reason}")
    if s.cache_notice:
        display.say(f"  [yellow]{s.cache_notice}[/]")
    s.check_cpu_bf16(clock, display)
    window_losses: list[float] = []
    window_start = (state.train_time, state.tokens)
    stop_reason = budget_mod.exhausted(budget, state.train_time, state.step, state.tokens)
    guard = DivergenceGuard(cfg.guard, cfg.debug.lr_spike, s.trained, s.optimizer, s.scaler, clock)  # FSDP: shards
    guard.snapshot(state)
    try:
        with StopOnSigint(display.say) as sigint, display.progress_bar(budget) as bar:
            while stop_reason is None:
                # the lr scale left by rollbacks multiplies the schedule, not the groups' `initial_lr`: a restored
                # optimizer state dict brings its saved `initial_lr` back, the factor is set anew every step
                factor = lr_factor(cfg.schedule, state.progress, state.step) * guard.lr_multiplier(state, display.say)
                s.set_lr_factor(factor)
                lr = cfg.optim.lr * factor
                step_start = clock.now()
                result = train_step(
                    s.train_model,
                    s.optimizer,
                    s.loader,
                    cfg.train.gradient_accumulation_steps,
                    cfg.optim.grad_clip,
                    s.autocast,
                    s.scaler,
                    dist,
                    clock,
                )
                s.account_step_time(clock, clock.now() - step_start, result.data_time)
                state.step += 1
                state.tokens += s.tokens_per_step
                nonfinite = not math.isfinite(result.loss) or (s.scaler is None and not math.isfinite(result.grad_norm))
                agreed = dist.agree_step(result.loss, clock.train_time, sigint.requested, nonfinite, s.device)
                state.train_time = agreed.train_time
                state.progress = budget_mod.progress(budget, state.train_time, state.step, state.tokens)
                diverged = guard.check(state, agreed.loss, agreed.nonfinite, result.grad_norm)
                if diverged is not None:
                    if not guard.can_roll_back(state):
                        raise _Diverged(guard.failure(state, diverged))
                    _roll_back(guard, state, diverged, folder, display, cfg)
                    state.progress = budget_mod.progress(budget, state.train_time, state.step, state.tokens)
                    window_losses, window_start = [], (state.train_time, state.tokens)
                    stop_reason = "interrupted" if agreed.stop else _stop_reason(budget, state, control)
                    continue
                guard.accept(state, agreed.loss)
                window_losses.append(agreed.loss)
                bar.update(state, clock, agreed.loss, lr)
                if _log_due(cfg, state, window_start[0]):
                    elapsed = state.train_time - window_start[0]
                    tps = (state.tokens - window_start[1]) / elapsed if elapsed > 0 else 0.0
                    metrics = folder.record(state, s.train_metrics(window_losses, lr, result.grad_norm, tps, state))
                    window_losses, window_start = [], (state.train_time, state.tokens)
                    for cb in callbacks:
                        cb.on_log(state, control, metrics)
                stop_reason = "interrupted" if agreed.stop else _stop_reason(budget, state, control)
                if stop_reason is None and _eval_due(cfg, state):
                    _evaluate(s, state, control, clock, folder, display, callbacks, finish_summary)
                    stop_reason = _stop_reason(budget, state, control)
                decay_start = _decay_checkpoint_due(cfg, state)  # always saved: a longer budget continues from it
                if decay_start:
                    state.decay_ckpt_step = state.step
                if decay_start or _checkpoint_due(cfg, state):
                    _checkpoint(s, run_dir, state, clock, final=False, display=display)
        status = stop_reason if stop_reason in ("interrupted", "pruned") else "finished"
        scored_all = state.last_eval.get("eval/windows") == len(s.windows)
        if state.last_eval_step != state.step or not scored_all:  # stopped right after a full eval: no second one
            _evaluate(s, state, control, clock, folder, display, callbacks, finish_summary, final=True)
        _checkpoint(s, run_dir, state, clock, final=status == "finished")
    except _Diverged as e:
        status = "failed"
        folder.summary["error"] = str(e)
        display.say(f"[red]stopped: {e}[/]")
    except BaseException as e:
        folder.summary["error"] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        finish_summary(
            "interrupted" if isinstance(e, KeyboardInterrupt) else "failed", ended=now_iso(), stop_reason=stop_reason
        )
        folder.close()
        dist.close(wait=False)  # another rank may be gone: meeting it could hang
        raise
    result = finish_summary(status, ended=now_iso(), stop_reason=stop_reason)
    s.remember_speed(clock, state)
    folder.close()
    dist.close()
    report = _write_report(run_dir, display) if cfg.tracking.report and dist.is_main else None
    display.finish(run_dir, result, folder.tracker, report)
    return result


class _Setup:
    """Everything the loop works with, built from the config: device, data, model, optimizer, precision."""

    def __init__(self, cfg: Config, dist, budget: Budget):
        from slovo.accel import cache_notice, choose_compile, choose_run_dtype, choose_run_muon_ns_dtype, shape_key
        from slovo.data import load_dataset, load_tokenizer, token_byte_lengths
        from slovo.data.loader import BatchLoader
        from slovo.device import autocast_for, device_name, device_type, enable_fast_matmul, peak_flops, pick_device
        from slovo.evaluate import eval_windows, whole_split_note
        from slovo.model import GPT
        from slovo.optim import make_optimizer, set_lr_factor

        self.cfg, self.dist = cfg, dist
        if cfg.train.num_threads:
            torch.set_num_threads(cfg.train.num_threads)
        self.device = device = dist.device(pick_device(cfg.train.device))
        enable_fast_matmul(device)
        self.ds = ds = load_dataset(cfg.data.path)
        if cfg.model.vocab_size == 0:
            cfg.model.vocab_size = ds.vocab_size
        elif cfg.model.vocab_size < ds.vocab_size:
            raise SlovoError(
                f"model.vocab_size={cfg.model.vocab_size} is smaller than the dataset's vocabulary ({ds.vocab_size})"
            )
        self.tokenizer = load_tokenizer(ds.tokenizer_path)
        self.token_bytes = token_byte_lengths(self.tokenizer)
        seq_len, batch = cfg.model.seq_len, cfg.train.per_device_train_batch_size
        try:
            self.windows = eval_windows(ds.val, seq_len, cfg.eval.tokens)  # spread over the whole split
            self.eval_note = whole_split_note(len(ds.val), seq_len, cfg.eval.tokens)  # said once, at the first eval
            self.eval_subset = None  # window indices evals during training score, fixed at the first one
            self.loader = BatchLoader(ds.train, batch, seq_len, cfg.train.seed, rank=dist.rank, device=device)
        except ValueError as e:  # a split shorter than one window of model.seq_len + 1 tokens
            raise SlovoError(f"{cfg.data.path}: {e}; use a smaller model.seq_len or more text") from None
        torch.manual_seed(cfg.train.seed)
        self.model = GPT(cfg.model).to(device)
        # distributed.strategy=fsdp on several ranks: a sharded copy trains and self.model keeps the whole weights
        # for evals, samples and checkpoints (refreshed by gather_weights); else self.model trains itself
        self.sharded = dist.shard(self.model, cfg)
        self.trained = self.sharded if self.sharded is not None else self.model  # what the optimizer steps
        self.tokens_per_step = batch * cfg.train.gradient_accumulation_steps * seq_len * dist.world
        # rank 0 chooses (and measures, on a CPU) for all: every rank must train in the same precision
        choices = None
        self.cache_notice = cache_notice() if dist.is_main else None  # read before this run's figures go in
        if dist.is_main:
            choices = choose_run_dtype(cfg, device, self.model), choose_run_muon_ns_dtype(cfg, device, self.model)
        (self.dtype, self.dtype_reason), muon_ns = dist.broadcast(choices)
        self.muon_ns_dtype, self.muon_ns_reason = muon_ns or (None, None)
        optim_cfg = dataclasses.replace(cfg.optim, muon_ns_dtype=self.muon_ns_dtype or cfg.optim.muon_ns_dtype)
        self.optimizer = make_optimizer(self.trained, optim_cfg, device)
        self.set_lr_factor = lambda factor: set_lr_factor(self.optimizer, factor)
        self.autocast = autocast_for(self.dtype, device)
        self.scaler = torch.amp.GradScaler(device_type(device)) if self.dtype == "float16" else None
        self.speed_key = shape_key(cfg, device_name(device), self.dtype)
        self.compiled, self.compile_reason = choose_compile(cfg.train.compile, device, budget.time_s, self.speed_key)
        self.eval_model = torch.compile(self.model) if self.compiled else self.model  # compiled once, for both uses
        self.train_model = dist.wrap(self.eval_model, device, self.sharded, self.compiled)
        self.peak_flops = peak_flops(device)
        self.flops_per_token = self.model.flops_per_token()
        self.first_step = True
        self.checkpoint_failing = False  # a periodic save failed; say so once, not at every try

    def gather_weights(self) -> None:
        """FSDP: bring the trained shards into the whole model on every rank (a collective); else nothing."""
        self.dist.gather_weights(self.sharded, self.model)

    def info(self, budget: Budget) -> dict:
        from slovo.run_folder import run_info

        info = run_info(
            self.cfg, self.ds, self.model, self.device, self.tokens_per_step, self.dist.world, budget.as_dict()
        )
        return {**info, "dtype": self.dtype, "compiled": self.compiled, "muon_ns_dtype": self.muon_ns_dtype}

    def check_cpu_bf16(self, clock: Clock, display) -> None:
        """An explicit bf16 on a CPU can be many times slower than float32: measure both once and say so."""
        from slovo.accel import compare_float32

        if self.device != "cpu" or self.cfg.train.dtype != "bfloat16":
            return  # 'auto' measured itself when it chose
        with clock.measure("probe"):
            rate, fp32 = compare_float32(
                self.model,
                self.cfg.train.per_device_train_batch_size,
                self.cfg.model.seq_len,
                self.device,
                self.autocast,
            )
        if rate < fp32:
            display.say(
                f"[yellow]train.dtype={self.cfg.train.dtype} on this CPU runs at {rate:,.0f} tokens/s against "
                f"{fp32:,.0f} in float32 (forward+backward, measured now); train.dtype=auto picks the faster[/]"
            )

    def remember_speed(self, clock: Clock, state: TrainState) -> None:
        """Keep this run's step time (and compile time) for the next train.compile=auto decision."""
        from slovo.accel import remember

        steps = state.step - (1 if self.compiled else 0)
        if not self.dist.is_main or self.dist.enabled or steps < 10:
            return
        step_s = clock.ledger["train"] / steps
        if self.compiled:
            remember(self.speed_key, compile_s=clock.ledger["compile"], compiled_step_s=step_s)
        else:
            remember(self.speed_key, eager_step_s=step_s)

    def account_step_time(self, clock: Clock, step_time: float, data_time: float) -> None:
        """The step's seconds go on the budget clock, except the first step of a compiled model (mostly compiling)."""
        clock.ledger["compile" if (self.first_step and self.compiled) else "train"] += step_time - data_time
        clock.ledger["data"] += data_time
        self.first_step = False

    def train_metrics(self, losses: list[float], lr: float, grad_norm: float, tokens_per_s: float, state) -> dict:
        per_device = tokens_per_s / self.dist.world
        return {
            "train/loss": sum(losses) / len(losses),
            "train/learning_rate": lr,
            "train/grad_norm": grad_norm,
            "train/epoch": state.tokens / len(self.ds.train),
            "train/tokens_per_second": tokens_per_s,
            "train/mfu": (self.flops_per_token * per_device / self.peak_flops) if self.peak_flops else None,
            "total_flos": self.flops_per_token * state.tokens,
        }


def _load_checkpoint(s: _Setup, ckpt: Path) -> dict:
    """Load checkpoint `ckpt`'s weights (and, when sharded, its optimizer) and return its saved state; the
    checkpoint's format must be the run's distributed.strategy's."""
    from slovo.checkpoint import load_training_state
    from slovo.sharded import is_sharded, load_sharded

    sharded = is_sharded(ckpt)
    if sharded != (s.cfg.distributed.strategy == "fsdp"):
        saved_with = "fsdp" if sharded else "ddp"
        raise SlovoError(
            f"{ckpt}: saved with distributed.strategy={saved_with}; resume it with "
            f"--set distributed.strategy={saved_with}"
        )
    if not sharded:
        return load_training_state(ckpt, s.model)
    saved = load_sharded(ckpt, s.trained, s.optimizer)
    s.gather_weights()
    return saved


def _restore(run_dir: Path, s: _Setup, state: TrainState, clock: Clock, display) -> None:
    from slovo.checkpoint import checkpoint_to_resume

    ckpt, notice = checkpoint_to_resume(run_dir)  # the newest good one; says which damaged ones it skipped
    # the peak lrs are the config's, not the checkpoint's: a run resumed with another optim.lr (or tune's final
    # run, continuing its winning probe at the lr carried to the longer horizon) trains on at the new lr
    peak_lrs = [group["initial_lr"] for group in s.optimizer.param_groups]
    if notice:
        display.say(f"[yellow]{notice}[/]")
    saved = _load_checkpoint(s, ckpt)
    extension = _extension_start(run_dir, s.cfg, saved["loop"])
    if extension is not None:  # a longer budget after the decay began: go back to where it began
        ckpt, line = extension
        display.say(line)
        if ckpt is not None:
            saved = _load_checkpoint(s, ckpt)
    if "optimizer" in saved:  # a sharded checkpoint's optimizer was loaded with the weights
        s.optimizer.load_state_dict(saved["optimizer"])
    for group, peak in zip(s.optimizer.param_groups, peak_lrs, strict=True):
        group["initial_lr"] = peak
    s.loader.load_state_dict(saved["loader"])
    clock.load_state_dict(saved["clock"])
    state.load_state_dict(saved["loop"])
    if "train_time" not in saved["loop"]:  # a checkpoint written before the state kept the agreed time
        state.train_time = clock.train_time
    set_rng_state(saved["rng"])
    if s.scaler is not None and "scaler" in saved:
        s.scaler.load_state_dict(saved["scaler"])
    display.say(f"resuming [bold]{run_dir}[/] from step {state.step} ({state.train_time:.1f}s of training spent)")


def _evaluate(
    s: _Setup,
    state: TrainState,
    control: Control,
    clock: Clock,
    folder,
    display,
    callbacks,
    write_summary,
    final: bool | None = None,
) -> dict:
    """Eval loss/bpb (each rank its share of the windows), samples on rank 0, callbacks, summary.

    The final eval scores every window (ledger `final_eval`); evals during training score the same evenly spread
    subset every time (ledger `eval`), sized at the first of them from its measured speed (eval.max_fraction).
    """
    from slovo.evaluate import evaluate, in_training_windows, probe_window_seconds, subset_indices
    from slovo.generate import sample_texts

    cfg, dist = s.cfg, s.dist
    s.gather_weights()  # FSDP: evals and samples use the whole weights
    if final is None:  # the loop evaluates mid-run only while no limit is reached and nothing asked to stop
        final = state.progress >= 1.0 or control.should_stop
    if s.eval_note:
        display.say(f"  eval: {s.eval_note}")
        s.eval_note = None
    batch = cfg.eval.batch_size or cfg.train.per_device_train_batch_size
    reduce = (lambda v: dist.sum(v, s.device)) if dist.enabled else None

    def score(windows):
        return evaluate(
            s.eval_model, windows[dist.rank :: dist.world], s.token_bytes, batch, s.device, s.autocast, reduce=reduce
        )

    with clock.measure("final_eval" if final else "eval"):
        if not final and s.eval_subset is None:
            n = state.last_eval.get("eval/subset_windows")  # a resumed run keeps the subset it started with
            if not n:
                per_window = probe_window_seconds(score, s.windows, batch * dist.world, clock.now, reduce, dist.world)
                total = state.train_time / state.progress if state.progress > 0 else 0.0  # the run's training time
                evals = int(total // cfg.eval.every_seconds) if cfg.eval.every_seconds else cfg.eval.every - 1
                n = in_training_windows(
                    len(s.windows), per_window, total, evals, cfg.eval.max_fraction, batch * dist.world
                )
            s.eval_subset = subset_indices(len(s.windows), n)
            if len(s.eval_subset) < len(s.windows):
                display.say(
                    f"  eval: evals during training score {len(s.eval_subset)} of the {len(s.windows)} eval "
                    f"windows (eval.max_fraction={cfg.eval.max_fraction:g}); the final eval scores all"
                )
        metrics = score(s.windows if final else s.windows[s.eval_subset])
    if not math.isfinite(metrics["eval/loss"]):
        raise _Diverged(f"eval loss became {metrics['eval/loss']} at step {state.step} (try a lower optim.lr)")
    subset = len(s.eval_subset) if s.eval_subset is not None else state.last_eval.get("eval/subset_windows")
    state.last_eval = {
        k: metrics[k] for k in ("eval/loss", "eval/bpb", "eval/perplexity", "eval/tokens", "eval/windows")
    }
    if subset:  # kept in the checkpoint (and shown in summary.json): evals during training score this many
        state.last_eval["eval/subset_windows"] = subset
    if (s.ds.meta.get("split") or {}).get("val_documents") is not None:
        state.last_eval["eval/val_documents"] = s.ds.meta["split"]["val_documents"]
    state.last_eval_train_time, state.last_eval_step = state.train_time, state.step
    state.best_eval_loss = min(state.best_eval_loss, metrics["eval/loss"])
    state.best_eval_bpb = min(state.best_eval_bpb, metrics["eval/bpb"])
    full = folder.record(
        state,
        {
            k: metrics[k]
            for k in ("eval/loss", "eval/perplexity", "eval/bpb", "eval/runtime", "eval/tokens", "eval/windows")
        },
    )
    display.eval_line(state, clock, metrics)
    if cfg.sample.enabled and dist.is_main:
        with clock.measure("sample"):
            folder.samples(state, sample_texts(s.model, s.tokenizer, cfg.sample, s.device))
    for cb in callbacks:
        cb.on_eval(state, control, full)
    write_summary("running")
    return metrics


def _checkpoint(s: _Setup, run_dir: Path, state: TrainState, clock: Clock, final: bool, display=None) -> None:
    """Save a checkpoint (rank 0; under distributed.strategy=fsdp every rank writes its shards). A periodic one
    that fails (disk full, permission) is reported once and tried again at the next; the run goes on. The final
    one's failure fails the run."""
    from slovo.checkpoint import CheckpointSaveError, prune_checkpoints, save_checkpoint
    from slovo.sharded import save_sharded

    state.last_ckpt_train_time = state.train_time  # every rank: the next periodic checkpoint is agreed too
    fsdp = s.cfg.distributed.strategy == "fsdp"
    if not (s.dist.is_main or fsdp):
        return
    with clock.measure("checkpoint"):
        payload = {
            "loader": s.loader.state_dict(),
            "clock": clock.state_dict(),
            "loop": state.state_dict(),
            "rng": rng_state(),
        }
        if not fsdp:  # a sharded checkpoint keeps the optimizer in its dcp/ folder
            payload["optimizer"] = s.optimizer.state_dict()
        if s.scaler is not None:
            payload["scaler"] = s.scaler.state_dict()
        info = {"tokens": state.tokens, "train_time": state.train_time, "final": final}
        if state.decay_ckpt_step == state.step:  # where a longer budget continues from; pruning keeps it
            info["tag"] = "decay_start"
        try:
            if fsdp:
                s.gather_weights()
                path = save_sharded(s.dist, run_dir, state.step, s.model, s.trained, s.optimizer, payload, info)
            else:
                path = save_checkpoint(run_dir, state.step, s.model, payload, info)
        except CheckpointSaveError as e:
            if final:
                raise
            if not s.checkpoint_failing and display is not None:
                display.say(f"[yellow]{e}; training goes on and the next checkpoint tries again[/]")
            s.checkpoint_failing = True
            return
        s.checkpoint_failing = False
        if path is not None:  # rank 0
            prune_checkpoints(run_dir, s.cfg.checkpoint.keep_last, keep=path)


def _stop_reason(budget: Budget, state: TrainState, control: Control) -> str | None:
    """Why the loop stops after this step, or None: a callback asked, or a budget limit is reached."""
    if control.should_stop:
        return control.stop_reason or "stopped"
    return budget_mod.exhausted(budget, state.train_time, state.step, state.tokens)


def _log_due(cfg: Config, state: TrainState, window_start_time: float) -> bool:
    """A train record every train.log_every steps, or sooner once train.log_every_seconds of training passed
    (a slow machine's run still gets curves); decided from agreed values only."""
    seconds = cfg.train.log_every_seconds
    return state.step % cfg.train.log_every == 0 or bool(seconds and state.train_time - window_start_time >= seconds)


def _eval_due(cfg: Config, state: TrainState) -> bool:
    """True when the run has passed its next eval point (advancing the point); decided from agreed values only."""
    if cfg.eval.every_seconds:
        return state.train_time - state.last_eval_train_time >= cfg.eval.every_seconds
    every = cfg.eval.every
    if not every or state.next_eval >= every or state.progress < state.next_eval / every:
        return False
    while state.next_eval < every and state.progress >= state.next_eval / every:
        state.next_eval += 1
    return True


def _checkpoint_due(cfg: Config, state: TrainState) -> bool:
    c = cfg.checkpoint
    return bool(
        (c.every_steps and state.step % c.every_steps == 0)
        or (c.every_seconds and state.train_time - state.last_ckpt_train_time >= c.every_seconds)
    )


def _decay_checkpoint_due(cfg: Config, state: TrainState) -> bool:
    """True at the first step at or past the schedule's decay start (`schedules.decay_start`), once per budget."""
    start = decay_start(cfg.schedule)
    return start is not None and state.decay_ckpt_step < 0 and state.progress >= start


def _roll_back(guard: DivergenceGuard, state: TrainState, reason: str, folder, display, cfg: Config) -> None:
    """The guard's rollback, as a `guard/*` metrics record (stamped with the step the run goes on from) and a line."""
    bad_step = state.step
    event = guard.rollback(state, reason)
    if state.decay_ckpt_step > state.step:  # the decay checkpoint came from the discarded steps: save it again
        state.decay_ckpt_step = -1
    folder.record(state, {**event, "guard/peak_lr": cfg.optim.lr * state.lr_scale})
    display.say(
        f"[yellow]guard: {reason} at step {bad_step}; back to step {state.step} with the peak lr x "
        f"{state.lr_scale:g} (optim.lr {cfg.optim.lr * state.lr_scale:.3g}), skipping the batches of the "
        f"lost steps (rollback {state.rollbacks} of at most {cfg.guard.max_rollbacks})[/]"
    )


def _extension_start(run_dir: Path, cfg: Config, loop: dict) -> tuple[Path | None, str] | None:
    """(checkpoint, line) when a run whose lr had begun to decay is resumed with a larger budget: the checkpoint
    saved where the decay began, from which the stable phase runs on and a new decay ends at the new deadline.
    (None, line) when that checkpoint is gone or damaged (the run goes on from its end). None otherwise: an
    interrupted run resumed with the same budget, a schedule without a decay start, a smaller budget."""
    from slovo.checkpoint import CKPT_DIR, checkpoint_name, verify_checkpoint

    decay_step = loop.get("decay_ckpt_step", -1)
    if decay_start(cfg.schedule) is None or decay_step < 0 or decay_step >= loop["step"]:
        return None
    budget = Budget(budget_seconds(cfg), cfg.budget.max_steps, cfg.budget.max_tokens)
    if budget_mod.progress(budget, loop["train_time"], loop["step"], loop["tokens"]) >= loop["progress"]:
        return None  # the budget did not grow
    ckpt = run_dir / CKPT_DIR / checkpoint_name(decay_step)
    why = verify_checkpoint(ckpt) if ckpt.is_dir() else "it is gone"
    if why:
        return None, (
            f"[yellow]extending: the checkpoint where the lr began to decay ({ckpt.name}) cannot be used "
            f"({why}); continuing from step {loop['step']}, where the lr was already decaying[/]"
        )
    return ckpt, (
        f"extending to the larger budget from {ckpt.name}, saved where the lr began to decay (step "
        f"{decay_step}); the stable phase runs on and a new decay ends at the new deadline"
    )


def _follow_new_budget(cfg: Config, budget: Budget, state: TrainState) -> None:
    """A run resumed under another budget: progress, the next eval point and the decay checkpoint follow it, so a
    longer run evaluates over its extension and saves a new decay-start checkpoint where its own decay begins."""
    progress = budget_mod.progress(budget, state.train_time, state.step, state.tokens)
    if progress == state.progress:
        return
    state.progress = progress
    if cfg.eval.every:
        state.next_eval = min(cfg.eval.every, int(progress * cfg.eval.every) + 1)
    start = decay_start(cfg.schedule)
    if start is not None and progress < start:
        state.decay_ckpt_step = -1


def _write_report(run_dir: Path, display) -> Path | None:
    """The run's own HTML report; a failure here must not fail a run that trained fine."""
    from slovo.report import write_report

    try:
        write_report([run_dir], run_dir / "report.html")
        return run_dir / "report.html"
    except Exception as e:  # noqa: BLE001 - reported, and the run's files are all there already
        display.say(f"[yellow]could not write the report: {e}[/]")
        return None


class _Diverged(Exception):
    pass


__all__ = ["Callback", "Control", "TrainState", "train", "train_step"]
