"""The byte-level BPE: eot id 0, exact byte lengths per token, and the same ids through transformers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from slovo.data import load_tokenizer, token_byte_lengths, train_tokenizer
from slovo.data.tokenizer import EOT_TOKEN, MAX_VOCAB, MIN_VOCAB, check_vocab_size, fast_encoder
from slovo.errors import SlovoError

WORDS = "слово мир дом река лес поле небо время жизнь человек город дорога письмо сердце ночь утро".split()
SENTENCE = "В начале было слово, и слово было у Бога, и слово было Бог."
MIXED = "Ёжик — «Эх, ça va?» 3.14 naïve 😀\n\n\tконец"


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    letters = "абвгдежзиклмнопрстуфхцчшыэюя"
    made_up = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(400)]
    texts = [" ".join(rng.choice(WORDS + made_up) for _ in range(60)) + "." for _ in range(200)] + [SENTENCE] * 5
    return train_tokenizer(texts, vocab_size=400)


def test_trained_bpe_has_eot_as_id_0_and_the_requested_size(tokenizer):
    assert tokenizer.token_to_id(EOT_TOKEN) == 0
    assert tokenizer.get_vocab_size() == 400
    assert tokenizer.decode(tokenizer.encode(MIXED).ids) == MIXED  # byte level: nothing is unknown


def test_token_byte_lengths_sum_to_the_utf8_bytes_of_any_text(tokenizer):
    lengths = token_byte_lengths(tokenizer)
    assert lengths.shape == (400,) and lengths[0] == 0
    for text in (SENTENCE, MIXED, "a" * 50):
        ids = np.array(tokenizer.encode(text).ids)
        assert lengths[ids].sum() == len(text.encode("utf-8"))
    # every single byte token is one byte long
    assert sorted(lengths[1:257].tolist()) == [1] * 256


def test_transformers_fast_tokenizer_loads_the_file_and_gives_the_same_ids(tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    ours = load_tokenizer(tmp_path)  # a folder holding tokenizer.json works too
    for text in (SENTENCE, MIXED):
        assert hf(text)["input_ids"] == ours.encode(text).ids == fast_encoder(ours).encode(text).ids
        assert hf.decode(hf(text)["input_ids"]) == text


def test_fast_encoder_encodes_a_literal_eot_string_as_plain_text(tokenizer):
    text = f"до {EOT_TOKEN} после"
    assert 0 in tokenizer.encode(text).ids  # the plain tokenizer treats it as the special token
    ids = fast_encoder(tokenizer).encode(text).ids
    assert 0 not in ids
    assert token_byte_lengths(tokenizer)[np.array(ids)].sum() == len(text.encode())


@pytest.mark.parametrize("size,ok", [(MIN_VOCAB - 1, False), (MIN_VOCAB, True), (8192, True), (MAX_VOCAB + 1, False)])
def test_vocab_size_bounds(size, ok):
    if ok:
        check_vocab_size(size)
    else:
        with pytest.raises(SlovoError, match=f"--vocab-size {size}: too"):
            check_vocab_size(size)


def test_load_tokenizer_rejects_missing_and_malformed_files(tmp_path):
    with pytest.raises(SlovoError, match="no such tokenizer file"):
        load_tokenizer(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(SlovoError, match="not a valid tokenizer.json"):
        load_tokenizer(tmp_path / "bad.json")
