"""Where a run computes and how fast that device can go: device choice, autocast, and the peak FLOP/s for MFU.

MFU (model FLOPs utilisation) = achieved training FLOP/s per device / the device's peak dense bf16 FLOP/s.
The peak is looked up by the exact name CUDA reports, so an "H100 PCIe" is never taken for an "H100 SXM";
an unknown card (and every CPU) has no peak and its MFU is reported as null.
"""

from __future__ import annotations

from contextlib import contextmanager

# Peak dense (no sparsity) bf16 tensor-core FLOP/s, from the vendors' datasheets, keyed by
# torch.cuda.get_device_name(). Add a card here when you have measured slovo on it.
PEAK_BF16_FLOPS = {
    "NVIDIA H100 80GB HBM3": 989e12,  # SXM5
    "NVIDIA H100": 989e12,  # SXM5, as some drivers name it
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA H100 NVL": 835e12,
    "NVIDIA H200": 989e12,  # same compute as the H100 SXM, more and faster memory
    "NVIDIA H200 NVL": 835e12,
    "NVIDIA GH200 480GB": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA L4": 121e12,
    "NVIDIA A10": 125e12,
    "NVIDIA A10G": 70e12,
    "NVIDIA GeForce RTX 4090": 165e12,
    "NVIDIA GeForce RTX 3090": 71e12,
}


def pick_device(name: str = "auto") -> str:
    """'auto' -> cuda if there is one, else mps, else cpu; any other name is used as given."""
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def nvidia_driver_present() -> bool:
    """Whether this machine has an NVIDIA driver: `nvidia-smi` on PATH or the kernel module's /proc folder."""
    import os
    import shutil

    return shutil.which("nvidia-smi") is not None or os.path.isdir("/proc/driver/nvidia")


def unused_gpu_notice() -> str | None:
    """One line when an NVIDIA driver is here but this torch cannot use CUDA (a CPU build, or a CUDA build the
    driver is too old for): train.device=auto would then train on the CPU beside an idle GPU. None otherwise."""
    import torch

    if torch.cuda.is_available() or not nvidia_driver_present():
        return None
    if torch.version.cuda is None:
        why = f"torch {torch.__version__} is a CPU build"
    else:
        why = f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use this machine's driver"
    return (
        f"an NVIDIA driver is present but {why}: training runs on the CPU. Install a CUDA build: "
        "`make install` (it picks one from nvidia-smi) or pip install torch --index-url "
        "https://download.pytorch.org/whl/cu128"
    )


def warn_unused_gpu(command: str) -> None:
    """`slovo train` / `tune` with train.device=auto: the unused-GPU line on stderr, once (rank 0 under torchrun)."""
    import os
    import sys

    notice = unused_gpu_notice() if os.environ.get("RANK", "0") == "0" else None
    if notice:
        print(f"slovo {command}: {notice}", file=sys.stderr)


def device_type(device: str) -> str:
    """'cuda:1' -> 'cuda'."""
    return device.split(":")[0]


def resolve_dtype(dtype: str, device: str, no_bf16: str = "float16") -> str:
    """train.dtype 'auto' -> bf16 autocast on a CUDA card with native bf16 (compute capability 8.0 and later),
    `no_bf16` on older cards (T4, V100: bf16 is emulated there and slow; fp16 autocast with the GradScaler, or
    float32 for Muon's Newton-Schulz), float32 elsewhere. Training decides a CPU's 'auto' by measuring
    (slovo.accel.choose_dtype); this is the answer for everything that does not measure."""
    if dtype == "auto":
        if not device.startswith("cuda"):
            return "float32"
        return "bfloat16" if cuda_has_native_bf16(device) else no_bf16
    return dtype


def cuda_has_native_bf16(device: str = "cuda") -> bool:
    """Whether this CUDA card computes bf16 in hardware (Ampere, compute capability 8.0, and later). With no card
    to ask (a decision about CUDA made on a machine without one), a current card is assumed: yes."""
    import torch

    if not torch.cuda.is_available():
        return True
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # a torch before the argument existed
        return torch.cuda.get_device_capability(device)[0] >= 8


def cpu_bf16_instructions() -> list[str]:
    """The bf16 matrix instructions this CPU has, of AMX tiles and AVX-512 BF16 (as torch's cpuinfo reports
    them: the hardware, whatever ATEN_CPU_CAPABILITY allows)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = {"amx": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    return [name for name, check in checks.items() if getattr(cpu, check, lambda: False)()]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX tiles or AVX-512 BF16), where bf16 can beat
    float32. Without them oneDNN emulates bf16 and it is many times slower."""
    return bool(cpu_bf16_instructions())


def autocast_for(dtype: str, device: str):
    """The autocast context for train.dtype on `device`, or None for plain float32."""
    import torch

    dtype = resolve_dtype(dtype, device)
    if dtype == "float32":
        return None
    return torch.autocast(device_type=device_type(device), dtype=getattr(torch, dtype))


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.startswith("cuda") else device


def peak_flops(device: str) -> float | None:
    """Peak dense bf16 FLOP/s of one device, or None where unknown (CPUs, cards not in PEAK_BF16_FLOPS)."""
    if not device.startswith("cuda"):
        return None
    return PEAK_BF16_FLOPS.get(device_name(device))


def set_threads(n: int) -> None:
    """Use `n` CPU threads for torch (train.num_threads, generate --threads); 0 leaves torch's default."""
    import torch

    if n:
        torch.set_num_threads(n)


@contextmanager
def true_float32():
    """float32 matmuls and convolutions in full precision inside (TF32 off), as they were after: suite scoring
    during training then ranks close pairs as `slovo eval --suite` does afterwards, in a process without TF32."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def enable_fast_matmul(device: str) -> None:
    """TF32 for the float32 matmuls that remain under autocast (CUDA only)."""
    import torch

    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
