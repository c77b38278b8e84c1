"""The training loop: one function, `train`, readable top to bottom, with its helpers beside it.

    setup (device, data, model, optimizer, run folder) -> maybe resume -> loop:
        stop? -> lr from progress -> forward/backward x accumulation -> clip -> step -> log
        -> eval + samples at the next progress point -> periodic checkpoint
    -> final eval, final checkpoint, summary

Time spent on eval, samples, checkpoints and compile warm-up goes to the ledger, not the budget.
Callbacks (HF Trainer style) get `on_log(state, metrics)` and `on_eval(state, metrics)` and may set
`state.should_stop` (with `state.stop_reason`); the loop acts on it after the current step.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from slovo import budget as budget_mod
from slovo.budget import Budget, Clock
from slovo.checkpoint import latest_checkpoint, load_training_state, prune_checkpoints, save_checkpoint
from slovo.config import Config, budget_seconds, require_budget, save_config, to_dict
from slovo.distributed import Dist, NullTracker
from slovo.errors import SlovoError
from slovo.evaluate import eval_windows, evaluate
from slovo.schedules import lr_factor
from slovo.utils import atomic_write_json, code_version, pick_device, read_json

# Peak dense bf16 FLOP/s of common accelerators, for the MFU estimate (None where unknown, e.g. CPUs).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12, "3090": 71e12}


@dataclass
class TrainState:
    """What the loop knows about itself; saved in every checkpoint."""

    step: int = 0
    tokens: int = 0
    progress: float = 0.0
    next_eval: int = 1  # index of the next eval point (progress next_eval / eval.every)
    last_ckpt_train_time: float = 0.0
    last_eval_train_time: float = 0.0
    last_eval_step: int = -1
    best_eval_loss: float = math.inf
    best_eval_bpb: float = math.inf
    last_eval: dict = field(default_factory=dict)
    should_stop: bool = False
    stop_reason: str | None = None

    def state_dict(self) -> dict:
        keys = ("step", "tokens", "progress", "next_eval", "last_ckpt_train_time", "last_eval_train_time", "last_eval_step", "best_eval_loss", "best_eval_bpb", "last_eval")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, v)


def peak_flops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def make_optimizer(model: torch.nn.Module, cfg: Config, device: str) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (never norms; embeddings only if asked)."""
    o = cfg.optim
    embed = model.embed_tokens.weight
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() yields a tied weight once
        if p.dim() < 2 or (p is embed and not o.decay_embeddings):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.startswith("cuda") else {}
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, **extra)


def autocast_for(cfg: Config, device: str):
    dtype = cfg.train.dtype
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype == "float32":
        return None
    return torch.autocast(device_type=device.split(":")[0], dtype=getattr(torch, dtype))


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _StopOnSigint:
    """First Ctrl-C asks the loop to stop after the current step (and checkpoint); a second one aborts."""

    def __init__(self, state: TrainState, say):
        self.state, self.say, self.previous = state, say, None

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread (e.g. a sweep worker thread): no handler
            self.previous = None
        return self

    def _handle(self, signum, frame):
        if self.state.stop_reason == "interrupted":
            raise KeyboardInterrupt
        self.state.should_stop, self.state.stop_reason = True, "interrupted"
        self.say("[yellow]Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to abort)[/]")

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def train(
    cfg: Config,
    run_dir: str | Path,
    resume: bool = False,
    callbacks: tuple | list = (),
    clock: Clock | None = None,
    quiet: bool = False,
) -> dict:
    """Train `cfg` into `run_dir` until the budget is spent; returns the summary (also in summary.json)."""
    from slovo.data import load_dataset, load_tokenizer, token_byte_lengths
    from slovo.generate import sample_texts
    from slovo.terminal import TrainDisplay
    from slovo.tracking import make_trackers

    run_dir = Path(run_dir)
    require_budget(cfg)
    budget = Budget(budget_seconds(cfg), cfg.budget.max_steps, cfg.budget.max_tokens)
    clock = clock or Clock()
    dist = Dist()
    display = TrainDisplay(quiet=quiet or not dist.is_main)

    # ---- setup: device, data, model, optimizer ----------------------------------------------
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    device = dist.device(pick_device(cfg.train.device))
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ds = load_dataset(cfg.data.path)
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = ds.vocab_size
    elif cfg.model.vocab_size < ds.vocab_size:
        raise SlovoError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the dataset's vocabulary ({ds.vocab_size})")
    tokenizer = load_tokenizer(ds.tokenizer_path)
    token_bytes = token_byte_lengths(tokenizer)
    seq_len = cfg.model.seq_len
    from slovo.data.loader import BatchLoader
    from slovo.model import GPT

    try:
        windows = eval_windows(ds.val, seq_len, cfg.eval.tokens)
        loader = BatchLoader(ds.train, cfg.train.per_device_train_batch_size, seq_len, cfg.train.seed, rank=dist.rank, device=device)
    except ValueError as e:  # a split shorter than one window of model.seq_len + 1 tokens
        raise SlovoError(f"{cfg.data.path}: {e}; use a smaller model.seq_len or more text") from None
    torch.manual_seed(cfg.train.seed)
    model = GPT(cfg.model).to(device)
    optimizer = make_optimizer(model, cfg, device)
    state = TrainState()
    tokens_per_step = cfg.train.per_device_train_batch_size * cfg.train.gradient_accumulation_steps * seq_len * dist.world
    autocast = autocast_for(cfg, device)
    scaler = torch.amp.GradScaler(device.split(":")[0]) if cfg.train.dtype == "float16" else None
    use_compile = cfg.train.compile == "true" or (cfg.train.compile == "auto" and device.startswith("cuda"))

    # ---- run folder ---------------------------------------------------------------------------
    if resume:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise SlovoError(f"{run_dir}: no checkpoint to resume from; start the run again without --resume")
        saved = load_training_state(ckpt, model)
        optimizer.load_state_dict(saved["optimizer"])
        loader.load_state_dict(saved["loader"])
        clock.load_state_dict(saved["clock"])
        state.load_state_dict(saved["loop"])
        _set_rng_state(saved["rng"])
        if scaler is not None and "scaler" in saved:
            scaler.load_state_dict(saved["scaler"])
        started = read_json(run_dir / "summary.json").get("started") if (run_dir / "summary.json").exists() else None
        display.say(f"resuming [bold]{run_dir}[/] from step {state.step} ({clock.train_time:.1f}s of training spent)")
    else:
        started = _now()
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ds.tokenizer_path, run_dir / "tokenizer.json")
    if dist.is_main:
        save_config(cfg, run_dir / "config.yaml")
        atomic_write_json(run_dir / "run.json", _run_info(cfg, run_dir, ds, model, device, tokens_per_step, dist.world))
        tracker = make_trackers(cfg, run_dir, resume=resume)
        if resume:
            tracker.truncate_after(state.step)  # records written after the checkpoint belong to the lost future
    else:
        tracker = NullTracker()

    eval_model = torch.compile(model) if use_compile else model  # compiled once, for both uses
    train_model = dist.wrap(eval_model, device)
    peak = peak_flops(device)
    flops_per_token = model.flops_per_token()
    summary: dict[str, Any] = {"name": run_dir.name, "status": "running", "preset": cfg.preset, "started": started,
                               "params": model.num_params(), "budget": budget.as_dict(),
                               "pid": os.getpid(), "host": socket.gethostname()}  # lets `slovo runs` spot a dead run

    def write_summary(status: str, **extra) -> dict:
        summary.update(_figures(state, clock, ds, seq_len, flops_per_token), status=status, **extra)
        if dist.is_main:
            atomic_write_json(run_dir / "summary.json", summary)
        return summary

    def record(metrics: dict) -> dict:
        full = {"train/global_step": state.step, "train_time": round(clock.train_time, 4), "tokens": state.tokens,
                "progress": round(state.progress, 6), "wall_time": time.time(), **metrics}
        tracker.log(full, state.step)
        return full

    def run_eval() -> dict:
        with clock.measure("eval"):
            metrics = evaluate(eval_model, windows[dist.rank :: dist.world], token_bytes,
                               cfg.eval.batch_size or cfg.train.per_device_train_batch_size, device, autocast,
                               reduce=(lambda v: dist.sum(v, device)) if dist.enabled else None)
        if not math.isfinite(metrics["eval/loss"]):
            raise _Diverged(f"eval loss became {metrics['eval/loss']} at step {state.step} (try a lower optim.lr)")
        state.last_eval = {k: metrics[k] for k in ("eval/loss", "eval/bpb", "eval/perplexity")}
        state.last_eval_train_time, state.last_eval_step = clock.train_time, state.step
        state.best_eval_loss = min(state.best_eval_loss, metrics["eval/loss"])
        state.best_eval_bpb = min(state.best_eval_bpb, metrics["eval/bpb"])
        full = record({k: metrics[k] for k in ("eval/loss", "eval/perplexity", "eval/bpb", "eval/runtime")})
        display.eval_line(state, clock, metrics)
        if cfg.sample.enabled and dist.is_main:
            with clock.measure("sample"):
                samples = sample_texts(model, tokenizer, cfg.sample, device)
            stamp = {"train/global_step": state.step, "train_time": round(clock.train_time, 4), "tokens": state.tokens}
            tracker.log_samples([{**stamp, **s} for s in samples], state.step)
            summary["last_samples"] = samples
        for cb in callbacks:
            if hasattr(cb, "on_eval"):
                cb.on_eval(state, full)
        write_summary("running")
        return metrics

    def checkpoint(final: bool = False) -> None:
        if not dist.is_main:
            return
        with clock.measure("checkpoint"):
            payload = {"optimizer": optimizer.state_dict(), "loader": loader.state_dict(), "clock": clock.state_dict(),
                       "loop": state.state_dict(), "rng": _rng_state()}
            if scaler is not None:
                payload["scaler"] = scaler.state_dict()
            info = {"tokens": state.tokens, "train_time": clock.train_time, "final": final}
            path = save_checkpoint(run_dir, state.step, model, payload, info)
            prune_checkpoints(run_dir, cfg.checkpoint.keep_last, keep=path)
            state.last_ckpt_train_time = clock.train_time

    write_summary("running")
    display.start(cfg, model, device, tokens_per_step, budget, ds)
    window_losses: list[float] = []
    window_start = (clock.train_time, state.tokens)
    first_step = True
    status = "finished"
    try:
        with _StopOnSigint(state, display.say), display.progress_bar(budget) as bar:
            # ---- the loop --------------------------------------------------------------------
            while True:
                reason = budget_mod.exhausted(budget, clock.train_time, state.step, state.tokens)
                progress = budget_mod.progress(budget, clock.train_time, state.step, state.tokens)
                stop, state.progress = dist.agree([float(bool(reason or state.should_stop)), progress], device)
                if stop:
                    state.stop_reason = state.stop_reason or reason or "time"
                    break
                lr = cfg.optim.lr * lr_factor(cfg.schedule, state.progress, state.step)
                for group in optimizer.param_groups:
                    group["lr"] = lr

                step_start, data_time = clock.now(), 0.0
                loss_sum = torch.zeros((), device=device)
                accumulation = cfg.train.gradient_accumulation_steps
                for micro in range(accumulation):
                    t = clock.now()
                    x, y = loader.next_batch()
                    data_time += clock.now() - t
                    with dist.no_sync(train_model, micro == accumulation - 1), autocast or nullcontext():
                        _, loss = train_model(x, y)
                        loss = loss / accumulation
                        loss_sum += loss.detach()
                        (scaler.scale(loss) if scaler else loss).backward()
                if scaler is not None:
                    scaler.unscale_(optimizer)
                max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step_loss = float(loss_sum)  # syncs the device, so the step's time below is real
                step_time = clock.now() - step_start
                # The first step of a compiled model is mostly compilation: keep it off the budget.
                clock.ledger["compile" if (first_step and use_compile) else "train"] += step_time - data_time
                clock.ledger["data"] += data_time
                first_step = False
                state.step += 1
                state.tokens += tokens_per_step
                progress = budget_mod.progress(budget, clock.train_time, state.step, state.tokens)
                # Ranks must agree on what follows (evals are collective), so they share progress and time.
                diverged = not (math.isfinite(step_loss) and math.isfinite(grad_norm))
                state.progress, synced_time, any_diverged = dist.agree([progress, clock.train_time, float(diverged)], device)

                if any_diverged:
                    bad = step_loss if not math.isfinite(step_loss) else f"finite but the grad norm {grad_norm}"
                    raise _Diverged(f"loss became {bad} at step {state.step} (try a lower optim.lr)")
                window_losses.append(step_loss)
                bar.update(state, clock, step_loss, lr)
                if state.step % cfg.train.log_every == 0:
                    elapsed = clock.train_time - window_start[0]
                    tps = (state.tokens - window_start[1]) / elapsed if elapsed > 0 else 0.0
                    metrics = record({
                        "train/loss": sum(window_losses) / len(window_losses),
                        "train/learning_rate": lr,
                        "train/grad_norm": grad_norm,
                        "train/epoch": state.tokens / len(ds.train),
                        "train/tokens_per_second": tps,
                        "train/mfu": (flops_per_token * tps / peak) if peak else None,
                        "total_flos": flops_per_token * state.tokens,
                    })
                    window_losses, window_start = [], (clock.train_time, state.tokens)
                    for cb in callbacks:
                        if hasattr(cb, "on_log"):
                            cb.on_log(state, metrics)

                # eval at evenly spaced progress points (or every N seconds); the final one follows the loop
                if _eval_due(cfg, state, synced_time):
                    if budget_mod.exhausted(budget, clock.train_time, state.step, state.tokens) is None:
                        run_eval()
                c = cfg.checkpoint
                if (c.every_steps and state.step % c.every_steps == 0) or (
                    c.every_seconds and clock.train_time - state.last_ckpt_train_time >= c.every_seconds
                ):
                    checkpoint()
        if state.stop_reason == "interrupted":
            status = "interrupted"
        elif state.stop_reason == "pruned":
            status = "pruned"
        if state.last_eval_step != state.step:  # a run stopped right after an eval needs no second one
            run_eval()
        checkpoint(final=status == "finished")
    except _Diverged as e:
        status = "failed"
        summary["error"] = str(e)
        display.say(f"[red]stopped: {e}[/]")
    except BaseException as e:
        summary["error"] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        write_summary("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", ended=_now(), stop_reason=state.stop_reason)
        tracker.close()
        dist.close(wait=False)  # another rank may be gone: meeting it could hang
        raise
    result = write_summary(status, ended=_now(), stop_reason=state.stop_reason)
    tracker.close()
    dist.close()
    report = _write_report(run_dir, display) if cfg.tracking.report and dist.is_main else None
    display.finish(run_dir, result, tracker, report)
    return result


def _write_report(run_dir: Path, display) -> Path | None:
    """The run's own HTML report; a failure here must not fail a run that trained fine."""
    from slovo.report import write_report

    try:
        write_report([run_dir], run_dir / "report.html")
        return run_dir / "report.html"
    except Exception as e:  # noqa: BLE001 - reported, and the run's files are all there already
        display.say(f"[yellow]could not write the report: {e}[/]")
        return None


def _eval_due(cfg: Config, state: TrainState, train_time: float) -> bool:
    """True when the run has passed its next eval point; advances the point past the current progress."""
    if cfg.eval.every_seconds:
        return train_time - state.last_eval_train_time >= cfg.eval.every_seconds
    every = cfg.eval.every
    if not every or state.next_eval >= every or state.progress < state.next_eval / every:
        return False
    while state.next_eval < every and state.progress >= state.next_eval / every:
        state.next_eval += 1
    return True


class _Diverged(Exception):
    pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _figures(state: TrainState, clock: Clock, ds, seq_len: int, flops_per_token: float) -> dict:
    t = clock.train_time
    return {
        **state.last_eval,
        "best/eval_loss": state.best_eval_loss if math.isfinite(state.best_eval_loss) else None,
        "best/eval_bpb": state.best_eval_bpb if math.isfinite(state.best_eval_bpb) else None,
        "train/global_step": state.step,
        "train_runtime": round(t, 3),
        "tokens": state.tokens,
        "train/epoch": state.tokens / len(ds.train),
        "train_tokens_per_second": state.tokens / t if t > 0 else None,
        "train_samples_per_second": state.tokens / seq_len / t if t > 0 else None,
        "total_flos": flops_per_token * state.tokens,
        "ledger": {k: round(v, 3) for k, v in clock.ledger.items()},
        "progress": state.progress,
    }


def _run_info(cfg: Config, run_dir: Path, ds, model, device: str, tokens_per_step: int, world: int) -> dict:
    meta = ds.meta
    return {
        "name": run_dir.name,
        "created": _now(),
        "command": " ".join(sys.argv),
        "dataset": {
            "path": str(Path(cfg.data.path).resolve()),
            "fingerprint": meta.get("fingerprint"),
            "tokenizer_sha256": (meta.get("tokenizer") or {}).get("sha256"),
            "vocab_size": ds.vocab_size,
            "train_tokens": len(ds.train),
            "val_tokens": len(ds.val),
        },
        "code": code_version(),
        "torch": torch.__version__,
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else device,
        "threads": torch.get_num_threads(),
        "params": model.num_params(),
        "non_embedding_params": model.num_params(embedding=False),
        "flops_per_token": model.flops_per_token(),
        "tokens_per_step": tokens_per_step,
        "world_size": world,
        "config": to_dict(cfg),
    }
