"""Text sources: every kind of --data SOURCE, normalisation, caps, and bad input named by file and place."""

from __future__ import annotations

import gzip
import json
import random
import sys
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from slovo.data import sources as src
from slovo.data.sources import ReadOptions, ReadStats, iter_documents, parse_hub_spec, resolve_source
from slovo.errors import SlovoError

WORDS = "слово мир дом река лес поле небо время жизнь человек город дорога письмо сердце ночь утро".split()


def russian_docs(n: int, seed: int = 0, words: int = 40) -> list[str]:
    rng = random.Random(seed)
    return [f"документ {i}: " + " ".join(rng.choice(WORDS) for _ in range(words)) + "." for i in range(n)]


def read(specs, **opts) -> tuple[list[tuple[str, str]], ReadStats]:
    stats = ReadStats()
    docs = list(iter_documents([resolve_source(str(s)) for s in specs], ReadOptions(**opts), stats))
    return docs, stats


def write_jsonl(path, records, gz=False):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_wiki_parquet(path, texts, row_group_size=None):
    table = pa.table(
        {
            "id": [str(i) for i in range(len(texts))],
            "url": [f"https://ru.wikipedia.org/{i}" for i in range(len(texts))],
            "title": [f"Статья {i}" for i in range(len(texts))],
            "text": texts,
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_txt_file_is_one_document_with_crlf_and_nfc_normalised(tmp_path):
    decomposed = unicodedata.normalize("NFD", "Ёлка и йод")  # Ё and й as base letter + combining mark
    (tmp_path / "a.txt").write_bytes(f"{decomposed}\r\nвторая строка\r\n".encode())
    docs, stats = read([tmp_path / "a.txt"])
    assert [t for _, t in docs] == ["Ёлка и йод\nвторая строка\n"]
    assert unicodedata.is_normalized("NFC", docs[0][1])
    assert stats.bytes == len(docs[0][1].encode())


def test_folder_reads_supported_files_sorted_and_skips_hidden(tmp_path):
    (tmp_path / "b.txt").write_text("второй", encoding="utf-8")
    (tmp_path / "a.txt").write_text("первый", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("третий", encoding="utf-8")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("скрытый", encoding="utf-8")
    (tmp_path / "notes.csv").write_text("a,b", encoding="utf-8")
    docs, _ = read([tmp_path])
    assert [t for _, t in docs] == ["первый", "второй", "третий"]


def test_separator_splits_txt_into_documents_and_empty_ones_are_dropped_and_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(src, "READ_BLOCK", 7)  # separators and characters straddle block boundaries
    (tmp_path / "corpus.txt").write_text("один\n===\nдва\n===\n   \n===\nтри", encoding="utf-8")
    docs, stats = read([tmp_path / "corpus.txt"], separator="\n===\n")
    assert [t for _, t in docs] == ["один", "два", "три"]
    assert stats.empty == 1 and stats.documents == 3


def test_glob_matches_files_and_an_empty_match_is_an_error(tmp_path):
    for i, text in enumerate(russian_docs(3)):
        (tmp_path / f"part{i}.txt").write_text(text, encoding="utf-8")
    docs, _ = read([tmp_path / "part*.txt"])
    assert [t for _, t in docs] == russian_docs(3)
    with pytest.raises(SlovoError, match="matches no"):
        resolve_source(str(tmp_path / "*.parquet"))


@pytest.mark.parametrize("name,gz", [("c.jsonl", False), ("c.jsonl.gz", True), ("c.json.gz", True)])
def test_json_lines_plain_and_gzipped_read_the_text_field(tmp_path, name, gz):
    texts = russian_docs(5)
    write_jsonl(tmp_path / name, [{"id": f"d{i}", "body": t} for i, t in enumerate(texts)], gz=gz)
    docs, stats = read([tmp_path / name], text_field="body")
    assert docs == [(f"d{i}", t) for i, t in enumerate(texts)]
    assert stats.bytes == sum(len(t.encode()) for t in texts)


def test_json_array_file_is_read_as_records(tmp_path):
    (tmp_path / "c.json").write_text(
        json.dumps([{"text": "раз"}, {"text": "два"}], ensure_ascii=False), encoding="utf-8"
    )
    docs, _ = read([tmp_path / "c.json"])
    assert [t for _, t in docs] == ["раз", "два"]


def test_parquet_with_the_wikipedia_schema(tmp_path):
    texts = russian_docs(7) + [""]  # an empty article is dropped and counted
    write_wiki_parquet(tmp_path / "train-00000-of-00001.parquet", texts, row_group_size=3)
    docs, stats = read([tmp_path / "train-00000-of-00001.parquet"])
    assert [t for _, t in docs] == texts[:-1]
    assert [i for i, _ in docs] == [str(i) for i in range(7)]
    assert stats.empty == 1


def test_hub_spec_is_parsed_into_name_config_split():
    assert parse_hub_spec("hf:wikimedia/wikipedia:20231101.ru") == ("wikimedia/wikipedia", "20231101.ru", "train")
    assert parse_hub_spec("hf:user/data") == ("user/data", None, "train")
    assert parse_hub_spec("hf:user/data::validation") == ("user/data", None, "validation")
    with pytest.raises(SlovoError, match="hf:NAME"):
        parse_hub_spec("hf:")


def test_hub_source_streams_a_local_parquet_dataset_through_datasets(tmp_path):
    pytest.importorskip("datasets")
    (tmp_path / "wiki" / "data").mkdir(parents=True)
    texts = russian_docs(6, seed=3)
    write_wiki_parquet(tmp_path / "wiki" / "data" / "train-00000-of-00001.parquet", texts)
    source = resolve_source(f"hf:{tmp_path / 'wiki'}")
    assert source.hub is not None
    docs, stats = read([f"hf:{tmp_path / 'wiki'}"], max_docs=4)
    assert [t for _, t in docs] == texts[:4]
    assert stats.capped
    entry = source.describe()[0]
    assert entry["files"][0]["size"] > 0  # a local dataset folder is fingerprinted by its files


def test_unreachable_hub_is_one_line_that_says_to_pass_a_local_path(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: connection refused at once
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with pytest.raises(SlovoError) as e:
        read(["hf:wikimedia/wikipedia:20231101.ru"], max_bytes=200_000_000)
    msg = str(e.value)
    assert "\n" not in msg and "hf:wikimedia/wikipedia:20231101.ru" in msg and "local path" in msg


def test_a_hub_reached_only_through_a_proxy_is_not_reported_offline(monkeypatch):
    """HF_ENDPOINT's host does not resolve here; only the proxy in HTTP_PROXY reaches it (a machine behind a
    corporate proxy). The check asks through huggingface_hub, which goes through the proxy, as `datasets` will."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    huggingface_hub = pytest.importorskip("huggingface_hub")
    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self):  # a forward proxy gets the absolute URL; it answers as the hub would
            seen.append(self.path)
            body = json.dumps({"id": "user/data", "sha": "0123abcd", "private": False}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.invalid")  # .invalid never resolves
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.server_address[1]}")
    # its HTTP client reads the proxy settings when it is made (close_session: huggingface_hub >= 1; before, requests')
    close_session = getattr(huggingface_hub, "close_session", None) or huggingface_hub.utils.reset_sessions
    close_session()
    try:
        entry = resolve_source("hf:user/data").describe()[0]
    finally:
        proxy.shutdown()
        close_session()
    assert entry["revision"] == "0123abcd"
    assert seen and seen[0].startswith("http://hub.invalid/api/datasets/user/data")


def test_hub_without_datasets_installed_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    (tmp_path / "d").mkdir()
    with pytest.raises(SlovoError, match=r"pip install 'slovo-lm\[hf\]'"):
        read([f"hf:{tmp_path / 'd'}"])


def test_max_docs_and_max_bytes_cap_reading_over_all_sources(tmp_path):
    texts = russian_docs(10)
    write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in texts[:5]])
    write_jsonl(tmp_path / "b.jsonl", [{"text": t} for t in texts[5:]])
    docs, stats = read([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], max_docs=7)
    assert [t for _, t in docs] == texts[:7] and stats.capped
    limit = len(texts[0].encode()) * 2 + 1  # crossed by the third document, which is still taken
    docs, stats = read([tmp_path / "a.jsonl"], max_bytes=limit)
    assert len(docs) == 3 and stats.capped


def test_non_utf8_text_names_the_file_and_byte_offset_and_encoding_reads_it(tmp_path, monkeypatch):
    monkeypatch.setattr(src, "READ_BLOCK", 5)  # the offset must stay exact across read blocks
    data = "привет ".encode() + "мир".encode("cp1251")
    (tmp_path / "old.txt").write_bytes(data)
    with pytest.raises(SlovoError) as e:
        read([tmp_path / "old.txt"])
    assert f"old.txt: not valid utf-8 at byte offset {len('привет '.encode())}" in str(e.value)
    assert "--encoding" in str(e.value)
    docs, _ = read([tmp_path / "old.txt"], encoding="cp1251")
    assert docs[0][1] == "привет ".encode().decode("cp1251") + "мир"


def test_non_utf8_in_gzipped_jsonl_names_the_offset_in_the_decompressed_data(tmp_path):
    good = json.dumps({"text": "хорошо"}, ensure_ascii=False).encode() + b"\n"
    bad = b'{"text": "' + "плохо".encode("cp1251") + b'"}\n'
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(good + bad))
    expected = rf"c.jsonl.gz: not valid utf-8 at byte offset {len(good) + 10} of the decompressed"
    with pytest.raises(SlovoError, match=expected):
        read([tmp_path / "c.jsonl.gz"])


def test_bad_json_line_and_missing_field_name_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "раз"}\n\n{"text": "два"\n', encoding="utf-8")
    with pytest.raises(SlovoError, match=r"bad.jsonl:3: not valid JSON"):
        read([tmp_path / "bad.jsonl"])
    write_jsonl(tmp_path / "nofield.jsonl", [{"text": "раз"}, {"body": "два"}])
    with pytest.raises(SlovoError, match=r"nofield.jsonl:2: no 'text' field \(fields: body\); pass --text-field"):
        read([tmp_path / "nofield.jsonl"])
    write_jsonl(tmp_path / "num.jsonl", [{"text": 5}])
    with pytest.raises(SlovoError, match=r"num.jsonl:1: field 'text' is int"):
        read([tmp_path / "num.jsonl"])


def test_parquet_without_the_text_column_lists_the_columns(tmp_path):
    pq.write_table(pa.table({"id": ["1"], "body": ["текст"]}), tmp_path / "x.parquet")
    with pytest.raises(SlovoError, match=r"x.parquet: no column 'text' \(columns: id, body\)"):
        read([tmp_path / "x.parquet"])
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SlovoError, match="cannot read as parquet"):
        read([tmp_path / "broken.parquet"])


def test_missing_path_and_unsupported_type_are_errors(tmp_path):
    with pytest.raises(SlovoError, match="no such file or folder"):
        resolve_source(str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.csv").write_text("a,b", encoding="utf-8")
    with pytest.raises(SlovoError, match="unsupported file type"):
        resolve_source(str(tmp_path / "x.csv"))


@pytest.mark.parametrize("separator", [None, "\n===\n"])
def test_a_long_txt_document_is_cut_at_line_breaks_into_bounded_documents(tmp_path, monkeypatch, separator):
    monkeypatch.setattr(src, "READ_BLOCK", 64)
    monkeypatch.setattr(src, "MAX_DOCUMENT_CHARS", 300)
    lines = [f"строка {i} " + " ".join(russian_docs(1, seed=i, words=4)) for i in range(60)]
    long_doc = "\n".join(lines) + "\n"  # ~3 KB in 60 lines, far over the 300-character bound
    text = long_doc if separator is None else f"короткий{separator}{long_doc}{separator}конец"
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    docs, stats = read([tmp_path / "big.txt"], separator=separator)
    texts = [t for _, t in docs]
    if separator is not None:
        assert texts[0] == "короткий" and texts[-1] == "конец"
        texts = texts[1:-1]
    assert "".join(texts) == long_doc  # nothing lost or doubled
    assert len(texts) > 5 and all(len(t) <= 300 for t in texts)
    assert all(t.endswith("\n") for t in texts)  # cut after a line, never inside one
    assert stats.split_long_documents == len(texts) - 1 and stats.documents == len(docs)
    assert len({doc_id for doc_id, _ in docs}) == len(docs)


def test_parquet_is_read_in_row_batches_with_the_same_documents(tmp_path, monkeypatch):
    texts = russian_docs(25)
    write_wiki_parquet(tmp_path / "w.parquet", texts, row_group_size=10)
    monkeypatch.setattr(src, "PARQUET_BATCH_ROWS", 3)
    docs, stats = read([tmp_path / "w.parquet"])
    assert [t for _, t in docs] == texts and [i for i, _ in docs] == [str(i) for i in range(25)]


def test_slovo_sample_names_the_checkouts_sample_corpus():
    from slovo.data.sources import SAMPLE_SPEC

    source = resolve_source(SAMPLE_SPEC)
    assert [p.name for p in source.files] == ["ruslit-sample.jsonl.gz"] and source.files[0].is_file()
    assert source.files[0].parent.parts[-2:] == ("data", "sample")
    first = next(iter_documents([source], ReadOptions(max_docs=1), ReadStats()))
    assert first[0].strip()  # a document's text


def test_a_malformed_hub_id_is_named_as_such_not_as_an_unreachable_hub(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # were it asked, the hub would be out of reach
    with pytest.raises(SlovoError) as e:
        read(["hf:./x"], max_bytes=1000)
    msg = str(e.value)
    assert "\n" not in msg and "hub dataset id" in msg and "reach" not in msg
