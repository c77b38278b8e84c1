"""Data: text sources, the tokenizer and token shards (see docs/ARCHITECTURE.md, "Dataset folder").

The public API the other stages use:
    load_dataset(path) -> Dataset          a folder written by `slovo prepare` (train/val memmaps, meta)
    load_tokenizer(path)                   a tokenizers.Tokenizer from a tokenizer.json or a folder holding one
    token_byte_lengths(tokenizer)          UTF-8 bytes per token id (special tokens 0), for bits per byte
    tokenize_source(spec, tokenizer)       (ids, n_bytes) of a text source, encoded as prepare encodes a split
    prepare(specs, out_dir, settings)      the whole `slovo prepare` pipeline
"""

from slovo.data.prepare import PrepareSettings, prepare
from slovo.data.shards import Dataset, dtype_for_vocab, load_dataset, tokenize_source
from slovo.data.sources import ReadOptions, normalize_text
from slovo.data.tokenizer import EOT_TOKEN, load_tokenizer, token_byte_lengths, train_tokenizer

__all__ = [
    "Dataset",
    "EOT_TOKEN",
    "PrepareSettings",
    "ReadOptions",
    "dtype_for_vocab",
    "load_dataset",
    "load_tokenizer",
    "normalize_text",
    "prepare",
    "token_byte_lengths",
    "tokenize_source",
    "train_tokenizer",
]
