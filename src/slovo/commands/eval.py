"""`slovo eval RUN`: loss, perplexity and bits per byte of a run's model on a dataset or a text source;
`slovo eval RUN --suite rublimp[:DIR]`: grammar accuracy on minimal pairs (`slovo.suites`), saved in RUN/evals/.

examples:
  slovo eval runs/demo
  slovo eval runs/demo --data other-text.jsonl.gz --tokens 200000
  slovo eval runs/demo --suite rublimp --pairs 100 --pairs-select first
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from slovo.errors import SlovoError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN_DIR", help="a run folder or one of its checkpoints")
    p.add_argument(
        "--data",
        help="a dataset folder (its val split) or a text source (.txt, .jsonl[.gz], .parquet, ...); "
        "default: the run's own dataset",
    )
    p.add_argument("--split", default="val", choices=["val", "train"], help="split of a dataset folder (default val)")
    p.add_argument(
        "--tokens",
        type=int,
        help="score this many tokens, in windows spread evenly over the whole text "
        "(default: the run's eval.tokens; more than the text holds = all of it)",
    )
    p.add_argument("--text-field", default="text", help="text field of JSONL/parquet sources")
    p.add_argument("--batch-size", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument(
        "--suite",
        metavar="NAME[:DIR]",
        help="score a minimal-pair suite instead: rublimp (the shared copy, $SLOVO_RUBLIMP_DIR, else the HF hub), "
        "rublimp:DIR (a folder of its CSV files) or rublimp:hub; saved as RUN/evals/NAME.json",
    )
    p.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="with --suite: score a fixed stratified subset of this many pairs per phenomenon (default: all)",
    )
    p.add_argument(
        "--pairs-select",
        choices=["sample", "first"],
        default="sample",
        help="with --pairs N: which N of each phenomenon: sample (a fixed seeded draw, default) or first (its first "
        "N in file order, as an lm-evaluation-harness task over the first N rows scores)",
    )


def run(args) -> int:
    from slovo.data import token_byte_lengths
    from slovo.device import pick_device
    from slovo.evaluate import evaluate, whole_split_note
    from slovo.extra_evals import source_windows
    from slovo.format import format_bpb
    from slovo.train.checkpoint import load_for_inference

    for flag, value in (("--batch-size", args.batch_size), ("--pairs", args.pairs)):
        if value < 0:  # 0 = the default; a negative batch scored no window at all and printed bpb 0
            raise SlovoError(f"{flag}: must be positive (or 0 for the default), got {value}")
    if args.suite is not None or args.pairs:
        return _run_suite(args)
    device = pick_device(args.device)
    model, cfg, tokenizer = load_for_inference(args.run, device)
    source = args.data or cfg.data.path
    max_tokens = args.tokens or cfg.eval.tokens
    if args.tokens is not None and args.tokens <= 0:
        raise SlovoError(f"--tokens: must be positive, got {args.tokens}")
    if Path(source).is_dir() and (Path(source) / "meta.json").exists():
        windows, n_tokens, what = _dataset_windows(args, source, cfg.model.seq_len, max_tokens)
    else:  # the same path as eval.extra's sets during training
        windows, n_tokens = source_windows(source, tokenizer, cfg.model.seq_len, max_tokens, args.text_field)
        what = source
    note = whole_split_note(n_tokens, cfg.model.seq_len, max_tokens, "--tokens" if args.tokens else "eval.tokens")
    if note and not args.json:
        print(note)
    from slovo.device import autocast_for

    metrics = evaluate(
        model,
        windows,
        token_byte_lengths(tokenizer),
        args.batch_size or cfg.train.per_device_train_batch_size,
        device,
        autocast_for(run_dtype(args.run, cfg.train.dtype), device),
    )
    if args.json:
        print(json.dumps({"data": what, **metrics}, ensure_ascii=False))
    else:
        print(
            f"{what}: {metrics['eval/windows']:,} windows spread over the text, {metrics['eval/tokens']:,} tokens "
            f"scored (<|endoftext|> left out), {metrics['eval/bytes']:,} bytes"
        )
        print(
            f"  loss {metrics['eval/loss']:.4f}   perplexity {metrics['eval/perplexity']:.2f}   "
            f"bits/byte {format_bpb(metrics['eval/bpb'], metrics.get('eval/bpb_se'))}"
        )
    return 0


def _dataset_windows(args, source: str, seq_len: int, max_tokens: int):
    """(windows, tokens in the split, what was scored) of a dataset folder's split; it must share the run's
    tokenizer."""
    from slovo.data import load_dataset
    from slovo.evaluate import eval_windows

    ds = load_dataset(source)
    if ds.meta.get("tokenizer", {}).get("sha256") and _tok_sha(args.run) not in (None, ds.meta["tokenizer"]["sha256"]):
        raise SlovoError(f"{source}: prepared with a different tokenizer than the run; pass the text source instead")
    tokens = ds.val if args.split == "val" else ds.train
    try:
        return eval_windows(tokens, seq_len, max_tokens), len(tokens), f"{source} ({args.split})"
    except ValueError as e:
        raise SlovoError(f"{source}: {e}") from None


def run_dtype(run: str, setting: str) -> str:
    """The precision the run evaluated in: run.json's `dtype` (what `train.dtype` resolved to, e.g. auto ->
    bfloat16 where a CPU measured it faster), else the config's setting. Scoring in another precision would not
    reproduce the run's own eval bpb."""
    from slovo.train.checkpoint import resolve_checkpoint
    from slovo.utils import read_json_dict

    run_dir, _ = resolve_checkpoint(run)
    chosen = read_json_dict(run_dir / "run.json").get("dtype")
    return chosen if isinstance(chosen, str) and chosen else setting


def _tok_sha(run: str) -> str | None:
    from slovo.train.checkpoint import resolve_checkpoint
    from slovo.utils import sha256_file

    run_dir, _ = resolve_checkpoint(run)
    tok = run_dir / "tokenizer.json"
    return sha256_file(tok) if tok.exists() else None


def _run_suite(args) -> int:
    """`--suite`: accuracy on a minimal-pair suite under both criteria, beside the no-model baselines."""
    import datetime as _dt
    import sys

    from slovo.device import pick_device
    from slovo.suites import load_suite
    from slovo.suites.rublimp import select_pairs
    from slovo.suites.scoring import encode_pairs, score_pairs
    from slovo.train.checkpoint import load_for_inference, resolve_checkpoint
    from slovo.utils import atomic_write_json, command_line

    if args.suite is None:
        raise SlovoError("--pairs: only with --suite NAME (e.g. --suite rublimp --pairs 20)")
    if args.pairs < 0:
        raise SlovoError(f"--pairs: must be 0 (all) or more, got {args.pairs}")
    if args.data:
        raise SlovoError("--suite and --data: give one of them (a suite is scored on its own sentences)")
    run_dir, ckpt = resolve_checkpoint(args.run)
    suite = load_suite(args.suite)  # before the model: a bad suite is one line at once
    device = pick_device(args.device)
    model, cfg, tokenizer = load_for_inference(args.run, device)
    pairs = encode_pairs(suite, tokenizer, select_pairs(suite, args.pairs, first=args.pairs_select == "first"))
    batch = args.batch_size or 4 * (cfg.eval.batch_size or cfg.train.per_device_train_batch_size)
    # float32 whatever train.dtype: the two sentences differ by a word, and bf16 logits would round close pairs
    result = score_pairs(model, pairs, cfg.model.seq_len, batch, device)
    result.update(
        {
            "run": str(run_dir),
            "checkpoint": str(ckpt),
            "pairs_per_phenomenon": args.pairs or None,
            "pairs_select": args.pairs_select if args.pairs else None,
            "device": device,
            "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": "slovo " + command_line(sys.argv[1:]),
        }
    )
    out = run_dir / "evals" / f"{suite.name}.json"
    out.parent.mkdir(exist_ok=True)
    atomic_write_json(out, result)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(suite_summary(result))
        print(f"saved {out}")
    return 0


def _pct(figure: dict) -> str:
    lo, hi = figure["ci"]
    return f"{100 * figure['acc']:5.1f}%  ({100 * lo:.1f}-{100 * hi:.1f})"


def suite_summary(result: dict, show: int = 3) -> str:
    """The readable table of a suite result: overall accuracy under each criterion with its 95% interval, the
    no-model baselines, accuracy per level, and the best and worst phenomena under the primary criterion."""
    primary = result["primary"]
    overall = result["overall"]
    lines = [
        f"{result['suite']} ({result['source']}): {result['pairs']:,} of {result['suite_pairs']:,} pairs, "
        f"{len(result['phenomena'])} phenomena, scored in {result['seconds']:.1f} s "
        f"({result['tokens']:,} tokens)",
        f"  {'criterion':<36} {'accuracy (95% CI)':>22}",
    ]
    for key, label in result["criteria"].items():
        mark = " (primary)" if key == primary else ""
        lines.append(f"  {label + mark:<36} {_pct(overall[key]):>22}")
    lines.append("  accuracy: mean over phenomena; chance 50%; ties count as half a pair")
    lines.append(f"  by level ({result['criteria'][primary]}):")
    for level, fig in result["levels"].items():
        lines.append(
            f"    {level:<14} {_pct(fig[primary])}   shorter in tokens {100 * fig['shorter_tokens']['acc']:.1f}%"
        )
    ranked = sorted(result["phenomena"].items(), key=lambda kv: -kv[1][primary]["acc"])
    for title, chosen in (("best", ranked[:show]), ("worst", ranked[::-1][:show])):
        lines.append(f"  {title} phenomena:")
        for name, fig in chosen:
            lines.append(
                f"    {name:<34} {_pct(fig[primary])}   mean/token {100 * fig['mean']['acc']:.1f}%   "
                f"shorter in tokens {100 * fig['shorter_tokens']['acc']:.1f}%"
            )
    if result.get("windowed_sentences"):
        lines.append(f"  {result['windowed_sentences']} sentences were longer than the context and scored in windows")
    return "\n".join(lines)
