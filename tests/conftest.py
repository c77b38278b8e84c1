"""Shared fixtures: a small prepared dataset made from generated Russian-like text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

SHARED_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "ruslit.jsonl.gz"
WORDS = (
    "в начале было слово и слово было у бога и слово было бог оно было в начале у бога "
    "все через него начало быть и без него ничто не начало быть что начало быть"
).split()


def write_corpus(path: Path, docs: int = 300, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(docs):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 200)))
            f.write(json.dumps({"id": f"doc{i}", "text": text.capitalize() + "."}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """A dataset folder (vocab ~300) written by `slovo prepare`, shared by every test of the session."""
    from slovo.cli import main

    root = tmp_path_factory.mktemp("small_dataset")
    corpus = write_corpus(root / "corpus.jsonl")
    out = root / "ds"
    assert (
        main(
            [
                "prepare",
                "--data",
                str(corpus),
                "--out",
                str(out),
                "--vocab-size",
                "300",
                "--min-val-tokens",
                "2000",
                "--quiet",
            ]
        )
        == 0
    )
    return out


# A model and run small enough that a training test takes a second or two on a CPU.
TINY_RUN = {
    "model.n_layer": 1,
    "model.n_head": 2,
    "model.n_embd": 32,
    "model.seq_len": 32,
    "train.per_device_train_batch_size": 4,
    "train.log_every": 1,
    # AdamW at its old preset lr: tests of the loop stay independent of the tiny preset's recipe (Muon);
    # tests/test_accelerated.py and test_extending.py cover the optimizers themselves
    "optim.name": "adamw",
    "optim.lr": 2e-3,
    # float32 everywhere: train.dtype=auto would measure bf16 on CPUs with AMX and pick it, so results would
    # depend on the machine; tests/test_accelerated.py covers bf16 and the auto choice
    "train.dtype": "float32",
    "eval.tokens": 1024,
    "eval.every": 2,
    "sample.max_new_tokens": 8,
    "budget.time": None,
    "checkpoint.every_seconds": 0,
    "tracking.report": False,
}


@pytest.fixture
def tiny_config(small_dataset):
    """Build a tiny-run Config on the small dataset; keyword overrides use dotted keys."""
    from slovo.config import load_config

    def make(**overrides):
        merged = {
            **TINY_RUN,
            "data.path": str(small_dataset),
            **{k.replace("__", "."): v for k, v in overrides.items()},
        }
        return load_config(preset="tiny", overrides=merged)

    return make


@pytest.fixture(autouse=True)
def _private_speed_cache(tmp_path_factory, monkeypatch):
    """train.compile=auto reads and writes measured speeds; tests keep theirs away from the user's cache."""
    monkeypatch.setenv("SLOVO_CACHE_DIR", str(tmp_path_factory.mktemp("slovo-cache")))
