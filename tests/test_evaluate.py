"""Bits per byte on a case whose answer is known."""

import math

import numpy as np
import pytest
import torch

from slovo.evaluate import eval_windows, evaluate


class Uniform(torch.nn.Module):
    """Predicts every one of V tokens with equal probability: cross-entropy is ln V per token."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, targets=None):
        return torch.zeros(*idx.shape, self.vocab), None


def test_uniform_model_bpb_is_log2_vocab_times_tokens_over_bytes():
    vocab, seq = 16, 8
    tokens = np.arange(1 + 4 * seq) % vocab
    token_bytes = np.full(vocab, 3)
    token_bytes[0] = 0  # the end-of-text token has no bytes
    windows = eval_windows(tokens, seq, 10_000)
    m = evaluate(Uniform(vocab), windows, token_bytes, batch_size=3, device="cpu")
    targets = tokens[1 : 1 + 4 * seq]
    expected_bytes = int(token_bytes[targets].sum())
    assert m["eval/tokens"] == 4 * seq and m["eval/bytes"] == expected_bytes
    assert m["eval/loss"] == pytest.approx(math.log(vocab))
    assert m["eval/bpb"] == pytest.approx(4 * seq * math.log2(vocab) / expected_bytes)
    assert m["eval/perplexity"] == pytest.approx(vocab)


def test_eval_windows_are_the_first_tokens_and_cover_each_target_once():
    tokens = np.arange(100)
    w = eval_windows(tokens, 10, 35)
    assert w.shape == (3, 11)
    assert list(w[:, 1:].ravel()) == list(range(1, 31))
