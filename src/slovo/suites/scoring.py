"""Scoring minimal pairs with a model: each sentence's log-probability, the pair's winner, accuracy with intervals.

A sentence is scored as a document: `<|endoftext|>` (what precedes every document in training) then its tokens;
its log-probability is the sum over its tokens of log p(token | everything before it), the first token included.
Two criteria decide a pair, each reported:

- `sum`: total log-probability, as lm-eval scores BLiMP and as the RuBLiMP paper scores decoders. **Primary**:
  it is the benchmark's own protocol, so figures compare with published ones. It favours the shorter sentence
  (each extra token costs log-probability), which is why the no-model baselines are printed beside it;
- `mean`: mean log-probability per token, as RuBLiMP's released scorer does; it removes the length advantage but
  dilutes the one changed word among the rest.

No-model baselines: the shorter sentence wins, in characters and in the run's tokens. Ties count as half a pair,
for the model criteria too, so swapping good and bad gives exactly 1 - accuracy.

Batches: the sentences of a pair stay in one batch (they see the same padding and the same kernels), pairs are
ordered by length so padding is small; padding sits on the right, where causal attention keeps it from every real
position, and its targets are masked out. A sentence longer than the context is scored in windows: the first
`seq_len` tokens, then each later window predicts the next `seq_len // 2` tokens with the preceding tokens as context,
so every token is scored exactly once, none truncated (RuBLiMP's sentences fit in 256 tokens; short test contexts
do not).

Intervals: a phenomenon's accuracy has a Wilson 95% interval; a level's, a group's and the overall accuracy are
the mean over their phenomena (each phenomenon weighs the same, as published) with a normal 95% interval from the
stratified standard error sqrt(sum p_i (1 - p_i) / n_i) / k.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from slovo.evaluate import token_nats
from slovo.suites.rublimp import MinimalPairs

PRIMARY = "sum"
CRITERIA = {
    "sum": "total log-prob",
    "mean": "mean log-prob per token",
    "shorter_chars": "no model: shorter in characters",
    "shorter_tokens": "no model: shorter in tokens",
}
Z95 = 1.959963984540054


@dataclass
class EncodedPairs:
    """A suite's pairs (or a subset: `indices` into the suite) as token ids, ready to score again and again."""

    suite: MinimalPairs
    indices: np.ndarray
    good: list[list[int]]
    bad: list[list[int]]
    bos_id: int  # <|endoftext|>: the context every sentence is scored after


def encode_pairs(suite: MinimalPairs, tokenizer, indices: np.ndarray | None = None) -> EncodedPairs:
    """Tokenise the pairs at `indices` (all when None) with the run's tokenizer (a `tokenizers.Tokenizer`)."""
    from slovo.data.tokenizer import eot_id_of

    idx = np.arange(len(suite)) if indices is None else np.asarray(indices, dtype=np.int64)
    good = [e.ids for e in tokenizer.encode_batch([suite.good[i] for i in idx], add_special_tokens=False)]
    bad = [e.ids for e in tokenizer.encode_batch([suite.bad[i] for i in idx], add_special_tokens=False)]
    return EncodedPairs(suite, idx, good, bad, eot_id_of(tokenizer))


def sentence_windows(ids: list[int], bos_id: int, seq_len: int) -> list[tuple[list[int], int]]:
    """Rows of at most `seq_len` tokens that together score every token of `ids` once: (row, first scored target).

    Row position j predicts row[j + 1]; targets from `first` on are scored. The first row holds <|endoftext|>
    and the first tokens; each later row predicts the next `seq_len // 2` tokens after the `seq_len - seq_len // 2`
    before them (a context of at least half the window).
    """
    seq = [bos_id, *ids]
    if len(seq) <= seq_len + 1:
        return [(seq, 1)]
    rows = [(seq[: seq_len + 1], 1)]
    done = seq_len + 1  # tokens of seq whose prediction is scored, the bos included
    step = max(1, seq_len // 2)
    while done < len(seq):
        end = min(len(seq), done + step)
        start = end - seq_len - 1
        rows.append((seq[start:end], done - start))
        done = end
    return rows


@torch.no_grad()
def sentence_logprobs(
    model: torch.nn.Module,
    pairs: EncodedPairs,
    seq_len: int,
    batch_size: int = 64,
    device: str = "cpu",
    autocast: torch.autocast | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(good, bad) summed log-probabilities (float64, one per pair), batched with the two sentences of a pair
    together and pairs ordered by length (see the module's docstring)."""
    was_training = model.training
    model.eval()
    n = len(pairs.good)
    totals = np.zeros(2 * n, dtype=np.float64)  # sentence s = 2 * pair + (0 good, 1 bad)
    units = []  # one per pair: its rows as (sentence, row, first target)
    for p in range(n):
        rows = [(2 * p, r, f) for r, f in sentence_windows(pairs.good[p], pairs.bos_id, seq_len)]
        rows += [(2 * p + 1, r, f) for r, f in sentence_windows(pairs.bad[p], pairs.bos_id, seq_len)]
        units.append(rows)
    units.sort(key=lambda rows: -max(len(r) for _, r, _ in rows))
    batch: list[tuple[int, list[int], int]] = []
    for k, rows in enumerate(units):
        batch += rows
        if len(batch) >= batch_size or k == len(units) - 1:
            _score_rows(model, batch, totals, device, autocast)
            batch = []
    model.train(was_training)
    return totals[0::2], totals[1::2]


def _score_rows(model, rows, totals: np.ndarray, device: str, autocast) -> None:
    width = max(len(r) for _, r, _ in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    scored = torch.zeros((len(rows), width - 1), dtype=torch.bool)
    for i, (_, row, first) in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row)
        scored[i, first - 1 : len(row) - 1] = True  # padding (and a window's context) is not scored
    ids, scored = ids.to(device), scored.to(device)
    x, y = ids[:, :-1], ids[:, 1:]
    logprob = -(token_nats(model, x, y, autocast) * scored).sum(dim=1).double().cpu().numpy()
    np.add.at(totals, np.asarray([s for s, _, _ in rows]), logprob)


def prefer_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 where a > b, 0.5 where equal, 0 where below: the good sentence's share of each pair."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a > b) + 0.5 * (a == b)


def pair_outcomes(pairs: EncodedPairs, good_lp: np.ndarray, bad_lp: np.ndarray) -> dict[str, np.ndarray]:
    """Each criterion's outcome per pair (1 the good sentence wins, 0.5 a tie, 0 the bad one wins)."""
    good_n = np.asarray([len(t) for t in pairs.good], dtype=np.float64)
    bad_n = np.asarray([len(t) for t in pairs.bad], dtype=np.float64)
    good_chars = np.asarray([len(pairs.suite.good[i]) for i in pairs.indices], dtype=np.float64)
    bad_chars = np.asarray([len(pairs.suite.bad[i]) for i in pairs.indices], dtype=np.float64)
    return {
        "sum": prefer_first(good_lp, bad_lp),
        "mean": prefer_first(good_lp / np.maximum(good_n, 1), bad_lp / np.maximum(bad_n, 1)),
        "shorter_chars": prefer_first(-good_chars, -bad_chars),
        "shorter_tokens": prefer_first(-good_n, -bad_n),
    }


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (ties counted as half a success)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _phenomenon_figure(outcome: np.ndarray) -> dict:
    n = len(outcome)
    acc = float(outcome.mean()) if n else float("nan")
    lo, hi = wilson_interval(float(outcome.sum()), n)
    return {"acc": acc, "se": math.sqrt(acc * (1 - acc) / n) if n else float("nan"), "ci": [lo, hi]}


def _macro_figure(per_phenomenon: list[dict], sizes: list[int]) -> dict:
    """Mean of phenomenon accuracies, with the stratified standard error and a normal 95% interval."""
    accs = np.asarray([f["acc"] for f in per_phenomenon])
    k = len(accs)
    acc = float(accs.mean())
    se = math.sqrt(float(np.sum(accs * (1 - accs) / np.asarray(sizes)))) / k
    return {"acc": acc, "se": se, "ci": [max(0.0, acc - Z95 * se), min(1.0, acc + Z95 * se)]}


def accuracy_report(pairs: EncodedPairs, outcomes: dict[str, np.ndarray]) -> dict:
    """Accuracy per phenomenon, per group and per level, and overall (the macro mean), for every criterion."""
    suite = pairs.suite
    pid = np.asarray([suite.phenomenon[i] for i in pairs.indices])
    phenomena: dict[str, dict] = {}
    for name in dict.fromkeys(pid.tolist()):
        mask = pid == name
        first = int(pairs.indices[np.flatnonzero(mask)[0]])
        entry = {"group": suite.group[first], "level": suite.level[first], "pairs": int(mask.sum())}
        entry.update({c: _phenomenon_figure(o[mask]) for c, o in outcomes.items()})
        phenomena[name] = entry

    def macro(names: list[str]) -> dict:
        out = {"phenomena": len(names), "pairs": sum(phenomena[n]["pairs"] for n in names)}
        sizes = [phenomena[n]["pairs"] for n in names]
        out.update({c: _macro_figure([phenomena[n][c] for n in names], sizes) for c in outcomes})
        return out

    by = lambda key: {  # noqa: E731
        value: macro([n for n, e in phenomena.items() if e[key] == value])
        for value in dict.fromkeys(e[key] for e in phenomena.values())
    }
    return {"overall": macro(list(phenomena)), "levels": by("level"), "groups": by("group"), "phenomena": phenomena}


def score_pairs(
    model: torch.nn.Module,
    pairs: EncodedPairs,
    seq_len: int,
    batch_size: int = 64,
    device: str = "cpu",
    autocast: torch.autocast | None = None,
) -> dict:
    """Everything `slovo eval --suite` reports: the accuracy tables, what was scored and how long it took."""
    start = time.perf_counter()
    good_lp, bad_lp = sentence_logprobs(model, pairs, seq_len, batch_size, device, autocast)
    report = accuracy_report(pairs, pair_outcomes(pairs, good_lp, bad_lp))
    sentences = pairs.good + pairs.bad
    return {
        "suite": pairs.suite.name,
        "source": pairs.suite.source,
        "primary": PRIMARY,
        "criteria": CRITERIA,
        "pairs": len(pairs.indices),
        "suite_pairs": len(pairs.suite),
        "tokens": int(sum(len(s) + 1 for s in sentences)),
        "windowed_sentences": int(sum(len(s) + 1 > seq_len + 1 for s in sentences)),
        "seconds": time.perf_counter() - start,
        **report,
    }


def suite_subset_metrics(
    model: torch.nn.Module,
    pairs: EncodedPairs,
    seq_len: int,
    batch_size: int = 64,
    device: str = "cpu",
    autocast: torch.autocast | None = None,
) -> dict[str, float]:
    """The figures a training eval records: `eval/<suite>_acc` (primary criterion, macro mean over phenomena)
    and its standard error `eval/<suite>_acc_se`, plus the mean-per-token criterion's accuracy."""
    result = score_pairs(model, pairs, seq_len, batch_size, device, autocast)
    overall, name = result["overall"], pairs.suite.name
    return {
        f"eval/{name}_acc": overall[PRIMARY]["acc"],
        f"eval/{name}_acc_se": overall[PRIMARY]["se"],
        f"eval/{name}_acc_mean": overall["mean"]["acc"],
        f"eval/{name}_pairs": result["pairs"],
        f"eval/{name}_runtime": result["seconds"],
    }
