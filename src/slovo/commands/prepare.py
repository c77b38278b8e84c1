"""`slovo prepare`: read text sources, train (or reuse) a byte-level BPE, write train/val token shards.

    slovo prepare --data ../shared/corpora/ruslit.jsonl.gz --out data/ruslit-8k
    slovo prepare --data 'wiki/*.parquet' --max-bytes 200MB --out data/ruwiki-8k
    slovo prepare --data hf:wikimedia/wikipedia:20231101.ru --max-bytes 200MB --out data/ruwiki-8k

Running it again with the same sources and settings reuses the folder; different settings need
another --out or --force. The work itself is in slovo.data.prepare.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys

from slovo.errors import SlovoError

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
}


def parse_size(text: str, flag: str) -> int:
    """'200MB' -> 200_000_000, '64MiB' -> 67108864, '1000' -> 1000."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise SlovoError(f"{flag} {text}: expected a size such as 200MB, 64MiB or 1000000")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="SOURCE",
        help="text source (repeatable): a .txt/.jsonl[.gz]/.json.gz/.parquet file, a folder, a glob "
        "in quotes, hf:NAME[:CONFIG[:SPLIT]] (needs pip install 'slovo-lm[hf]'), or slovo:sample (the public-domain "
        "sample corpus shipped with slovo)",
    )
    p.add_argument("--out", required=True, metavar="DATASET_DIR", help="dataset folder to write")
    p.add_argument(
        "--vocab-size",
        type=int,
        default=None,
        metavar="N",
        help="BPE vocabulary size incl. <|endoftext|> (default 8192)",
    )
    p.add_argument(
        "--tokenizer",
        metavar="FILE",
        help="reuse this tokenizer.json (or a dataset/run folder's) instead of training one",
    )
    p.add_argument(
        "--force", action="store_true", help="rebuild even if --out holds a dataset (same or different settings)"
    )
    g = p.add_argument_group("reading")
    g.add_argument(
        "--text-field", default="text", metavar="NAME", help="JSON/parquet/hub field holding the text (default: text)"
    )
    g.add_argument(
        "--separator",
        metavar="TEXT",
        help="split .txt files into documents on this string, e.g. '\\n\\n\\n' (default: one document per file)",
    )
    g.add_argument(
        "--encoding",
        default="utf-8",
        metavar="CODEC",
        help="encoding of .txt/.jsonl files (default: utf-8), e.g. cp1251",
    )
    g.add_argument("--max-docs", type=int, default=0, metavar="N", help="stop after this many documents (default: all)")
    g.add_argument(
        "--max-bytes", default="0", metavar="SIZE", help="stop after this much text, e.g. 200MB (default: all)"
    )
    g = p.add_argument_group("splitting and tokenizer training")
    g.add_argument(
        "--val-fraction", type=float, default=0.01, metavar="F", help="validation share of the text (default: 0.01)"
    )
    g.add_argument(
        "--min-val-tokens",
        type=int,
        default=100_000,
        metavar="N",
        help="validation gets at least this many tokens if the corpus allows (default: 100000)",
    )
    g.add_argument(
        "--chunk-bytes",
        type=int,
        default=None,
        metavar="N",
        help="cut documents into pieces of at most this many bytes before splitting (default: 32768)",
    )
    g.add_argument(
        "--tokenizer-sample",
        default="32MB",
        metavar="SIZE",
        help="train the BPE on this much training text; 0 = all of it (default: 32MB)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary table")


def _command_line(args) -> str:
    """The command, rebuilt from the parsed flags, so meta.json records exactly what was asked."""
    parts = ["slovo", "prepare"]
    for spec in args.data:
        parts += ["--data", spec]
    parts += ["--out", args.out]
    for flag in (
        "vocab_size",
        "tokenizer",
        "text_field",
        "separator",
        "encoding",
        "max_docs",
        "max_bytes",
        "val_fraction",
        "min_val_tokens",
        "chunk_bytes",
        "tokenizer_sample",
    ):
        value = getattr(args, flag)
        if value is not None:
            parts += [f"--{flag.replace('_', '-')}", str(value)]
    if args.force:
        parts.append("--force")
    return shlex.join(parts)


def _summary_table(meta: dict, out: str):
    from rich.table import Table

    table = Table(title="dataset (reused)" if meta.get("reused") else "dataset", title_justify="left")
    for col in ("split", "documents", "bytes", "tokens", "bytes/token"):
        table.add_column(col, justify="left" if col == "split" else "right")
    rows = [(name, meta["splits"][name]) for name in ("train", "val")]
    both = {k: rows[0][1][k] + rows[1][1][k] for k in ("bytes", "tokens")}
    # documents cut into pieces can have pieces on both sides, so the total is what was read
    rows.append(("total", {**both, "documents": meta["reading"]["documents"]}))
    for name, s in rows:
        table.add_row(
            name,
            f"{s['documents']:,}",
            f"{s['bytes']:,}",
            f"{s['tokens']:,}",
            f"{s['bytes'] / max(s['tokens'], 1):.2f}",
            end_section=name == "val",
        )
    return table


def _summary_line(meta: dict, out: str) -> str:
    how = "trained" if meta["tokenizer"]["trained"] else "reused"
    capped = ", capped by --max-docs/--max-bytes" if meta["reading"]["capped"] else ""
    unit = meta.get("split", {}).get("unit", "piece")  # datasets of slovo 0.1 have no split record
    return (
        f"vocab {meta['vocab_size']:,} ({how} tokenizer, {meta['dtype']}); split by {unit}; "
        f"{meta['reading']['empty_dropped']} empty documents dropped{capped}; "
        f"{meta['seconds']:.1f}s; output: {out}"
    )


def run(args) -> int:
    from rich.console import Console

    from slovo.data.prepare import PrepareSettings, ProgressUI, prepare
    from slovo.data.shards import DEFAULT_CHUNK_BYTES
    from slovo.data.sources import ReadOptions, parse_separator

    if not args.data:
        raise SlovoError("--data: give at least one text source (a file, folder, glob or hf:NAME)")
    read = ReadOptions(
        text_field=args.text_field,
        separator=parse_separator(args.separator),
        encoding=args.encoding,
        max_docs=args.max_docs,
        max_bytes=parse_size(args.max_bytes, "--max-bytes"),
    )
    vocab = args.vocab_size if args.vocab_size is not None or args.tokenizer else 8192
    settings = PrepareSettings(
        vocab_size=vocab,
        tokenizer=args.tokenizer,
        val_fraction=args.val_fraction,
        min_val_tokens=args.min_val_tokens,
        chunk_bytes=args.chunk_bytes or DEFAULT_CHUNK_BYTES,
        tokenizer_sample_bytes=parse_size(args.tokenizer_sample, "--tokenizer-sample"),
        read=read,
    )
    ui = ProgressUI(enabled=False if args.quiet else None)
    meta = prepare(
        args.data,
        args.out,
        settings,
        force=args.force,
        command=_command_line(args),
        ui=ui,
        log=lambda msg: print(f"slovo prepare: {msg}", file=sys.stderr),
    )
    if not args.quiet:
        Console().print(_summary_table(meta, args.out))
        print(_summary_line(meta, args.out))  # plain print: a long path must not be wrapped
    return 0
