"""The train/validation split: whole documents when the corpus allows it, pieces (and the reason) otherwise."""

from __future__ import annotations

import importlib
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from slovo.cli import main
from slovo.data import load_dataset, load_tokenizer
from slovo.data.split import Corpus, plan_split

LINE_TAG = re.compile(r"док(\d{3})стр\d{3}")  # every line of a test document names its document


def long_documents(n: int, lines: int, seed: int = 0) -> list[str]:
    """Documents of `lines` lines (~60 bytes each), every line tagged with its document's number, so any
    stretch of decoded text tells which documents it came from."""
    rng = random.Random(seed)
    letters = "абвгдежзиклмнопрстуфхцчшыэюя"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(200)]
    return [
        "\n".join(f"док{d:03d}стр{k:03d} " + " ".join(rng.choice(vocab) for _ in range(6)) for k in range(lines))
        for d in range(n)
    ]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def prepare(capsys, src: Path, out: Path, *extra) -> tuple[dict, str]:
    rc = main(
        [
            "prepare",
            "--data",
            str(src),
            "--out",
            str(out),
            "--vocab-size",
            "400",
            "--chunk-bytes",
            "512",
            "--val-fraction",
            "0.05",
            "--min-val-tokens",
            "0",
            "--quiet",
            *map(str, extra),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    return load_dataset(out).meta, err


def documents_in(ids: np.ndarray, tokenizer) -> set[int]:
    return {int(d) for d in LINE_TAG.findall(tokenizer.decode(ids.tolist()))}


def test_many_documents_split_whole_and_no_validation_text_is_in_train(tmp_path, capsys):
    texts = long_documents(40, lines=40)  # ~2.4 KB each: cut into ~5 pieces of at most 512 bytes
    meta, err = prepare(capsys, write_jsonl(tmp_path / "c.jsonl", texts), tmp_path / "ds")
    split = meta["split"]
    assert split["unit"] == "document" and split["reason"] is None and "split by piece" not in err
    assert split["val_documents"] >= 1 and split["train_documents"] + split["val_documents"] == 40
    ds = load_dataset(tmp_path / "ds")
    tok = load_tokenizer(ds.tokenizer_path)
    val, train = documents_in(np.asarray(ds.val), tok), documents_in(np.asarray(ds.train), tok)
    assert len(val) == split["val_documents"] and len(train) == split["train_documents"]
    assert not val & train and val | train == set(range(40))
    # each validation document is there whole, as one segment: every line, then <|endoftext|>
    val_text = tok.decode(ds.val.tolist(), skip_special_tokens=False).split("<|endoftext|>")[:-1]
    assert sorted(val_text) == sorted(texts[d] for d in val)
    assert meta["splits"]["val"]["segments"] == split["val_documents"] < meta["splits"]["val"]["pieces"]


def test_a_single_document_falls_back_to_pieces_and_says_why(tmp_path, capsys):
    text = long_documents(1, lines=400)[0]  # 24 KB: many pieces
    meta, err = prepare(capsys, write_jsonl(tmp_path / "one.jsonl", [text]), tmp_path / "ds")
    assert meta["split"]["unit"] == "piece" and meta["split"]["reason"] == "the corpus is a single document"
    lines = [line for line in err.splitlines() if "split by piece" in line]
    assert len(lines) == 1 and "single document" in lines[0]
    assert meta["splits"]["val"]["tokens"] > 0 and meta["splits"]["val"]["pieces"] >= 1


def test_one_document_with_more_than_a_quarter_of_the_text_falls_back_to_pieces(tmp_path, capsys):
    texts = long_documents(10, lines=20) + long_documents(1, lines=200, seed=1)  # the last: ~half the text
    meta, err = prepare(capsys, write_jsonl(tmp_path / "c.jsonl", texts), tmp_path / "ds")
    assert meta["split"]["unit"] == "piece" and "more than 25%" in meta["split"]["reason"]
    assert "more than 25%" in err


def test_same_input_gives_the_same_split_and_shards(tmp_path, capsys):
    src = write_jsonl(tmp_path / "c.jsonl", long_documents(30, lines=30))
    first, _ = prepare(capsys, src, tmp_path / "a")
    second, _ = prepare(capsys, src, tmp_path / "b")
    assert first["split"] == second["split"] and first["split"]["unit"] == "document"
    for f in ("train.bin", "val.bin", "tokenizer.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_encoding_in_small_batches_gives_the_same_shards(tmp_path, capsys, monkeypatch):
    src = write_jsonl(tmp_path / "c.jsonl", long_documents(30, lines=30))
    prepare(capsys, src, tmp_path / "big", "--min-val-tokens", "3000")
    monkeypatch.setattr(importlib.import_module("slovo.data.prepare"), "ENCODE_BATCH_BYTES", 700)
    prepare(capsys, src, tmp_path / "small", "--min-val-tokens", "3000")
    for f in ("train.bin", "val.bin"):
        assert (tmp_path / "big" / f).read_bytes() == (tmp_path / "small" / f).read_bytes()


def test_a_dataset_from_the_older_piece_split_is_rebuilt_when_prepared_again(tmp_path, capsys):
    src = write_jsonl(tmp_path / "c.jsonl", long_documents(30, lines=30))
    prepare(capsys, src, tmp_path / "ds")
    meta_path = tmp_path / "ds" / "meta.json"
    old = json.loads(meta_path.read_text(encoding="utf-8"))
    del old["split"]  # what slovo 0.1 wrote: no split record, another fingerprint
    old["fingerprint"] = "0" * 64
    meta_path.write_text(json.dumps(old), encoding="utf-8")
    meta, err = prepare(capsys, src, tmp_path / "ds")
    assert "rebuilding" in err and "older slovo" in err and meta["split"]["unit"] == "document"
    _, err = prepare(capsys, src, tmp_path / "ds")
    assert "reusing" in err


def corpus_of(sizes: list[int], scores: list[int]) -> Corpus:
    return Corpus(
        np.array(sizes, np.uint32),
        np.ones(len(sizes), np.uint32),
        np.array(sizes, np.int64),
        np.array(scores, np.uint64),
    )


def no_piece_scores():
    raise AssertionError("a split by document must not hash pieces")


def test_a_long_document_first_in_hash_order_goes_to_training_not_to_validation():
    # 100 documents of 1000 bytes and one of 9000 bytes (8% of the text) that hashes lowest
    corpus = corpus_of([9000] + [1000] * 100, [0] + list(range(1, 101)))
    split = plan_split(corpus, 0.01, no_piece_scores)
    assert split.unit == "document" and 0 in split.outside and 0 not in split.reserve  # it would make val 8x the 1%
    val = split.choose_val(0.01 * corpus.total_bytes)
    assert val.tolist() == [1, 2]  # the next ones in hash order, just past 1%
    reserve, outside = set(split.reserve.tolist()), set(split.outside.tolist())
    assert set(val.tolist()) <= reserve and not reserve & outside


def test_min_val_tokens_lets_longer_documents_into_validation():
    corpus = corpus_of([9000] + [1000] * 100, [0] + list(range(1, 101)))
    split = plan_split(corpus, 0.01, no_piece_scores, min_val_tokens=1000)  # ~8 KB expected: 9000 may go
    assert split.reserve[0] == 0 and split.choose_val(0.01 * corpus.total_bytes).tolist() == [0]


def test_a_document_that_does_not_fit_in_the_reserve_does_not_stop_smaller_ones_after_it():
    # 999 documents of 100 bytes; the 21st in hash order has 9500: within the size limit, but it does not fit in
    # the 10% reserve (10,940 bytes) after the first 20, so it stays in training and small ones fill the reserve
    sizes = [100] * 20 + [9500] + [100] * 979
    corpus = corpus_of(sizes, list(range(1000)))
    split = plan_split(corpus, 0.01, no_piece_scores, min_val_tokens=600)  # expected ~4.8 KB: limit 9.6 KB
    assert 20 in split.outside and 20 not in split.reserve
    assert len(split.reserve) == 109 and corpus.doc_bytes[split.reserve].sum() == 10_900


@pytest.mark.parametrize(
    "sizes,why",
    [
        ([5000], "single document"),
        ([20] * 10 + [4000], "more than 25%"),
        ([2000] * 5, "cannot make up"),  # every document is 20% of the text: validation would be 20x the 1%
    ],
)
def test_corpora_whole_documents_cannot_split_fall_back_to_pieces(sizes, why):
    corpus = Corpus(
        np.array([100] * (sum(sizes) // 100), np.uint32),
        np.array([s // 100 for s in sizes], np.uint32),
        np.array(sizes, np.int64),
        np.arange(len(sizes), dtype=np.uint64),
    )
    split = plan_split(corpus, 0.01, lambda: np.arange(corpus.n_pieces, dtype=np.uint64)[::-1].copy())
    assert split.unit == "piece" and why in split.reason
    assert len(split.reserve) >= 1 and len(split.outside) >= 1
    assert sorted(np.r_[split.reserve, split.outside].tolist()) == list(range(corpus.n_pieces))
