"""Sampling: KV-cache decoding equals uncached decoding, the sampling filters, stop rules, the text layer,
samples during training, and the `slovo generate` command. Tiny random models and a tokenizer trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from slovo.cli import main
from slovo.config import DEFAULT_PROMPT, Config, ModelConfig, SampleConfig, save_config
from slovo.errors import SlovoError
from slovo.generate import (
    apply_repetition_penalty,
    cut_at_stop,
    encode_prompt,
    filter_top_p,
    generate,
    generate_text,
    sample_texts,
    sampling_distribution,
)
from slovo.model import GPT

TEXTS = [
    "В начале было слово, и слово было у Бога, и слово было Бог.",
    "Мороз и солнце; день чудесный! Ещё ты дремлешь, друг прелестный.",
    "Все счастливые семьи похожи друг на друга, каждая несчастливая семья несчастлива по-своему.",
]


def make_tokenizer(vocab_size: int = 320) -> Tokenizer:
    """Byte-level BPE like `slovo prepare` writes: <|endoftext|> first, so it is id 0."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(TEXTS * 10, trainer)
    assert tok.token_to_id("<|endoftext|>") == 0
    return tok


def make_model(vocab_size: int = 320, seed: int = 0, **shape) -> GPT:
    """A tiny random GPT; init_std is large so logits are far from ties and greedy choices are stable."""
    torch.manual_seed(seed)
    kw = dict(vocab_size=vocab_size, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, seq_len=64, init_std=0.2)
    kw.update(shape)
    return GPT(ModelConfig(**kw)).eval()


def make_checkpointed_run(
    root: Path, seed: int = 0, summary: dict | None = None, **shape
) -> tuple[Path, GPT, Tokenizer]:
    """A run folder in the documented layout: config.yaml, tokenizer.json, checkpoints/step_NNNNNNN/."""
    tok = make_tokenizer()
    model = make_model(tok.get_vocab_size(), seed, **shape)
    cfg = Config(model=model.cfg, preset="tiny")
    root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, root / "config.yaml")
    tok.save(str(root / "tokenizer.json"))
    ckpt = root / "checkpoints" / "step_0000001"
    ckpt.mkdir(parents=True)
    save_model(model, str(ckpt / "model.safetensors"))
    (ckpt / "checkpoint.json").write_text(json.dumps({"step": 1, "final": True}))
    if summary is not None:
        (root / "summary.json").write_text(json.dumps(summary))
    return root, model, tok


# ---------------------------------------------------------------------------------------------
# ids


def test_kv_cache_decoding_gives_the_logits_of_a_full_forward_pass():
    model = make_model()
    ids = torch.randint(1, 320, (2, 20))
    full, _ = model(ids)
    cache = model.new_cache(2)
    prefill, _ = model(ids[:, :12], cache=cache, pos=0)
    steps = [model(ids[:, t : t + 1], cache=cache, pos=t)[0] for t in range(12, 20)]
    torch.testing.assert_close(torch.cat([prefill] + steps, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_kv_head", [2, 4])
def test_greedy_with_kv_cache_gives_exactly_the_tokens_of_greedy_without_it(n_kv_head):
    model = make_model(n_kv_head=n_kv_head)
    prompt = [0, 5, 17, 42, 99, 7]
    cached = generate(model, prompt, 40, greedy=True, num_samples=2)
    uncached = generate(model, prompt, 40, greedy=True, use_cache=False)
    assert len(cached[0]) == 40
    assert cached[0] == uncached[0] == cached[1]


def test_greedy_past_the_context_shifts_the_window_the_same_with_and_without_cache():
    model = make_model(seq_len=32)
    prompt = list(range(1, 30))  # 29 of 32 positions used: the window shifts several times in 60 tokens
    cached = generate(model, prompt, 60, greedy=True)
    assert cached == generate(model, prompt, 60, greedy=True, use_cache=False)
    assert len(cached[0]) == 60


def test_same_seed_gives_the_same_samples_and_another_seed_other_ones():
    model = make_model()
    opts = dict(temperature=1.0, top_k=0, num_samples=3)
    a = generate(model, [0, 1, 2], 30, seed=7, **opts)
    assert a == generate(model, [0, 1, 2], 30, seed=7, **opts)
    assert a != generate(model, [0, 1, 2], 30, seed=8, **opts)
    assert len({tuple(s) for s in a}) > 1  # the samples of one batch differ from each other


def test_sampling_does_not_touch_the_global_rng():
    model = make_model()
    before = torch.get_rng_state()
    generate(model, [0, 1, 2], 10, seed=3)
    generate(model, [0, 1, 2], 10)
    assert torch.equal(before, torch.get_rng_state())


def test_top_k_of_one_and_a_tiny_top_p_sample_the_greedy_tokens():
    model = make_model()
    greedy = generate(model, [0, 9, 8], 25, greedy=True)
    assert generate(model, [0, 9, 8], 25, top_k=1, seed=1) == greedy
    assert generate(model, [0, 9, 8], 25, top_p=1e-6, seed=1) == greedy
    assert generate(model, [0, 9, 8], 25, temperature=0, seed=1) == greedy


def test_sampling_distribution_and_repetition_penalty_match_transformers_logits_processors():
    pytest.importorskip("transformers")
    from transformers.generation.logits_process import (
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    torch.manual_seed(0)
    logits = torch.randn(3, 50) * 3
    seen = torch.randint(0, 50, (3, 12))
    penalized = RepetitionPenaltyLogitsProcessor(1.3)(seen, logits.clone())
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.3), penalized)
    for temperature, k, p in [(0.8, 7, 1.0), (1.0, 0, 0.3), (0.7, 20, 0.9), (1.3, 0, 1.0)]:
        theirs = TemperatureLogitsWarper(temperature)(seen, logits.clone())
        if k:
            theirs = TopKLogitsWarper(k)(seen, theirs)
        theirs = TopPLogitsWarper(p)(seen, theirs).softmax(-1) if p < 1 else theirs.softmax(-1)
        probs, ids = sampling_distribution(logits, temperature, k, p)
        ours = probs if ids is None else torch.zeros_like(logits).scatter(1, ids, probs)
        torch.testing.assert_close(ours, theirs, msg=f"temperature={temperature} top_k={k} top_p={p}")


def test_filter_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = ~filter_top_p(logits, 0.75).isinf()
    assert kept.tolist() == [[True, True, False, False]]
    assert (~filter_top_p(logits, 0.8).isinf()).tolist() == [[True, True, False, False]]
    assert (~filter_top_p(logits, 0.81).isinf()).tolist() == [[True, True, True, False]]


def test_a_sample_ends_at_the_end_of_text_token_which_is_not_returned():
    model = make_model()
    free = generate(model, [0, 3, 4], 30, greedy=True)[0]
    k = next(i for i, t in enumerate(free) if t not in free[:i] and i >= 2)
    assert generate(model, [0, 3, 4], 30, greedy=True, eos_id=free[k])[0] == free[:k]


def test_a_prompt_longer_than_the_context_is_an_error():
    model = make_model(seq_len=16)
    with pytest.raises(SlovoError, match="longer than the model's context"):
        generate(model, list(range(1, 18)), 4)


# ---------------------------------------------------------------------------------------------
# text


def test_generate_text_streams_exactly_the_final_text_and_cuts_at_a_stop_string():
    tok = make_tokenizer()
    model = make_model(tok.get_vocab_size())
    free = generate_text(model, tok, DEFAULT_PROMPT, 30, greedy=True)[0]
    assert len(free.ids) == 30 and free.prompt_tokens == 1 + len(tok.encode(DEFAULT_PROMPT).ids)
    pieces = []
    streamed = generate_text(model, tok, DEFAULT_PROMPT, 30, greedy=True, on_text=lambda i, s: pieces.append(s))[0]
    assert "".join(pieces) == streamed.text == free.text

    stop = free.text[len(free.text) // 2 :][:2]  # a piece from the middle of the text
    pieces.clear()
    cut = generate_text(model, tok, DEFAULT_PROMPT, 30, greedy=True, stop=stop, on_text=lambda i, s: pieces.append(s))[
        0
    ]
    assert cut.text == cut_at_stop(free.text, [stop])[0] and stop not in cut.text
    assert len(cut.ids) < 30
    assert "".join(pieces) == cut.text


def test_streaming_decodes_each_new_token_once_not_the_whole_text_at_every_step(monkeypatch):
    import slovo.generate as gen

    tok = make_tokenizer()
    model = make_model(tok.get_vocab_size())
    decoded: list[int] = []  # how many ids each full decode was given
    real_decode = gen._decode
    monkeypatch.setattr(gen, "_decode", lambda t, ids: decoded.append(len(ids)) or real_decode(t, ids))
    pieces = []
    sample = generate_text(
        model, tok, DEFAULT_PROMPT, 60, greedy=True, stop="\x00never", on_text=lambda i, s: pieces.append(s)
    )[0]
    assert len(sample.ids) == 60 and "".join(pieces) == sample.text
    assert sum(decoded) <= 2 * len(sample.ids)  # re-decoding everything each step would be about 60 * 61 / 2 ids


def test_prompts_start_with_end_of_text_and_a_long_prompt_is_cut_from_the_left_only_when_asked():
    tok = make_tokenizer()
    long = " ".join(TEXTS * 3)
    with pytest.raises(SlovoError, match="--truncate-prompt"):
        encode_prompt(tok, long, 64)
    ids, cut = encode_prompt(tok, long, 64, truncate=True)
    full = [0] + tok.encode(long).ids
    assert ids == full[-64:] and cut == len(full) - 64
    assert encode_prompt(tok, "мороз", 64) == ([0] + tok.encode("мороз").ids, 0)


def test_sample_texts_gives_one_dict_per_sample_reproducibly_and_keeps_the_model_mode():
    tok = make_tokenizer()
    model = make_model(tok.get_vocab_size()).train()
    cfg = SampleConfig(prompts=[DEFAULT_PROMPT, "Мороз"], max_new_tokens=12, seed=5)
    samples = sample_texts(model, tok, cfg, "cpu")
    assert [(s["prompt"], s["index"]) for s in samples] == [(DEFAULT_PROMPT, 0), ("Мороз", 0)]
    assert all(set(s) == {"prompt", "text", "index"} and isinstance(s["text"], str) for s in samples)
    assert sample_texts(model, tok, cfg, "cpu") == samples
    assert model.training


# ---------------------------------------------------------------------------------------------
# the command


def test_cli_generate_greedy_prints_the_prompt_and_its_continuation(tmp_path, capsys):
    run, model, tok = make_checkpointed_run(tmp_path / "run")
    assert main(["generate", str(run), "--greedy", "--max-new-tokens", "20"]) == 0
    out, err = capsys.readouterr()
    expected = generate_text(model, tok, DEFAULT_PROMPT, 20, greedy=True)[0]
    assert out == DEFAULT_PROMPT + expected.text + "\n"
    assert "tokens/s" in err and f"{len(expected.ids)} new tokens" in err


def test_cli_generate_several_samples_from_a_prompts_file_with_a_seed_is_reproducible(tmp_path, capsys):
    run, _, _ = make_checkpointed_run(tmp_path / "run")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Мороз и солнце\n\nВсе счастливые\n", encoding="utf-8")
    argv = [
        "generate",
        str(run),
        "--prompts-file",
        str(prompts),
        "--num-samples",
        "2",
        "--seed",
        "3",
        "--max-new-tokens",
        "8",
        "--top-p",
        "0.9",
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.count("--- sample") == 4 and "--- sample 2/2 ---\nВсе счастливые" in first
    assert main(argv) == 0
    assert capsys.readouterr().out == first


def test_cli_generate_long_prompt_is_a_one_line_error_unless_truncated(tmp_path, capsys):
    run, _, _ = make_checkpointed_run(tmp_path / "run")
    long = " ".join(TEXTS * 3)
    assert main(["generate", str(run), "--prompt", long, "--max-new-tokens", "4"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "--truncate-prompt" in err
    assert main(["generate", str(run), "--prompt", long, "--max-new-tokens", "4", "--truncate-prompt"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(long) and "warning: prompt" in err


def test_cli_generate_rejects_bad_sampling_values_naming_the_flag(tmp_path, capsys):
    run, _, _ = make_checkpointed_run(tmp_path / "run")
    assert main(["generate", str(run), "--top-p", "1.5"]) == 2
    assert "--top-p" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
