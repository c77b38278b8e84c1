"""The eval set and its figures: bits per byte on cases whose answer is known, windows spread over the whole split,
special tokens left out, and evals during training on a fixed subset with the final eval on every window."""

import json
import math

import numpy as np
import pytest
import torch

from slovo.evaluate import (
    eval_set_facts,
    eval_windows,
    evaluate,
    in_training_windows,
    subset_indices,
    whole_split_note,
)
from slovo.train.state import Clock
from slovo.utils import read_json, read_jsonl
from tests.helpers import TickingTime, tiny_train_args


class Uniform(torch.nn.Module):
    """Predicts every one of V tokens with equal probability, or never `banned` (then V - 1 equally)."""

    def __init__(self, vocab, banned=None):
        super().__init__()
        self.vocab, self.banned = vocab, banned
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, targets=None):
        logits = torch.zeros(*idx.shape, self.vocab)
        if self.banned is not None:
            logits[..., self.banned] = -1e4
        return logits, None


def test_uniform_model_bpb_is_log2_vocab_times_text_tokens_over_bytes():
    vocab, seq = 16, 8
    tokens = 1 + np.arange(1 + 4 * seq) % (vocab - 1)  # ids 1..15: no end-of-text token among the targets
    token_bytes = np.full(vocab, 3)
    token_bytes[0] = 0  # the end-of-text token has no bytes
    windows = eval_windows(tokens, seq, 10_000)
    m = evaluate(Uniform(vocab), windows, token_bytes, batch_size=3, device="cpu")
    targets = windows[:, 1:]
    expected_bytes = int(token_bytes[targets].sum())
    assert m["eval/tokens"] == 4 * seq and m["eval/windows"] == 4 and m["eval/bytes"] == expected_bytes
    assert m["eval/loss"] == pytest.approx(math.log(vocab))
    assert m["eval/bpb"] == pytest.approx(4 * seq * math.log2(vocab) / expected_bytes)
    assert m["eval/perplexity"] == pytest.approx(vocab)


def test_end_of_text_targets_count_in_neither_loss_nor_tokens_nor_bytes():
    """A model that never predicts <|endoftext|> pays ~1e4 nats at each one; left out, its loss is exactly ln(V-1)."""
    vocab, seq = 16, 8
    tokens = np.arange(1 + 6 * seq) % vocab  # token 0 (end of text) every 16 tokens
    token_bytes = np.full(vocab, 2)
    token_bytes[0] = 0
    windows = eval_windows(tokens, seq, 10_000)
    m = evaluate(Uniform(vocab, banned=0), windows, token_bytes, batch_size=4, device="cpu")
    text_targets = int((windows[:, 1:] != 0).sum())
    assert text_targets < windows[:, 1:].size  # the case does contain end-of-text targets
    assert m["eval/tokens"] == text_targets and m["eval/bytes"] == 2 * text_targets
    assert m["eval/loss"] == pytest.approx(math.log(vocab - 1))
    assert m["eval/bpb"] == pytest.approx(math.log2(vocab - 1) / 2)


class RandomBigram(torch.nn.Module):
    """Fixed random logits per input token: losses that differ from window to window."""

    def __init__(self, vocab):
        super().__init__()
        self.table = torch.nn.Embedding(vocab, vocab)
        torch.nn.init.normal_(self.table.weight, std=2.0, generator=torch.Generator().manual_seed(0))

    def forward(self, idx, targets=None):
        return self.table(idx), None


def test_bpb_standard_error_is_the_neighbour_estimators_over_windows_and_sums_across_ranks():
    from slovo.stats import neighbour_se, neighbour_se_from_sums

    vocab, seq = 16, 8
    tokens = np.random.default_rng(0).integers(0, vocab, 1 + 12 * seq)
    token_bytes = np.arange(vocab) % 4  # 0-3 bytes: windows hold different byte counts
    windows = eval_windows(tokens, seq, 10_000)
    model = RandomBigram(vocab)
    m = evaluate(model, windows, token_bytes, batch_size=5, device="cpu", per_window=True)
    expected = neighbour_se(m["per_window_nats"], m["per_window_bytes"]) / math.log(2)
    assert m["eval/bpb_se"] == pytest.approx(expected, rel=1e-6)  # neighbours across batches of 5 included
    assert 0 < m["eval/bpb_se"] < m["eval/bpb"]

    # two "ranks", each scoring every other window, summed by `reduce`: the whole set's figures on both, the se
    # from each rank's own neighbours (near in the text too)
    halves = [
        evaluate(model, windows[r::2], token_bytes, batch_size=5, device="cpu", per_window=True) for r in range(2)
    ]
    captured = []

    def fake_reduce(rank):
        def reduce(values):
            captured.append(values)
            return values if len(captured) < 2 else [a + b for a, b in zip(*captured)]

        return reduce

    evaluate(model, windows[0::2], token_bytes, batch_size=5, device="cpu", reduce=fake_reduce(0))
    both = evaluate(model, windows[1::2], token_bytes, batch_size=5, device="cpu", reduce=fake_reduce(1))
    assert both["eval/windows"] == len(windows)
    assert both["eval/bpb"] == pytest.approx(m["eval/bpb"])
    n = np.concatenate([h["per_window_nats"] for h in halves])
    b = np.concatenate([h["per_window_bytes"] for h in halves]).astype(float)
    dn = [np.diff(h["per_window_nats"]) for h in halves]
    db = [np.diff(h["per_window_bytes"].astype(float)) for h in halves]
    sums = [sum(float((x * y).sum()) for x, y in zip(u, v)) for u, v in ((dn, dn), (dn, db), (db, db))]
    ranks_se = neighbour_se_from_sums(n.sum(), b.sum(), *sums, n.size, sum(len(x) for x in dn)) / math.log(2)
    assert both["eval/bpb_se"] == pytest.approx(ranks_se, rel=1e-6)
    assert halves[0]["eval/bpb_se"] != pytest.approx(both["eval/bpb_se"])  # one rank's share alone would differ


def test_bpb_standard_error_counts_neighbouring_alike_windows_as_one_piece_of_evidence():
    from slovo.stats import neighbour_se, ratio_se

    # windows from a few long works: within a work the windows are alike, works differ; an evenly spread sample
    # hits every work in proportion, so its figure moves far less than independent windows' se says
    rng = np.random.default_rng(3)
    per_work = np.repeat(rng.normal(3.0, 0.5, 8), 32)
    nats = (per_work + rng.normal(0, 0.05, per_work.size)) * 100
    b = np.full(nats.size, 100.0)
    assert neighbour_se(nats, b) < ratio_se(nats, b) / 4


def test_eval_windows_reach_from_the_start_to_the_end_of_the_split_evenly_and_without_overlap():
    tokens = np.arange(10_000)
    w = eval_windows(tokens, 16, 16 * 50)
    starts = w[:, 0]
    assert w.shape == (50, 17)
    assert starts[0] == 0 and w[-1, -1] == len(tokens) - 1  # first token to last
    gaps = np.diff(starts)
    assert gaps.min() >= 16 and gaps.max() - gaps.min() <= 1  # no target scored twice; evenly strided
    assert (w == starts[:, None] + np.arange(17)).all()  # each window is a contiguous run of the split
    assert np.array_equal(w, eval_windows(tokens, 16, 16 * 50))  # the same every time


def test_eval_tokens_beyond_the_split_use_the_whole_split_and_say_so():
    tokens = np.arange(101)
    w = eval_windows(tokens, 10, 10_000)
    assert w.shape == (10, 11) and list(w[:, 1:].ravel()) == list(range(1, 101))  # tiles the split, each target once
    note = whole_split_note(len(tokens), 10, 10_000)
    assert note is not None and "10,000" in note and "100 tokens" in note
    assert whole_split_note(len(tokens), 10, 100) is None


def test_too_short_a_split_is_an_error():
    with pytest.raises(ValueError, match="shorter than one window"):
        eval_windows(np.arange(8), 10, 100)


def test_subset_is_spread_over_all_windows_and_the_same_each_time():
    idx = subset_indices(100, 10)
    assert len(idx) == 10 and idx[0] == 0 and idx[-1] == 99 and np.all(np.diff(idx) >= 10)
    assert np.array_equal(idx, subset_indices(100, 10))
    assert np.array_equal(subset_indices(7, 50), np.arange(7))


@pytest.mark.parametrize("window_s", [0.001, 0.01, 0.05])
def test_in_training_subset_keeps_all_evals_within_the_fraction_when_it_can(window_s):
    n_windows, train_s, evals, fraction = 256, 180.0, 9, 0.1
    n = in_training_windows(n_windows, window_s, train_s, evals, fraction, multiple=8)
    assert n == n_windows or (n % 8 == 0 and 8 <= n < n_windows and (n // 8) & (n // 8 - 1) == 0)  # 2^k batches
    total_eval_s = (evals * n + n_windows) * window_s
    if n_windows * window_s + evals * 8 * window_s <= fraction * train_s:  # feasible: stays within the fraction
        assert total_eval_s <= fraction * train_s
    else:  # not even one batch per eval fits next to the final full eval: one batch
        assert n == 8
    assert in_training_windows(n_windows, window_s, train_s, evals, 0.0) == n_windows  # 0: every eval is full


def test_suites_and_extra_sets_time_comes_off_the_windows_share_so_all_evals_stay_within_the_fraction():
    n_windows, window_s, train_s, evals, fraction = 256, 0.01, 300.0, 9, 0.1
    alone = in_training_windows(n_windows, window_s, train_s, evals, fraction, multiple=8)
    other_s, final_other_s = 1.0, 6.0  # a 900-pair suite subset each eval, the whole suite at the end
    n = in_training_windows(n_windows, window_s, train_s, evals, fraction, 8, other_s, final_other_s)
    assert n < alone
    total_eval_s = (evals * n + n_windows) * window_s + evals * other_s + final_other_s
    assert total_eval_s <= fraction * train_s


def test_eval_set_facts_count_windows_and_text_tokens():
    tokens = np.arange(1 + 4 * 8) % 16
    facts = eval_set_facts(tokens, 8, 10_000, eot_id=0)
    assert facts == {"eval_windows": 4, "eval_tokens": 4 * 8 - int((tokens[1:] == 0).sum())}


def test_evals_during_training_score_one_fixed_subset_and_the_final_eval_all_windows(tiny_config, tmp_path):
    from slovo.train import train

    cfg = tiny_config(**{"budget.time": "10s", "eval.every": 4})
    summary = train(cfg, tmp_path / "run", clock=Clock(now=TickingTime()), quiet=True)
    evals = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/loss" in r]
    mid, final = evals[:-1], evals[-1]
    assert len(mid) == 3
    assert len({r["eval/windows"] for r in mid}) == 1  # the same subset at every eval
    assert mid[0]["eval/windows"] < final["eval/windows"] == 1024 // 32
    assert final["eval/tokens"] > mid[0]["eval/tokens"]
    assert summary["ledger"]["eval"] > 0 and summary["ledger"]["final_eval"] > 0
    assert summary["eval/tokens"] == final["eval/tokens"] and summary["eval/windows"] == final["eval/windows"]
    assert summary["eval/subset_windows"] == mid[0]["eval/windows"]
    run = read_json(tmp_path / "run" / "run.json")
    assert run["dataset"]["eval_windows"] == final["eval/windows"]
    assert run["dataset"]["eval_tokens"] == final["eval/tokens"]
    assert "val_documents" in run["dataset"]


def test_max_fraction_zero_scores_every_window_at_every_eval(tiny_config, tmp_path):
    from slovo.train import train

    cfg = tiny_config(**{"budget.max_steps": 8, "eval.every": 4, "eval.max_fraction": 0.0})
    train(cfg, tmp_path / "run", quiet=True)
    evals = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/loss" in r]
    assert len(evals) == 4 and {r["eval/windows"] for r in evals} == {1024 // 32}


def test_eval_tokens_beyond_the_split_is_said_once_and_the_run_goes_on(tiny_config, tmp_path, capsys):
    from slovo.train import train

    cfg = tiny_config(**{"budget.max_steps": 6, "eval.every": 3, "eval.tokens": 10**7})
    summary = train(cfg, tmp_path / "run", quiet=False)
    out = capsys.readouterr().out
    assert summary["status"] == "finished"
    assert out.count("more than the validation split holds") == 1


def test_slovo_eval_spreads_tokens_over_the_text_and_says_when_asked_for_more(small_dataset, tmp_path, capsys):
    from slovo.cli import main

    assert main(tiny_train_args(small_dataset, tmp_path, "c", "--max-steps", "2")) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "c"), "--tokens", "10000000"]) == 0
    out = capsys.readouterr().out
    assert out.count("more than the validation split holds") == 1
    assert main(["eval", str(tmp_path / "c"), "--tokens", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eval/windows"] == 2  # 64 tokens = two 32-token windows


def test_slovo_eval_scores_in_the_dtype_the_run_resolved_and_reproduces_its_eval_bpb(tiny_config, tmp_path, capsys):
    """A run whose train.dtype=auto resolved to bfloat16 (run.json's `dtype`) is scored in bfloat16, not in the
    float32 that 'auto' means on a CPU without measuring."""
    import yaml

    from slovo.cli import main
    from slovo.train import train

    run = tmp_path / "run"
    summary = train(tiny_config(**{"budget.max_steps": 4, "train.dtype": "bfloat16"}), run, quiet=True)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["train"]["dtype"] = "auto"  # as written by a run whose auto measured bf16 faster
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert read_json(run / "run.json")["dtype"] == "bfloat16"
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["eval/bpb"] == pytest.approx(summary["eval/bpb"], rel=1e-6)
    assert figures["eval/bpb_se"] > 0


def test_a_single_window_has_no_standard_error_rather_than_nan():
    vocab, seq = 16, 8
    tokens = np.random.default_rng(0).integers(1, vocab, 1 + seq)
    m = evaluate(RandomBigram(vocab), eval_windows(tokens, seq, 10_000), np.ones(vocab), 4, "cpu")
    assert m["eval/windows"] == 1 and m["eval/bpb_se"] is None
