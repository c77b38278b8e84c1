"""`slovo prepare` as a function: text sources -> tokenizer -> train/val token shards + meta.json.

The steps, each over data on disk so a corpus larger than memory streams through in bounded memory:

1. Read the sources document by document (sources.py), cut each document into pieces of at most
   `chunk_bytes` at line breaks, and spool the pieces' UTF-8 bytes to a temp file. What stays in memory
   is numpy bookkeeping of a few bytes per piece and per document (split.Corpus), plus one document.
2. Split (split.py): whole documents by a hash of their content when the corpus allows it, else pieces
   by theirs; meta.json says which (`split.unit`) and why not by document (`split.reason`).
3. Train a byte-level BPE on a sample of training text taken from outside the validation reserve, so
   the tokenizer never sees validation text (or reuse a given tokenizer.json).
4. Count validation tokens (more validation text until `min_val_tokens`), then encode both splits in
   corpus order, a batch of about ENCODE_BATCH_BYTES at a time, with the library's parallel batch encoder,
   appending to flat files; meta.json is written last, in a temp folder that is renamed into place,
   so a killed run never leaves a folder that reads as complete.

The same sources and settings give the same fingerprint; prepare then reuses the folder instead of
rebuilding it, and refuses to overwrite a dataset made from something else unless `force`.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from slovo import __version__
from slovo.data.shards import (
    DEFAULT_CHUNK_BYTES,
    FORMAT,
    batch_encode,
    dtype_for_vocab,
    encode_pieces,
    eot_flags,
    load_dataset,
    split_into_chunks,
)
from slovo.data.sources import ReadOptions, ReadStats, iter_documents, resolve_source
from slovo.data.split import MAX_VAL_SHARE, Corpus, Split, content_score, plan_split
from slovo.data.tokenizer import (
    EOT_TOKEN,
    check_vocab_size,
    eot_id_of,
    fast_encoder,
    load_tokenizer,
    train_tokenizer,
)
from slovo.errors import SlovoError
from slovo.utils import atomic_write_json, process_alive, read_json_dict, sha256_file, staged_dir

ENCODE_BATCH_BYTES = 4 << 20  # text per encode_batch call: enough pieces to keep every core busy
MAX_CHUNK_BYTES = 1 << 30  # piece lengths are kept as uint32
# Bumped when the same sources and settings give a different split; part of the fingerprint.
# 2: whole documents go to validation when the corpus allows it (1 split every corpus by piece).
SPLIT_RULE = 2


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
        if not 256 <= self.chunk_bytes <= MAX_CHUNK_BYTES:
            raise SlovoError(f"--chunk-bytes {self.chunk_bytes}: must be between 256 and {MAX_CHUNK_BYTES}")
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
    def task(self, description: str, total: float | None):
        """A progress bar over `total` bytes; yields `update(completed)`."""
        from slovo.terminal import ProgressBar

        with ProgressBar(self.console, description, total, self.enabled, in_bytes=True) as bar:
            yield bar.update
            bar.complete()


# ---------------------------------------------------------------------------------------------------
# fingerprint and reuse


def _settings_dict(settings: PrepareSettings) -> dict:
    d = dataclasses.asdict(settings)
    d.update(d.pop("read"))
    return d


def _fingerprint(source_entries: list[dict], settings: dict, tokenizer_sha: str | None) -> str:
    payload = {
        "format": FORMAT,
        "split_rule": SPLIT_RULE,
        "sources": source_entries,
        "tokenizer_sha256": tokenizer_sha,
        "settings": {k: v for k, v in settings.items() if k != "tokenizer"},
    }  # the sha stands for the path
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _what_differs(old: dict, settings: dict, source_entries: list[dict]) -> str:
    old_settings = old.get("settings", {})
    diffs = [f"{k} {old_settings.get(k)!r} -> {v!r}" for k, v in settings.items() if old_settings.get(k) != v]
    if old.get("sources") != source_entries:
        diffs.append("sources (paths, sizes or mtimes)")
    return ", ".join(diffs[:4]) or "tokenizer file"


def _file_entries(source_entries: list[dict]) -> list[dict]:
    """Every local file a dataset was read from (plain files and the files of a local hub-format folder)."""
    return [f for e in source_entries for f in ([e] if "path" in e else e.get("files", []))]


def _without_mtimes(source_entries: list[dict]) -> list[dict]:
    def strip(entry: dict) -> dict:
        out = {k: v for k, v in entry.items() if k != "mtime"}
        if "files" in out:
            out["files"] = [strip(f) for f in out["files"]]
        return out

    return json.loads(json.dumps([strip(e) for e in source_entries], default=str))


def _same_content(old: dict, settings: dict, tokenizer_sha: str | None, source_entries: list[dict]) -> bool:
    """The same settings, tokenizer and files, but the files have new timestamps (copied, restored, a fresh
    checkout of a shared folder): their sha256 (kept in meta.json) says whether the text is the same. Hashing
    happens only here, on such a mismatch; a dataset without recorded hashes is not reused."""
    hashes = old.get("source_sha256") or {}
    old_sources = old.get("sources", [])
    if _stamp(old) != _fingerprint(old_sources, settings, tokenizer_sha):
        return False  # something besides the sources differs (settings, tokenizer, format, split rule)
    if _without_mtimes(old_sources) != _without_mtimes(source_entries):
        return False
    files = [f["path"] for f in _file_entries(source_entries)]
    return bool(files) and all(hashes.get(f) == sha256_file(f) for f in files)


def _stamp(meta: dict) -> str | None:
    """The fingerprint of the sources as last seen (paths, sizes, mtimes): prepare's quick reuse check. It starts as
    the dataset's `fingerprint` and follows new timestamps of the same content (`sources_stamp`), while
    `fingerprint` stays what the data was built from, the identity runs record and resume against."""
    return meta.get("sources_stamp") or meta.get("fingerprint")


def _older_split_rule(old: dict, settings: dict, source_entries: list[dict]) -> bool:
    """A dataset slovo prepared from the same sources and settings, but with an older split rule."""
    return (
        old.get("settings") == json.loads(json.dumps(settings, default=str))
        and old.get("sources") == source_entries
        and old.get("split", {}).get("rule") != SPLIT_RULE
    )


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


def _read_and_spool(sources, settings: PrepareSettings, spool_path: Path, ui: ProgressUI, stats: ReadStats) -> Corpus:
    """Pass 1: every document's pieces to the spool file; typed arrays (no Python object per piece) to memory."""
    piece_lengths, doc_pieces = array.array("I"), array.array("I")
    doc_bytes, doc_scores = array.array("q"), array.array("Q")
    total = sum(s.disk_bytes for s in sources if s.hub is None) or None
    if any(s.hub is not None for s in sources):
        total = None  # a streamed hub dataset has no known size
    with open(spool_path, "wb") as spool, ui.task("reading", total) as update:
        for _, text in iter_documents(sources, settings.read, stats):
            data = text.encode("utf-8")
            del text
            chunks = split_into_chunks(data, settings.chunk_bytes)
            for chunk in chunks:
                piece_lengths.append(len(chunk))
                spool.write(chunk)
            doc_pieces.append(len(chunks))
            doc_bytes.append(len(data))
            doc_scores.append(content_score(data))
            update(stats.disk_bytes_done if total else stats.bytes)
    return Corpus(
        np.frombuffer(piece_lengths, np.uint32),
        np.frombuffer(doc_pieces, np.uint32),
        np.frombuffer(doc_bytes, np.int64),
        np.frombuffer(doc_scores, np.uint64),
    )


class _Spool:
    """Read pieces back from the spool file with pread: no memory map, whose pages would count in the
    process's resident memory for the whole corpus."""

    def __init__(self, path: Path, corpus: Corpus):
        self.fd = os.open(path, os.O_RDONLY)
        self.corpus = corpus

    def text(self, i: int) -> str:
        return os.pread(self.fd, int(self.corpus.piece_lengths[i]), int(self.corpus.piece_offsets[i])).decode("utf-8")

    def piece_scores(self) -> np.ndarray:
        """Content scores of every piece, in one sequential pass (only a split by piece needs them)."""
        scores = np.empty(self.corpus.n_pieces, dtype=np.uint64)
        with open(self.fd, "rb", closefd=False) as f:
            f.seek(0)
            for i, n in enumerate(self.corpus.piece_lengths.tolist()):
                scores[i] = content_score(f.read(n))
        return scores

    def close(self) -> None:
        os.close(self.fd)


def _tokenizer_sample(split: Split, cap: int) -> list[int]:
    """Training pieces for the BPE: units with the highest scores first (a uniform sample), never from the
    reserve, until `cap` bytes (0: all of them)."""
    chosen, total = [], 0
    for unit in split.outside[::-1]:
        for i in split.pieces_of(np.array([unit])).tolist():
            if cap and total >= cap:
                return chosen
            chosen.append(i)
            total += int(split.corpus.piece_lengths[i])
    return chosen


def _batches(ids: np.ndarray, lengths: np.ndarray, batch_bytes: int):
    """(start, end) ranges of `ids` holding about `batch_bytes` of text each."""
    cum = np.cumsum(lengths[ids], dtype=np.int64)
    start = 0
    while start < len(ids):
        before = int(cum[start - 1]) if start else 0
        end = max(int(np.searchsorted(cum, before + batch_bytes, side="left")) + 1, start + 1)
        yield start, min(end, len(ids))
        start = end


def _count_tokens(encoder, spool: _Spool, split: Split, units: np.ndarray, counted: dict[int, int]) -> int:
    """Tokens in `units`, encoding (in batches, nothing kept but the counts) only those not counted yet."""
    todo = np.array([u for u in units.tolist() if u not in counted], dtype=np.int64)
    if len(todo):
        pieces = split.pieces_of(todo)
        unit_of = pieces if split.unit == "piece" else split.corpus.doc_of_piece()[pieces]
        for a, b in _batches(pieces, split.corpus.piece_lengths, ENCODE_BATCH_BYTES):
            encs = batch_encode(encoder, [spool.text(i) for i in pieces[a:b].tolist()])
            for unit, enc in zip(unit_of[a:b].tolist(), encs):
                counted[unit] = counted.get(unit, 0) + len(enc.ids)
    return sum(counted[u] for u in units.tolist())


def _choose_validation(split: Split, settings: PrepareSettings, encoder, spool: _Spool, log) -> np.ndarray:
    """Validation units: `val_fraction` of the bytes, then more of the reserve until `min_val_tokens`."""
    sizes = split.unit_bytes
    val = split.choose_val(settings.val_fraction * split.corpus.total_bytes)
    counted: dict[int, int] = {}
    n_tok = _count_tokens(encoder, spool, split, val, counted)
    reserve_bytes = split.reserve_bytes
    while n_tok < settings.min_val_tokens and int(sizes[val].sum()) < reserve_bytes:
        val_bytes = int(sizes[val].sum())
        want = val_bytes + (settings.min_val_tokens - n_tok) * val_bytes / max(n_tok, 1) * 1.05
        val = split.choose_val(want)
        n_tok = _count_tokens(encoder, spool, split, val, counted)
    if n_tok < settings.min_val_tokens:
        log(
            f"warning: validation has {n_tok} tokens, fewer than --min-val-tokens {settings.min_val_tokens}: "
            f"the corpus is too small to hold out more than {max(MAX_VAL_SHARE, settings.val_fraction):.0%} of it"
        )
    return val


def _write_split(
    path: Path,
    spool: _Spool,
    corpus: Corpus,
    piece_ids: np.ndarray,
    flags: np.ndarray,
    encoder,
    eot_id: int,
    dtype,
    update: Callable[[int], None],
    done_before: int = 0,
) -> int:
    """Encode pieces (corpus order) a batch at a time and append them to `path`; returns the tokens written."""
    n = 0
    done = done_before
    with open(path, "wb") as f:
        for a, b in _batches(piece_ids, corpus.piece_lengths, ENCODE_BATCH_BYTES):
            ids = piece_ids[a:b].tolist()
            tokens = encode_pieces(encoder, [spool.text(i) for i in ids], flags[a:b], eot_id, dtype)
            tokens.tofile(f)
            n += len(tokens)
            done += int(corpus.piece_lengths[piece_ids[a:b]].sum())
            update(done)
        f.flush()
        os.fsync(f.fileno())
    return n


def prepare(
    specs: list[str],
    out_dir: str | Path,
    settings: PrepareSettings | None = None,
    *,
    force: bool = False,
    command: str = "",
    ui: ProgressUI | None = None,
    log: Callable[[str], None] = print,
) -> dict:
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
            raise SlovoError(
                f"--vocab-size {settings.vocab_size}: the tokenizer {settings.tokenizer} has "
                f"{given_tok.get_vocab_size()} entries; drop --vocab-size when reusing a tokenizer"
            )

    source_entries = [e for s in sources for e in s.describe()]
    settings_d = _settings_dict(settings)
    fingerprint = _fingerprint(source_entries, settings_d, given_sha)

    # reuse, refuse, or (re)build
    meta_path = out / "meta.json"
    if meta_path.is_file():
        old = read_json_dict(meta_path)
        if _stamp(old) == fingerprint and not force:
            try:
                existing = load_dataset(out)
                log(f"reusing {out}: already prepared from the same sources and settings (pass --force to rebuild)")
                return {**existing.meta, "reused": True, "seconds": time.time() - t0}
            except SlovoError as e:
                log(f"{out} is damaged ({e}); rebuilding it")
        elif not force and _same_content(old, settings_d, given_sha, source_entries):
            # same text under new timestamps: record them, so the next run reuses it without hashing; the
            # fingerprint stays, since the data is the same (a run trained on it resumes on it)
            atomic_write_json(meta_path, {**old, "sources": source_entries, "sources_stamp": fingerprint})
            existing = load_dataset(out)
            log(f"reusing {out}: the sources have new timestamps but the same content (sha256)")
            return {**existing.meta, "reused": True, "seconds": time.time() - t0}
        elif not force and _older_split_rule(old, settings_d, source_entries):
            log(
                f"rebuilding {out}: it was prepared from the same sources and settings by an older slovo, "
                f"whose validation split had neighbours of the same documents in training"
            )
        elif not force:
            differs = _what_differs(old, settings_d, source_entries)
            raise SlovoError(
                f"--out {out}: holds a dataset prepared differently ({differs}); "
                f"pass --force to overwrite it or choose another --out"
            )
    elif out.is_dir() and any(out.iterdir()):
        # Never delete a folder that slovo did not write, even with --force (think --out ~).
        raise SlovoError(f"--out {out}: exists, is not empty and is not a dataset folder; choose another --out")

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(out)
    with staged_dir(out) as tmp:
        origin = _Provenance(source_entries, settings_d, fingerprint, command, t0)
        meta = _build(tmp, sources, settings, given_tok, origin, ui, log)
    return {**meta, "reused": False, "seconds": time.time() - t0}


def _train_or_copy_tokenizer(
    tmp: Path, settings: PrepareSettings, given_tok, split: Split, spool: _Spool, ui: ProgressUI, log
) -> tuple[object, Path, int]:
    tok_path = tmp / "tokenizer.json"
    if given_tok is not None:
        src = Path(settings.tokenizer)
        shutil.copyfile(src / "tokenizer.json" if src.is_dir() else src, tok_path)  # byte-identical: same sha
        return given_tok, tok_path, 0
    sample = _tokenizer_sample(split, settings.tokenizer_sample_bytes)
    sample_bytes = int(split.corpus.piece_lengths[sample].astype(np.int64).sum())
    if ui.enabled:
        ui.console.print(
            f"training a {settings.vocab_size}-token byte-level BPE on {sample_bytes / 1e6:.1f} MB of training text"
        )
    tokenizer = train_tokenizer(
        (spool.text(i) for i in sample), settings.vocab_size, length=len(sample), show_progress=ui.enabled
    )
    if tokenizer.get_vocab_size() < settings.vocab_size:
        log(
            f"warning: the corpus only supports {tokenizer.get_vocab_size()} tokens, fewer than "
            f"--vocab-size {settings.vocab_size}"
        )
    tokenizer.save(str(tok_path))
    return tokenizer, tok_path, sample_bytes


@dataclass(frozen=True)
class _Provenance:
    """What meta.json records about where a dataset came from: its sources, settings, fingerprint and command."""

    source_entries: list
    settings: dict
    fingerprint: str
    command: str
    started: float  # time.time() when prepare began


@dataclass
class _Encoded:
    """The two splits as written: each one's piece ids, end-of-text flags and token count."""

    split: Split
    ids: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]
    tokens: dict[str, int]
    dtype: np.dtype
    vocab_size: int
    eot_id: int
    tok_path: Path
    sample_bytes: int


class _PhaseTimer:
    """Seconds per phase of prepare, for meta.json's `timing`."""

    def __init__(self):
        self.timing: dict[str, float] = {}
        self.start = time.time()

    def done(self, name: str) -> None:
        self.timing[name] = round(time.time() - self.start, 2)
        self.start = time.time()


def _build(tmp: Path, sources, settings: PrepareSettings, given_tok, origin: _Provenance, ui: ProgressUI, log) -> dict:
    """Read, split, train (or copy) the tokenizer, encode both splits into `tmp`, and write meta.json last."""
    stats, spool_path, phases = ReadStats(), tmp / "spool.tmp", _PhaseTimer()
    corpus = _read_and_spool(sources, settings, spool_path, ui, stats)
    phases.done("reading")
    _check_corpus(", ".join(s.spec for s in sources), stats, corpus, settings)
    spool = _Spool(spool_path, corpus)
    try:
        encoded = _split_and_encode(tmp, corpus, spool, settings, given_tok, ui, log, phases)
    finally:
        spool.close()
        spool_path.unlink(missing_ok=True)
    meta = _meta(encoded, corpus, stats, settings, given_tok, origin, phases.timing)
    atomic_write_json(tmp / "meta.json", meta)  # last: its presence marks the folder complete
    return meta


def _check_corpus(specs: str, stats: ReadStats, corpus, settings: PrepareSettings) -> None:
    if stats.documents == 0:
        raise SlovoError(f"{specs}: empty corpus: no non-empty documents ({stats.empty} empty ones dropped)")
    if corpus.n_pieces < 2:
        raise SlovoError(
            f"{specs}: corpus too small to split ({stats.bytes} bytes in one document); "
            f"need at least two documents or one longer than --chunk-bytes {settings.chunk_bytes}"
        )


def _split_and_encode(tmp, corpus, spool, settings, given_tok, ui: ProgressUI, log, phases: _PhaseTimer) -> _Encoded:
    """Plan the split, get the tokenizer, choose validation, and write val.bin and train.bin."""
    split = plan_split(corpus, settings.val_fraction, spool.piece_scores, settings.min_val_tokens)
    if split.reason:
        log(f"validation is split by piece, not by whole document: {split.reason}")
    tokenizer, tok_path, sample_bytes = _train_or_copy_tokenizer(tmp, settings, given_tok, split, spool, ui, log)
    phases.done("tokenizer")
    vocab_size, eot_id = tokenizer.get_vocab_size(), eot_id_of(tokenizer)
    dtype, encoder = dtype_for_vocab(vocab_size), fast_encoder(tokenizer)
    val_units = _choose_validation(split, settings, encoder, spool, log)
    phases.done("validation_choice")
    # Both splits are written in corpus order, so a window of val.bin reads as running text.
    val_ids = split.pieces_of(val_units)
    in_val = np.zeros(corpus.n_pieces, dtype=bool)
    in_val[val_ids] = True
    ids = {"val": val_ids, "train": np.flatnonzero(~in_val)}
    del in_val
    last_of_doc = corpus.last_of_doc()
    flags = {name: eot_flags(ids[name], last_of_doc) for name in ("val", "train")}
    del last_of_doc
    tokens, done = {}, 0
    with ui.task("encoding", corpus.total_bytes) as update:
        for name in ("val", "train"):
            tokens[name] = _write_split(
                tmp / f"{name}.bin", spool, corpus, ids[name], flags[name], encoder, eot_id, dtype, update,
                done_before=done,
            )  # fmt: skip
            done += int(corpus.piece_lengths[ids[name]].astype(np.int64).sum())
    phases.done("encoding")
    return _Encoded(split, ids, flags, tokens, dtype, vocab_size, eot_id, tok_path, sample_bytes)


def _meta(e: _Encoded, corpus, stats: ReadStats, settings, given_tok, origin: _Provenance, timing: dict) -> dict:
    """meta.json's contents (docs/ARCHITECTURE.md, "Dataset folder")."""
    splits = {
        name: {
            "file": f"{name}.bin",
            "tokens": int(e.tokens[name]),
            "documents": e.split.documents_in(e.ids[name]),
            "bytes": int(corpus.piece_lengths[e.ids[name]].astype(np.int64).sum()),
            "segments": int(e.flags[name].sum()),
            "pieces": int(len(e.ids[name])),
        }
        for name in ("train", "val")
    }
    return {
        "format": FORMAT,
        "dtype": e.dtype.name,
        "vocab_size": int(e.vocab_size),
        "eot_token": EOT_TOKEN,
        "eot_id": int(e.eot_id),
        "splits": splits,
        "split": {
            "unit": e.split.unit,
            "train_documents": splits["train"]["documents"],
            "val_documents": splits["val"]["documents"],
            "reason": e.split.reason,
            "rule": SPLIT_RULE,
        },
        "tokenizer": {
            "file": "tokenizer.json",
            "sha256": sha256_file(e.tok_path),
            "trained": given_tok is None,
            "from": str(Path(settings.tokenizer).resolve()) if given_tok is not None else None,
            "sample_bytes": e.sample_bytes,
        },
        "sources": origin.source_entries,
        # what the text was, beyond its timestamp: a copy of the same files with new mtimes reuses the dataset
        "source_sha256": {f["path"]: sha256_file(f["path"]) for f in _file_entries(origin.source_entries)},
        "reading": {
            "documents": stats.documents,
            "empty_dropped": stats.empty,
            "bytes": stats.bytes,
            "capped": stats.capped,
            "split_long_documents": stats.split_long_documents,
        },
        "settings": origin.settings,
        "fingerprint": origin.fingerprint,
        "slovo_version": __version__,
        "command": origin.command,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - origin.started, 2),
        "timing": timing,  # seconds per phase
    }
