"""`slovo prepare` end to end: the dataset folder, the split, reuse, atomic writing, and the Python API."""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from slovo.cli import main
from slovo.data import load_dataset, load_tokenizer, token_byte_lengths, tokenize_source
from slovo.errors import SlovoError
from slovo.utils import sha256_file

SMALL = ["--vocab-size", "400", "--val-fraction", "0.1", "--min-val-tokens", "500"]
MARKER = re.compile(r"маркер\d{4}")


def make_texts(n: int, seed: int = 0, words: int = 60) -> list[str]:
    """Short documents (one piece each), each starting with a unique marker so a split can be checked."""
    rng = random.Random(seed)
    letters = "абвгдежзиклмнопрстуфхцчшыэюя"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 8))) for _ in range(300)]
    return [f"маркер{i:04d} " + " ".join(rng.choice(vocab) for _ in range(words)) + "." for i in range(n)]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text(
        "".join(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)),
        encoding="utf-8",
    )
    return path


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main(["prepare", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def markers(ds_split: np.ndarray, tokenizer) -> set[str]:
    return set(MARKER.findall(tokenizer.decode(ds_split.tolist())))


def documents_of(ids: np.ndarray, eot_id: int) -> list[tuple[int, ...]]:
    cuts = np.flatnonzero(ids == eot_id)
    return [tuple(ids[a + 1 if i else 0 : b].tolist()) for i, (a, b) in enumerate(zip(np.r_[-1, cuts[:-1]], cuts))]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    texts = make_texts(150)
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", texts), texts


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "small"
    assert main(["prepare", "--data", str(corpus[0]), "--out", str(out), "--quiet", *SMALL]) == 0
    return out


def test_dataset_files_agree_with_meta_and_bytes_match_token_byte_lengths(prepared, corpus):
    ds = load_dataset(prepared)
    meta = ds.meta
    assert sorted(p.name for p in prepared.iterdir()) == ["meta.json", "tokenizer.json", "train.bin", "val.bin"]
    assert ds.train.dtype == np.uint16 and meta["dtype"] == "uint16" and ds.vocab_size == 400 and ds.eot_id == 0
    lengths = token_byte_lengths(load_tokenizer(ds.tokenizer_path))
    for name, shard in (("train", ds.train), ("val", ds.val)):
        split = meta["splits"][name]
        assert len(shard) == split["tokens"] > 0
        assert (prepared / split["file"]).stat().st_size == 2 * split["tokens"]
        assert int((shard == 0).sum()) == split["segments"] == split["documents"]  # short docs: one piece each
        assert int(lengths[shard].sum()) == split["bytes"]  # exact: the eot token counts 0 bytes
        assert shard[-1] == ds.eot_id
    texts = corpus[1]
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == len(texts)
    assert meta["splits"]["train"]["bytes"] + meta["splits"]["val"]["bytes"] == sum(len(t.encode()) for t in texts)
    stat = corpus[0].stat()
    assert meta["sources"][0]["size"] == stat.st_size and meta["sources"][0]["path"] == str(corpus[0].resolve())
    assert meta["tokenizer"]["sha256"] == sha256_file(ds.tokenizer_path) and meta["tokenizer"]["trained"]
    assert meta["command"].startswith("slovo prepare --data ") and "--vocab-size 400" in meta["command"]
    assert meta["slovo_version"] and len(meta["fingerprint"]) == 64


def test_transformers_loads_the_dataset_tokenizer_with_the_same_ids(prepared):
    transformers = pytest.importorskip("transformers")
    ds = load_dataset(prepared)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(ds.tokenizer_path))
    sentence = "В начале было слово, и слово было у Бога."
    assert hf(sentence)["input_ids"] == load_tokenizer(prepared).encode(sentence).ids


def test_split_is_deterministic_disjoint_and_independent_of_file_order(prepared, corpus, tmp_path, capsys):
    texts = corpus[1]
    a = write_jsonl(tmp_path / "a.jsonl", texts[:70])
    b = write_jsonl(tmp_path / "b.jsonl", texts[70:])
    assert cli(capsys, "--data", a, "--data", b, "--out", tmp_path / "ab1", *SMALL)[0] == 0
    assert cli(capsys, "--data", a, "--data", b, "--out", tmp_path / "ab2", *SMALL)[0] == 0
    assert cli(capsys, "--data", b, "--data", a, "--out", tmp_path / "ba", *SMALL)[0] == 0
    for f in ("train.bin", "val.bin", "tokenizer.json"):
        assert (tmp_path / "ab1" / f).read_bytes() == (tmp_path / "ab2" / f).read_bytes()
    tok = load_tokenizer(tmp_path / "ab1")
    ds1, ds_ba, ds_one = load_dataset(tmp_path / "ab1"), load_dataset(tmp_path / "ba"), load_dataset(prepared)
    val, train = markers(ds1.val, tok), markers(ds1.train, tok)
    assert val and not (val & train) and len(val | train) == len(texts)
    # the split hangs on each piece's content, not on where it came from
    assert markers(ds_ba.val, tok) == val == markers(ds_one.val, load_tokenizer(prepared))


def test_few_huge_documents_still_give_a_validation_set_of_the_asked_size(tmp_path, capsys):
    texts = ["\n".join(make_texts(400, seed=s, words=12)) for s in range(3)]  # 3 documents of ~40 KB
    src = write_jsonl(tmp_path / "novels.jsonl", texts)
    rc, _, err = cli(
        capsys,
        "--data",
        src,
        "--out",
        tmp_path / "ds",
        "--vocab-size",
        "400",
        "--chunk-bytes",
        "2048",
        "--val-fraction",
        "0.01",
        "--min-val-tokens",
        "3000",
    )
    assert rc == 0, err
    ds = load_dataset(tmp_path / "ds")
    val, train = ds.meta["splits"]["val"], ds.meta["splits"]["train"]
    assert len(ds.val) >= 3000 and train["tokens"] > 5 * val["tokens"]
    assert val["pieces"] > 1 and val["documents"] <= 3
    # pieces that follow each other in a split are joined again: eot only where a run of text ends
    assert int((ds.train == 0).sum()) == train["segments"] < train["pieces"]
    total = sum(len(t.encode()) for t in texts)
    assert val["bytes"] + train["bytes"] == total and val["bytes"] <= 0.1 * total
    lengths = token_byte_lengths(load_tokenizer(ds.tokenizer_path))
    assert int(lengths[ds.val].sum()) == val["bytes"]


def test_min_val_tokens_takes_more_than_the_fraction_when_needed(corpus, tmp_path, capsys):
    args = ["--data", corpus[0], "--vocab-size", "400", "--val-fraction", "0.005"]
    assert cli(capsys, *args, "--out", tmp_path / "few", "--min-val-tokens", "0")[0] == 0
    assert cli(capsys, *args, "--out", tmp_path / "more", "--min-val-tokens", "2000")[0] == 0
    few, more = load_dataset(tmp_path / "few"), load_dataset(tmp_path / "more")
    assert len(few.val) < 2000 <= len(more.val)
    # more than the corpus can spare: validation stops at 10% of the text, with a warning
    rc, _, err = cli(capsys, *args, "--out", tmp_path / "most", "--min-val-tokens", "1000000")
    most = load_dataset(tmp_path / "most").meta["splits"]
    assert rc == 0 and "warning: validation has" in err
    assert len(more.val) < most["val"]["tokens"]
    assert most["val"]["bytes"] <= 0.1 * (most["val"]["bytes"] + most["train"]["bytes"])


def test_rerun_with_the_same_inputs_reuses_the_folder_and_says_so(corpus, tmp_path, capsys):
    out = tmp_path / "ds"
    rc, stdout, _ = cli(capsys, "--data", corpus[0], "--out", out, *SMALL)
    assert rc == 0 and "bytes/token" in stdout and str(out) in stdout
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    rc, stdout, err = cli(capsys, "--data", corpus[0], "--out", out, *SMALL)
    assert rc == 0 and "reusing" in err and "(reused)" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_different_settings_or_sources_refuse_without_force(corpus, tmp_path, capsys):
    out = tmp_path / "ds"
    src = write_jsonl(tmp_path / "c.jsonl", corpus[1][:60])
    assert cli(capsys, "--data", src, "--out", out, *SMALL)[0] == 0
    rc, _, err = cli(capsys, "--data", src, "--out", out, *SMALL, "--vocab-size", "300")
    assert rc == 2 and "vocab_size 400 -> 300" in err and "--force" in err and len(err.strip().splitlines()) == 1
    write_jsonl(src, corpus[1][:61])  # the source changed on disk
    rc, _, err = cli(capsys, "--data", src, "--out", out, *SMALL)
    assert rc == 2 and "sources" in err
    assert cli(capsys, "--data", src, "--out", out, *SMALL, "--vocab-size", "300", "--force")[0] == 0
    assert load_dataset(out).vocab_size == 300


def test_the_same_sources_under_new_timestamps_are_reused_once_their_content_matches(corpus, tmp_path, capsys):
    out = tmp_path / "ds"
    src = write_jsonl(tmp_path / "c.jsonl", corpus[1][:60])
    assert cli(capsys, "--data", src, "--out", out, *SMALL)[0] == 0
    built = (out / "train.bin").stat().st_mtime_ns
    later = src.stat().st_mtime_ns + 5_000_000_000
    os.utime(src, ns=(later, later))  # a fresh copy of the same file (a shared folder laid out anew)
    rc, stdout, err = cli(capsys, "--data", src, "--out", out, *SMALL)
    assert rc == 0 and "same content" in err and "(reused)" in stdout
    assert (out / "train.bin").stat().st_mtime_ns == built
    rc, _, err = cli(capsys, "--data", src, "--out", out, *SMALL)  # the new timestamp is recorded: no hashing
    assert rc == 0 and "already prepared" in err
    text = src.read_text(encoding="utf-8")
    i = next(i for i, ch in enumerate(text) if ch in "аб")
    src.write_text(text[:i] + ("б" if text[i] == "а" else "а") + text[i + 1 :], encoding="utf-8")  # same size
    rc, _, err = cli(capsys, "--data", src, "--out", out, *SMALL)
    assert rc == 2 and "sources" in err


def test_a_run_resumes_on_a_dataset_prepare_reused_after_its_sources_were_touched(tmp_path, capsys):
    # prepare rightly reused the folder but wrote a fingerprint of the new timestamps, and resume then said the
    # byte-identical shards "hold other data"
    from tests.conftest import write_corpus
    from tests.helpers import tiny_train_args

    src, out = write_corpus(tmp_path / "corpus.jsonl", docs=150), tmp_path / "ds"
    assert cli(capsys, "--data", src, "--out", out, *SMALL)[0] == 0
    assert main(tiny_train_args(out, tmp_path / "runs", "t", "--max-steps", "2")) == 0
    later = src.stat().st_mtime_ns + 5_000_000_000
    os.utime(src, ns=(later, later))  # `touch corpus.jsonl`
    rc, _, err = cli(capsys, "--data", src, "--out", out, *SMALL)
    assert rc == 0 and "same content" in err
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "runs" / "t"), "--max-steps", "3", "--quiet"]) == 0, (
        capsys.readouterr().err
    )
    assert json.loads((tmp_path / "runs" / "t" / "summary.json").read_text())["train/global_step"] == 3


def test_killed_prepare_leaves_nothing_that_reads_as_complete(corpus, tmp_path, capsys, monkeypatch):
    # slovo.data.prepare is also the name of the function the package exports, so fetch the module itself
    prep = importlib.import_module("slovo.data.prepare")

    out = tmp_path / "ds"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".ds.tmp-{dead.pid}"  # left by an earlier prepare that was killed
    (stale).mkdir()
    (stale / "train.bin").write_bytes(b"\0\0")

    def killed(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "encode_pieces", killed)  # dies while encoding the training split
    rc, _, err = cli(capsys, "--data", corpus[0], "--out", out, *SMALL)
    assert rc == 130
    assert not out.exists() and not list(tmp_path.glob(".ds.tmp-*"))
    with pytest.raises(SlovoError, match="run `slovo prepare"):
        load_dataset(out)

    monkeypatch.undo()
    assert cli(capsys, "--data", corpus[0], "--out", out, *SMALL)[0] == 0
    monkeypatch.setattr(prep, "encode_pieces", killed)
    assert cli(capsys, "--data", corpus[0], "--out", out, *SMALL, "--vocab-size", "300", "--force")[0] == 130
    assert load_dataset(out).vocab_size == 400  # the old dataset is still whole


def test_reused_tokenizer_gives_identical_shards(prepared, corpus, tmp_path, capsys):
    out = tmp_path / "again"
    rc, stdout, err = cli(
        capsys,
        "--data",
        corpus[0],
        "--out",
        out,
        "--tokenizer",
        prepared / "tokenizer.json",
        "--val-fraction",
        "0.1",
        "--min-val-tokens",
        "500",
    )
    assert rc == 0, err
    meta = load_dataset(out).meta
    assert not meta["tokenizer"]["trained"] and "reused tokenizer" in stdout
    assert meta["tokenizer"]["sha256"] == sha256_file(prepared / "tokenizer.json")
    for f in ("train.bin", "val.bin"):
        assert (out / f).read_bytes() == (prepared / f).read_bytes()
    rc, _, err = cli(
        capsys, "--data", corpus[0], "--out", tmp_path / "x", "--tokenizer", prepared, "--vocab-size", "300"
    )
    assert rc == 2 and "--vocab-size 300" in err and "400" in err


def test_tokenize_source_encodes_documents_as_prepare_does(prepared, corpus):
    ds = load_dataset(prepared)
    ids, n_bytes = tokenize_source(str(corpus[0]), ds.tokenizer_path)
    assert ids.dtype == np.uint16 and ids[-1] == ds.eot_id
    assert n_bytes == ds.meta["splits"]["train"]["bytes"] + ds.meta["splits"]["val"]["bytes"]
    from_prepare = documents_of(np.asarray(ds.train), 0) + documents_of(np.asarray(ds.val), 0)
    assert sorted(documents_of(ids, 0)) == sorted(from_prepare)


def test_hub_spec_on_a_local_parquet_dataset_prepares_like_the_parquet_files(tmp_path, capsys):
    pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = make_texts(80, seed=5)
    (tmp_path / "wiki" / "data").mkdir(parents=True)
    pq.write_table(
        pa.table({"id": [str(i) for i in range(80)], "url": ["u"] * 80, "title": ["t"] * 80, "text": texts}),
        tmp_path / "wiki" / "data" / "train-00000-of-00001.parquet",
    )
    rc, _, err = cli(capsys, "--data", f"hf:{tmp_path / 'wiki'}", "--out", tmp_path / "hub", "--max-docs", "60", *SMALL)
    assert rc == 0, err
    rc, _, err = cli(
        capsys,
        "--data",
        tmp_path / "wiki" / "data" / "*.parquet",
        "--out",
        tmp_path / "local",
        "--max-docs",
        "60",
        *SMALL,
    )
    assert rc == 0, err
    hub = load_dataset(tmp_path / "hub")
    assert hub.meta["reading"] == {**hub.meta["reading"], "documents": 60, "capped": True}
    for f in ("train.bin", "val.bin"):
        assert (tmp_path / "hub" / f).read_bytes() == (tmp_path / "local" / f).read_bytes()


def _not_utf8(tmp_path):
    (tmp_path / "old.txt").write_bytes("текст ".encode() + "мир".encode("cp1251"))
    return [tmp_path / "old.txt"]


def _bad_json(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"text": "раз"}\n{"text": \n', encoding="utf-8")
    return [tmp_path / "c.jsonl"]


def _no_field(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"text": "раз"}\n{"body": "два"}\n', encoding="utf-8")
    return [tmp_path / "c.jsonl"]


def _empty_corpus(tmp_path):
    (tmp_path / "docs").mkdir()
    for i in range(3):
        (tmp_path / "docs" / f"{i}.txt").write_text(" \n\r\n ", encoding="utf-8")
    return [tmp_path / "docs"]


def _out_is_file(tmp_path):
    (tmp_path / "out").write_text("not a folder", encoding="utf-8")
    (tmp_path / "c.txt").write_text("текст", encoding="utf-8")
    return [tmp_path / "c.txt"]


def _ok_source(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", make_texts(5))
    return [tmp_path / "c.jsonl"]


@pytest.mark.parametrize(
    "make,extra,expected",
    [
        (lambda p: [p / "missing.jsonl"], [], r"missing.jsonl: no such file or folder"),
        (_empty_corpus, [], r"empty corpus: no non-empty documents \(3 empty ones dropped\)"),
        (_not_utf8, [], r"old.txt: not valid utf-8 at byte offset 11 \(byte 0xec\); pass --encoding"),
        (_bad_json, [], r"c.jsonl:2: not valid JSON"),
        (_no_field, [], r"c.jsonl:2: no 'text' field \(fields: body\)"),
        (_ok_source, ["--vocab-size", "100"], r"--vocab-size 100: too small"),
        (_ok_source, ["--vocab-size", "10000000"], r"--vocab-size 10000000: too large"),
        (_out_is_file, [], r"--out .*out: is a file, not a folder"),
        (_ok_source, ["--encoding", "klingon"], r"--encoding klingon: unknown encoding"),
        (_ok_source, ["--max-bytes", "lots"], r"--max-bytes lots: expected a size"),
    ],
    ids=[
        "missing-path",
        "empty-corpus",
        "not-utf8",
        "bad-json-line",
        "missing-text-field",
        "vocab-too-small",
        "vocab-too-large",
        "out-is-a-file",
        "unknown-encoding",
        "bad-size",
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path, capsys, make, extra, expected):
    specs = make(tmp_path)
    args = [a for s in specs for a in ("--data", s)]
    rc, _, err = cli(capsys, *args, "--out", tmp_path / "out", *extra)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "out").is_dir()


def test_a_folder_that_is_not_a_dataset_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep me", encoding="utf-8")
    src = _ok_source(tmp_path)[0]
    rc, _, err = cli(capsys, "--data", src, "--out", tmp_path / "mine", "--force", *SMALL)
    assert rc == 2 and "is not a dataset folder" in err
    assert (tmp_path / "mine" / "precious.txt").read_text(encoding="utf-8") == "keep me"


CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
# the full corpus beside the checkout, else the public-domain sample the repository ships (as `make demo` does)
RUSLIT = CORPORA / "ruslit.jsonl.gz"
if not RUSLIT.exists():
    RUSLIT = Path(__file__).resolve().parents[1] / "data" / "sample" / "ruslit-sample.jsonl.gz"


@pytest.mark.slow
def test_ruslit_sample_gives_russian_validation_text(tmp_path, capsys):
    rc, _, err = cli(
        capsys,
        "--data",
        RUSLIT,
        "--out",
        tmp_path / "ruslit",
        "--vocab-size",
        "1024",
        "--max-bytes",
        "3MB",
        "--tokenizer-sample",
        "1MB",
        "--min-val-tokens",
        "20000",
    )
    assert rc == 0, err
    ds = load_dataset(tmp_path / "ruslit")
    tok = load_tokenizer(ds.tokenizer_path)
    assert len(ds.val) >= 20000 and ds.meta["reading"]["capped"]
    rng = np.random.default_rng(0)
    for start in rng.integers(0, len(ds.val) - 200, size=5):
        text = tok.decode(ds.val[start : start + 200].tolist())
        letters = [c for c in text if c.isalpha()]
        assert sum("а" <= c.lower() <= "я" or c.lower() == "ё" for c in letters) > 0.7 * len(letters), text
    lengths = token_byte_lengths(tok)
    assert int(lengths[ds.val].sum()) == ds.meta["splits"]["val"]["bytes"]


def test_a_huge_txt_without_separators_becomes_bounded_documents_and_meta_says_so(tmp_path, capsys, monkeypatch):
    from slovo.data import sources

    monkeypatch.setattr(sources, "MAX_DOCUMENT_CHARS", 2000)
    text = "\n".join(make_texts(200, words=12))  # ~20k characters in one file
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    rc, _, err = cli(capsys, "--data", tmp_path / "book.txt", "--out", tmp_path / "ds", *SMALL)
    assert rc == 0, err
    ds = load_dataset(tmp_path / "ds")
    reading = ds.meta["reading"]
    assert reading["split_long_documents"] == reading["documents"] - 1 >= 5
    assert ds.meta["split"]["val_documents"] + ds.meta["split"]["train_documents"] == reading["documents"]
    tok = load_tokenizer(ds.tokenizer_path)
    assert markers(ds.train, tok) | markers(ds.val, tok) == set(MARKER.findall(text))
