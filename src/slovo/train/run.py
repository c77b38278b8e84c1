"""What a run trains with, built once from the config and never changed: device, data, model, optimizer,
precision. Everything that changes while it trains lives in `TrainState` or in the component that uses it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from slovo.accel import (
    cache_notice,
    choose_compile,
    choose_run_dtype,
    choose_run_muon_ns_dtype,
    compare_float32,
    remember,
    shape_key,
)
from slovo.config import Config
from slovo.data import Dataset, load_dataset, load_tokenizer, token_byte_lengths
from slovo.data.loader import BatchLoader
from slovo.device import (
    autocast_for,
    device_name,
    device_type,
    enable_fast_matmul,
    peak_flops,
    pick_device,
    set_threads,
)
from slovo.distributed import Dist
from slovo.errors import SlovoError
from slovo.evaluate import eval_windows, whole_split_note
from slovo.model import GPT
from slovo.optim import make_optimizer
from slovo.train.run_folder import run_info
from slovo.train.state import Budget, Clock, TrainState


@dataclass(frozen=True)
class Models:
    """Three handles on the model: `model` holds the whole weights (evals, samples, checkpoints), `trained` is what
    the optimizer steps (an FSDP-sharded copy under distributed.strategy=fsdp, else `model`), and `train_model` /
    `eval_model` are what the steps and evals call (compiled, DDP-wrapped)."""

    model: GPT
    trained: torch.nn.Module
    train_model: torch.nn.Module
    eval_model: torch.nn.Module
    dist: Dist

    def gather_weights(self) -> None:
        """FSDP: bring the trained shards into the whole model on every rank (a collective); else nothing."""
        self.dist.gather_weights(None if self.trained is self.model else self.trained, self.model)


@dataclass(frozen=True)
class EvalData:
    """What evals score: the eval windows (spread over the whole validation split) and the bytes per token."""

    windows: np.ndarray
    token_bytes: np.ndarray  # UTF-8 bytes each token id stands for (bits per byte)
    tokenizer: object
    note: str | None  # said at the first eval: the validation split is smaller than eval.tokens
    val_documents: int | None  # meta.json's split.val_documents, shown in the summary


@dataclass(frozen=True)
class Run:
    """The run's fixed parts, built once: data, models, optimizer, precision and compile choices."""

    cfg: Config
    dist: Dist
    device: str
    ds: Dataset
    eval_data: EvalData
    loader: BatchLoader
    models: Models
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None  # float16 only
    autocast: object  # a context manager factory's result, or None for float32
    dtype: str
    dtype_reason: str
    muon_ns_dtype: str | None  # the Newton-Schulz dtype Muon chose (None: not Muon, or nothing to choose)
    muon_ns_reason: str | None
    cache_notice: str | None  # the speed cache could not be used (another processor's, damaged): said at the start
    compiled: bool
    compile_reason: str
    speed_key: str  # the accel speed cache's key for this shape, device and dtype
    tokens_per_step: int  # over all ranks
    peak_flops: float | None
    flops_per_token: float

    def description(self, budget: Budget) -> dict:
        """run.json's facts."""
        info = run_info(
            self.cfg, self.ds, self.models.model, self.device, self.tokens_per_step, self.dist.world, budget.as_dict()
        )
        return {**info, "dtype": self.dtype, "compiled": self.compiled, "muon_ns_dtype": self.muon_ns_dtype}


def _compile_choice(cfg: Config, dist: Dist, device: str, budget: Budget, speed_key: str) -> tuple[bool, str]:
    """(compile?, why): rank 0 decides for all (ranks reading their own speed caches could choose differently);
    a compiled CPU run trains in torch's deterministic mode."""
    choice = choose_compile(cfg.train.compile, device, budget.time_s, speed_key) if dist.is_main else None
    compiled, reason = dist.broadcast(choice)
    if compiled and device_type(device) == "cpu":
        _deterministic_cpu_kernels()
    return compiled, reason


def _deterministic_cpu_kernels() -> None:
    """A compiled model on a CPU sums the token embedding's gradient with atomic adds from several threads
    (inductor's scatter-add), in an order that varies from run to run: 1-ulp differences that an unbroken run and
    a resumed one amplify into different losses (tiny preset, 12 steps against 6 + 6: 2.7e-4 apart). In torch's
    deterministic mode inductor leaves that sum to the ordered eager kernel, and they agree exactly. Process-wide
    (the mode is part of what compiled code is guarded on); warn_only, as the CPU kernels a run uses all have a
    deterministic form; uninitialised memory is not filled with NaN (a debugging aid that costs every allocation)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def build_run(cfg: Config, dist: Dist, budget: Budget) -> Run:
    """Load the data, build the model and optimizer, choose precision and compilation (rank 0 chooses the dtype
    for all: every rank must train in the same one). Fills in `model.vocab_size` from the dataset when 0."""
    set_threads(cfg.train.num_threads)
    device = dist.device(pick_device(cfg.train.device))
    enable_fast_matmul(device)
    ds, windows, loader = _load_data(cfg, dist, device)
    tokenizer = load_tokenizer(ds.tokenizer_path)
    torch.manual_seed(cfg.train.seed)
    model = GPT(cfg.model).to(device)
    sharded = dist.shard(model, cfg)  # distributed.strategy=fsdp on several ranks, else None
    trained = sharded if sharded is not None else model
    notice = cache_notice() if dist.is_main else None  # read before this run's figures go in
    # rank 0 chooses (and measures, on a CPU) for all: every rank must train in the same precision
    choices = (
        (choose_run_dtype(cfg, device, model), choose_run_muon_ns_dtype(cfg, device, model)) if dist.is_main else None
    )
    (dtype, dtype_reason), muon_ns = dist.broadcast(choices)
    muon_ns_dtype, muon_ns_reason = muon_ns or (None, None)
    dist.check_precision(cfg, dtype)
    optim_cfg = dataclasses.replace(cfg.optim, muon_ns_dtype=muon_ns_dtype or cfg.optim.muon_ns_dtype)
    optimizer = make_optimizer(trained, optim_cfg, device)
    speed_key = shape_key(cfg, device_name(device), dtype)
    compiled, compile_reason = _compile_choice(cfg, dist, device, budget, speed_key)
    eval_model = torch.compile(model) if compiled else model  # compiled once, for both uses
    return Run(
        cfg=cfg,
        dist=dist,
        device=device,
        ds=ds,
        eval_data=EvalData(
            windows=windows,
            token_bytes=token_byte_lengths(tokenizer),
            tokenizer=tokenizer,
            note=whole_split_note(len(ds.val), cfg.model.seq_len, cfg.eval.tokens),
            val_documents=(ds.meta.get("split") or {}).get("val_documents"),
        ),
        loader=loader,
        models=Models(model, trained, dist.wrap(eval_model, device, sharded, compiled), eval_model, dist),
        optimizer=optimizer,
        scaler=torch.amp.GradScaler(device_type(device)) if dtype == "float16" else None,
        autocast=autocast_for(dtype, device),
        dtype=dtype,
        dtype_reason=dtype_reason,
        muon_ns_dtype=muon_ns_dtype,
        muon_ns_reason=muon_ns_reason,
        cache_notice=notice,
        compiled=compiled,
        compile_reason=compile_reason,
        speed_key=speed_key,
        tokens_per_step=cfg.train.per_device_train_batch_size
        * cfg.train.gradient_accumulation_steps
        * cfg.model.seq_len
        * dist.world,
        peak_flops=peak_flops(device),
        flops_per_token=model.flops_per_token(),
    )


def _load_data(cfg: Config, dist: Dist, device: str) -> tuple[Dataset, np.ndarray, BatchLoader]:
    """The dataset, the eval windows (spread over the whole validation split) and this rank's batch loader."""
    ds = load_dataset(cfg.data.path)
    if cfg.model.vocab_size == 0:
        cfg.model.vocab_size = ds.vocab_size
    elif cfg.model.vocab_size < ds.vocab_size:
        raise SlovoError(
            f"model.vocab_size={cfg.model.vocab_size} is smaller than the dataset's vocabulary ({ds.vocab_size})"
        )
    seq_len, batch = cfg.model.seq_len, cfg.train.per_device_train_batch_size
    try:
        windows = eval_windows(ds.val, seq_len, cfg.eval.tokens)
        loader = BatchLoader(ds.train, batch, seq_len, cfg.train.seed, rank=dist.rank, device=device)
    except ValueError as e:  # a split shorter than one window of model.seq_len + 1 tokens
        raise SlovoError(f"{cfg.data.path}: {e}; use a smaller model.seq_len or more text") from None
    return ds, windows, loader


def warn_slow_bf16(run: Run, clock: Clock, say: Callable[[str], None]) -> None:
    """An explicit bf16 on a CPU can be many times slower than float32: measure both once and say so."""
    cfg = run.cfg
    if run.device != "cpu" or cfg.train.dtype != "bfloat16":
        return  # 'auto' measured itself when it chose
    with clock.measure("probe"):
        rate, fp32 = compare_float32(
            run.models.model, cfg.train.per_device_train_batch_size, cfg.model.seq_len, run.device, run.autocast
        )
    if rate < fp32:
        say(
            f"[yellow]train.dtype={cfg.train.dtype} on this CPU runs at {rate:,.0f} tokens/s against "
            f"{fp32:,.0f} in float32 (forward+backward, measured now); train.dtype=auto picks the faster[/]"
        )


def remember_speed(run: Run, clock: Clock, state: TrainState) -> None:
    """Keep this run's step time (and compile time) for the next train.compile=auto decision."""
    steps = state.step - (1 if run.compiled else 0)
    if not run.dist.is_main or run.dist.enabled or steps < 10:
        return
    step_s = clock.ledger["train"] / steps
    if run.compiled:
        remember(run.speed_key, compile_s=clock.ledger["compile"], compiled_step_s=step_s)
    else:
        remember(run.speed_key, eager_step_s=step_s)
