"""llama.cpp itself runs `slovo export --gguf`'s file: same tokens, same greedy continuation, same logits.

For each GGUF type (f32, bf16, q8_0) the run is exported (`slovo.export.export_run(..., gguf_type=)`), the file
is loaded by llama.cpp through llama-cpp-python, and compared with slovo's own model in float32:

- tokens: llama.cpp's tokenizer (gpt2 model, gpt-2 pre-tokenizer, BOS added) against slovo's prompt encoding
  (`<|endoftext|>` + the run's tokenizer) for the prompt and a few other Russian and mixed texts;
- greedy: llama.cpp's argmax continuation of --tokens tokens against `slovo.generate.generate(greedy=True)`, the
  function `slovo generate --greedy` runs;
- logits: llama.cpp's logits at every position of prompt + slovo's continuation against slovo's forward pass on the
  same ids: the largest absolute difference, with llama.cpp's default f16 KV cache and with an f32 one (the
  cache's rounding is most of f32's difference), and the same for slovo's own bf16 weights (the model's logits with
  its weights rounded to bf16), which says what size of difference rounding alone makes.

    pip install -e '.[interop]'     # gguf + llama-cpp-python (compiled from source where no wheel exists)
    .venv/bin/python bench/gguf_check.py runs/demo
    .venv/bin/python bench/gguf_check.py runs/demo --types f32,q8_0 --tokens 32 --json gguf.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

TEXTS = [
    "Мороз и солнце; день чудесный!",
    "  Два пробела, цифры 12345 и знаки: «ёлка» — ёж…",
    "Mixed English and русский text's tokens, \tand\nnew lines.",
]
# The largest logit difference allowed, with an f32 KV cache (llama.cpp's default f16 cache adds its own rounding,
# reported beside): 1e-3 for float32; for bf16 and q8_0, whose weights are rounded, a multiple of what rounding
# slovo's own weights to bf16 does to its logits (so the bound scales with the model's logits).
F32_BOUND = 1e-3
ROUNDING_MULTIPLE = {"bf16": 3.0, "q8_0": 10.0}


def llama(path: Path, n_ctx: int, threads: int, extra_bufts: bool, kv_f32: bool = False):
    """llama.cpp's model through llama-cpp-python. Without `extra_bufts` its repacking / AMX weight buffers are
    off: on this project's Sapphire Rapids VM a source build dies of SIGILL in them for q8_0 (an AMX-INT8 kernel);
    the file and the maths are the same, only the matmul kernels differ."""
    import llama_cpp
    from llama_cpp import llama as module

    default_params = llama_cpp.llama_model_default_params

    def params():
        p = default_params()
        p.use_extra_bufts = extra_bufts
        return p

    module.llama_cpp.llama_model_default_params = params  # Llama() takes no such argument
    try:
        kv = {"type_k": 0, "type_v": 0} if kv_f32 else {}  # GGML_TYPE_F32; llama.cpp's default cache is f16
        return module.Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False, n_threads=threads, **kv)
    finally:
        module.llama_cpp.llama_model_default_params = default_params


def llama_greedy(llm, prompt_ids: list[int], n: int) -> list[int]:
    llm.reset()
    llm.eval(prompt_ids)
    out = []
    for _ in range(n):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(nxt)
        llm.eval([nxt])
    return out


def llama_logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def slovo_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids]))[0][0].float().numpy()


def bf16_rounded(model):
    """A copy of the model whose weights are rounded to bf16 and back: what rounding alone does to the logits."""
    import copy

    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            if p.dim() > 1:
                p.copy_(p.to(torch.bfloat16).float())
    return twin


def check_type(model, cfg, tok, run: str, gguf_type: str, work: Path, args) -> dict:
    from slovo.export import export_run
    from slovo.generate import encode_prompt, generate

    out = export_run(run, work / f"hf-{gguf_type}", force=True, gguf_type=gguf_type)
    llm = llama(out / f"model-{gguf_type}.gguf", cfg.model.seq_len, args.threads, args.extra_bufts)
    prompt_ids, _ = encode_prompt(tok, args.prompt, cfg.model.seq_len)
    tokens_equal = all(
        llm.tokenize(t.encode("utf-8"), add_bos=True, special=False) == encode_prompt(tok, t, 10**6)[0]
        for t in [args.prompt, *TEXTS]
    )
    ours = generate(model, prompt_ids, args.tokens, greedy=True)[0]
    theirs = llama_greedy(llm, prompt_ids, args.tokens)
    ids = prompt_ids + ours
    ref = slovo_logits(model, ids)
    diff = float(np.abs(llama_logits(llm, ids) - ref).max())
    llm_f32 = llama(out / f"model-{gguf_type}.gguf", cfg.model.seq_len, args.threads, args.extra_bufts, kv_f32=True)
    diff_f32_kv = float(np.abs(llama_logits(llm_f32, ids) - ref).max())
    return {
        "type": gguf_type,
        "file_bytes": (out / f"model-{gguf_type}.gguf").stat().st_size,
        "tokenizer_equal": tokens_equal,
        "greedy_equal": ours == theirs,
        "greedy_first_difference": next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None),
        "max_abs_logit_diff": diff,
        "max_abs_logit_diff_f32_kv_cache": diff_f32_kv,
        "positions": len(ids),
        "slovo_greedy_text": tok.decode(ours),
        "llama_greedy_text": tok.decode(theirs),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a run folder or checkpoint")
    ap.add_argument("--types", default="f32,bf16,q8_0")
    ap.add_argument("--prompt", default=None, help="default: the run's first sample prompt")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 4))
    ap.add_argument("--work", default=None)
    ap.add_argument("--extra-bufts", action="store_true", help="llama.cpp's repacked / AMX weight buffers on")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from slovo.checkpoint import load_for_inference
    from slovo.config import DEFAULT_PROMPT
    from slovo.generate import encode_prompt, generate

    model, cfg, tok = load_for_inference(args.run, "cpu")
    model = model.float().eval()
    args.prompt = args.prompt or (cfg.sample.prompts[0] if cfg.sample.prompts else DEFAULT_PROMPT)
    work = Path(args.work or tempfile.mkdtemp(prefix="gguf-check-"))
    rows = [check_type(model, cfg, tok, args.run, t, work, args) for t in args.types.split(",")]
    prompt_ids, _ = encode_prompt(tok, args.prompt, cfg.model.seq_len)
    ids = prompt_ids + generate(model, prompt_ids, args.tokens, greedy=True)[0]
    bf16_ref = float(np.abs(slovo_logits(bf16_rounded(model), ids) - slovo_logits(model, ids)).max())
    print(f"processor: {platform.processor() or platform.machine()}; torch {torch.__version__}; prompt {args.prompt!r}")
    print(f"slovo's own weights rounded to bf16 move its logits by up to {bf16_ref:.3g}")
    ok = True
    for r in rows:
        bound = F32_BOUND if r["type"] == "f32" else ROUNDING_MULTIPLE[r["type"]] * bf16_ref
        within = r["max_abs_logit_diff_f32_kv_cache"] <= bound
        r["bound"], r["within_bound"] = bound, within
        ok &= r["tokenizer_equal"] and within and (r["greedy_equal"] or r["type"] != "f32")
        print(
            f"{r['type']:>5}: tokenizer {'equal' if r['tokenizer_equal'] else 'DIFFERENT'}, greedy {args.tokens} "
            f"tokens {'equal' if r['greedy_equal'] else 'differ from ' + str(r['greedy_first_difference'])}; "
            f"max |logit diff| over {r['positions']} positions {r['max_abs_logit_diff_f32_kv_cache']:.3g} with an "
            f"f32 KV cache (bound {bound:.3g}: {'within' if within else 'OUTSIDE'}), "
            f"{r['max_abs_logit_diff']:.3g} with llama.cpp's default f16 cache"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "bf16_rounding": bf16_ref}, indent=1, ensure_ascii=False))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
