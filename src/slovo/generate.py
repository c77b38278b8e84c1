"""Sampling from a GPT: autoregressive decoding on token ids with a KV cache, and a thin text layer.

`generate` knows nothing of tokenization: it takes prompt ids and returns the new ids of each sample.
The prompt is run once through the model to fill the cache (prefill); each later step feeds only the
newest token. Several samples of one prompt decode together as one batch.

When prompt + new tokens outgrow the model's context, the visible window shifts: the newest half of
the context is kept and re-encoded into a fresh cache (positions restart at 0), so generation can go
on past `seq_len` at the cost of one prefill per half-context of tokens. The uncached path
(`use_cache=False`, kept as a reference for tests) sees exactly the same windows.

The text layer (`encode_prompt`, `generate_text`, `sample_texts`) turns prompts into ids, starting
each one with `<|endoftext|>`: in the training data every document follows that token, so the model
reads the prompt as the start of a document (the exported tokenizer adds it the same way, as BOS).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from slovo.config import check_sampling
from slovo.data.tokenizer import EOT_TOKEN, eot_id_of  # noqa: F401  (EOT_TOKEN is re-exported for export.py)
from slovo.errors import SlovoError

# ---------------------------------------------------------------------------------------------
# token ids -> token ids


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty, as transformers applies it: every token already in `seen` (prompt included) gets
    its logit divided by `penalty` when positive and multiplied when negative. logits: (B, V), seen: (B, T)."""
    if penalty == 1.0:
        return logits
    score = logits.gather(1, seen)
    score = torch.where(score < 0, score * penalty, score / penalty)
    return logits.scatter(1, seen, score)


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    drop_sorted = mass_before >= p  # the most likely token has 0 before it, so one token always stays
    drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sampling_distribution(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Probabilities to draw from after temperature, top-k and top-p (transformers' order).

    With top-k the draw is over the k best tokens only: returns (probs (B, k), their ids (B, k)), which
    is cheaper than a masked softmax over the whole vocabulary. Without: (probs (B, V), None)."""
    logits = logits / temperature
    ids = None
    if 0 < top_k < logits.size(-1):
        logits, ids = torch.topk(logits, top_k, dim=-1)
    return filter_top_p(logits, top_p).softmax(dim=-1), ids


def next_tokens(
    logits: torch.Tensor,
    seen: torch.Tensor,
    *,
    greedy: bool,
    temperature: float,
    top_k: int,
    top_p: float,
    repetition_penalty: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """One token per row from the last position's logits (B, V): repetition penalty, then the argmax
    (greedy) or a draw from `sampling_distribution`."""
    logits = apply_repetition_penalty(logits.float(), seen, repetition_penalty)
    if greedy or temperature == 0:
        return logits.argmax(dim=-1)
    probs, ids = sampling_distribution(logits, temperature, top_k, top_p)
    choice = torch.multinomial(probs, 1, generator=generator)
    return (choice if ids is None else ids.gather(1, choice)).squeeze(1)


@torch.inference_mode()
def generate(
    model,
    prompt_ids: Sequence[int],
    max_new_tokens: int = 64,
    *,
    num_samples: int = 1,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    seed: int | None = None,
    eos_id: int | None = None,
    stop: Callable[[int, list[int]], bool] | None = None,
    on_step: Callable[[list[list[int]]], None] | None = None,
    use_cache: bool = True,
) -> list[list[int]]:
    """Continue one prompt `num_samples` times (one batch); returns the new ids of each sample.

    A sample ends after `max_new_tokens`, when it draws `eos_id` (not included in the result), or when
    `stop(sample_index, ids_so_far)` returns True (its last token is kept; the text layer uses this for
    stop strings). `on_step(ids_so_far)` is called after every step, for streaming. `seed` makes the
    draws reproducible on a given device; it uses a private generator, so the global RNG (and thus
    a training run's exact resume) is untouched. `use_cache=False` re-runs the whole window each step.
    """
    check_sampling(temperature, top_k, top_p, repetition_penalty, max_new_tokens, num_samples)
    _check_prompt(prompt_ids, model.cfg.seq_len)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    seq = torch.tensor(list(prompt_ids), dtype=torch.long, device=device).unsqueeze(0).repeat(num_samples, 1)
    out: list[list[int]] = [[] for _ in range(num_samples)]
    done = [False] * num_samples
    window = _Window(model, num_samples, use_cache)
    draw = dict(greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p)
    try:
        for _ in range(max_new_tokens):
            logits = window.next_logits(seq)
            token = next_tokens(logits, seq, **draw, repetition_penalty=repetition_penalty, generator=generator)
            seq = torch.cat([seq, token.unsqueeze(1)], dim=1)
            _take(token.tolist(), out, done, eos_id, stop)
            if on_step is not None:
                on_step(out)
            if all(done):
                break
    finally:
        model.train(was_training)
    return out


def _check_prompt(prompt_ids: Sequence[int], context: int) -> None:
    if len(prompt_ids) == 0:
        raise SlovoError("prompt: needs at least one token (the text layer starts prompts with <|endoftext|>)")
    if len(prompt_ids) > context:
        raise SlovoError(f"prompt: {len(prompt_ids)} tokens is longer than the model's context ({context} tokens)")


class _Window:
    """The model's view of the growing sequences: its last `seq_len` tokens, with a KV cache of what it has seen;
    past the context the window shifts, re-encoding the newest half into a fresh cache."""

    def __init__(self, model, batch: int, use_cache: bool):
        self.model, self.context = model, model.cfg.seq_len
        self.cache = model.new_cache(batch) if use_cache else None
        self.start = 0  # where the visible window begins in the sequences
        self.cached = 0  # tokens of the window already in the cache
        self.keep = max(1, self.context // 2)  # tokens kept when the window shifts

    def next_logits(self, seq: torch.Tensor) -> torch.Tensor:
        """The logits for the next token of every sequence."""
        if seq.size(1) - self.start > self.context:
            self.start, self.cached = seq.size(1) - self.keep, 0
        window = seq[:, self.start :]
        if self.cache is None:
            logits, _ = self.model(window)
        else:
            logits, _ = self.model(window[:, self.cached :], cache=self.cache, pos=self.cached)
            self.cached = window.size(1)
        return logits[:, -1]


def _take(tokens: list[int], out: list[list[int]], done: list[bool], eos_id, stop) -> None:
    """Each unfinished sample takes its drawn token; `eos_id` ends one without being kept, `stop` after it."""
    for i, t in enumerate(tokens):
        if done[i]:
            continue
        if eos_id is not None and t == eos_id:
            done[i] = True
            continue
        out[i].append(t)
        if stop is not None and stop(i, out[i]):
            done[i] = True


# ---------------------------------------------------------------------------------------------
# text <-> ids


def eot_id(tokenizer) -> int:
    """Id of `<|endoftext|>` in a `tokenizers.Tokenizer` (or a transformers fast tokenizer)."""
    return eot_id_of(tokenizer)


def _encode(tokenizer, text: str) -> list[int]:
    enc = tokenizer.encode(text, add_special_tokens=False)
    return list(getattr(enc, "ids", enc))  # tokenizers returns an Encoding, transformers a list


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True)


class _StreamedTexts:
    """Each sample's text so far, decoded as its ids arrive with tokenizers' DecodeStream: every id is decoded
    once (not all ids at every step), and a character whose UTF-8 bytes span several ids waits until complete."""

    def __init__(self, tokenizer, num_samples: int):
        from tokenizers.decoders import DecodeStream

        self.tokenizer = getattr(tokenizer, "backend_tokenizer", tokenizer)  # a transformers fast tokenizer's own
        self.streams = [DecodeStream(skip_special_tokens=True) for _ in range(num_samples)]
        self.decoded = [0] * num_samples  # ids fed to each stream
        self.texts = [""] * num_samples

    def text(self, i: int, ids: list[int]) -> str:
        for token in ids[self.decoded[i] :]:
            piece = self.streams[i].step(self.tokenizer, token)
            if piece:
                self.texts[i] += piece
        self.decoded[i] = len(ids)
        return self.texts[i]


def encode_prompt(tokenizer, text: str, context: int, truncate: bool = False) -> tuple[list[int], int]:
    """`<|endoftext|>` + the prompt's ids, and how many ids were cut from the left to fit the context
    (only with `truncate`; otherwise a prompt longer than the context is a SlovoError)."""
    ids = [eot_id(tokenizer)] + _encode(tokenizer, text)
    if len(ids) <= context:
        return ids, 0
    if not truncate:
        raise SlovoError(
            f"prompt {_short(text)}: {len(ids)} tokens is longer than the model's context ({context} tokens); "
            "shorten it or pass --truncate-prompt to keep its last tokens"
        )
    return ids[-context:], len(ids) - context


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "…")


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Text before the first stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _printable(text: str, stops: Sequence[str]) -> str:
    """The part of a growing text that can be shown now: not a tail that may yet become a stop string."""
    hold = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:n]):
                hold = n
                break
    return text[: len(text) - hold]


@dataclass
class Sample:
    prompt: str
    index: int  # sample number for this prompt
    text: str  # the continuation only, cut before a stop string
    ids: list[int]  # the new token ids (up to and including the one that completed a stop string)
    prompt_tokens: int
    truncated: int = 0  # prompt ids cut from the left to fit the context


def generate_text(
    model,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 64,
    *,
    num_samples: int = 1,
    stop: Sequence[str] | str | None = None,
    truncate_prompt: bool = False,
    on_text: Callable[[int, str], None] | None = None,
    **sampling,
) -> list[Sample]:
    """Sample continuations of a text prompt. `stop` strings end a sample (the text is cut before them);
    `<|endoftext|>` always ends one. `on_text(sample_index, new_piece)` streams text as it is decoded.
    `sampling` are `generate`'s options (greedy, temperature, top_k, top_p, repetition_penalty, seed)."""
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if s]
    ids, cut = encode_prompt(tokenizer, prompt, model.cfg.seq_len, truncate_prompt)
    if cut:
        print(
            f"warning: prompt {_short(prompt)} was cut by {cut} tokens from the left to fit the context "
            f"({model.cfg.seq_len} tokens)",
            file=sys.stderr,
        )

    shown = [0] * num_samples  # characters already passed to on_text, per sample
    finished = [False] * num_samples
    so_far = _StreamedTexts(tokenizer, num_samples)

    def stop_here(i: int, new_ids: list[int]) -> bool:
        return cut_at_stop(so_far.text(i, new_ids), stops)[1]

    def stream(outs: list[list[int]]) -> None:
        for i, new_ids in enumerate(outs):
            if finished[i]:
                continue
            text, hit = cut_at_stop(so_far.text(i, new_ids), stops)
            visible = text if hit else _printable(text, stops)
            if len(visible) > shown[i]:
                on_text(i, visible[shown[i] :])
                shown[i] = len(visible)
            finished[i] = hit

    outs = generate(
        model,
        ids,
        max_new_tokens,
        num_samples=num_samples,
        eos_id=eot_id(tokenizer),
        stop=stop_here if stops else None,
        on_step=stream if on_text else None,
        **sampling,
    )
    samples = []
    for i, new_ids in enumerate(outs):
        text, _ = cut_at_stop(_decode(tokenizer, new_ids), stops)
        if on_text is not None and len(text) > shown[i]:  # what was held back for a stop string that never came
            on_text(i, text[shown[i] :])
        samples.append(Sample(prompt, i, text, new_ids, len(ids), cut))
    return samples


def sample_texts(model, tokenizer, sample_cfg, device=None) -> list[dict]:
    """Samples for the training loop's evals: for each prompt of `sample_cfg` (slovo.config.SampleConfig),
    `sample_cfg.num_samples` continuations with its fixed seed, so evals and runs compare.

    Returns one dict per sample: `prompt`, `text` (the continuation only), `index`. The model may be
    wrapped by torch.compile or DDP; the plain module is used (compiled graphs would recompile for every
    sequence length). `device`, when given, must be where the model's weights are.
    """
    from slovo.model import unwrap

    model = unwrap(model)
    if device is not None:
        weights_on = next(model.parameters()).device
        if torch.device(device).type != weights_on.type:
            raise ValueError(f"sample_texts: model is on {weights_on}, not {device}")
    out = []
    for prompt in sample_cfg.prompts:
        samples = generate_text(
            model,
            tokenizer,
            prompt,
            sample_cfg.max_new_tokens,
            num_samples=sample_cfg.num_samples,
            temperature=sample_cfg.temperature,
            top_k=sample_cfg.top_k,
            top_p=sample_cfg.top_p,
            repetition_penalty=sample_cfg.repetition_penalty,
            seed=sample_cfg.seed,
            truncate_prompt=True,
        )
        out += [{"prompt": s.prompt, "text": s.text, "index": s.index} for s in samples]
    return out
