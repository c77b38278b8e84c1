"""The tokenizer: a byte-level BPE trained with HF `tokenizers`, saved as a plain `tokenizer.json`.

Byte-level means every string can be encoded (no unknown token) and every token stands for an exact
run of UTF-8 bytes, which is what bits-per-byte needs (`token_byte_lengths`). `<|endoftext|>` is the
only special token and is trained in first, so it is id 0 in every tokenizer slovo trains. The file
loads in `transformers.PreTrainedTokenizerFast(tokenizer_file=...)` with the same ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from slovo.errors import SlovoError, first_line

EOT_TOKEN = "<|endoftext|>"
MIN_VOCAB = 257  # the 256 byte symbols plus <|endoftext|>; anything smaller cannot encode every byte
MAX_VOCAB = 1 << 18  # 262144: far beyond what a small model can use, and a typo guard (e.g. 81920000)


def check_vocab_size(vocab_size: int) -> None:
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        what = "too small" if vocab_size < MIN_VOCAB else "too large"
        raise SlovoError(
            f"--vocab-size {vocab_size}: {what}; choose between {MIN_VOCAB} (256 bytes + {EOT_TOKEN}) "
            f"and {MAX_VOCAB} (8192 is a good start for small models)"
        )


def enable_parallelism() -> None:
    """Let the Rust side use every core for training and batch encoding (and silence its fork warning)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def new_byte_level_bpe():
    """An untrained byte-level BPE with the pipeline slovo uses: NFC, GPT-2 pre-tokenization, byte decoder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.BPE())
    # The corpus is already NFC (sources.normalize_text); this keeps prompts typed by users consistent.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_tokenizer(texts: Iterable[str], vocab_size: int, length: int | None = None, show_progress: bool = False):
    """Train a byte-level BPE of `vocab_size` entries (special token and the 256 bytes included) on `texts`."""
    from tokenizers import pre_tokenizers, trainers

    check_vocab_size(vocab_size)
    enable_parallelism()
    tok = new_byte_level_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT_TOKEN],  # first, so it gets id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, even those not in the sample
        show_progress=show_progress,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    if tok.token_to_id(EOT_TOKEN) != 0:  # the trainer's contract; the train loop relies on it
        raise AssertionError(f"{EOT_TOKEN} did not get id 0")
    return tok


def load_tokenizer(path: str | Path):
    """Load a `tokenizers.Tokenizer` from a tokenizer.json, or from a folder holding one (dataset or run)."""
    from tokenizers import Tokenizer

    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise SlovoError(f"{path}: no such tokenizer file (expected a tokenizer.json or a folder holding one)")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises plain Exception subclasses for malformed files
        why = first_line(e)
        raise SlovoError(f"{p}: not a valid tokenizer.json ({why})") from None


def eot_id_of(tokenizer, where: str = "tokenizer") -> int:
    """Id of `<|endoftext|>` in a `tokenizers.Tokenizer` (or a transformers fast tokenizer)."""
    if hasattr(tokenizer, "token_to_id"):
        eot = tokenizer.token_to_id(EOT_TOKEN)
    else:
        eot = tokenizer.convert_tokens_to_ids(EOT_TOKEN)
    if eot is None:
        raise SlovoError(f"{where}: has no {EOT_TOKEN} token; slovo separates documents with it")
    return int(eot)


def fast_encoder(tokenizer):
    """A copy of `tokenizer` for encoding prepared text: identical ids, less work.

    The NFC normalizer is dropped (the text is already NFC, and NFC is idempotent), and special-token
    strings in the text are encoded as plain text, so a document that happens to contain the literal
    "<|endoftext|>" cannot fake a document boundary and every byte is counted by `token_byte_lengths`.
    """
    from tokenizers import Tokenizer

    enable_parallelism()
    fast = Tokenizer.from_str(tokenizer.to_str())
    fast.normalizer = None
    fast.encode_special_tokens = True
    return fast


@lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    """GPT-2's byte<->unicode table, reversed: the printable character byte-level BPE uses for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id stands for (special tokens: 0), as an int64 array of length vocab size.

    For a byte-level BPE each character of the token string is one byte through GPT-2's table. A token
    string with characters outside the table (a tokenizer that is not byte-level) falls back to the
    length of its decoded text.
    """
    table = unicode_to_bytes()
    n = tokenizer.get_vocab_size(with_added_tokens=True)
    special = {i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if i in special:
            continue
        tok = tokenizer.id_to_token(i)
        if tok is None:
            continue
        if all(ch in table for ch in tok):
            out[i] = len(tok)
        else:
            out[i] = len(tokenizer.decode([i], skip_special_tokens=False).encode("utf-8"))
    return out
