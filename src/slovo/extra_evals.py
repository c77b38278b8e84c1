"""What an eval scores besides the run's own validation split: `eval.extra` text sources and `eval.suites`.

`eval.extra: {NAME: SOURCE}`: any text source `slovo prepare` reads, tokenised with the run's tokenizer the way
prepare encodes a split, cut into evenly spread windows as the validation split is (`eval.tokens` worth of them)
and scored by `slovo.evaluate.evaluate`, recorded as `eval/NAME/bpb` and `eval/NAME/loss`. `slovo eval RUN --data
SOURCE` goes through the same `source_windows`.

`eval.suites: [rublimp]`: minimal-pair suites (`slovo.suites`), a fixed stratified subset of `eval.suite_pairs`
pairs per phenomenon at every eval, and `eval.suite_final_pairs` per phenomenon (0 = the whole suite) at the
final one, recorded as `eval/<suite>_acc` (primary criterion) and `eval/<suite>_acc_se`.

`prepare_eval_extras(cfg, tokenizer)` reads and encodes all of it once, before training starts, so an unreadable
source or a malformed suite is one line then, not a failure an hour in; `suite_metrics` is what each eval calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slovo.errors import SlovoError


def source_windows(
    source: str, tokenizer, seq_len: int, max_tokens: int, text_field: str = "text"
) -> tuple[np.ndarray, int]:
    """(eval windows (`slovo.evaluate.eval_windows`), tokens in all) of a text source encoded with `tokenizer`;
    one line when the source cannot be read or holds less than one window."""
    from slovo.data import tokenize_source
    from slovo.evaluate import eval_windows

    tokens, _ = tokenize_source(source, tokenizer, text_field=text_field)
    try:
        return eval_windows(np.asarray(tokens), seq_len, max_tokens), len(tokens)
    except ValueError as e:
        raise SlovoError(f"{source}: {e}") from None


@dataclass
class EvalExtras:
    """Everything `eval.extra` and `eval.suites` need at each eval, read once before training."""

    extra: dict = field(default_factory=dict)  # NAME -> windows (N, seq_len + 1)
    suites: dict = field(default_factory=dict)  # suite name -> (MinimalPairs, EncodedPairs of the subset)
    final_pairs: int = 0  # pairs per phenomenon at the final eval; 0 = the whole suite

    def final_cost_ratio(self) -> float:
        """About how many times an eval's extra work the final eval's is (its larger suite subset), for sizing
        the evals during training (`evaluate.in_training_windows(..., final_other_seconds=)`)."""
        from slovo.suites.rublimp import select_pairs

        every = float(sum(w.shape[0] * (w.shape[1] - 1) for w in self.extra.values()))  # tokens, as below
        final = every
        for suite, subset in self.suites.values():
            tokens = sum(len(t) + 1 for t in subset.good + subset.bad) / max(len(subset.indices), 1)
            every += tokens * len(subset.indices)
            final += tokens * len(select_pairs(suite, self.final_pairs))
        return final / every if every else 1.0


def prepare_eval_extras(cfg, tokenizer) -> EvalExtras:
    """Read and tokenise `cfg.eval.extra` and load and encode `cfg.eval.suites` (SlovoError, one line, on bad input)."""
    from slovo.suites import load_suite
    from slovo.suites.rublimp import select_pairs
    from slovo.suites.scoring import encode_pairs

    out = EvalExtras(final_pairs=cfg.eval.suite_final_pairs)
    for name, source in cfg.eval.extra.items():
        try:
            out.extra[name], _ = source_windows(source, tokenizer, cfg.model.seq_len, cfg.eval.tokens)
        except SlovoError as e:
            raise SlovoError(f"eval.extra.{name}: {e}") from None
    for spec in cfg.eval.suites:
        suite = load_suite(spec, where="eval.suites")
        subset = encode_pairs(suite, tokenizer, select_pairs(suite, cfg.eval.suite_pairs))
        out.suites[suite.name] = (suite, subset)
    return out


def suite_metrics(
    model, extras: EvalExtras, tokenizer, cfg, token_bytes, device: str, autocast=None, final: bool = False
) -> dict:
    """The figures one eval adds to its record: `eval/NAME/bpb`, `eval/NAME/loss` per extra set and
    `eval/<suite>_acc`, `_acc_se`, ... per suite (the subset; the final eval `eval.suite_final_pairs` per
    phenomenon, 0 = the whole suite). `autocast` applies to the extra sets (as to the main eval), not to
    the suites. Every rank scores all of them alike (under torchrun each rank computes the same figures; rank 0
    records them)."""
    from slovo.device import true_float32
    from slovo.evaluate import evaluate
    from slovo.suites.rublimp import select_pairs
    from slovo.suites.scoring import encode_pairs, suite_subset_metrics

    batch = cfg.eval.batch_size or cfg.train.per_device_train_batch_size
    metrics: dict = {}
    for name, windows in extras.extra.items():
        m = evaluate(model, windows, token_bytes, batch, device, autocast)
        metrics[f"eval/{name}/bpb"], metrics[f"eval/{name}/loss"] = m["eval/bpb"], m["eval/loss"]
    for suite, subset in extras.suites.values():
        pairs = subset
        if final and extras.final_pairs != cfg.eval.suite_pairs:
            pairs = encode_pairs(suite, tokenizer, select_pairs(suite, extras.final_pairs))
        # float32 whatever train.dtype: the two sentences differ by a word, and bf16 logits (3 significant digits)
        # would decide close pairs by rounding. Sentences are short, so 4x the training batch fits its memory
        with true_float32():  # as `slovo eval --suite` scores, in a process where training turned TF32 on
            metrics.update(suite_subset_metrics(model, pairs, cfg.model.seq_len, 4 * batch, device))
    return metrics
