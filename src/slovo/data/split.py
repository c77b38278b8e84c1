"""The train/validation split: whole documents when the corpus allows it, pieces of documents otherwise.

Validation text that has neighbours from the same work in training measures memory of that work as
much as language modelling, so validation takes WHOLE documents whenever it can: the documents with
the lowest content hash, until they hold `val_fraction` of the text (and `min_val_tokens`, see
prepare.py). A hash of the content makes the split deterministic, independent of file order and names,
and puts repeated text on one side.

Whole documents cannot give "about 1% of the text" for every corpus: one document, a few huge ones, or
one that holds a large share of the text. Then the split falls back to the pieces (at most
`chunk_bytes`, cut at line breaks) that prepare cuts documents into, each scored by its own hash, and
says why (`Split.reason`).

The selection works on "units" (documents or pieces) in ascending score. The *reserve* is the units
validation may ever take: in score order, those no larger than twice the expected validation size
(`val_fraction` of the text, or `min_val_tokens` at BYTES_PER_TOKEN_GUESS if that is more; so one long work
cannot make validation several times that), as many as fit together in `MAX_VAL_SHARE` of the text.
Validation is a prefix of the reserve. The tokenizer is trained outside the reserve, so it never sees
validation text whatever `min_val_tokens` adds later.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAX_VAL_SHARE = 0.10  # validation never takes more than this share of the bytes (or val_fraction, if larger)
MAX_DOC_SHARE = 0.25  # a document holding more than this share of the text rules out a split by document
# Before the tokenizer exists, min_val_tokens is turned into bytes with this (generous) guess; byte-level
# BPEs of 8k tokens give 4-6 bytes per token on Russian or English text.
BYTES_PER_TOKEN_GUESS = 8


def content_score(data: bytes) -> int:
    """The unit's place in the split order: a 64-bit hash of its UTF-8 bytes."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"slovo-split").digest(), "little")


@dataclass
class Corpus:
    """What prepare keeps about the spooled corpus: O(pieces) + O(documents) numpy, no Python objects.

    Per piece 4 bytes (`piece_lengths`) plus 8 for the offsets derived from them; per document 28 bytes.
    Pieces are stored in corpus order, the pieces of one document one after the other.
    """

    piece_lengths: np.ndarray  # uint32: UTF-8 bytes of each piece
    doc_pieces: np.ndarray  # uint32: how many pieces each document was cut into
    doc_bytes: np.ndarray  # int64: UTF-8 bytes of each document
    doc_scores: np.ndarray  # uint64: content_score of each document

    def __post_init__(self):
        self.piece_offsets = np.zeros(len(self.piece_lengths), dtype=np.int64)  # where each piece starts in the spool
        np.cumsum(self.piece_lengths[:-1], out=self.piece_offsets[1:])
        self.doc_first_piece = np.zeros(len(self.doc_pieces), dtype=np.int64)
        np.cumsum(self.doc_pieces[:-1], out=self.doc_first_piece[1:])

    @property
    def n_pieces(self) -> int:
        return len(self.piece_lengths)

    @property
    def n_docs(self) -> int:
        return len(self.doc_pieces)

    @property
    def total_bytes(self) -> int:
        return int(self.doc_bytes.sum())

    def last_of_doc(self) -> np.ndarray:
        """bool per piece: does the piece end its document?"""
        last = np.zeros(self.n_pieces, dtype=bool)
        last[self.doc_first_piece + self.doc_pieces.astype(np.int64) - 1] = True
        return last

    def doc_of_piece(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_docs, dtype=np.int64), self.doc_pieces)


@dataclass
class Split:
    """The units (documents or pieces) of a corpus, in split order, and which of them validation may take."""

    corpus: Corpus
    unit: str  # "document" or "piece"
    reason: str | None  # why it is not by document, when it is not
    unit_bytes: np.ndarray  # bytes per unit
    reserve: np.ndarray  # unit ids in ascending score that validation may take (at most the reserve share)
    outside: np.ndarray  # every other unit id, ascending score

    @property
    def reserve_bytes(self) -> int:
        return int(self.unit_bytes[self.reserve].sum())

    def choose_val(self, target_bytes: float) -> np.ndarray:
        """The first reserve units (ascending score) that make up at least `target_bytes`, or the whole reserve."""
        cum = np.cumsum(self.unit_bytes[self.reserve])
        return self.reserve[: int(np.searchsorted(cum, target_bytes, side="left")) + 1]

    def pieces_of(self, units: np.ndarray) -> np.ndarray:
        """Piece ids of `units`, in corpus order."""
        units = np.sort(np.asarray(units, dtype=np.int64))
        if self.unit == "piece":
            return units
        first, count = self.corpus.doc_first_piece[units], self.corpus.doc_pieces[units].astype(np.int64)
        starts = np.repeat(first - np.cumsum(count) + count, count)  # per piece: its document's first piece, shifted
        return starts + np.arange(int(count.sum()), dtype=np.int64)

    def documents_in(self, piece_ids: np.ndarray) -> int:
        """How many documents have at least one of these pieces."""
        if len(piece_ids) == 0:
            return 0
        return int(len(np.unique(self.corpus.doc_of_piece()[piece_ids])))


def _fill(sizes: np.ndarray, cap: float) -> np.ndarray:
    """Positions of the units, taken in order, that fit in `cap` bytes together: one that does not fit is
    passed over and smaller ones after it may still be taken (a long work must not leave the reserve short).
    Vectorised for the prefix that fits as a whole; the loop after it stops once nothing left can fit."""
    cum = np.cumsum(sizes)
    head = int(np.searchsorted(cum, cap, side="right"))
    if head == len(sizes):
        return np.arange(head, dtype=np.int64)
    taken, acc = list(range(head)), int(cum[head - 1]) if head else 0
    smallest_after = np.minimum.accumulate(sizes[::-1])[::-1]
    for k in range(head, len(sizes)):
        if acc + int(smallest_after[k]) > cap:
            break
        if acc + int(sizes[k]) <= cap:
            taken.append(k)
            acc += int(sizes[k])
    return np.array(taken, dtype=np.int64)


def _units(scores: np.ndarray, sizes: np.ndarray, largest: float, cap: float) -> tuple[np.ndarray, np.ndarray]:
    """(reserve, outside): units of at most `largest` bytes in ascending score while they fit in `cap` bytes;
    every other unit in ascending score."""
    order = np.argsort(scores, kind="stable")
    eligible = order[sizes[order] <= largest]
    reserve = eligible[_fill(sizes[eligible], cap)]
    rest = np.ones(len(sizes), dtype=bool)
    rest[reserve] = False
    return reserve, order[rest[order]]


def _documents_too_few_or_too_big(corpus: Corpus) -> str | None:
    total = corpus.total_bytes
    if corpus.n_docs < 2:
        return "the corpus is a single document"
    biggest = int(corpus.doc_bytes.max())
    if biggest > MAX_DOC_SHARE * total:
        return (
            f"one document holds {biggest / total:.0%} of the text (more than {MAX_DOC_SHARE:.0%}), "
            f"too much to go to either side whole"
        )
    return None


def plan_split(
    corpus: Corpus, val_fraction: float, piece_scores: Callable[[], np.ndarray], min_val_tokens: int = 0
) -> Split:
    """Split by document if the corpus allows it, else by piece (with the reason); `piece_scores()` gives
    the pieces' content scores and is only called for a split by piece."""
    total = corpus.total_bytes
    cap = max(MAX_VAL_SHARE, val_fraction) * total
    # A unit larger than twice the expected validation size never goes to validation.
    largest = 2 * max(val_fraction * total, min_val_tokens * BYTES_PER_TOKEN_GUESS)
    reason = _documents_too_few_or_too_big(corpus)
    if reason is None:
        reserve, outside = _units(corpus.doc_scores, corpus.doc_bytes, largest, cap)
        if corpus.doc_bytes[reserve].sum() >= val_fraction * total:
            return Split(corpus, "document", None, corpus.doc_bytes, reserve, outside)
        reason = (
            f"whole documents no larger than {largest / total:.0%} of the text cannot make up {val_fraction:.0%} of it"
        )
    sizes = corpus.piece_lengths.astype(np.int64)
    reserve, outside = _units(piece_scores(), sizes, largest, cap)
    if len(reserve) == 0 and len(outside) > 1:  # every piece is larger than the share: still hold one out
        reserve, outside = outside[:1], outside[1:]
    return Split(corpus, "piece", reason, sizes, reserve, outside)
