"""Choosing the fast path for this machine: whether `torch.compile` pays back, and whether bf16 wins.

`train.compile=auto` compiles when the budget is long enough for the compiled speed-up to win back the
compile time: budget_seconds x (eager_step / compiled_step - 1) > compile_seconds. The step times and the
compile time are measured by earlier runs of the same shape on the same device and torch version and kept
in a small cache (`$SLOVO_CACHE_DIR`, else `~/.cache/slovo/speed.json`); until a shape has been measured
both ways, defaults stand in (CUDA: 25 s for 2x, as measured on an H200; CPU: 47 s for 17%, as measured for
the tiny preset on 2 cores). The run says which it chose and why.

`train.dtype=auto` on a CPU with bf16 matrix hardware (AMX, AVX-512 BF16) measures a forward+backward both ways
once per shape and takes bf16 autocast only where it is faster; on the 2-core Sapphire Rapids machine of
bench/results the tiny shape runs 1.5x faster in bf16 eager and 2.5x compiled.
"""

from __future__ import annotations

import os
from pathlib import Path

from slovo.utils import atomic_write_json, read_json_dict

# Stand-ins until this machine has measured a shape: (compile seconds, speed-up of a compiled step).
# CUDA: bench/results/gpu_check_h200.md (base preset: 22 s of compiling, 2.13x the eager step rate);
# CPU: the tiny preset on 2 cores (47 s, 1.17x).
DEFAULT_COMPILE = {"cuda": (25.0, 2.0), "cpu": (47.0, 1.17), "mps": (60.0, 1.0)}


def cache_path() -> Path:
    root = os.environ.get("SLOVO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "slovo")
    return Path(root) / "speed.json"


def shape_key(cfg, device_name: str, dtype: str | None = None) -> str:
    """Runs with this key compile alike and step alike (dtype: the resolved one, not 'auto')."""
    import torch

    m, t = cfg.model, cfg.train
    return (
        f"{device_name}|torch {torch.__version__}|{m.n_layer}x{m.n_embd}/{m.n_head}h/{m.seq_len}|"
        f"b{t.per_device_train_batch_size}x{t.gradient_accumulation_steps}|{dtype or t.dtype}|{cfg.optim.name}|"
        f"threads {torch.get_num_threads()}"
    )


# bf16 must beat float32 by this much before train.dtype=auto takes it on a CPU (the probe's own noise)
CPU_BF16_MIN_SPEEDUP = 1.1


def choose_dtype(setting: str, device: str, key: str, measure) -> tuple[str, str]:
    """(dtype, why) for train.dtype. 'auto' is bf16 autocast on CUDA. On a CPU with bf16 matrix hardware
    (AMX, AVX-512 BF16) it is bf16 when a forward+backward measured both ways runs at least
    CPU_BF16_MIN_SPEEDUP times faster than float32, else float32; CPUs without that hardware get float32
    unmeasured. `measure()` -> (bf16 tokens/s, float32 tokens/s); its answer is kept per shape in the speed cache.
    """
    from slovo.device import cpu_has_native_bf16, device_type, resolve_dtype

    if setting != "auto" or device_type(device) != "cpu":
        return resolve_dtype(setting, device), f"train.dtype={setting}"
    if not cpu_has_native_bf16():
        return "float32", "auto: float32 (this CPU has no bf16 matrix instructions)"
    seen = measured(key)
    source = "measured earlier on this machine"
    if "bf16_tokens_per_s" not in seen or "fp32_tokens_per_s" not in seen:
        bf16, fp32 = measure()
        remember(key, bf16_tokens_per_s=bf16, fp32_tokens_per_s=fp32)
        seen, source = {"bf16_tokens_per_s": bf16, "fp32_tokens_per_s": fp32}, "measured now"
    bf16, fp32 = seen["bf16_tokens_per_s"], seen["fp32_tokens_per_s"]
    dtype = "bfloat16" if bf16 >= CPU_BF16_MIN_SPEEDUP * fp32 else "float32"
    return dtype, (
        f"auto: {dtype}: bf16 autocast {bf16:,.0f} against float32 {fp32:,.0f} tokens/s (forward+backward, {source})"
    )


def measured(key: str) -> dict:
    return read_json_dict(cache_path()).get(key) or {}


def remember(key: str, **figures: float) -> None:
    """Keep this run's measured figures for the next decision (best effort: a read-only home is fine)."""
    try:
        data = read_json_dict(cache_path())
        data[key] = {**(data.get(key) or {}), **{k: round(v, 6) for k, v in figures.items()}}
        atomic_write_json(cache_path(), data)
    except OSError:
        pass


def compile_stand_in(device: str) -> tuple[float, float]:
    """(compile seconds, speed-up) assumed for `device` until this machine has measured a shape."""
    from slovo.device import device_type

    return DEFAULT_COMPILE.get(device_type(device), (60.0, 1.0))


def choose_compile(setting: str, device: str, budget_s: float | None, key: str) -> tuple[bool, str]:
    """(compile?, why) for train.compile = auto | true | false."""
    from slovo.device import device_type

    if setting != "auto":
        return setting == "true", f"train.compile={setting}"
    kind = device_type(device)
    seen = measured(key)
    compile_s, speedup = compile_stand_in(device)
    source = "defaults for " + kind
    if "compile_s" in seen and "eager_step_s" in seen and "compiled_step_s" in seen:
        compile_s, speedup = seen["compile_s"], seen["eager_step_s"] / seen["compiled_step_s"]
        source = "measured on this machine"
    if budget_s is None:
        use = kind == "cuda"
        return use, f"auto: no time budget, {'compiling on CUDA' if use else 'eager off CUDA'}"
    won_back = budget_s * (speedup - 1.0)
    use = won_back > compile_s
    verdict = "compiling" if use else "not compiling"
    return use, (
        f"auto: {verdict}: a {budget_s:.0f}s budget x {speedup - 1:+.0%} speed wins back {won_back:.0f}s "
        f"against {compile_s:.0f}s of compiling ({source})"
    )


def choose_run_dtype(cfg, device: str, model=None) -> tuple[str, str]:
    """choose_dtype for a run of `cfg` on `device`: its bf16-vs-float32 measurement, when one is needed, times
    `model` (or a fresh GPT of cfg's shape) at cfg's batch and context. Training and tune's plan both use it."""
    from slovo.device import autocast_for, device_name

    def measure() -> tuple[float, float]:
        from slovo.model import GPT

        measured_model = model if model is not None else GPT(cfg.model).to(device)
        batch, seq_len = cfg.train.per_device_train_batch_size, cfg.model.seq_len
        return compare_float32(measured_model, batch, seq_len, device, autocast_for("bfloat16", device))

    return choose_dtype(cfg.train.dtype, device, shape_key(cfg, device_name(device), "bf16-vs-fp32"), measure)


def compare_float32(model, batch: int, seq_len: int, device: str, autocast, steps: int = 2) -> tuple[float, float]:
    """(tokens/s under `autocast`, tokens/s in float32) of forward+backward on a random batch, gradients
    discarded: tells whether bf16 on this CPU is a loss. Costs a few steps' time (kept off the budget clock)."""
    import time
    from contextlib import nullcontext

    import torch

    gen = torch.Generator().manual_seed(0)  # its own generator: the run's RNG stream stays untouched
    tokens = torch.randint(0, model.cfg.vocab_size, (batch, seq_len + 1), generator=gen).to(device)
    x, y = tokens[:, :-1], tokens[:, 1:]
    rates = []
    for ctx in (autocast, None):
        for i in range(steps + 1):
            start = time.perf_counter()
            with ctx or nullcontext():
                _, loss = model(x, y)
            loss.backward()
            if i == 0:
                continue  # warm-up
            rates.append(x.numel() / (time.perf_counter() - start))
    model.zero_grad(set_to_none=True)
    half = len(rates) // 2
    return sum(rates[:half]) / half, sum(rates[half:]) / half
