"""`slovo export`: transformers loads the folder with Auto classes, gives slovo's logits and greedy tokens,
and the export refuses to clobber a folder and never leaves a half-written one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_generate import make_checkpointed_run  # noqa: E402

from slovo.cli import main  # noqa: E402
from slovo.config import DEFAULT_PROMPT  # noqa: E402
from slovo.export import export_run, llama_key  # noqa: E402
from slovo.generate import generate, generate_text  # noqa: E402

transformers = pytest.importorskip("transformers")


def load_hf(path: Path):
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    return model.eval(), tok


@pytest.mark.slow
def test_llama_key_names_match_transformers_llama_modules():
    config = transformers.LlamaConfig(
        vocab_size=10,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        tie_word_embeddings=False,
    )
    theirs = set(transformers.LlamaForCausalLM(config).state_dict())
    ours = [
        "embed_tokens.weight",
        "layers.0.attn.q_proj.weight",
        "layers.0.attn.k_proj.weight",
        "layers.0.attn.v_proj.weight",
        "layers.0.attn.o_proj.weight",
        "layers.0.attn_norm.weight",
        "layers.0.mlp_norm.weight",
        "layers.0.mlp.gate_proj.weight",
        "layers.0.mlp.up_proj.weight",
        "layers.0.mlp.down_proj.weight",
        "norm.weight",
        "lm_head.weight",
    ]
    assert {llama_key(k) for k in ours} == theirs


@pytest.mark.slow
@pytest.mark.parametrize("tied", [True, False])
def test_transformers_logits_match_slovo_on_the_same_input(tmp_path, tied):
    run, model, _ = make_checkpointed_run(tmp_path / "run", tie_embeddings=tied, n_kv_head=2)
    out = export_run(run, tmp_path / "hf")
    hf, hf_tok = load_hf(out)
    assert type(hf).__name__ == "LlamaForCausalLM"
    assert hf.config.tie_word_embeddings == tied
    ids = hf_tok([DEFAULT_PROMPT, "Мороз и солнце; день"], return_tensors="pt", padding=True).input_ids
    with torch.no_grad():
        theirs = hf(ids).logits
        ours, _ = model(ids)
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_transformers_greedy_generate_gives_the_64_tokens_of_slovo_greedy(tmp_path, capsys):
    run, model, tok = make_checkpointed_run(tmp_path / "run", seq_len=96)
    hf, hf_tok = load_hf(export_run(run, tmp_path / "hf"))
    inputs = hf_tok(DEFAULT_PROMPT, return_tensors="pt")  # with its attention mask: BOS = PAD = <|endoftext|>
    ids = inputs.input_ids
    assert ids[0].tolist() == [0] + tok.encode(DEFAULT_PROMPT).ids  # the exported tokenizer adds <|endoftext|>

    # With the end-of-text stop off in both, exactly 64 tokens each.
    theirs = hf.generate(**inputs, max_new_tokens=64, do_sample=False, eos_token_id=None)[0, ids.shape[1] :].tolist()
    ours = generate(model, ids[0].tolist(), 64, greedy=True)[0]
    assert len(ours) == 64 and ours == theirs

    # The command, with its usual end-of-text stop, prints what transformers decodes.
    default = hf.generate(**inputs, max_new_tokens=64, do_sample=False)[0, ids.shape[1] :]
    assert main(["generate", str(run), "--greedy", "--max-new-tokens", "64"]) == 0
    printed = capsys.readouterr().out
    assert printed == DEFAULT_PROMPT + hf_tok.decode(default, skip_special_tokens=True) + "\n"
    ours_text = generate_text(model, tok, DEFAULT_PROMPT, 64, greedy=True)[0].text
    assert hf_tok.decode(default, skip_special_tokens=True) == ours_text


def test_export_writes_the_transformers_files_and_a_model_card_with_final_metrics(tmp_path):
    summary = {"name": "demo-run", "status": "finished", "eval/loss": 3.21, "eval/bpb": 1.456, "train/global_step": 812}
    run, _, _ = make_checkpointed_run(tmp_path / "run", summary=summary)
    out = export_run(run / "checkpoints" / "step_0000001", tmp_path / "hf")  # a checkpoint folder works too
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    } <= names
    config = json.loads((out / "config.json").read_text())
    assert config["bos_token_id"] == config["eos_token_id"] == 0 and config["max_position_embeddings"] == 64
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "# demo-run" in card and "1.456" in card and "812" in card and "n_layer: 2" in card
    assert config["dtype"] == config["torch_dtype"] == "float32"  # transformers >= 4.56 reads dtype
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["language"] == ["ru"] and meta["pipeline_tag"] == "text-generation" and meta["license"]
    assert "lm_eval --model hf --model_args pretrained=" in card and "dtype=float32" in card
    assert "vllm serve" in card and "--dtype float32 --max-model-len 64" in card  # within seq_len
    assert ".gguf" not in card  # no GGUF was asked for
    gen = transformers.GenerationConfig.from_pretrained(out)
    assert gen.eos_token_id == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok.eos_token_id == hf_tok.bos_token_id == hf_tok.pad_token_id == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".hf")]  # no temporary folder left behind


def test_export_refuses_a_non_empty_folder_without_force_and_keeps_it(tmp_path, capsys):
    run, _, _ = make_checkpointed_run(tmp_path / "run")
    out = tmp_path / "hf"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["export", str(run), str(out)]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and len(err.strip().splitlines()) == 1
    assert (out / "precious.txt").read_text() == "keep me"
    assert main(["export", str(run), str(out), "--force"]) == 0
    assert not (out / "precious.txt").exists() and (out / "config.json").exists()
    assert main(["export", str(tmp_path / "nope"), str(tmp_path / "hf2")]) == 2
    assert not (tmp_path / "hf2").exists()


def test_the_card_names_the_hub_datasets_the_run_was_prepared_from_and_those_given(tmp_path):
    run, _, _ = make_checkpointed_run(tmp_path / "run")
    dataset = tmp_path / "ds"
    dataset.mkdir()
    sources = [{"spec": "hf:user/wiki:20231101.ru"}, {"spec": "a.txt"}]
    (dataset / "meta.json").write_text(json.dumps({"sources": sources}))
    (run / "run.json").write_text(json.dumps({"dataset": {"path": str(dataset)}}))
    card = {"language": "uk", "license": "cc-by-4.0", "datasets": ["me/extra"]}
    out = export_run(run, tmp_path / "hf", card=card)
    meta = yaml.safe_load((out / "README.md").read_text(encoding="utf-8").split("---")[1])
    assert meta["datasets"] == ["user/wiki", "me/extra"]
    assert meta["language"] == ["uk"] and meta["license"] == "cc-by-4.0"
