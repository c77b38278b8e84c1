"""Write a run as one GGUF file that llama.cpp (and Ollama, LM Studio, llama-cpp-python) loads.

llama.cpp's own converter cannot read a slovo export: its GPT-2 tokenizer path recognises a pre-tokenizer by
hashing a freshly trained tokenizer's output, which no new vocabulary matches. slovo's pre-tokenizer is GPT-2's
(`pre_tokenizers.ByteLevel(use_regex=True)`), so the file is written directly with the `gguf` package (llama.cpp's
own writer): `tokenizer.ggml.model=gpt2`, `pre=gpt-2`, the tokens and merges of the run's tokenizer.json, and the
weights under llama.cpp's names.

llama.cpp's `llama` architecture rotates adjacent pairs (2i, 2i+1) of a head; slovo and transformers rotate
halves (i, i + head_dim/2). `permute_qk` reorders the rows of q_proj and k_proj so the interleaved rotation gives
the same attention scores, exactly as llama.cpp's `convert_hf_to_gguf.py` does for Llama checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from slovo.errors import SlovoError
from slovo.model import intermediate_size

GGUF_TYPES = ("f32", "bf16", "q8_0")
GGUF_EXTRA = "pip install 'slovo-lm[gguf]'"

# slovo's parameter name pieces -> llama.cpp's tensor names (gguf's constants.MODEL_TENSORS for LLM_ARCH_LLAMA).
_TOP = {
    "embed_tokens.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_BLOCK = {
    "attn_norm.weight": "attn_norm.weight",
    "attn.q_proj.weight": "attn_q.weight",
    "attn.k_proj.weight": "attn_k.weight",
    "attn.v_proj.weight": "attn_v.weight",
    "attn.o_proj.weight": "attn_output.weight",
    "mlp_norm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def check_gguf_type(gguf_type: str) -> None:
    if gguf_type not in GGUF_TYPES:
        raise SlovoError(f"--gguf-type {gguf_type}: unknown; choose one of {', '.join(GGUF_TYPES)}")


def import_gguf():
    try:
        import gguf
    except ImportError:
        raise SlovoError(f"--gguf needs the gguf package: {GGUF_EXTRA}") from None
    return gguf


def gguf_name(name: str) -> str:
    """'layers.0.attn.q_proj.weight' -> 'blk.0.attn_q.weight'; 'embed_tokens.weight' -> 'token_embd.weight'."""
    if name in _TOP:
        return _TOP[name]
    _, layer, rest = name.split(".", 2)
    return f"blk.{layer}.{_BLOCK[rest]}"


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows of a (heads * head_dim, in) projection from rotate-half order to llama.cpp's interleaved pairs."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The inverse of `permute_qk` (for reading a GGUF back)."""
    return w.reshape(n_heads, w.shape[0] // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(model) -> dict[str, np.ndarray]:
    """The model's weights under llama.cpp's names, float32, Q/K permuted; the head left out when tied."""
    cfg = model.cfg
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_embeddings:
            continue  # llama.cpp uses token_embd as the output matrix when `output.weight` is absent
        w = tensor.detach().to("cpu").float().numpy()
        if name.endswith("q_proj.weight"):
            w = permute_qk(w, cfg.n_head)
        elif name.endswith("k_proj.weight"):
            w = permute_qk(w, cfg.n_kv_head or cfg.n_head)
        out[gguf_name(name)] = np.ascontiguousarray(w, dtype=np.float32)
    return out


def _quantised(gguf, w: np.ndarray, gguf_type: str):
    """(data, raw ggml type or None) for one tensor. Norms (1-D) stay float32, as llama.cpp's converter keeps
    them; a matrix whose rows are not whole q8_0 blocks of 32 stays float32 too."""
    q = gguf.GGMLQuantizationType
    if gguf_type == "f32" or w.ndim == 1:
        return w, None
    if gguf_type == "bf16":
        return gguf.quants.quantize(w, q.BF16), q.BF16
    if w.shape[-1] % gguf.GGML_QUANT_SIZES[q.Q8_0][0]:
        return w, None
    return gguf.quants.quantize(w, q.Q8_0), q.Q8_0


def tokenizer_fields(tokenizer, vocab_size: int) -> dict:
    """tokens, token types and merges from a byte-level BPE `tokenizers.Tokenizer`, padded to `vocab_size`."""
    spec = json.loads(tokenizer.to_str())
    model = spec.get("model") or {}
    pre = spec.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        # llama.cpp would read the file as GPT-2's byte-level BPE and tokenise differently from the run
        raise SlovoError(
            f"tokenizer: {model.get('type')} with a {pre.get('type')} pre-tokenizer; GGUF export writes byte-level "
            "BPE tokenizers with GPT-2's pre-tokenizer (what slovo prepare trains)"
        )
    vocab = dict(model["vocab"])
    special = {t["content"]: t["id"] for t in spec.get("added_tokens", []) if t.get("special")}
    vocab.update(special)
    if len(vocab) > vocab_size or max(vocab.values()) >= vocab_size:
        raise SlovoError(f"tokenizer: {len(vocab)} tokens do not fit the model's vocabulary of {vocab_size}")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]  # rows the tokenizer never emits, as llama.cpp pads
    types = [5] * vocab_size  # gguf.TokenType: NORMAL 1, CONTROL 3, UNUSED 5
    for text, i in vocab.items():
        tokens[i], types[i] = text, 3 if text in special else 1
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return {"tokens": tokens, "types": types, "merges": merges}


_FILE_TYPES = {"f32": "ALL_F32", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0"}


def _add_metadata(writer, gguf, cfg, name: str, gguf_type: str) -> None:
    m = cfg.model
    head_dim = m.n_embd // m.n_head
    writer.add_name(name)
    writer.add_context_length(m.seq_len)
    writer.add_embedding_length(m.n_embd)
    writer.add_block_count(m.n_layer)
    writer.add_feed_forward_length(intermediate_size(m))
    writer.add_head_count(m.n_head)
    writer.add_head_count_kv(m.n_kv_head or m.n_head)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(m.rope_theta)
    writer.add_layer_norm_rms_eps(m.norm_eps)
    writer.add_vocab_size(m.vocab_size)
    writer.add_file_type(getattr(gguf.LlamaFileType, _FILE_TYPES[gguf_type]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tokenizer(writer, tokenizer, vocab_size: int, eos: int) -> None:
    fields = tokenizer_fields(tokenizer, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")  # the regex of pre_tokenizers.ByteLevel(use_regex=True)
    writer.add_token_list(fields["tokens"])
    writer.add_token_types(fields["types"])
    writer.add_token_merges(fields["merges"])
    # <|endoftext|> is BOS, EOS, end of turn and padding; every slovo prompt starts with it, so llama.cpp adds it.
    for add in (writer.add_bos_token_id, writer.add_eos_token_id, writer.add_eot_token_id, writer.add_pad_token_id):
        add(eos)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


def write_gguf(model, cfg, tokenizer, path: str | Path, gguf_type: str = "f32", name: str = "slovo") -> Path:
    """Write `model` (slovo's GPT) with its tokenizer as a GGUF file at `path`; returns the path."""
    from slovo.generate import eot_id

    check_gguf_type(gguf_type)
    gguf = import_gguf()
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), arch="llama")
    try:
        _add_metadata(writer, gguf, cfg, name, gguf_type)
        _add_tokenizer(writer, tokenizer, cfg.model.vocab_size, eot_id(tokenizer))
        for tensor_name, w in gguf_tensors(model).items():
            data, raw = _quantised(gguf, w, gguf_type)
            writer.add_tensor(tensor_name, data, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


def gguf_file_name(gguf_type: str) -> str:
    return f"model-{gguf_type}.gguf"
