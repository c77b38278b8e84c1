"""The GPT: causal masking, KV-cache agreement, learning, and its size figures."""

import torch

from slovo.config import ModelConfig
from slovo.model import GPT


def tiny(**kw):
    torch.manual_seed(0)
    return GPT(ModelConfig(**{"vocab_size": 97, "n_layer": 2, "n_head": 4, "n_embd": 32, "seq_len": 32, **kw}))


def test_changing_a_future_token_never_changes_earlier_logits():
    model = tiny()
    x = torch.randint(0, 97, (2, 16))
    y = x.clone()
    y[:, 10] = (y[:, 10] + 1) % 97
    with torch.no_grad():
        a, _ = model(x)
        b, _ = model(y)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-4)


def test_kv_cache_gives_the_same_logits_as_a_full_forward():
    model = tiny(n_kv_head=2)
    x = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        full, _ = model(x)
        cache = model.new_cache(2)
        first, _ = model(x[:, :5], cache=cache, pos=0)
        chunk, _ = model(x[:, 5:8], cache=cache, pos=5)
        steps = [model(x[:, i : i + 1], cache=cache, pos=i)[0] for i in range(8, 12)]
    got = torch.cat([first, chunk, *steps], dim=1)
    assert torch.allclose(full, got, atol=1e-5)


def test_tiny_model_overfits_one_batch():
    model = tiny()
    x = torch.randint(0, 97, (4, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        _, loss = model(x[:, :-1], x[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 4.0 and loss.item() < 0.2


def test_tied_embeddings_share_one_tensor_and_are_counted_once():
    tied, untied = tiny(tie_embeddings=True), tiny(tie_embeddings=False)
    assert tied.lm_head.weight is tied.embed_tokens.weight
    assert untied.num_params() - tied.num_params() == 97 * 32
    assert tied.flops_per_token() == untied.flops_per_token()


def test_residual_projections_start_smaller():
    model = tiny(n_layer=8, n_embd=64, n_head=4)
    assert model.layers[0].attn.o_proj.weight.std() < 0.5 * model.layers[0].attn.q_proj.weight.std()


def test_too_long_input_is_refused():
    model = tiny()
    try:
        model(torch.zeros(1, 33, dtype=torch.long))
    except ValueError as e:
        assert "longer than the context" in str(e)
    else:
        raise AssertionError("no error for an input longer than seq_len")
