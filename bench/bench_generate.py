"""Sampling speed: slovo's KV-cache `generate` against transformers' `generate` on the same weights.

Both run in this one process on the CPU, on the same exported weights (slovo's GPT and the
`LlamaForCausalLM` transformers loads from slovo's export), with the same sampling settings
(temperature 0.8, top-k 50), 64 new tokens, and the end-of-text stop off in both so every sample is
exactly 64 tokens. Prints tokens/s (best of --repeats rounds, the two taking turns) for batch 1
and 8 and the ratio slovo / transformers.

    .venv/bin/python bench/bench_generate.py                 # a random model of the tiny preset's shape
    .venv/bin/python bench/bench_generate.py --run runs/demo # a trained run (its newest checkpoint)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from slovo.config import DEFAULT_PROMPT, load_config
from slovo.export import write_model_files
from slovo.generate import encode_prompt, generate
from slovo.model import GPT


def load_models(run: str | None, workdir: Path):
    """(slovo GPT, transformers model, prompt ids) on the same weights."""
    import transformers

    if run:
        from slovo.train.checkpoint import load_for_inference

        model, cfg, tokenizer = load_for_inference(run)
        prompt, _ = encode_prompt(tokenizer, DEFAULT_PROMPT, cfg.model.seq_len)
    else:
        cfg = load_config(preset="tiny", overrides={"model.vocab_size": 8192})
        torch.manual_seed(0)
        model = GPT(cfg.model).eval()
        prompt = [0] + torch.randint(1, cfg.model.vocab_size, (7,)).tolist()  # as long as «В начале было слово»
    write_model_files(model, cfg, eos=0, folder=workdir)
    hf = transformers.AutoModelForCausalLM.from_pretrained(workdir).eval()
    return model, hf, prompt, cfg


def best_times(fns: list, repeats: int) -> list[float]:
    """Best wall time of each function over `repeats` rounds. The functions take turns within each round,
    so a burst of load from another process hits both sides alike; the best time is the least noisy."""
    for fn in fns:
        fn()  # warm-up: allocator, kernels, transformers' first-call setup
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [min(ts) for ts in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=None, help="run folder or checkpoint (default: random tiny-preset model)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case; the best is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        model, hf, prompt, cfg = load_models(args.run, Path(tmp))
    m = cfg.model
    n = args.new_tokens
    print(
        f"model: {m.n_layer} layers, width {m.n_embd}, {m.n_head} heads, context {m.seq_len}, vocab {m.vocab_size}, "
        f"{model.num_params() / 1e6:.2f}M params; prompt {len(prompt)} tokens, {n} new tokens, "
        f"temperature 0.8, top-k 50"
    )
    print(
        f"cpu, torch {torch.__version__} ({torch.get_num_threads()} threads), transformers {transformers.__version__}"
    )
    print(f"{'batch':>5}  {'slovo tok/s':>12}  {'transformers tok/s':>18}  {'ratio':>6}")

    for batch in [int(b) for b in args.batches.split(",")]:
        ids = torch.tensor([prompt] * batch)

        def run_slovo(batch=batch):
            out = generate(model, prompt, n, num_samples=batch, temperature=0.8, top_k=50, seed=0)
            assert all(len(s) == n for s in out)

        def run_hf(ids=ids, batch=batch):
            with torch.inference_mode():
                out = hf.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=n,
                    do_sample=True,
                    temperature=0.8,
                    top_k=50,
                    top_p=1.0,
                    eos_token_id=None,
                    pad_token_id=0,
                )
            assert out.shape == (batch, len(prompt) + n)

        ours, theirs = (batch * n / t for t in best_times([run_slovo, run_hf], args.repeats))
        print(f"{batch:>5}  {ours:>12.1f}  {theirs:>18.1f}  {ours / theirs:>5.2f}x")


if __name__ == "__main__":
    main()
