"""`slovo eval RUN`: loss, perplexity and bits per byte of a run's model on a dataset or a text source."""

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


def run(args) -> int:
    import numpy as np

    from slovo.checkpoint import load_for_inference
    from slovo.data import load_dataset, token_byte_lengths, tokenize_source
    from slovo.device import pick_device
    from slovo.evaluate import eval_windows, evaluate, whole_split_note
    from slovo.format import format_bpb

    device = pick_device(args.device)
    model, cfg, tokenizer = load_for_inference(args.run, device)
    source = args.data or cfg.data.path
    if Path(source).is_dir() and (Path(source) / "meta.json").exists():
        ds = load_dataset(source)
        if ds.meta.get("tokenizer", {}).get("sha256") and _tok_sha(args.run) not in (
            None,
            ds.meta["tokenizer"]["sha256"],
        ):
            raise SlovoError(
                f"{source}: prepared with a different tokenizer than the run; pass the text source instead"
            )
        tokens = ds.val if args.split == "val" else ds.train
        what = f"{source} ({args.split})"
    else:
        tokens, _ = tokenize_source(source, tokenizer, text_field=args.text_field)
        tokens = np.asarray(tokens)
        what = source
    max_tokens = args.tokens or cfg.eval.tokens
    if args.tokens is not None and args.tokens <= 0:
        raise SlovoError(f"--tokens: must be positive, got {args.tokens}")
    try:
        windows = eval_windows(tokens, cfg.model.seq_len, max_tokens)
    except ValueError as e:
        raise SlovoError(f"{source}: {e}") from None
    note = whole_split_note(len(tokens), cfg.model.seq_len, max_tokens, "--tokens" if args.tokens else "eval.tokens")
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


def run_dtype(run: str, setting: str) -> str:
    """The precision the run evaluated in: run.json's `dtype` (what `train.dtype` resolved to, e.g. auto ->
    bfloat16 where a CPU measured it faster), else the config's setting. Scoring in another precision would not
    reproduce the run's own eval bpb."""
    from slovo.checkpoint import resolve_checkpoint
    from slovo.utils import read_json_dict

    run_dir, _ = resolve_checkpoint(run)
    chosen = read_json_dict(run_dir / "run.json").get("dtype")
    return chosen if isinstance(chosen, str) and chosen else setting


def _tok_sha(run: str) -> str | None:
    from slovo.checkpoint import resolve_checkpoint
    from slovo.utils import sha256_file

    run_dir, _ = resolve_checkpoint(run)
    tok = run_dir / "tokenizer.json"
    return sha256_file(tok) if tok.exists() else None
