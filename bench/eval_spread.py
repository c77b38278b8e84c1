"""How much of an eval figure is the eval sample: the spread of bits per byte between eval sets of n windows.

For each eval size n (windows of the run's context length) it builds --offsets eval sets of n evenly strided
windows, the same construction as `slovo.evaluate.eval_windows`, each shifted by a different fraction of the
stride, and scores them all with the run's model. All are equally valid eval sets of that size, so

- shifted std: the std of bpb over those sets is how far the choice of windows moves the figure (what the
  evenly strided eval set of `eval.tokens` tokens is accurate to);
- bootstrap std: the std over 1000 sets of n windows drawn at random, with replacement, from the windows that
  tile the split (ignores the even spread; the cautious figure);
- neighbour se / ratio se: the standard error one set gives of itself, from neighbouring windows (what
  eval/bpb_se records) and taking its windows as independent;
- with --other RUN2, the shifted std of the difference bpb(RUN) - bpb(RUN2): comparisons of two runs on the
  same windows, the way runs of a dataset are compared; diff se: the paired comparison's standard error.

    .venv/bin/python bench/eval_spread.py runs/demo
    .venv/bin/python bench/eval_spread.py runs/a --other runs/b --sizes 64,128,256 --offsets 16 --json spread.json
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np


def _median_se(se, nats: np.ndarray, n_bytes: np.ndarray, sets: int) -> float:
    """The median over the shifted sets of a standard error of bpb (`se`: a slovo.stats estimator of nats)."""
    return float(np.median([se(nats[k], n_bytes[k]) for k in range(sets)])) / math.log(2)


def bpb(nats: np.ndarray, n_bytes: np.ndarray) -> float:
    return float(nats.sum() / math.log(2) / max(n_bytes.sum(), 1))


def shifted_sets(split_tokens: int, seq_len: int, n: int, offsets: int) -> np.ndarray:
    """(offsets, n) window starts: evenly strided sets of n windows over the split, each shifted by k/offsets of
    a stride (k = 0..offsets-1), all inside the split."""
    stride = (split_tokens - 1 - seq_len) / max(n - 1, 1)
    shifts = (np.arange(offsets) * stride / offsets).astype(np.int64)
    span = split_tokens - 1 - seq_len - int(shifts[-1])
    base = (np.arange(n, dtype=np.int64) * span) // max(n - 1, 1)
    return shifts[:, None] + base[None, :]


class Scorer:
    """Per-window nats and bytes of one model, on windows given by their starts."""

    def __init__(self, run: str, device: str, batch_size: int):
        from slovo.data import token_byte_lengths
        from slovo.train.checkpoint import load_for_inference

        self.model, self.cfg, tokenizer = load_for_inference(run, device)
        self.token_bytes = token_byte_lengths(tokenizer)
        self.device, self.batch_size = device, batch_size

    def __call__(self, split: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from slovo.evaluate import evaluate

        seq_len = self.cfg.model.seq_len
        windows = np.asarray(split[starts.reshape(-1)[:, None] + np.arange(seq_len + 1)[None, :]], dtype=np.int64)
        m = evaluate(self.model, windows, self.token_bytes, self.batch_size, self.device, per_window=True)
        return m["per_window_nats"].reshape(starts.shape), m["per_window_bytes"].reshape(starts.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run folder (its newest checkpoint) or a checkpoint folder")
    parser.add_argument("--other", help="a second run of the same dataset: also the spread of the bpb difference")
    parser.add_argument("--data", help="dataset folder (default: the run's own)")
    parser.add_argument("--sizes", default="32,64,128,256", help="eval sizes in windows, comma-separated")
    parser.add_argument("--offsets", type=int, default=8, help="shifted eval sets per size (default 8)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (cuda when there is one), cpu, cuda, ...")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    import torch

    from slovo.data import load_dataset
    from slovo.device import pick_device
    from slovo.stats import neighbour_se, ratio_se

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    scorers = [Scorer(args.run, device, args.batch_size)] + (
        [Scorer(args.other, device, args.batch_size)] if args.other else []
    )
    cfg = scorers[0].cfg
    ds = load_dataset(args.data or cfg.data.path)
    seq_len, split = cfg.model.seq_len, ds.val
    n_tiling = (len(split) - 1) // seq_len
    start = time.perf_counter()
    tiling = [sc(split, np.arange(n_tiling) * seq_len) for sc in scorers]
    seconds = time.perf_counter() - start
    info = ds.meta.get("split") or {}
    print(
        f"{n_tiling} windows of {seq_len} tokens tile the validation split ({len(split):,} tokens, "
        f"{info.get('val_documents', '?')} documents); scoring them took {seconds / len(scorers):.1f} s per model"
    )
    for name, (nats, n_bytes) in zip([args.run, args.other], tiling):
        per_window = nats / math.log(2) / np.maximum(n_bytes, 1)
        print(
            f"  {name}: whole-split bpb {bpb(nats, n_bytes):.4f}; per-window bpb median {np.median(per_window):.3f}, "
            f"5-95% {np.percentile(per_window, 5):.3f}-{np.percentile(per_window, 95):.3f}"
        )

    rng = np.random.default_rng(0)
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        n = min(n, n_tiling)
        starts = shifted_sets(len(split), seq_len, n, args.offsets)
        figures = [sc(split, starts) for sc in scorers]
        per_set = [np.array([bpb(nats[k], b[k]) for k in range(args.offsets)]) for nats, b in figures]
        nats, n_bytes = tiling[0]
        picks = rng.integers(0, n_tiling, size=(1000, n))
        boot = nats[picks].sum(1) / math.log(2) / np.maximum(n_bytes[picks].sum(1), 1)
        row = {
            "windows": n,
            "tokens": n * seq_len,
            "sets": args.offsets,
            "shifted_std": float(np.std(per_set[0], ddof=1)),
            "shifted_range": [float(per_set[0].min()), float(per_set[0].max())],
            "bootstrap_std": float(np.std(boot, ddof=1)),
            # what each eval records as eval/bpb_se (slovo.stats.neighbour_se, from neighbouring windows): it should
            # agree with the shifted std; ratio_se takes the windows as independent, as eval/bpb_se once did
            "neighbour_se": _median_se(neighbour_se, *figures[0], args.offsets),
            "ratio_se": _median_se(ratio_se, *figures[0], args.offsets),
        }
        if args.other:
            diff = per_set[0] - per_set[1]
            row |= {"difference_mean": float(diff.mean()), "difference_std": float(np.std(diff, ddof=1))}
            # the paired comparison's se (slovo.stats.paired_windows): neighbour_se of the per-window differences
            row["difference_se"] = _median_se(neighbour_se, figures[0][0] - figures[1][0], figures[0][1], args.offsets)
        rows.append(row)

    print(
        f"\n{'windows':>8} {'tokens':>8} {'sets':>5} {'shifted std':>12} {'shifted min-max':>16} "
        f"{'bootstrap std':>14} {'neighbour se':>13} {'ratio se':>9}"
        + (f" {'diff mean':>10} {'diff std':>9} {'diff se':>8}" if args.other else "")
    )
    for r in rows:
        lo, hi = r["shifted_range"]
        line = (
            f"{r['windows']:>8} {r['tokens']:>8,} {r['sets']:>5} {r['shifted_std']:>12.4f} {lo:>7.4f}-{hi:<8.4f} "
            f"{r['bootstrap_std']:>14.4f} {r['neighbour_se']:>13.4f} {r['ratio_se']:>9.4f}"
        )
        if args.other:
            line += f" {r['difference_mean']:>+10.4f} {r['difference_std']:>9.4f} {r['difference_se']:>8.4f}"
        print(line)
    if args.json:
        from slovo.utils import atomic_write_json

        atomic_write_json(
            args.json,
            {"run": args.run, "other": args.other, "seq_len": seq_len, "tiling_windows": n_tiling, "sizes": rows},
        )


if __name__ == "__main__":
    main()
