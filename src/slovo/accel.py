"""Choosing the fast path for this machine: whether `torch.compile` pays back, and where bf16 wins.

`train.compile=auto` compiles when the budget is long enough for the compiled speed-up to win back the
compile time: budget_seconds x (eager_step / compiled_step - 1) > compile_seconds. The step times and the
compile time are measured by earlier runs of the same shape and kept in the speed cache; until a shape has
been measured both ways, defaults stand in. The run says which it chose and why.

bf16 is a choice twice over: `train.dtype` (autocast of the forward and backward) and `optim.muon_ns_dtype`
(Muon's Newton-Schulz iteration). On CUDA both are bf16. On a CPU, bf16 is fast only with matrix instructions
for it (AMX, AVX-512 BF16) and several times slower than float32 without them, so `auto` measures both ways
once per shape and takes bf16 only where it wins by CPU_BF16_MIN_SPEEDUP.

The speed cache (`$SLOVO_CACHE_DIR`, else `~/.cache/slovo/speed.json`) keeps figures per processor: the
section key names the CPU model, its bf16 instructions, the kernels ATen and oneDNN are allowed to use and the
torch version (or the CUDA card), so one machine's figures are never another's.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

from slovo.utils import atomic_write_json, read_json

# Stand-ins until this machine has measured a shape: (compile seconds, speed-up of a compiled step).
# CUDA: bench/results/gpu_check_h200.md (base preset: 22 s of compiling, 2.13x the eager step rate). On a CPU
# compiling has been measured to pay on one processor and to cost on another (bench/results/speedrun.md), so
# it promises nothing there until this processor has timed both ways: `train.compile=true` records the
# compiled step, an eager run the eager one.
DEFAULT_COMPILE = {"cuda": (25.0, 2.0), "cpu": (47.0, 1.0), "mps": (60.0, 1.0)}
CACHE_FORMAT = "slovo-speed/2"
# bf16 must beat float32 by this much before an `auto` takes it on a CPU (the probe's own noise)
CPU_BF16_MIN_SPEEDUP = 1.1


def cache_path() -> Path:
    root = os.environ.get("SLOVO_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "slovo")
    return Path(root) / "speed.json"


def cpu_model_name() -> str:
    """The processor's model name ('AMD EPYC 9R14', 'Intel(R) Xeon(R) Platinum 8488C'), as the OS reports it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Model name", "Hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def processor_id() -> str:
    """What makes this machine's speeds its own: the CPU model with its bf16 instructions, the kernel level ATen
    and oneDNN run at (ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA lower it) and the torch build. A CUDA card is
    named in each shape key."""
    import torch

    from slovo.device import cpu_bf16_instructions

    parts = [cpu_model_name(), platform.machine(), "+".join(cpu_bf16_instructions()) or "no bf16 instructions"]
    parts.append(f"ATen {torch.backends.cpu.get_cpu_capability()}")
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        parts.append(f"oneDNN {os.environ['ONEDNN_MAX_CPU_ISA']}")
    return " | ".join(parts) + f" | torch {torch.__version__}"


def shape_key(cfg, device_name: str, dtype: str | None = None) -> str:
    """Runs with this key compile alike and step alike (dtype: the resolved one, not 'auto')."""
    import torch

    m, t = cfg.model, cfg.train
    return (
        f"{device_name}|{m.n_layer}x{m.n_embd}/{m.n_head}h/{m.seq_len}/v{m.vocab_size}|"
        f"b{t.per_device_train_batch_size}x{t.gradient_accumulation_steps}|{dtype or t.dtype}|{cfg.optim.name}|"
        f"threads {torch.get_num_threads()}"
    )


def _load_cache_file() -> tuple[dict | None, str | None]:
    """(the speed cache's contents in this format, or None; why it was not usable, or None when missing or
    fine). `_read_cache` reports the reason, `remember` replaces an unusable file."""
    path = cache_path()
    if not path.exists():
        return None, None
    try:
        data = read_json(path)
    except (OSError, ValueError) as e:
        return None, f"unreadable ({type(e).__name__})"
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT or not isinstance(data.get("machines"), dict):
        return None, "written by another slovo (no processor recorded)"
    return data, None


def _read_cache() -> tuple[dict, str | None]:
    """(this processor's figures, a one-line notice when the file had figures it cannot use, else None)."""
    data, problem = _load_cache_file()
    if data is None:
        return {}, f"speed cache {cache_path()}: {problem}; ignored, measuring again" if problem else None
    here = processor_id()
    mine = data["machines"].get(here)
    if isinstance(mine, dict):
        return mine, None
    others = [k for k in data["machines"] if k != here]
    if not others:
        return {}, None
    return {}, f"speed cache {cache_path()}: figures of another processor or torch ({others[0]}); measuring on {here}"


def cache_notice() -> str | None:
    """One line when the speed cache holds figures this machine ignores (another processor, another torch, a
    corrupt file), else None."""
    return _read_cache()[1]


def measured(key: str) -> dict:
    """This processor's figures for `key`: only positive finite numbers (every figure is a time, a rate or a
    speed-up), so a hand-edited or damaged entry is measured again rather than crashing or dividing by zero."""
    figures = _read_cache()[0].get(key)
    if not isinstance(figures, dict):
        return {}
    return {
        k: float(v)
        for k, v in figures.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    }


def remember(key: str, **figures: float) -> None:
    """Keep this run's measured figures for the next decision (best effort: a read-only home is fine). Figures
    of other processors stay; a corrupt or old-format file is replaced."""
    data = _load_cache_file()[0] or {"format": CACHE_FORMAT, "machines": {}}
    here = processor_id()
    if not isinstance(data["machines"].get(here), dict):  # a damaged section is replaced
        data["machines"][here] = {}
    section = data["machines"][here]
    section[key] = {**measured(key), **{k: round(v, 6) for k, v in figures.items()}}
    try:
        atomic_write_json(cache_path(), data)
    except OSError:
        pass


def _bf16_if_faster(name: str, setting: str, device: str, key: str, measure, what: str, unit: str) -> tuple[str, str]:
    """(dtype, why) for the bf16-or-float32 setting `name`: explicit values are obeyed; 'auto' is bf16 on CUDA,
    float32 on a CPU without bf16 matrix instructions and, on one with them, bf16 where `measure()` -> (bf16 rate,
    float32 rate) finds it at least CPU_BF16_MIN_SPEEDUP times faster. A quick matmul check comes first: where bf16 is
    emulated (instructions present but barred, ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA) one bf16 step can take
    minutes, and the answer is float32 anyway. Measurements are kept per shape and processor."""
    from slovo.device import cpu_has_native_bf16, device_type, resolve_dtype

    if setting != "auto":
        return resolve_dtype(setting, device), f"{name}={setting}"
    if device_type(device) != "cpu":  # CUDA: bf16 where the card has it natively, else fp16 (train.dtype) or fp32
        dtype = resolve_dtype(setting, device, "float16" if name == "train.dtype" else "float32")
        why = "" if dtype == "bfloat16" or device_type(device) != "cuda" else " (this card has no native bf16)"
        return dtype, f"auto: {dtype} on {device_type(device)}{why}"
    if not cpu_has_native_bf16():
        return "float32", "auto: float32 (this CPU has no bf16 matrix instructions)"
    matmul = bf16_matmul_speedup()
    if matmul < 1 / EMULATED_BF16_SLOWDOWN:
        return "float32", f"auto: float32 (a bf16 matmul runs {1 / matmul:.0f}x slower than float32 here: emulated)"
    bf16_name, fp32_name = f"bf16_{unit.replace('/', '_per_')}", f"fp32_{unit.replace('/', '_per_')}"
    seen = measured(key)
    source = "measured earlier on this machine"
    if bf16_name not in seen or fp32_name not in seen:
        bf16, fp32 = measure()
        remember(key, **{bf16_name: bf16, fp32_name: fp32})
        seen, source = {bf16_name: bf16, fp32_name: fp32}, "measured now"
    bf16, fp32 = seen[bf16_name], seen[fp32_name]
    dtype = "bfloat16" if bf16 >= CPU_BF16_MIN_SPEEDUP * fp32 else "float32"
    return dtype, f"auto: {dtype}: bf16 {bf16:,.0f} against float32 {fp32:,.0f} {unit} ({what}, {source})"


# bf16 this many times slower than float32 in a plain matmul is emulation: no need to time a whole model
EMULATED_BF16_SLOWDOWN = 3.0


def bf16_matmul_speedup(size: int = 512) -> float:
    """float32 seconds / bf16 seconds of a size x size matmul on this CPU (best of 3 after a warm-up; a few ms
    with bf16 instructions, well under a second without). Cached per processor."""
    import torch

    key = f"matmul {size}"
    seen = measured(key)
    if "bf16_speedup" in seen:
        return seen["bf16_speedup"]
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=gen), torch.randn(size, size, generator=gen)
    a16, b16 = a.bfloat16(), b.bfloat16()
    bf16_s, fp32_s = best_of_alternating(lambda: a16 @ b16, lambda: a @ b, rounds=3)
    remember(key, bf16_speedup=fp32_s / bf16_s)
    return fp32_s / bf16_s


def choose_dtype(setting: str, device: str, key: str, measure) -> tuple[str, str]:
    """(dtype, why) for train.dtype; `measure()` -> (bf16 autocast tokens/s, float32 tokens/s) of a
    forward+backward. An explicit value is obeyed."""
    return _bf16_if_faster("train.dtype", setting, device, key, measure, "forward+backward", "tokens/s")


def choose_muon_ns_dtype(setting: str, device: str, key: str, measure) -> tuple[str, str]:
    """(dtype, why) for optim.muon_ns_dtype, the dtype of Muon's Newton-Schulz iteration; `measure()` ->
    (bf16, float32) orthogonalisations of the model's hidden matrices per second."""
    return _bf16_if_faster("optim.muon_ns_dtype", setting, device, key, measure, "Newton-Schulz", "matrices/s")


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
    measured_here = {"compile_s", "eager_step_s", "compiled_step_s"} <= seen.keys()
    if measured_here:
        compile_s, speedup = seen["compile_s"], seen["eager_step_s"] / seen["compiled_step_s"]
    else:
        compile_s, speedup = compile_stand_in(device)
    source = "measured on this machine" if measured_here else "defaults for " + kind
    if budget_s is None:
        use = kind == "cuda"
        return use, f"auto: no time budget, {'compiling on CUDA' if use else 'eager off CUDA'}"
    if speedup <= 1.0:
        if measured_here:
            return False, f"auto: not compiling: a compiled step ran at {speedup:.2f}x the eager step rate here"
        return (
            False,
            f"auto: not compiling: no compiled step of this shape timed on this {kind} yet (compile=true times one)",
        )
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


def choose_run_muon_ns_dtype(cfg, device: str, model) -> tuple[str, str] | None:
    """choose_muon_ns_dtype for a run of `cfg` whose optimizer is Muon (None for other optimizers): the
    measurement orthogonalises matrices of `model`'s hidden-matrix shapes."""
    from slovo.device import device_name

    if cfg.optim.name != "muon":
        return None
    from slovo.optim import hidden_matrices

    shapes = [tuple(p.shape) for p in hidden_matrices(model)[0]]
    key = f"{shape_key(cfg, device_name(device), 'muon-ns')}|ns {cfg.optim.muon_ns_steps}"
    return choose_muon_ns_dtype(
        cfg.optim.muon_ns_dtype, device, key, lambda: compare_ns_dtypes(shapes, cfg.optim.muon_ns_steps, device)
    )


def compare_ns_dtypes(
    shapes: list[tuple[int, int]], ns_steps: int, device: str, rounds: int = 3
) -> tuple[float, float]:
    """(bf16, float32) Newton-Schulz orthogonalisations per second over matrices of `shapes`: the best of
    `rounds` alternating rounds after a warm-up (the best, since other work on the machine only adds time).
    Costs a few optimizer steps' time, off the budget clock."""
    import torch

    from slovo.muon import orthogonalise

    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(shape, generator=gen).to(device) for shape in shapes]

    def orthogonalise_all(dtype):
        for g in grads:
            orthogonalise(g, ns_steps, dtype).sum().item()  # .item(): the work is done, not queued

    bf16_s, fp32_s = best_of_alternating(
        lambda: orthogonalise_all(torch.bfloat16), lambda: orthogonalise_all(torch.float32), rounds
    )
    return len(grads) / bf16_s, len(grads) / fp32_s


def best_of_alternating(first, second, rounds: int) -> tuple[float, float]:
    """(best seconds of `first`, best of `second`) over `rounds` rounds that alternate them, after one warm-up
    call of each."""
    import time

    best = [math.inf, math.inf]
    for i in range(rounds + 1):
        for side, work in enumerate((first, second)):
            start = time.perf_counter()
            work()
            if i > 0:
                best[side] = min(best[side], time.perf_counter() - start)
    return best[0], best[1]


def compare_float32(model, batch: int, seq_len: int, device: str, autocast, rounds: int = 3) -> tuple[float, float]:
    """(tokens/s under `autocast`, tokens/s in float32) of forward+backward on a random batch, gradients
    discarded, best of `rounds` alternating rounds: tells whether bf16 on this CPU is a loss. Costs a few steps'
    time (kept off the budget clock)."""
    from contextlib import nullcontext

    import torch

    gen = torch.Generator().manual_seed(0)  # its own generator: the run's RNG stream stays untouched
    tokens = torch.randint(0, model.cfg.vocab_size, (batch, seq_len + 1), generator=gen).to(device)
    x, y = tokens[:, :-1], tokens[:, 1:]

    def forward_backward(ctx):
        with ctx or nullcontext():
            _, loss = model(x, y)
        loss.backward()

    autocast_s, fp32_s = best_of_alternating(lambda: forward_backward(autocast), lambda: forward_backward(None), rounds)
    model.zero_grad(set_to_none=True)
    return x.numel() / autocast_s, x.numel() / fp32_s
