"""Held-out loss, perplexity and bits per byte.

bits per byte = summed cross-entropy (nats) / ln 2 / UTF-8 bytes of the target tokens, with special
tokens counting 0 bytes. Unlike loss, it does not depend on the tokenizer, so runs with different
vocabularies are comparable. The eval set is the first `eval.tokens` tokens of the validation split,
cut into non-overlapping windows: the same tokens for every run of a dataset.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F


def eval_windows(tokens: np.ndarray, seq_len: int, max_tokens: int) -> np.ndarray:
    """(N, seq_len + 1) windows covering the first `max_tokens` targets; consecutive windows share one token."""
    usable = min(len(tokens) - 1, max_tokens)
    n = usable // seq_len
    if n == 0:
        raise ValueError(f"validation set of {len(tokens)} tokens is shorter than one window of {seq_len + 1}")
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return np.asarray(tokens[: n * seq_len + 1], dtype=np.int64)[idx]


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    windows: np.ndarray,
    token_bytes: np.ndarray,
    batch_size: int,
    device: str,
    autocast: torch.autocast | None = None,
    reduce=None,
) -> dict:
    """Mean loss, perplexity and bpb of `model` over `windows` (from `eval_windows`).

    Under data parallelism each rank passes its share of the windows and `reduce`, which sums
    [nats, tokens, bytes] over the ranks, so every rank returns the figures of the whole set.
    """
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    total_nats, total_tokens, total_bytes = 0.0, 0, 0
    byte_table = torch.as_tensor(token_bytes, dtype=torch.int64)
    for i in range(0, len(windows), batch_size):
        chunk = torch.from_numpy(windows[i : i + batch_size])
        x, y = chunk[:, :-1].to(device), chunk[:, 1:].to(device)
        if autocast is not None:
            with autocast:
                logits, _ = model(x)
        else:
            logits, _ = model(x)
        nats = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
        total_nats += float(nats)
        total_tokens += y.numel()
        total_bytes += int(byte_table[chunk[:, 1:]].sum())
    model.train(was_training)
    if reduce is not None:
        total_nats, total_tokens, total_bytes = reduce([total_nats, total_tokens, total_bytes])
        total_tokens, total_bytes = int(total_tokens), int(total_bytes)
    loss = total_nats / total_tokens
    return {
        "eval/loss": loss,
        "eval/perplexity": math.exp(min(loss, 50.0)),
        "eval/bpb": total_nats / math.log(2) / max(total_bytes, 1),
        "eval/tokens": total_tokens,
        "eval/bytes": total_bytes,
        "eval/runtime": time.perf_counter() - start,
    }
