"""Token shards: flat binary files of token ids, how text becomes them, and how to read a dataset back.

A dataset folder (written by `slovo prepare`) holds ``train.bin`` and ``val.bin`` (ids as ``uint16``
when the vocabulary fits, else ``uint32``), ``tokenizer.json`` and ``meta.json``, which is written last:
a folder without it is not a dataset. Long documents are cut into pieces of at most `chunk_bytes`
at line breaks (`split_into_chunks`) so the train/val split can be fine-grained; pieces that follow
each other in the same split are joined again, and `<|endoftext|>` goes only where a run of text ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slovo.errors import SlovoError

FORMAT = "slovo-dataset/1"
DEFAULT_CHUNK_BYTES = 32 << 10  # ~5k tokens: fine enough that 1% of a few huge novels is many pieces


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def split_into_chunks(data: bytes, chunk_bytes: int) -> list[bytes]:
    """Cut UTF-8 `data` into pieces of at most `chunk_bytes`, preferring paragraph, then line, then
    word breaks in the second half of each window, and never cutting inside a character."""
    if len(data) <= chunk_bytes:
        return [data]
    out, start, n = [], 0, len(data)
    while n - start > chunk_bytes:
        end, lo = start + chunk_bytes, start + chunk_bytes // 2
        cut = -1
        for sep in (b"\n\n", b"\n", b" "):
            i = data.rfind(sep, lo, end)
            if i != -1:
                cut = i + len(sep)
                break
        if cut == -1:  # one huge word: cut at a character boundary (not on a UTF-8 continuation byte)
            cut = end
            while cut > start + 1 and (data[cut] & 0xC0) == 0x80:
                cut -= 1
        out.append(data[start:cut])
        start = cut
    out.append(data[start:])
    return out


def eot_flags(chunk_ids: Sequence[int], last_of_doc: np.ndarray) -> np.ndarray:
    """For chunks of one split listed in corpus order: does `<|endoftext|>` follow each one?

    Yes when it ends its document, or when the next piece of its document went to the other split
    (the text it belonged to ends here for this split's reader).
    """
    ids = np.asarray(chunk_ids, dtype=np.int64)
    if len(ids) == 0:
        return np.zeros(0, dtype=bool)
    continues = np.zeros(len(ids), dtype=bool)
    continues[:-1] = (ids[1:] == ids[:-1] + 1) & ~last_of_doc[ids[:-1]]
    return ~continues


def batch_encode(encoder, texts: list[str]) -> list:
    """The library's parallel batch encoding; `encode_batch_fast` (tokenizers >= 0.20) skips offsets."""
    encode = getattr(encoder, "encode_batch_fast", encoder.encode_batch)
    return encode(texts, add_special_tokens=False)


def encode_pieces(encoder, texts: list[str], eot_after: Iterable[bool], eot_id: int, dtype) -> np.ndarray:
    """Encode texts in one parallel batch; append `eot_id` after those flagged; one flat array."""
    encodings = batch_encode(encoder, texts)
    parts = []
    eot = np.array([eot_id], dtype=dtype)
    for enc, flag in zip(encodings, eot_after):
        parts.append(np.asarray(enc.ids, dtype=dtype))
        if flag:
            parts.append(eot)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


# ---------------------------------------------------------------------------------------------------
# reading a dataset back


@dataclass
class Dataset:
    """A prepared dataset folder: token memmaps plus what meta.json says about them."""

    dir: Path
    meta: dict
    train: np.ndarray
    val: np.ndarray
    tokenizer_path: Path
    vocab_size: int
    eot_id: int


def _open_shard(path: Path, dtype: np.dtype, tokens: int, dataset_dir: Path) -> np.ndarray:
    if not path.is_file():
        raise SlovoError(f"{path}: missing; {dataset_dir} is not a complete dataset, rerun slovo prepare with --force")
    size = path.stat().st_size
    if size != tokens * dtype.itemsize:
        raise SlovoError(
            f"{path}: {size} bytes but meta.json says {tokens} {dtype.name} tokens; "
            f"the dataset is damaged, rerun slovo prepare with --force"
        )
    if tokens == 0:
        return np.zeros(0, dtype=dtype)  # numpy cannot memory-map an empty file
    return np.memmap(path, dtype=dtype, mode="r", shape=(tokens,))


def load_dataset(path: str | Path) -> Dataset:
    """Open a dataset folder written by `slovo prepare`, checking that it is complete."""
    d = Path(path)
    meta_path = d / "meta.json"
    if not d.is_dir() or not meta_path.is_file():
        raise SlovoError(
            f"{path}: not a prepared dataset (no meta.json); run `slovo prepare --data SOURCE --out {path}` first"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SlovoError(f"{meta_path}: not valid JSON ({e}); rerun slovo prepare with --force") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise SlovoError(f"{meta_path}: format {found!r}, expected {FORMAT!r}")
    dtype = np.dtype(meta["dtype"])
    splits = {
        name: _open_shard(d / meta["splits"][name]["file"], dtype, int(meta["splits"][name]["tokens"]), d)
        for name in ("train", "val")
    }
    tok_path = d / meta["tokenizer"]["file"]
    if not tok_path.is_file():
        raise SlovoError(f"{tok_path}: missing; rerun slovo prepare with --force")
    return Dataset(
        dir=d,
        meta=meta,
        train=splits["train"],
        val=splits["val"],
        tokenizer_path=tok_path,
        vocab_size=int(meta["vocab_size"]),
        eot_id=int(meta["eot_id"]),
    )


# ---------------------------------------------------------------------------------------------------
# encoding a whole source (slovo eval --data SOURCE)


def tokenize_source(
    spec: str | list[str],
    tokenizer,
    text_field: str = "text",
    *,
    options=None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    batch_bytes: int = 4 << 20,
) -> tuple[np.ndarray, int]:
    """Encode every document of a text source the way prepare encodes a split.

    `tokenizer` is a `tokenizers.Tokenizer` or a path to a tokenizer.json (or a folder holding one);
    `options` (a `sources.ReadOptions`) replaces `text_field` when the source needs an encoding,
    a separator or a cap. Returns ``(ids, n_bytes)``: the flat ids (each document followed by
    `<|endoftext|>`) in the shard dtype, and the UTF-8 bytes of the documents' text, for bits per byte.
    """
    from slovo.data.sources import ReadOptions, ReadStats, iter_documents, resolve_source
    from slovo.data.tokenizer import eot_id_of, fast_encoder, load_tokenizer

    if isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer)
    eot_id = eot_id_of(tokenizer)
    dtype = dtype_for_vocab(tokenizer.get_vocab_size())
    encoder = fast_encoder(tokenizer)
    specs = [spec] if isinstance(spec, str) else list(spec)
    stats = ReadStats()
    parts: list[np.ndarray] = []
    texts: list[str] = []
    flags: list[bool] = []
    pending = 0
    options = options or ReadOptions(text_field=text_field)
    for _, text in iter_documents([resolve_source(s) for s in specs], options, stats):
        chunks = split_into_chunks(text.encode("utf-8"), chunk_bytes)
        for i, c in enumerate(chunks):
            texts.append(c.decode("utf-8"))
            flags.append(i == len(chunks) - 1)  # all pieces stay together: eot only at the document's end
            pending += len(c)
        if pending >= batch_bytes:
            parts.append(encode_pieces(encoder, texts, flags, eot_id, dtype))
            texts, flags, pending = [], [], 0
    if texts:
        parts.append(encode_pieces(encoder, texts, flags, eot_id, dtype))
    if not stats.documents:
        raise SlovoError(f"{', '.join(specs)}: no non-empty documents")
    return np.concatenate(parts), stats.bytes
