"""Text sources: turn `--data SOURCE` specs into a stream of normalised documents.

A SOURCE is one of
  * a file: ``.txt`` (also ``.text``, ``.md``: one document per file, or split on a separator),
    ``.jsonl`` / ``.json`` / ``.jsonl.gz`` / ``.json.gz`` (one JSON object per line, text in a field),
    ``.parquet`` (a text column; what the HF hub serves for ``wikimedia/wikipedia``);
  * a folder (every supported file below it, sorted) or a glob (``'data/*.parquet'``);
  * a Hugging Face dataset, ``hf:NAME[:CONFIG[:SPLIT]]`` (e.g. ``hf:wikimedia/wikipedia:20231101.ru``),
    streamed with `datasets` (the optional extra ``slovo-lm[hf]``). NAME may also be a local folder of
    parquet/jsonl files, which is how the tests exercise this path without a network.

Documents are read lazily, one at a time, so a corpus larger than memory streams through. Every text
is normalised the same way (`normalize_text`): ``\\r\\n`` -> ``\\n`` and Unicode NFC. Documents that are
empty after that are dropped and counted. Bad input raises `SlovoError` naming the file and the line or
byte offset.
"""

from __future__ import annotations

import codecs
import glob
import gzip
import json
import os
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from slovo.errors import SlovoError, first_line

HUB_PREFIX = "hf:"
# The public-domain sample corpus in the checkout's data/sample/ (data files stay out of the package).
SAMPLE_SPEC = "slovo:sample"
SAMPLE_CORPUS = Path(__file__).resolve().parents[3] / "data" / "sample" / "ruslit-sample.jsonl.gz"
READ_BLOCK = 8 << 20  # bytes per read of a text file; bounds memory when a separator splits a huge file
# A .txt document (a file without --separator, or the text between two separators) longer than this many
# characters is cut, at a paragraph or line break, into documents of at most this size, so a multi-GB file
# never has to be one string in memory. meta.json counts the cuts (reading.split_long_documents).
MAX_DOCUMENT_CHARS = 8 << 20
PARQUET_BATCH_ROWS = 1024  # rows turned into Python strings at a time (a row group can hold 100+ MB of text)


@dataclass
class ReadOptions:
    """How to read sources; every field changes what is read, so all of them go into the fingerprint."""

    text_field: str = "text"  # JSON / parquet / hub field holding the text
    separator: str | None = None  # .txt only: split each file on this string (None = one document per file)
    encoding: str = "utf-8"  # encoding of .txt and .jsonl files (parquet and hub text is always UTF-8)
    max_docs: int = 0  # stop after this many non-empty documents over all sources; 0 = no cap
    max_bytes: int = 0  # stop once this many UTF-8 bytes of text were read over all sources; 0 = no cap


@dataclass
class Source:
    """One resolved `--data` spec: the local files it stands for, or a hub dataset."""

    spec: str
    files: list[Path] = field(default_factory=list)
    hub: tuple[str, str | None, str] | None = None  # (name, config, split) for hf: specs

    def describe(self) -> list[dict]:
        """What the fingerprint records: path, size and mtime of each file, or the hub revision."""
        if self.hub is not None:
            name, config, split = self.hub
            entry = {"spec": self.spec, "hub": name, "config": config, "split": split}
            if Path(name).is_dir():  # a local dataset folder: its files stand in for a revision
                entry["files"] = [_file_entry(p) for p in _files_under(Path(name))]
            else:
                entry["revision"] = _check_hub_reachable(self.spec, name)  # fails fast when out of reach
            return [entry]
        return [{"spec": self.spec, **_file_entry(p)} for p in self.files]

    @property
    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)


@dataclass
class ReadStats:
    """Counts kept while reading, for meta.json and the summary."""

    documents: int = 0  # non-empty documents yielded
    empty: int = 0  # documents dropped because they were empty after normalisation
    bytes: int = 0  # UTF-8 bytes of the yielded documents
    capped: bool = False  # reading stopped at --max-docs / --max-bytes
    split_long_documents: int = 0  # cuts made in .txt documents longer than MAX_DOCUMENT_CHARS
    disk_bytes_done: int = 0  # bytes of the source files consumed so far (compressed size for .gz), for progress


def normalize_text(text: str) -> str:
    """The one normalisation every document gets: Windows line ends to ``\\n``, then Unicode NFC."""
    text = text.replace("\r\n", "\n")
    if not unicodedata.is_normalized("NFC", text):  # the check is much cheaper than normalising
        text = unicodedata.normalize("NFC", text)
    return text


def parse_separator(sep: str | None) -> str | None:
    """`--separator '\\n\\n\\n'` arrives with literal backslashes; turn escapes into characters."""
    if sep is None:
        return None
    out = sep.encode("latin-1", "backslashreplace").decode("unicode_escape")
    if not out:
        raise SlovoError("--separator: must not be empty")
    return out


# ---------------------------------------------------------------------------------------------------
# resolving specs


def resolve_source(spec: str) -> Source:
    """Expand one `--data` spec into files (or a hub dataset), checking that they exist."""
    if spec.startswith(HUB_PREFIX):
        return Source(spec=spec, hub=parse_hub_spec(spec))
    if spec == SAMPLE_SPEC:
        return Source(spec=spec, files=[SAMPLE_CORPUS])
    if any(ch in spec for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True))
        files = [p for p in matches if p.is_file() and _suffix_kind(p)]
        if not files:
            raise SlovoError(f"{spec}: the pattern matches no {'/'.join(supported_suffixes())} files")
        return Source(spec=spec, files=[p.resolve() for p in files])
    path = Path(spec).expanduser()
    if not path.exists():
        raise SlovoError(f"{spec}: no such file or folder")
    if path.is_dir():
        files = _files_under(path)
        if not files:
            raise SlovoError(f"{spec}: the folder holds no {'/'.join(supported_suffixes())} files")
        return Source(spec=spec, files=[p.resolve() for p in files])
    if not _suffix_kind(path):
        raise SlovoError(
            f"{spec}: unsupported file type; expected one of {', '.join(supported_suffixes())} "
            f"(or a folder, a glob, hf:NAME)"
        )
    return Source(spec=spec, files=[path.resolve()])


def parse_hub_spec(spec: str) -> tuple[str, str | None, str]:
    """``hf:NAME[:CONFIG[:SPLIT]]`` -> (name, config or None, split, default ``train``)."""
    parts = spec[len(HUB_PREFIX) :].split(":")
    if not parts[0] or len(parts) > 3:
        raise SlovoError(f"{spec}: expected hf:NAME[:CONFIG[:SPLIT]], e.g. hf:wikimedia/wikipedia:20231101.ru")
    name = parts[0]
    config = parts[1] if len(parts) > 1 and parts[1] else None
    split = parts[2] if len(parts) > 2 and parts[2] else "train"
    return name, config, split


def _suffix_kind(path: Path) -> str | None:
    """The FILE_READERS entry whose suffix `path` ends with (the longest match: `.jsonl.gz` before `.gz`)."""
    name = path.name.lower()
    matches = [
        (len(suffix), kind)
        for kind, (suffixes, _) in FILE_READERS.items()
        for suffix in suffixes
        if name.endswith(suffix)
    ]
    return max(matches)[1] if matches else None


def _files_under(folder: Path) -> list[Path]:
    """Supported files below a folder, sorted, skipping hidden files and folders (.git, .cache)."""
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).parts
        if p.is_file() and not any(part.startswith(".") for part in rel) and _suffix_kind(p):
            out.append(p)
    return out


def _file_entry(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns / 1e9}


# ---------------------------------------------------------------------------------------------------
# reading


def iter_documents(
    sources: list[Source], opts: ReadOptions, stats: ReadStats | None = None
) -> Iterator[tuple[str, str]]:
    """Yield ``(doc_id, text)`` for every non-empty normalised document of the sources, in order.

    The caps in `opts` apply over all sources together; `stats` (if given) is updated as reading goes.
    """
    stats = stats if stats is not None else ReadStats()
    disk_done_before = 0
    for source in sources:
        readers: list[tuple[Path | None, Callable[[], Iterator[tuple[str, str | None, int]]]]] = []
        if source.hub is not None:
            readers.append((None, lambda s=source: _read_hub(s, opts)))
        else:
            for path in source.files:
                readers.append((path, lambda p=path: _read_file(p, opts, stats)))
        for path, reader in readers:
            for doc_id, text, disk_pos in reader():
                stats.disk_bytes_done = disk_done_before + disk_pos
                text = normalize_text(text) if text else ""
                if not text.strip():
                    stats.empty += 1
                    continue
                stats.documents += 1
                stats.bytes += len(text.encode("utf-8"))
                yield doc_id, text
                if (opts.max_docs and stats.documents >= opts.max_docs) or (
                    opts.max_bytes and stats.bytes >= opts.max_bytes
                ):
                    stats.capped = True
                    return
            if path is not None:
                disk_done_before += path.stat().st_size
                stats.disk_bytes_done = disk_done_before


def _read_file(path: Path, opts: ReadOptions, stats: ReadStats) -> Iterator[tuple[str, str | None, int]]:
    _, reader = FILE_READERS[_suffix_kind(path)]
    return reader(path, opts, stats)


def _encoding_error(path: Path, encoding: str, offset: int, bad: bytes, decompressed: bool = False) -> SlovoError:
    where = f"byte offset {offset}" + (" of the decompressed data" if decompressed else "")
    hint = "pass --encoding (e.g. --encoding cp1251) if the file uses another encoding"
    return SlovoError(f"{path}: not valid {encoding} at {where} (byte 0x{bad[:1].hex()}); {hint}")


def _check_encoding(name: str) -> None:
    try:
        codecs.lookup(name)
    except LookupError:
        raise SlovoError(
            f"--encoding {name}: unknown encoding; use a Python codec name such as utf-8 or cp1251"
        ) from None


def _cut_long(text: str, limit: int) -> int:
    """Where to cut a text longer than `limit` characters: after the last paragraph break, else line break,
    else space in the second half of the first `limit` characters, else at `limit`."""
    for sep in ("\n\n", "\n", " "):
        i = text.rfind(sep, limit // 2, limit)
        if i != -1:
            return i + len(sep)
    return limit


def _read_text(
    path: Path, separator: str | None, encoding: str, stats: ReadStats | None = None
) -> Iterator[tuple[str, str, int]]:
    """A text file: one document, or one per `separator`-delimited piece. Read in blocks so a huge file
    never has to fit in memory at once: a document longer than MAX_DOCUMENT_CHARS is cut into several."""
    _check_encoding(encoding)
    decoder = codecs.getincrementaldecoder(encoding)()
    pending, offset, piece, part = "", 0, 0, 0

    def doc_id() -> str:
        name = f"{path}#{piece}" if separator is not None else str(path)
        return f"{name}@{part}" if part else name

    with open(path, "rb") as f:
        while True:
            block = f.read(READ_BLOCK)
            buffered = decoder.getstate()[0]  # undecoded bytes carried over from the previous block
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                raise _encoding_error(path, encoding, offset - len(buffered) + e.start, e.object[e.start :]) from None
            offset += len(block)
            pending += text
            if separator is not None:
                *done, pending = pending.split(separator)
                for doc in done:
                    yield doc_id(), doc, offset
                    piece, part = piece + 1, 0
            # The margin keeps the cut before any separator the next block may complete.
            while len(pending) > MAX_DOCUMENT_CHARS + len(separator or ""):
                cut = _cut_long(pending, MAX_DOCUMENT_CHARS)
                yield doc_id(), pending[:cut], offset
                pending, part = pending[cut:], part + 1
                if stats is not None:
                    stats.split_long_documents += 1
            if not block:
                break
    yield doc_id(), pending, offset


def _open_maybe_gzip(path: Path):
    raw = open(path, "rb")
    if path.name.lower().endswith(".gz"):
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")
    return raw, raw


def _read_jsonl(path: Path, text_field: str, encoding: str) -> Iterator[tuple[str, str | None, int]]:
    """JSON lines (or, if the file starts with '[', one JSON array of objects)."""
    _check_encoding(encoding)
    compressed = path.name.lower().endswith(".gz")
    raw, f = _open_maybe_gzip(path)
    try:
        line_no, offset = 0, 0
        try:
            for line in f:
                line_no += 1
                start, offset = offset, offset + len(line)
                try:
                    text = line.decode(encoding)
                except UnicodeDecodeError as e:
                    raise _encoding_error(path, encoding, start + e.start, line[e.start :], compressed) from None
                if line_no == 1 and text.lstrip("\ufeff \t\r\n").startswith("["):
                    rest = line + f.read()
                    try:
                        whole = rest.decode(encoding)
                    except UnicodeDecodeError as e:
                        raise _encoding_error(path, encoding, e.start, rest[e.start :], compressed) from None
                    yield from _json_array_docs(path, whole, text_field)
                    return
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    raise SlovoError(
                        f"{path}:{line_no}: not valid JSON ({e.msg}); each line must be one JSON object"
                    ) from None
                doc_id, doc_text = _doc_from_record(path, line_no, obj, text_field)
                yield doc_id, doc_text, raw.tell()
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise SlovoError(f"{path}: not a valid gzip file or truncated ({e})") from None
    finally:
        raw.close()


def _json_array_docs(path: Path, text: str, text_field: str) -> Iterator[tuple[str, str | None, int]]:
    try:
        records = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as e:
        raise SlovoError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    size = path.stat().st_size
    if not isinstance(records, list):
        raise SlovoError(f"{path}: expected JSON lines or an array of objects, got one {type(records).__name__}")
    for i, obj in enumerate(records):
        doc_id, doc_text = _doc_from_record(path, f"[{i}]", obj, text_field)
        yield doc_id, doc_text, size


def _doc_from_record(path: Path, where, obj, text_field: str) -> tuple[str, str | None]:
    loc = f"{path}:{where}" if isinstance(where, int) else f"{path}{where}"
    if not isinstance(obj, dict):
        raise SlovoError(f"{loc}: expected a JSON object with a '{text_field}' field, got {type(obj).__name__}")
    if text_field not in obj:
        fields = ", ".join(list(obj)[:8]) or "none"
        raise SlovoError(f"{loc}: no '{text_field}' field (fields: {fields}); pass --text-field NAME")
    text = obj[text_field]
    if text is not None and not isinstance(text, str):
        raise SlovoError(f"{loc}: field '{text_field}' is {type(text).__name__}, expected a string")
    doc_id = obj.get("id")
    return (str(doc_id) if doc_id is not None else loc), text


def _read_parquet(path: Path, text_field: str) -> Iterator[tuple[str, str | None, int]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise SlovoError(f"{path}: cannot read as parquet ({first_line(e)})") from None
    names = pf.schema_arrow.names
    if text_field not in names:
        raise SlovoError(f"{path}: no column '{text_field}' (columns: {', '.join(names)}); pass --text-field NAME")
    column_type = pf.schema_arrow.field(text_field).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise SlovoError(f"{path}: column '{text_field}' is {column_type}, expected strings")
    columns = [text_field] + (["id"] if "id" in names and text_field != "id" else [])
    size, row = path.stat().st_size, 0
    n_groups = max(pf.num_row_groups, 1)
    for g in range(pf.num_row_groups):
        pos = size * (g + 1) // n_groups  # row groups stand in for a file position in the progress bar
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[g], columns=columns):
            texts = batch.column(text_field).to_pylist()
            ids = batch.column("id").to_pylist() if "id" in columns else [None] * len(texts)
            for doc_id, text in zip(ids, texts):
                yield (str(doc_id) if doc_id is not None else f"{path}#{row}"), text, pos
                row += 1


# ---------------------------------------------------------------------------------------------------
# Hugging Face hub


def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise SlovoError("hf: sources need the 'datasets' package: pip install 'slovo-lm[hf]'") from None
    return datasets


def _offline_hint(spec: str) -> str:
    return (
        f"{spec}: cannot reach the Hugging Face hub; without internet, download the dataset's parquet "
        f"files elsewhere and pass a local path instead (e.g. --data 'wiki/*.parquet')"
    )


def _check_hub_id(spec: str, name: str) -> None:
    """A name that is neither a local dataset folder nor a valid hub id (`hf:./x`) is said to be so, before any
    network: the hub would refuse it and it would read as an unreachable hub."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as e:
        raise SlovoError(
            f"{spec}: {name!r} is neither a local dataset folder nor a hub dataset id (OWNER/NAME): {first_line(e)}"
        ) from None


def _check_hub_reachable(spec: str, name: str) -> str | None:
    """The dataset repo's commit on the hub (so a changed dump gives a different fingerprint), asked through
    huggingface_hub as `datasets` will ask: HTTPS_PROXY and HF_ENDPOINT count. A hub that cannot be reached is
    one clear line in seconds, instead of `datasets` retrying for half a minute; a server that answers with an
    error (a private, gated or missing dataset) is reached, and `datasets` then says what is wrong."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or os.environ.get(
        "HF_DATASETS_OFFLINE", "0"
    ).lower() in ("1", "true", "yes"):
        return None  # offline mode: `datasets` may still serve the dataset from its local cache
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None).dataset_info(name, timeout=10).sha
    except HfHubHTTPError:
        return None  # the server answered
    except Exception:  # noqa: BLE001 - connection refused, DNS, proxy, timeout: the hub is out of reach
        raise SlovoError(_offline_hint(spec)) from None


def load_hub_dataset(source: Source):
    """Open a hub dataset (or a local dataset folder) as a streaming `datasets.IterableDataset`."""
    name, config, split = source.hub
    datasets = _import_datasets()
    local = Path(name).is_dir()
    if not local:
        _check_hub_id(source.spec, name)
        _check_hub_reachable(source.spec, name)
    try:
        return datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as e:  # datasets raises many types (ConnectionError, DatasetNotFoundError, ValueError)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if isinstance(e, (ConnectionError, OSError)) and not local:
            raise SlovoError(_offline_hint(source.spec) + f" ({first})") from None
        raise SlovoError(f"{source.spec}: cannot load the dataset ({type(e).__name__}: {first})") from None


def _read_hub(source: Source, opts: ReadOptions) -> Iterator[tuple[str, str | None, int]]:
    ds = load_hub_dataset(source)
    features = getattr(ds, "features", None)
    if features is not None:
        if opts.text_field not in features:
            raise SlovoError(
                f"{source.spec}: no field '{opts.text_field}' (fields: {', '.join(features)}); pass --text-field NAME"
            )
        keep = [opts.text_field] + (["id"] if "id" in features and opts.text_field != "id" else [])
        ds = ds.select_columns(keep)  # skip decoding url/title and other columns we do not use
    try:
        for i, row in enumerate(ds):
            if opts.text_field not in row:
                raise SlovoError(f"{source.spec}: row {i} has no field '{opts.text_field}'; pass --text-field NAME")
            doc_id = row.get("id")
            yield (str(doc_id) if doc_id is not None else f"{source.spec}#{i}"), row[opts.text_field], 0
    except SlovoError:
        raise
    except (ConnectionError, OSError) as e:
        raise SlovoError(_offline_hint(source.spec) + f" ({type(e).__name__})") from None


# ---------------------------------------------------------------------------------------------------
# file formats by suffix. Adding one: a reader (path, ReadOptions, ReadStats) -> iterator of
# (doc_id or None, text, bytes of the file read so far), and an entry here; prepare, `slovo eval --data`, folders
# and globs then take it. tests/test_extending.py registers a toy one.

FileReader = Callable[[Path, "ReadOptions", "ReadStats"], Iterator[tuple[str, "str | None", int]]]
FILE_READERS: dict[str, tuple[tuple[str, ...], FileReader]] = {
    "text": ((".txt", ".text", ".md"), lambda path, o, st: _read_text(path, o.separator, o.encoding, st)),
    "json": (
        (".jsonl", ".json", ".jsonl.gz", ".json.gz"),
        lambda path, o, st: _read_jsonl(path, o.text_field, o.encoding),
    ),
    "parquet": ((".parquet",), lambda path, o, st: _read_parquet(path, o.text_field)),
}


def supported_suffixes() -> tuple[str, ...]:
    return tuple(suffix for suffixes, _ in FILE_READERS.values() for suffix in suffixes)
