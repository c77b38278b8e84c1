"""prepare at scale: `slovo prepare` on a large corpus against the raw tokenizer encode rate on the same text.

Builds a corpus of --size (default 2GB) of JSON lines from ruslit in a temporary folder: each repeat of the
373 works cuts them into Wikipedia-sized articles (1-30 KB, at line breaks), shuffles the lines inside every
article and the articles themselves with that repeat's seed, so every article's text is new to the hash
split and the BPE sees varied text, with ruslit's words and byte/token ratio. Then, taking turns for
--repeats rounds:

  * slovo: `slovo prepare --data corpus.jsonl --vocab-size 8192 --out DIR --force --quiet` as a subprocess,
    exactly as a user runs it: wall time, MB/s of text, and its peak resident memory (os.wait4's ru_maxrss);
  * raw: a subprocess that reads the same lines and encodes them with `tokenizers` `encode_batch_fast`
    (`encode_batch` without offsets) in batches of about 4 MB, with the dataset's tokenizer.json and no
    normaliser (the text is NFC already, as in prepare): the time of the encode calls alone, which is the
    limit for prepare's encoding.

Prints one table (median and min-max over the rounds) and prepare's own phase times from meta.json.

    .venv/bin/python bench/bench_prepare.py --size 200MB --repeats 3    # a few minutes on 2 cores
    .venv/bin/python bench/bench_prepare.py                             # 2 GB: needs ~6 GB of free disk
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUSLIT = ROOT.parent / "shared" / "corpora" / "ruslit.jsonl.gz"

RAW_ENCODE = r"""
import json, os, sys, time
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[2])
tok.normalizer = None
tok.encode_special_tokens = True
encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
batch, size, tokens, text_bytes, seconds = [], 0, 0, 0, 0.0

def flush():
    global batch, size, tokens, seconds
    t = time.perf_counter()
    tokens += sum(len(e.ids) for e in encode(batch, add_special_tokens=False))
    seconds += time.perf_counter() - t
    batch, size = [], 0

with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        text = json.loads(line)["text"]
        n = len(text.encode("utf-8"))
        batch.append(text)
        size += n
        text_bytes += n
        if size >= 4 << 20:
            flush()
if batch:
    flush()
print(json.dumps({"tokens": tokens, "bytes": text_bytes, "encode_seconds": seconds}))
"""


def parse_size(text: str) -> int:
    from slovo.commands.prepare import parse_size as parse

    return parse(text, "--size")


def build_corpus(path: Path, size: int, seed: int = 0) -> tuple[int, int]:
    """Write about `size` bytes of text as JSON lines; returns (articles, UTF-8 bytes of text)."""
    import gzip

    works = [json.loads(line)["text"] for line in gzip.open(RUSLIT, "rt", encoding="utf-8")]
    written, articles, repeat = 0, 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size:
            rng = random.Random(seed * 1000 + repeat)
            batch = []
            for text in works:
                lines = text.split("\n")
                start = 0
                while start < len(lines):
                    target, n, end = rng.randint(1_000, 30_000), 0, start
                    while end < len(lines) and n < target:
                        n += len(lines[end]) * 2 + 1  # about 2 bytes per Cyrillic character
                        end += 1
                    part = lines[start:end]
                    if repeat:
                        rng.shuffle(part)  # the first repeat is ruslit itself, cut into articles
                    batch.append("\n".join(part))
                    start = end
            rng.shuffle(batch)
            for article in batch:
                if written >= size:
                    break
                if not article.strip():
                    continue
                f.write(json.dumps({"text": article}, ensure_ascii=False) + "\n")
                written += len(article.encode("utf-8"))
                articles += 1
            repeat += 1
    return articles, written


def run_measured(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in bytes, stdout) of a subprocess; ru_maxrss from wait4 is this child's own."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{stderr[-3000:]}")
    return seconds, usage.ru_maxrss * 1024, stdout


def spread(values: list[float], fmt: str) -> str:
    """median (min-max), through slovo.stats"""
    from slovo.stats import spread as stats_spread

    return stats_spread(values).text(fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="2GB", help="corpus text to build, e.g. 200MB or 2GB (default 2GB)")
    ap.add_argument("--tmp", default="/tmp", help="folder for the corpus and the dataset (default /tmp)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of slovo then raw (default 3)")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    if not RUSLIT.exists():
        sys.exit(f"{RUSLIT}: missing; the benchmark builds its corpus from it")
    work = Path(tempfile.mkdtemp(prefix="slovo-bench-prepare-", dir=args.tmp))
    try:
        corpus, out = work / "corpus.jsonl", work / "ds"
        t0 = time.perf_counter()
        articles, text_bytes = build_corpus(corpus, parse_size(args.size))
        print(
            f"corpus: {articles:,} articles, {text_bytes / 1e6:,.0f} MB of text, built in "
            f"{time.perf_counter() - t0:.0f}s ({corpus})",
            flush=True,
        )
        slovo = [
            sys.executable,
            "-m",
            "slovo",
            "prepare",
            "--data",
            str(corpus),
            "--out",
            str(out),
            "--vocab-size",
            str(args.vocab_size),
            "--force",
            "--quiet",
        ]
        rows = {"slovo": [], "raw": []}
        for r in range(args.repeats):
            seconds, rss, _ = run_measured(slovo)
            meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
            rows["slovo"].append(
                {
                    "seconds": seconds,
                    "rss": rss,
                    "mbps": meta["reading"]["bytes"] / 1e6 / seconds,
                    "timing": meta.get("timing", {}),
                    "split": meta.get("split"),
                    "tokens": meta["splits"]["train"]["tokens"] + meta["splits"]["val"]["tokens"],
                }
            )
            tok = work / "tokenizer.json"
            shutil.copyfile(out / "tokenizer.json", tok)
            seconds, rss, stdout = run_measured([sys.executable, "-c", RAW_ENCODE, str(corpus), str(tok)])
            raw = json.loads(stdout)
            rows["raw"].append(
                {
                    "seconds": raw["encode_seconds"],
                    "rss": rss,
                    "tokens": raw["tokens"],
                    "mbps": raw["bytes"] / 1e6 / raw["encode_seconds"],
                    "process_seconds": seconds,
                }
            )
            s, w = rows["slovo"][-1], rows["raw"][-1]
            print(
                f"round {r + 1}: slovo {s['seconds']:.0f}s {s['mbps']:.1f} MB/s {s['rss'] / 2**20:.0f} MiB | "
                f"raw encode {w['seconds']:.0f}s {w['mbps']:.1f} MB/s",
                flush=True,
            )

        print(
            f"\n{text_bytes / 1e6:,.0f} MB of text, {args.repeats} rounds, median (min-max); "
            f"{os.cpu_count()} CPUs, machine shared"
        )
        print(f"{'':28} {'seconds':>22} {'MB/s':>22} {'peak RSS MiB':>22}")
        for name, label in (("slovo", "slovo prepare (all of it)"), ("raw", "raw encode_batch_fast")):
            rs = rows[name]
            print(
                f"{label:28} {spread([x['seconds'] for x in rs], '.0f'):>22} "
                f"{spread([x['mbps'] for x in rs], '.1f'):>22} {spread([x['rss'] / 2**20 for x in rs], '.0f'):>22}"
            )
        ratio = [w["mbps"] / s["mbps"] for s, w in zip(rows["slovo"], rows["raw"])]
        print(f"raw MB/s / slovo MB/s: {spread(ratio, '.2f')}")
        phases = rows["slovo"][0]["timing"]
        for k in phases:
            print(f"  slovo phase {k:18} {spread([x['timing'][k] for x in rows['slovo']], '.1f')} s")
        enc = [
            w["mbps"] * s["timing"]["encoding"] / (text_bytes / 1e6)  # raw rate / slovo's encoding-phase rate
            for s, w in zip(rows["slovo"], rows["raw"])
            if s["timing"].get("encoding")
        ]
        if enc:
            print(f"raw MB/s / slovo's encoding phase MB/s: {spread(enc, '.2f')}")
        print(f"split: {json.dumps(rows['slovo'][0]['split'])}")
        print(f"tokens: slovo {rows['slovo'][0]['tokens']:,} (with <|endoftext|>), raw {rows['raw'][0]['tokens']:,}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
