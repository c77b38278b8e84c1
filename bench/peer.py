"""What the peer benchmarks (bench_train.py, bench_engine.py) share so that a comparison means something: both
sides on one device, both final models scored one way, each side's device and precision recorded, and a
comparison across devices refused.

- Device: `--device auto` is CUDA where torch sees a card, else the CPU; slovo trains there (`train.device`) and
  HF Trainer too (`use_cpu` only on the CPU).
- HF precision (`--hf-precision`): `auto` is bf16 autocast on a CUDA card with native bf16, fp16 (with Trainer's
  GradScaler) on an older card, float32 on the CPU; or name it: fp32, bf16, fp16.
- Scoring: each side's final model by slovo's `evaluate` on the same windows, in true float32 (no autocast, TF32
  off), whatever precision it trained in, so neither side's bpb carries its eval's rounding.

Importing this module puts the checkout's own `src/` first on the path (and on PYTHONPATH for child processes),
so the scripts run the code beside them without `PYTHONPATH=src` or an install.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)

HF_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The HF Trainer settings the user trained with; only the warmup length was left unstated.
HF_BATCH, HF_ACCUM, HF_LR = 6, 6, 5e-4


def bench_device(requested: str = "auto") -> str:
    """'auto' -> 'cuda' where torch sees a card, else 'cpu'; 'cpu' / 'cuda' as given (a missing card: exit)."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        sys.exit(f"--device {requested}: torch sees no CUDA device here")
    return requested


def hf_precision(setting: str, device: str) -> str:
    """The HF side's precision for --hf-precision on `device`: 'auto' as in the module's docstring."""
    if setting != "auto":
        return setting
    if not device.startswith("cuda"):
        return "fp32"
    from slovo.device import cuda_has_native_bf16

    return "bf16" if cuda_has_native_bf16(device) else "fp16"


def hf_device_args(precision: str, device: str) -> dict:
    """TrainingArguments for that device and precision."""
    return {"use_cpu": device == "cpu", "bf16": precision == "bf16", "fp16": precision == "fp16"}


def side_facts(device: str, train_precision: str) -> dict:
    """What each side's result records about where and how it trained, and how it was scored."""
    from slovo.device import device_name

    return {
        "device": device.split(":")[0],
        "device_name": device_name(device),
        "train_precision": train_precision,
        "eval_precision": "float32",
    }


def score_float32(model, windows, token_bytes, batch_size: int, device: str) -> dict:
    """slovo's `evaluate` of `model` (called as model(x) -> (logits, _)) in true float32: no autocast, TF32 off."""
    import torch

    from slovo.device import true_float32
    from slovo.evaluate import evaluate

    model = model.float()  # a side that trained in half precision scores its weights in float32 too
    with true_float32(), torch.no_grad():
        return evaluate(model, windows, token_bytes, batch_size, device)


def refuse_mixed_devices(results: list[dict]) -> None:
    """Exit with one line when the results came from different devices: such a comparison measures the devices."""
    seen = sorted({f"{r.get('side', '?')}: {r.get('device_name') or r.get('device')}" for r in results})
    devices = {r.get("device_name") or r.get("device") for r in results}
    if len(devices) > 1:
        sys.exit(f"refusing to compare across devices ({'; '.join(seen)}): run both sides with the same --device")


def eval_set(data: Path, preset: str):
    """slovo's full eval set for `preset` on the dataset, and the byte length of every token id."""
    from slovo.config import load_config
    from slovo.data import load_dataset, load_tokenizer, token_byte_lengths
    from slovo.evaluate import eval_windows

    cfg = load_config(preset=preset)
    ds = load_dataset(data)
    windows = eval_windows(ds.val, cfg.model.seq_len, cfg.eval.tokens)
    return windows, token_byte_lengths(load_tokenizer(ds.tokenizer_path))


def first_reach(curve, target: float) -> float | None:
    """x at which the (x, bpb) curve first reaches `target` bpb, linear between points; None if never."""
    prev_x, prev_b = 0.0, math.inf
    for x, b in curve:
        if b <= target:
            if not math.isfinite(prev_b):
                return x
            return prev_x + (x - prev_x) * (prev_b - target) / (prev_b - b)
        prev_x, prev_b = x, b
    return None


def random_windows(train, seq_len: int, seed: int):
    """HF's training data as the user fed it: endless random `seq_len`-token windows of train.bin (labels = ids:
    GPT2LMHeadModel shifts them itself)."""
    import numpy as np
    import torch

    class RandomWindows(torch.utils.data.IterableDataset):
        def __iter__(self):
            rng = np.random.default_rng(seed)
            high = len(train) - seq_len
            while True:
                start = int(rng.integers(0, high))
                ids = torch.from_numpy(np.asarray(train[start : start + seq_len], dtype=np.int64))
                yield {"input_ids": ids, "labels": ids}

    return RandomWindows()


def gpt2_like(model_cfg, ds):
    """A GPT2LMHeadModel of the preset's depth, width, heads and context, on the dataset's vocabulary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = GPT2Config(
        vocab_size=ds.vocab_size,
        n_positions=model_cfg.seq_len,
        n_embd=model_cfg.n_embd,
        n_layer=model_cfg.n_layer,
        n_head=model_cfg.n_head,
        bos_token_id=ds.eot_id,
        eos_token_id=ds.eot_id,
    )
    return GPT2LMHeadModel(shape)


def user_training_args(
    output_dir, *, warmup_steps: int, max_steps: int, logging_steps: int, precision: str, device: str, seed: int
):
    """TrainingArguments with the user's settings (batch 6 x 6, lr 5e-4 constant after `warmup_steps`), no evals
    or saves while training, on `device` in `precision`."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=HF_BATCH,
        gradient_accumulation_steps=HF_ACCUM,
        learning_rate=HF_LR,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=warmup_steps,
        max_steps=max_steps,
        eval_strategy="no",
        save_strategy="no",
        logging_steps=logging_steps,
        report_to=[],
        **hf_device_args(precision, device),
        dataloader_pin_memory=False,
        disable_tqdm=True,
        seed=seed,
    )


def logits_only(model):
    """`model` (a transformers causal LM) called as slovo's `evaluate` calls a model: model(x) -> (logits, None)."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, idx):
            return self.inner(input_ids=idx).logits, None

    return LogitsOnly(model)
