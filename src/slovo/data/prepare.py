"""`slovo prepare` as a function: text sources -> tokenizer -> train/val token shards + meta.json.

The steps, each over data on disk so a corpus larger than memory streams through:

1. Read the sources document by document (sources.py), cut long documents into pieces of at most
   `chunk_bytes` at line breaks, and spool the pieces' UTF-8 bytes to a temp file. Each piece gets a
   score: a hash of its content, so the split does not depend on file order or names, and repeated
   text always lands on the same side.
2. Split by score: the lowest-scoring pieces form the validation set, enough of them for
   `val_fraction` of the bytes and at least `min_val_tokens` tokens, but never more than the
   "reserve" (`MAX_VAL_SHARE` of the bytes). Pieces make this work for a few huge documents (ruslit:
   373 works, some over 3 MB), where a split by whole document would be all or nothing.
3. Train a byte-level BPE on a sample of training pieces taken from outside the reserve, so the
   tokenizer never sees validation text (or reuse a given tokenizer.json).
4. Encode with the library's parallel batch encoder and append to flat memmap files; meta.json is
   written last, in a temp folder that is renamed into place, so a killed run never leaves a folder
   that reads as complete.

The same sources and settings give the same fingerprint; prepare then reuses the folder instead of
rebuilding it, and refuses to overwrite a dataset made from something else unless `force`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import mmap
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from slovo import __version__
from slovo.data.shards import (
    DEFAULT_CHUNK_BYTES, FORMAT, batch_encode, dtype_for_vocab, encode_pieces, eot_flags, load_dataset,
    split_into_chunks,
)
from slovo.data.sources import ReadOptions, ReadStats, iter_documents, resolve_source
from slovo.data.tokenizer import (
    EOT_TOKEN, check_vocab_size, eot_id_of, fast_encoder, load_tokenizer, train_tokenizer,
)
from slovo.errors import SlovoError
from slovo.utils import atomic_write_json, process_alive, read_json_dict, sha256_file, staged_dir

MAX_VAL_SHARE = 0.10  # validation never takes more than this share of the bytes (or val_fraction, if larger)
ENCODE_BATCH_BYTES = 4 << 20  # text per encode_batch call: enough pieces to keep every core busy


@dataclass
class PrepareSettings:
    """Everything that changes the output; all of it goes into the fingerprint."""

    vocab_size: int | None = 8192  # BPE size incl. <|endoftext|> and the 256 bytes; None when reusing a tokenizer
    tokenizer: str | None = None  # path of a tokenizer.json to reuse instead of training one
    val_fraction: float = 0.01  # validation share of the text, in bytes
    min_val_tokens: int = 100_000  # ... and at least this many validation tokens (if the corpus allows)
    chunk_bytes: int = DEFAULT_CHUNK_BYTES  # documents are cut into pieces of at most this many bytes
    tokenizer_sample_bytes: int = 32_000_000  # BPE training text (a sample of train); 0 = all of train
    read: ReadOptions = field(default_factory=ReadOptions)

    def validate(self) -> None:
        if self.tokenizer is None:
            if self.vocab_size is None:
                raise SlovoError("--vocab-size: needed when no --tokenizer is given")
            check_vocab_size(self.vocab_size)
        if not 0 < self.val_fraction <= 0.5:
            raise SlovoError(f"--val-fraction {self.val_fraction}: must be in (0, 0.5]")
        if self.min_val_tokens < 0:
            raise SlovoError(f"--min-val-tokens {self.min_val_tokens}: must be 0 or more")
        if self.chunk_bytes < 256:
            raise SlovoError(f"--chunk-bytes {self.chunk_bytes}: must be at least 256")
        if self.tokenizer_sample_bytes < 0:
            raise SlovoError(f"--tokenizer-sample-bytes {self.tokenizer_sample_bytes}: must be 0 (all) or more")
        if self.read.max_docs < 0 or self.read.max_bytes < 0:
            raise SlovoError("--max-docs / --max-bytes: must be 0 (no cap) or more")


# ---------------------------------------------------------------------------------------------------
# progress display: rich bars on an interactive stderr, nothing otherwise (logs, tests, pipes)


class ProgressUI:
    def __init__(self, enabled: bool | None = None):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = self.console.is_terminal if enabled is None else enabled

    @contextlib.contextmanager
    def task(self, description: str, total: float | None, unit_bytes: bool = True):
        """A progress bar; yields `update(completed)`."""
        if not self.enabled:
            yield lambda completed: None
            return
        from rich.progress import (
            BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
            TimeRemainingColumn,
        )

        amount = DownloadColumn() if unit_bytes else MofNCompleteColumn()
        with Progress(TextColumn("{task.description}"), BarColumn(), amount, TimeElapsedColumn(),
                      TimeRemainingColumn(), console=self.console) as progress:
            tid = progress.add_task(description, total=total)
            yield lambda completed: progress.update(tid, completed=completed)
            progress.update(tid, completed=total if total is not None else progress.tasks[0].completed)


# ---------------------------------------------------------------------------------------------------
# fingerprint and reuse


def _settings_dict(settings: PrepareSettings) -> dict:
    d = dataclasses.asdict(settings)
    d.update(d.pop("read"))
    return d


def _fingerprint(source_entries: list[dict], settings: dict, tokenizer_sha: str | None) -> str:
    payload = {"format": FORMAT, "sources": source_entries, "tokenizer_sha256": tokenizer_sha,
               "settings": {k: v for k, v in settings.items() if k != "tokenizer"}}  # the sha stands for the path
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _what_differs(old: dict, settings: dict, source_entries: list[dict]) -> str:
    old_settings = old.get("settings", {})
    diffs = [f"{k} {old_settings.get(k)!r} -> {v!r}" for k, v in settings.items() if old_settings.get(k) != v]
    if old.get("sources") != source_entries:
        diffs.append("sources (paths, sizes or mtimes)")
    return ", ".join(diffs[:4]) or "tokenizer file"


def _remove_stale_temp_dirs(out: Path) -> None:
    """Temp folders of earlier prepares that were killed (their process is gone)."""
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue  # not a name staged_dir makes: leave it alone
        if not process_alive(pid):
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# the pipeline


@dataclass
class _Pieces:
    """The spooled corpus: piece i is spool[offsets[i] : offsets[i] + lengths[i]]."""

    offsets: np.ndarray
    lengths: np.ndarray
    scores: np.ndarray
    doc_of: np.ndarray
    last_of_doc: np.ndarray
    spool: mmap.mmap | None = None

    def text(self, i: int) -> str:
        o = int(self.offsets[i])
        return self.spool[o:o + int(self.lengths[i])].decode("utf-8")


def _piece_score(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"slovo-split").digest(), "little")


def _read_and_spool(sources, settings: PrepareSettings, spool_path: Path, ui: ProgressUI, stats: ReadStats) -> _Pieces:
    offsets, lengths, scores, doc_of, last = [], [], [], [], []
    pos = 0
    total = sum(s.disk_bytes for s in sources if s.hub is None) or None
    if any(s.hub is not None for s in sources):
        total = None  # a streamed hub dataset has no known size
    with open(spool_path, "wb") as spool, ui.task("reading", total) as update:
        for doc_index, (_, text) in enumerate(iter_documents(sources, settings.read, stats)):
            chunks = split_into_chunks(text.encode("utf-8"), settings.chunk_bytes)
            for k, chunk in enumerate(chunks):
                offsets.append(pos)
                lengths.append(len(chunk))
                scores.append(_piece_score(chunk))
                doc_of.append(doc_index)
                last.append(k == len(chunks) - 1)
                spool.write(chunk)
                pos += len(chunk)
            update(stats.disk_bytes_done if total else stats.bytes)
    return _Pieces(np.array(offsets, np.int64), np.array(lengths, np.int64), np.array(scores, np.uint64),
                   np.array(doc_of, np.int64), np.array(last, bool))


def _split(pieces: _Pieces, val_fraction: float) -> tuple[np.ndarray, int, int]:
    """Pieces by ascending score, how many form the reserve, and how many the byte-share validation set."""
    order = np.argsort(pieces.scores, kind="stable")
    cum = np.cumsum(pieces.lengths[order])
    n, total = len(order), int(cum[-1])
    reserve = int(np.searchsorted(cum, max(MAX_VAL_SHARE, val_fraction) * total, side="right"))
    reserve = min(max(reserve, 1), n - 1)  # at least one validation piece, at least one training piece
    val_n = min(int(np.searchsorted(cum, val_fraction * total, side="left")) + 1, reserve)
    return order, reserve, val_n


def _tokenizer_sample(pieces: _Pieces, order: np.ndarray, reserve: int, cap: int) -> list[int]:
    """Training pieces for the BPE: highest scores first (a uniform sample), never from the reserve."""
    chosen, total = [], 0
    for i in order[reserve:][::-1]:
        if cap and total >= cap:
            break
        chosen.append(int(i))
        total += int(pieces.lengths[i])
    return chosen


def _write_shard(path: Path, arrays) -> int:
    n = 0
    with open(path, "wb") as f:
        for a in arrays:
            a.tofile(f)
            n += len(a)
        f.flush()
        os.fsync(f.fileno())
    return n


def _batches(ids: np.ndarray, lengths: np.ndarray, batch_bytes: int):
    start, acc = 0, 0
    for k, i in enumerate(ids):
        acc += int(lengths[i])
        if acc >= batch_bytes:
            yield start, k + 1
            start, acc = k + 1, 0
    if start < len(ids):
        yield start, len(ids)


def prepare(specs: list[str], out_dir: str | Path, settings: PrepareSettings | None = None, *, force: bool = False,
            command: str = "", ui: ProgressUI | None = None, log: Callable[[str], None] = print) -> dict:
    """Build (or reuse) the dataset folder `out_dir` from the text sources `specs`; return its meta.

    The returned dict is meta.json's content plus ``reused`` (bool) and ``seconds`` (this call's time).
    """
    t0 = time.time()
    settings = settings or PrepareSettings()
    ui = ui or ProgressUI(enabled=False)
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise SlovoError(f"--out {out_dir}: is a file, not a folder; choose another --out")
    if not specs:
        raise SlovoError("--data: give at least one text source")
    settings.validate()
    sources = [resolve_source(s) for s in specs]

    given_tok, given_sha = None, None
    if settings.tokenizer is not None:
        given_tok = load_tokenizer(settings.tokenizer)
        eot_id_of(given_tok, settings.tokenizer)
        tok_file = Path(settings.tokenizer)
        tok_file = tok_file / "tokenizer.json" if tok_file.is_dir() else tok_file
        given_sha = sha256_file(tok_file)
        if settings.vocab_size is not None and settings.vocab_size != given_tok.get_vocab_size():
            raise SlovoError(f"--vocab-size {settings.vocab_size}: the tokenizer {settings.tokenizer} has "
                             f"{given_tok.get_vocab_size()} entries; drop --vocab-size when reusing a tokenizer")

    source_entries = [e for s in sources for e in s.describe()]
    settings_d = _settings_dict(settings)
    fingerprint = _fingerprint(source_entries, settings_d, given_sha)

    # reuse, refuse, or (re)build
    meta_path = out / "meta.json"
    if meta_path.is_file():
        old = read_json_dict(meta_path)
        if old.get("fingerprint") == fingerprint and not force:
            try:
                existing = load_dataset(out)
                log(f"reusing {out}: already prepared from the same sources and settings (pass --force to rebuild)")
                return {**existing.meta, "reused": True, "seconds": time.time() - t0}
            except SlovoError as e:
                log(f"{out} is damaged ({e}); rebuilding it")
        elif not force:
            differs = _what_differs(old, settings_d, source_entries)
            raise SlovoError(f"--out {out}: holds a dataset prepared differently ({differs}); "
                             f"pass --force to overwrite it or choose another --out")
    elif out.is_dir() and any(out.iterdir()):
        # Never delete a folder that slovo did not write, even with --force (think --out ~).
        raise SlovoError(f"--out {out}: exists, is not empty and is not a dataset folder; choose another --out")

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(out)
    with staged_dir(out) as tmp:
        meta = _build(tmp, sources, settings, given_tok, source_entries, settings_d, fingerprint, command, ui, log, t0)
    return {**meta, "reused": False, "seconds": time.time() - t0}


def _build(tmp: Path, sources, settings: PrepareSettings, given_tok, source_entries, settings_d, fingerprint,
           command, ui: ProgressUI, log, t0: float) -> dict:
    stats = ReadStats()
    spool_path = tmp / "spool.tmp"
    pieces = _read_and_spool(sources, settings, spool_path, ui, stats)
    specs = ", ".join(s.spec for s in sources)
    if stats.documents == 0:
        raise SlovoError(f"{specs}: empty corpus: no non-empty documents ({stats.empty} empty ones dropped)")
    if len(pieces.lengths) < 2:
        raise SlovoError(f"{specs}: corpus too small to split ({stats.bytes} bytes in one document); "
                         f"need at least two documents or one longer than --chunk-bytes {settings.chunk_bytes}")

    with open(spool_path, "rb") as f:
        pieces.spool = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        order, reserve, val_n = _split(pieces, settings.val_fraction)

        # tokenizer
        if given_tok is not None:
            tokenizer, sample_bytes = given_tok, 0
        else:
            sample = _tokenizer_sample(pieces, order, reserve, settings.tokenizer_sample_bytes)
            sample_bytes = int(pieces.lengths[sample].sum())
            if ui.enabled:
                ui.console.print(f"training a {settings.vocab_size}-token byte-level BPE "
                                 f"on {sample_bytes / 1e6:.1f} MB of training text")
            tokenizer = train_tokenizer((pieces.text(i) for i in sample), settings.vocab_size,
                                        length=len(sample), show_progress=ui.enabled)
            if tokenizer.get_vocab_size() < settings.vocab_size:
                log(f"warning: the corpus only supports {tokenizer.get_vocab_size()} tokens, fewer than "
                    f"--vocab-size {settings.vocab_size}")
        tok_path = tmp / "tokenizer.json"
        if given_tok is not None:
            src = Path(settings.tokenizer)
            shutil.copyfile(src / "tokenizer.json" if src.is_dir() else src, tok_path)  # byte-identical: same sha
        else:
            tokenizer.save(str(tok_path))
        vocab_size = tokenizer.get_vocab_size()
        eot_id = eot_id_of(tokenizer)
        dtype = dtype_for_vocab(vocab_size)
        encoder = fast_encoder(tokenizer)

        # validation: the byte share first, then more reserve pieces until min_val_tokens is met
        val_tokens: dict[int, np.ndarray] = {}

        def encode_val(ids):
            encs = batch_encode(encoder, [pieces.text(int(i)) for i in ids])
            for i, e in zip(ids, encs):
                val_tokens[int(i)] = np.asarray(e.ids, dtype=dtype)

        encode_val(order[:val_n])
        cum = np.cumsum(pieces.lengths[order])
        n_tok = sum(len(a) for a in val_tokens.values())
        while n_tok < settings.min_val_tokens and val_n < reserve:
            bytes_per_token = cum[val_n - 1] / max(n_tok, 1)
            want = cum[val_n - 1] + (settings.min_val_tokens - n_tok) * bytes_per_token * 1.05
            new_n = min(max(int(np.searchsorted(cum, want, side="left")) + 1, val_n + 1), reserve)
            encode_val(order[val_n:new_n])
            val_n = new_n
            n_tok = sum(len(a) for a in val_tokens.values())
        if n_tok < settings.min_val_tokens:
            log(f"warning: validation has {n_tok} tokens, fewer than --min-val-tokens {settings.min_val_tokens}: "
                f"the corpus is too small to hold out more than {max(MAX_VAL_SHARE, settings.val_fraction):.0%} of it")

        # Both splits are written in corpus order, so a window of val.bin reads as running text.
        # Validation (at most MAX_VAL_SHARE of the corpus) was kept in memory to be written in that order.
        val_ids = np.sort(order[:val_n])
        train_ids = np.sort(order[val_n:])
        val_flags = eot_flags(val_ids, pieces.last_of_doc)
        eot = np.array([eot_id], dtype=dtype)

        def val_arrays():
            for i, ends_here in zip(val_ids, val_flags):
                yield val_tokens[int(i)]
                if ends_here:
                    yield eot

        n_val = _write_shard(tmp / "val.bin", val_arrays())

        # training split, streamed in corpus order
        train_flags = eot_flags(train_ids, pieces.last_of_doc)
        train_bytes = int(pieces.lengths[train_ids].sum())

        def train_arrays(update):
            done = 0
            for a, b in _batches(train_ids, pieces.lengths, ENCODE_BATCH_BYTES):
                ids = train_ids[a:b]
                yield encode_pieces(encoder, [pieces.text(int(i)) for i in ids], train_flags[a:b], eot_id, dtype)
                done += int(pieces.lengths[ids].sum())
                update(done)

        with ui.task("encoding", train_bytes) as update:
            n_train = _write_shard(tmp / "train.bin", train_arrays(update))
    finally:
        pieces.spool.close()
        spool_path.unlink(missing_ok=True)

    def split_meta(name, ids, flags, n_tokens):
        return {"file": f"{name}.bin", "tokens": int(n_tokens), "documents": int(len(np.unique(pieces.doc_of[ids]))),
                "bytes": int(pieces.lengths[ids].sum()), "segments": int(flags.sum()), "pieces": int(len(ids))}

    meta = {
        "format": FORMAT,
        "dtype": dtype.name,
        "vocab_size": int(vocab_size),
        "eot_token": EOT_TOKEN,
        "eot_id": int(eot_id),
        "splits": {"train": split_meta("train", train_ids, train_flags, n_train),
                   "val": split_meta("val", val_ids, val_flags, n_val)},
        "tokenizer": {"file": "tokenizer.json", "sha256": sha256_file(tok_path), "trained": given_tok is None,
                      "from": str(Path(settings.tokenizer).resolve()) if given_tok is not None else None,
                      "sample_bytes": sample_bytes},
        "sources": source_entries,
        "reading": {"documents": stats.documents, "empty_dropped": stats.empty, "bytes": stats.bytes,
                    "capped": stats.capped},
        "settings": settings_d,
        "fingerprint": fingerprint,
        "slovo_version": __version__,
        "command": command,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - t0, 2),
    }
    atomic_write_json(tmp / "meta.json", meta)  # last: its presence marks the folder complete
    return meta
