"""`slovo export --gguf`: the file read back with gguf's own reader (llama.cpp's Python package) holds the run's
tokenizer and, after undoing llama.cpp's Q/K permutation, the model's weights (exactly in f32, within the
rounding of bf16 and q8_0); the permutation makes llama.cpp's interleaved RoPE give slovo's attention scores; and
llama.cpp's graph written out over the file's tensors and metadata alone gives slovo's logits (which a swapped
tensor name would break, though the round trip would not see it). llama.cpp itself runs the file in
bench/gguf_check.py (bench/results/gguf_llama_cpp.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_generate import make_checkpointed_run  # noqa: E402

from slovo.cli import main  # noqa: E402
from slovo.export import export_run  # noqa: E402
from slovo.export_gguf import gguf_name, permute_qk, tokenizer_fields, unpermute_qk  # noqa: E402
from slovo.model import apply_rope, rope_tables  # noqa: E402

gguf = pytest.importorskip("gguf")


def read_gguf(path: Path):
    reader = gguf.GGUFReader(str(path))
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {t.name: (gguf.quants.dequantize(t.data, t.tensor_type), t.tensor_type.name) for t in reader.tensors}
    return fields, tensors


def model_weights_from_gguf(tensors: dict, model) -> dict[str, np.ndarray]:
    """The GGUF's tensors under slovo's names, Q/K permutation undone."""
    cfg = model.cfg
    out = {}
    for name in model.state_dict():
        key = "token_embd.weight" if name == "lm_head.weight" and cfg.tie_embeddings else gguf_name(name)
        w = tensors[key][0]
        if name.endswith("q_proj.weight"):
            w = unpermute_qk(w, cfg.n_head)
        elif name.endswith("k_proj.weight"):
            w = unpermute_qk(w, cfg.n_kv_head or cfg.n_head)
        out[name] = w
    return out


@pytest.mark.parametrize("tied", [True, False])
def test_gguf_f32_holds_the_tokenizer_the_shape_and_exactly_the_weights(tmp_path, tied):
    run, model, tok = make_checkpointed_run(tmp_path / "run", tie_embeddings=tied, n_kv_head=2)
    out = export_run(run, tmp_path / "hf", gguf_type="f32")
    assert (out / "config.json").exists()  # the transformers folder is still all there
    fields, tensors = read_gguf(out / "model-f32.gguf")
    assert fields["general.architecture"] == "llama" and fields["general.file_type"] == 0
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    vocab = tok.get_vocab()
    assert fields["tokenizer.ggml.tokens"] == sorted(vocab, key=vocab.get)
    assert len(fields["tokenizer.ggml.merges"]) == len(vocab) - 257  # every merge adds one token
    assert all(len(m.split(" ")) == 2 for m in fields["tokenizer.ggml.merges"])
    types = fields["tokenizer.ggml.token_type"]
    assert types[0] == 3 and set(types[1:]) == {1}  # <|endoftext|> is CONTROL, the rest NORMAL
    for key in ("bos", "eos", "eot", "padding"):
        assert fields[f"tokenizer.ggml.{key}_token_id"] == 0
    assert fields["tokenizer.ggml.add_bos_token"] is True and fields["tokenizer.ggml.add_eos_token"] is False
    m = model.cfg
    assert fields["llama.block_count"] == m.n_layer and fields["llama.embedding_length"] == m.n_embd
    assert fields["llama.attention.head_count"] == 4 and fields["llama.attention.head_count_kv"] == 2
    assert fields["llama.context_length"] == 64 and fields["llama.rope.dimension_count"] == 8
    assert ("output.weight" in tensors) == (not tied)
    assert all(kind == "F32" for _, kind in tensors.values())
    for name, w in model_weights_from_gguf(tensors, model).items():
        np.testing.assert_array_equal(w, model.state_dict()[name].numpy(), err_msg=name)


@pytest.mark.parametrize("gguf_type", ["bf16", "q8_0"])
def test_gguf_bf16_and_q8_0_weights_are_the_model_within_their_rounding(tmp_path, gguf_type):
    run, model, _ = make_checkpointed_run(tmp_path / "run")
    assert main(["export", str(run), str(tmp_path / "hf"), "--gguf-type", gguf_type]) == 0
    fields, tensors = read_gguf(tmp_path / "hf" / f"model-{gguf_type}.gguf")
    assert fields["general.file_type"] == {"bf16": 32, "q8_0": 7}[gguf_type]
    assert tensors["blk.0.attn_norm.weight"][1] == "F32"  # norms stay float32, as llama.cpp's converter keeps them
    assert tensors["blk.0.ffn_down.weight"][1] == gguf_type.upper()
    for name, w in model_weights_from_gguf(tensors, model).items():
        ref = model.state_dict()[name].numpy()
        if ref.ndim == 1 or gguf_type == "bf16":
            np.testing.assert_allclose(w, ref, rtol=2**-8, atol=0, err_msg=name)  # bf16 keeps 8 bits of mantissa
            continue
        # q8_0: blocks of 32 share one fp16 scale d = max|x| / 127; each value is off by at most d / 2, plus up to
        # 127 x d's own fp16 rounding (2^-11 relative): 0.5 + 0.062 of d
        blocks = ref.reshape(-1, 32)
        d = np.abs(blocks).max(axis=1, keepdims=True) / 127
        assert (np.abs(w.reshape(-1, 32) - blocks) <= 0.57 * d + 1e-7).all(), name


def interleaved_rope(x: torch.Tensor, theta: float) -> torch.Tensor:
    """llama.cpp's LLAMA_ROPE_TYPE_NORM: rotate the adjacent pairs (2i, 2i+1) of each head. x: (H, T, D)."""
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = torch.arange(x.shape[1], dtype=torch.float64)[:, None] * inv  # (T, D/2)
    a, b = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = a * angle.cos() - b * angle.sin()
    out[..., 1::2] = a * angle.sin() + b * angle.cos()
    return out


def test_permuted_q_k_under_llama_cpp_rope_give_slovo_attention_scores():
    torch.manual_seed(0)
    heads, kv_heads, head_dim, width, T = 4, 2, 8, 32, 10
    wq = torch.randn(heads * head_dim, width, dtype=torch.float64)
    wk = torch.randn(kv_heads * head_dim, width, dtype=torch.float64)
    x = torch.randn(T, width, dtype=torch.float64)

    cos, sin = rope_tables(head_dim, T, 10000.0)
    q = apply_rope((x @ wq.T).view(T, heads, head_dim).transpose(0, 1), cos.double(), sin.double())
    k = apply_rope((x @ wk.T).view(T, kv_heads, head_dim).transpose(0, 1), cos.double(), sin.double())
    ours = q @ k.repeat_interleave(2, dim=0).transpose(1, 2)

    pq = torch.from_numpy(permute_qk(wq.numpy(), heads))
    pk = torch.from_numpy(permute_qk(wk.numpy(), kv_heads))
    q2 = interleaved_rope((x @ pq.T).view(T, heads, head_dim).transpose(0, 1), 10000.0)
    k2 = interleaved_rope((x @ pk.T).view(T, kv_heads, head_dim).transpose(0, 1), 10000.0)
    theirs = q2 @ k2.repeat_interleave(2, dim=0).transpose(1, 2)
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-4)  # slovo's cos/sin tables are float32
    assert not torch.allclose(interleaved_rope((x @ wq.T).view(T, heads, head_dim).transpose(0, 1), 1e4), q)
    np.testing.assert_array_equal(unpermute_qk(permute_qk(wq.numpy(), heads), heads), wq.numpy())


def llama_cpp_forward(fields: dict, tensors: dict, ids: list[int]) -> torch.Tensor:
    """llama.cpp's `llama` graph written out from the GGUF alone (its names, its metadata, its interleaved RoPE),
    float64: what llama.cpp computes from the file, for a check without llama.cpp."""
    t = {name: torch.from_numpy(np.array(w, dtype=np.float64)) for name, (w, _) in tensors.items()}
    heads, kv_heads = fields["llama.attention.head_count"], fields["llama.attention.head_count_kv"]
    eps, theta = fields["llama.attention.layer_norm_rms_epsilon"], fields["llama.rope.freq_base"]
    T = len(ids)

    def norm(x, w):
        return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    x = t["token_embd.weight"][ids]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(fields["llama.block_count"]):
        p = f"blk.{i}."
        h = norm(x, t[p + "attn_norm.weight"])
        q = interleaved_rope((h @ t[p + "attn_q.weight"].T).view(T, heads, -1).transpose(0, 1), theta)
        k = interleaved_rope((h @ t[p + "attn_k.weight"].T).view(T, kv_heads, -1).transpose(0, 1), theta)
        v = (h @ t[p + "attn_v.weight"].T).view(T, kv_heads, -1).transpose(0, 1)
        rep = heads // kv_heads
        k, v = k.repeat_interleave(rep, dim=0), v.repeat_interleave(rep, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / q.shape[-1] ** 0.5 + mask, dim=-1)
        x = x + (att @ v).transpose(0, 1).reshape(T, -1) @ t[p + "attn_output.weight"].T
        h = norm(x, t[p + "ffn_norm.weight"])
        gate, up = h @ t[p + "ffn_gate.weight"].T, h @ t[p + "ffn_up.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ t[p + "ffn_down.weight"].T
    out = t.get("output.weight", t["token_embd.weight"])  # llama.cpp ties the head when output.weight is absent
    return norm(x, t["output_norm.weight"]) @ out.T


@pytest.mark.parametrize("tied", [True, False])
def test_llama_cpps_graph_over_the_gguf_gives_slovos_logits(tmp_path, tied):
    run, model, tok = make_checkpointed_run(tmp_path / "run", tie_embeddings=tied, n_kv_head=2)
    out = export_run(run, tmp_path / "hf", gguf_type="f32")
    fields, tensors = read_gguf(out / "model-f32.gguf")
    ids = [0] + tok.encode("В начале было слово, и слово было у Бога").ids
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0][0].double()
    torch.testing.assert_close(llama_cpp_forward(fields, tensors, ids), ours, rtol=1e-4, atol=1e-4)


def test_tokenizer_rows_beyond_the_tokenizer_are_unused_pad_tokens(tmp_path):
    _, _, tok = make_checkpointed_run(tmp_path / "run")
    fields = tokenizer_fields(tok, 330)
    assert fields["tokens"][320:] == [f"[PAD{i}]" for i in range(320, 330)] and set(fields["types"][320:]) == {5}


def test_a_tokenizer_without_gpt2_pre_tokenization_is_refused_in_one_line(tmp_path):
    from tokenizers import pre_tokenizers

    from slovo.errors import SlovoError

    _, _, tok = make_checkpointed_run(tmp_path / "run")
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(SlovoError, match="GPT-2's pre-tokenizer"):
        tokenizer_fields(tok, 320)


def test_missing_gguf_package_is_one_line_naming_the_extra_and_nothing_is_written(tmp_path, monkeypatch, capsys):
    run, _, _ = make_checkpointed_run(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf now raises ImportError
    assert main(["export", str(run), str(tmp_path / "hf"), "--gguf"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "slovo-lm[gguf]" in err
    assert not (tmp_path / "hf").exists()
