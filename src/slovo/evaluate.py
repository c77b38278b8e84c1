"""Held-out loss, perplexity and bits per byte.

The eval set: windows of `seq_len + 1` tokens whose starts are spread evenly from the first to the last token of
the validation split, as many as `eval.tokens` allows (the whole split when it is smaller, said once). It
depends only on the split, the context length and `eval.tokens`, so every run of a dataset scores the same
text, and it samples every part of every validation document rather than the first few passages.

Special tokens are left out: a position whose target is a special token (`<|endoftext|>` after each document,
0 bytes) counts in neither the loss sum, nor the token count, nor the byte count, as nanochat does. So

    bits per byte = summed cross-entropy (nats) of the text tokens / ln 2 / their UTF-8 bytes
    loss          = the same nats / the number of text tokens (`eval/tokens`)

Unlike loss, bits per byte does not depend on the tokenizer, so runs with different vocabularies compare.
`eval/bpb_se` is its standard error over the windows scored, from differences of neighbouring windows
(`slovo.stats.neighbour_se`: the windows are an evenly spread sample of adjacent text from a few long works, so
they are not independent): how far another evenly spread set of windows of the same validation text could move
it. Not another corpus, not another seed.

Evals during training may score a fixed subset of the windows (`subset_indices`, sized by
`in_training_windows` so that eval time stays near `eval.max_fraction` of training time); the final eval
scores them all. `eval/windows` and `eval/tokens` in each record tell the two apart.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from slovo.stats import neighbour_se_from_sums


def eval_windows(tokens: np.ndarray, seq_len: int, max_tokens: int) -> np.ndarray:
    """(N, seq_len + 1) windows, N = max_tokens // seq_len (or as many as fit), starts evenly strided over the split.

    The first window starts at token 0 and the last ends at the split's last token; no two windows share a
    target. With N as large as fits, the windows tile the split (the old first-tokens set).
    """
    fit = (len(tokens) - 1) // seq_len
    if fit == 0:
        raise ValueError(f"validation set of {len(tokens)} tokens is shorter than one window of {seq_len + 1}")
    n = max(1, min(fit, max_tokens // seq_len))
    last_start = len(tokens) - 1 - seq_len
    # integer floor of an even spacing >= seq_len keeps every gap >= seq_len: targets never overlap
    starts = (np.arange(n, dtype=np.int64) * last_start) // max(n - 1, 1)
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    return np.asarray(tokens[idx], dtype=np.int64)  # fancy indexing reads only these tokens of a memmap


def whole_split_note(split_tokens: int, seq_len: int, max_tokens: int, what: str = "eval.tokens") -> str | None:
    """One line to say when `max_tokens` asks for more than the split holds (the whole split is used), else None."""
    fit = (split_tokens - 1) // seq_len * seq_len
    if max_tokens <= fit:
        return None
    return f"{what}={max_tokens:,} is more than the validation split holds; evaluating on all of it ({fit:,} tokens)"


def subset_indices(n_windows: int, n_subset: int) -> np.ndarray:
    """Indices of `n_subset` of `n_windows` windows spread evenly (first and last included): the same every time."""
    n_subset = max(1, min(n_subset, n_windows))
    if n_subset == n_windows:
        return np.arange(n_windows)
    return (np.arange(n_subset, dtype=np.int64) * (n_windows - 1)) // max(n_subset - 1, 1)


def in_training_windows(
    n_windows: int,
    window_seconds: float,
    train_seconds: float,
    evals: int,
    max_fraction: float,
    multiple: int = 1,
    other_seconds: float = 0.0,
    final_other_seconds: float = 0.0,
) -> int:
    """How many windows each eval during training may score so that all evals, including a final one over all
    `n_windows`, take about `max_fraction` of `train_seconds`.

    `window_seconds`: measured seconds to score one window; `evals`: evals during training (the final one
    excluded); `multiple`: whole batches (at least one), a power of two of them, so that runs on similar
    machines mostly land on the same subset. `max_fraction` 0 means every eval is full. `other_seconds`: what
    each eval spends besides the windows (eval.suites, eval.extra: `extra_evals.suite_metrics`, measured at the
    first eval), `final_other_seconds` the same for the final eval (the whole suite); both come off the share.
    """
    if max_fraction <= 0 or evals <= 0 or window_seconds <= 0:
        return n_windows
    # what the final full eval and everything besides the windows leave
    allowed = max_fraction * train_seconds - n_windows * window_seconds - final_other_seconds - evals * other_seconds
    batches = int(max(allowed, 0.0) / evals / window_seconds) // multiple
    if batches * multiple >= n_windows:
        return n_windows
    return min(n_windows, multiple * (1 << max(batches, 1).bit_length() - 1))


@torch.no_grad()
def token_nats(model, x, y, autocast=None):
    """The model's per-position loss in nats (shaped like `y`), its forward under `autocast` when given, the
    loss in float32: what both bpb evals and minimal-pair suites sum."""
    with autocast if autocast is not None else nullcontext():
        logits, _ = model(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none").reshape(
        y.shape
    )


def evaluate(
    model: torch.nn.Module,
    windows: np.ndarray,
    token_bytes: np.ndarray,
    batch_size: int,
    device: str,
    autocast: torch.autocast | None = None,
    reduce=None,
    per_window: bool = False,
) -> dict:
    """Mean loss, perplexity and bpb of `model` over `windows` (from `eval_windows`), special targets left out.

    Under data parallelism each rank passes its share of the windows and `reduce`, which sums
    [nats, tokens, bytes, windows] over the ranks, so every rank returns the figures of the whole set.
    `per_window=True` adds "per_window_nats" and "per_window_bytes" (this rank's windows, for spread estimates).
    """
    if batch_size < 1:
        raise ValueError(f"evaluate: batch_size must be positive, got {batch_size}")
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    total_nats, total_tokens, total_bytes = 0.0, 0, 0
    # sums over neighbouring windows' differences for the standard error of bpb (slovo.stats.neighbour_se_from_sums);
    # a rank's windows are in text order, and the sums add up across ranks like the totals
    sum_nn = sum_nb = sum_bb = 0.0
    previous: tuple[np.ndarray, np.ndarray] | None = None  # the last window's nats and bytes, across batches
    window_nats: list[np.ndarray] = []
    window_bytes: list[np.ndarray] = []
    byte_table = torch.as_tensor(token_bytes, dtype=torch.int64)
    for i in range(0, len(windows), batch_size):
        chunk = torch.from_numpy(windows[i : i + batch_size])
        x, y = chunk[:, :-1].to(device), chunk[:, 1:].to(device)
        nats = token_nats(model, x, y, autocast).reshape(-1)
        target_bytes = byte_table[chunk[:, 1:]]
        text = (target_bytes > 0).to(nats.device)  # special targets (0 bytes) are not text
        nats = (nats * text.reshape(-1)).reshape(y.shape).sum(dim=1).cpu()
        total_nats += float(nats.sum())
        total_tokens += int(text.sum())
        total_bytes += int(target_bytes.sum())
        n_w, b_w = nats.double().numpy(), target_bytes.sum(dim=1).double().numpy()
        if previous is not None:
            n_w, b_w = np.concatenate([previous[0], n_w]), np.concatenate([previous[1], b_w])
        dn, db = np.diff(n_w), np.diff(b_w)
        sum_nn, sum_nb, sum_bb = sum_nn + (dn * dn).sum(), sum_nb + (dn * db).sum(), sum_bb + (db * db).sum()
        previous = (n_w[-1:], b_w[-1:])
        if per_window:
            window_nats.append(nats.double().numpy())
            window_bytes.append(target_bytes.sum(dim=1).numpy())
    model.train(was_training)
    n_windows, pairs = len(windows), max(len(windows) - 1, 0)
    if reduce is not None:
        summed = reduce([total_nats, total_tokens, total_bytes, n_windows, sum_nn, sum_nb, sum_bb, pairs])
        total_nats, total_tokens, total_bytes, n_windows, sum_nn, sum_nb, sum_bb, pairs = summed
        total_tokens, total_bytes, n_windows = int(total_tokens), int(total_bytes), int(n_windows)
    loss = total_nats / max(total_tokens, 1)
    metrics = {
        "eval/loss": loss,
        "eval/perplexity": math.exp(min(loss, 50.0)),
        "eval/bpb": total_nats / math.log(2) / max(total_bytes, 1),
        # standard error of eval/bpb over the windows scored (eval-sample noise, not seed noise); None for 1 window
        "eval/bpb_se": _finite_or_none(
            neighbour_se_from_sums(total_nats, total_bytes, sum_nn, sum_nb, sum_bb, n_windows, pairs) / math.log(2)
        ),
        "eval/tokens": total_tokens,
        "eval/bytes": total_bytes,
        "eval/windows": n_windows,
        "eval/runtime": time.perf_counter() - start,
    }
    if per_window:
        metrics["per_window_nats"] = np.concatenate(window_nats) if window_nats else np.zeros(0)
        metrics["per_window_bytes"] = np.concatenate(window_bytes) if window_bytes else np.zeros(0, dtype=np.int64)
    return metrics


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no NaN: records and summaries stay strict JSON


def eval_set_facts(split: np.ndarray, seq_len: int, max_tokens: int, eot_id: int | None) -> dict:
    """What the full eval set covers (for run.json): its windows and the text tokens they score."""
    windows = eval_windows(split, seq_len, max_tokens)
    targets = windows[:, 1:]
    text = targets.size - (int((targets == eot_id).sum()) if eot_id is not None else 0)
    return {"eval_windows": len(windows), "eval_tokens": text}


def probe_window_seconds(score, windows: np.ndarray, n: int, now, reduce=None, world: int = 1) -> float:
    """Seconds per window of `score` (a function scoring windows, split over `world` ranks): the second of two
    calls on the first `n` windows is timed, the first warms up (and compiles a compiled model's eval graph).
    Under data parallelism `reduce` sums the ranks' times, so every rank gets the same figure."""
    probe = windows[:n]
    score(probe)
    start = now()
    score(probe)
    seconds = now() - start
    if reduce is not None:
        seconds = float(reduce([seconds])[0]) / world
    return seconds / max(len(probe), 1)
