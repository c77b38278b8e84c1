"""Export a run as a folder that transformers loads with no custom code.

slovo's GPT is transformers' `LlamaForCausalLM` with other module names (see model.py), so export is a
renaming of weight keys plus the config, tokenizer and generation files transformers expects:

  config.json              LlamaConfig (rotate-half RoPE, no biases, tied or untied head)
  model.safetensors        the weights under Llama's names (a tied head stored once, as transformers does)
  generation_config.json   bos/eos/pad = <|endoftext|>, and the run's sampling settings
  tokenizer.json           the run's byte-level BPE, plus a post-processor that starts every text with
                           <|endoftext|> (BOS), as slovo's own prompts start
  tokenizer_config.json    PreTrainedTokenizerFast with its special tokens
  README.md                a model card: Hub metadata, usage (transformers, llama.cpp, lm-eval, vLLM),
                           final metrics, training config
  model-<type>.gguf        with --gguf: the model and tokenizer for llama.cpp (export_gguf.py)

Nothing here imports transformers: exporting needs only torch, safetensors and tokenizers (and `gguf` for
--gguf; `slovo.hub` uploads the folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from slovo import __version__
from slovo.config import Config, to_dict
from slovo.errors import SlovoError
from slovo.generate import EOT_TOKEN, eot_id
from slovo.model import GPT, intermediate_size
from slovo.utils import read_json, staged_dir

# slovo module path piece -> Llama's (inside `model.`); the projections keep their names.
_RENAMES = {
    ".attn.": ".self_attn.",
    ".attn_norm.": ".input_layernorm.",
    ".mlp_norm.": ".post_attention_layernorm.",
}


def llama_key(name: str) -> str:
    """'layers.0.attn.q_proj.weight' -> 'model.layers.0.self_attn.q_proj.weight'; lm_head stays at the top."""
    if name.startswith("lm_head."):
        return name
    for ours, theirs in _RENAMES.items():
        name = name.replace(ours, theirs)
    return f"model.{name}"


def llama_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The GPT's weights under Llama's names, fp32, contiguous; the head is left out when tied."""
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and model.cfg.tie_embeddings:
            continue  # transformers re-ties it from model.embed_tokens.weight (tie_word_embeddings)
        out[llama_key(name)] = tensor.detach().to("cpu", torch.float32).contiguous().clone()
    return out


def llama_config(cfg: Config, eos: int) -> dict:
    """config.json for `LlamaForCausalLM` with the same maths as slovo's GPT."""
    m = cfg.model
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": m.vocab_size,
        "hidden_size": m.n_embd,
        "intermediate_size": intermediate_size(m),
        "num_hidden_layers": m.n_layer,
        "num_attention_heads": m.n_head,
        "num_key_value_heads": m.n_kv_head or m.n_head,
        "head_dim": m.n_embd // m.n_head,
        "hidden_act": "silu",
        "max_position_embeddings": m.seq_len,
        "rms_norm_eps": m.norm_eps,
        # transformers >= 5 reads rope_parameters; 4.x reads rope_theta. Both say the same.
        "rope_theta": m.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": m.rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": m.tie_embeddings,
        "initializer_range": m.init_std,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "use_cache": True,
        # transformers >= 4.56 reads `dtype`; older versions (and vLLM's checks) read `torch_dtype`.
        "dtype": "float32",
        "torch_dtype": "float32",
    }


def generation_config(cfg: Config, eos: int) -> dict:
    s = cfg.sample
    return {
        "bos_token_id": eos,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "do_sample": True,
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "max_new_tokens": s.max_new_tokens,
    }


def hf_tokenizer_json(tokenizer) -> str:
    """The run's tokenizer with <|endoftext|> prepended to every encoded text (as slovo's prompts are);
    decoding skips it as a special token."""
    from tokenizers import Tokenizer, processors

    eos = eot_id(tokenizer)
    tok = Tokenizer.from_str(tokenizer.to_str())
    bos = processors.TemplateProcessing(
        single=f"{EOT_TOKEN} $A", pair=f"{EOT_TOKEN} $A {EOT_TOKEN} $B:1", special_tokens=[(EOT_TOKEN, eos)]
    )
    tok.post_processor = bos if tok.post_processor is None else processors.Sequence([tok.post_processor, bos])
    return tok.to_str()


def tokenizer_config(cfg: Config) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT_TOKEN,
        "eos_token": EOT_TOKEN,
        "unk_token": EOT_TOKEN,
        "pad_token": EOT_TOKEN,
        "model_max_length": cfg.model.seq_len,
        # no token_type_ids: transformers 4.x returns them otherwise, and Llama's generate() refuses them
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,  # byte-level BPE decodes exactly; don't "fix" spaces
    }


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def card_metadata(card: dict, gguf_file: str | None) -> str:
    """The model card's YAML front matter (the Hub's metadata: language, license, datasets, library, task)."""
    meta = {"language": [card.get("language") or "ru"], "license": card.get("license") or "mit"}
    if card.get("datasets"):
        meta["datasets"] = list(card["datasets"])
    meta |= {"library_name": "transformers", "pipeline_tag": "text-generation"}
    meta["tags"] = ["slovo", "llama", "causal-lm"] + (["gguf"] if gguf_file else [])
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)


def usage_section(cfg: Config, gguf_file: str | None) -> str:
    """How to run the folder in transformers, lm-evaluation-harness, vLLM and (with a GGUF) llama.cpp."""
    prompt = cfg.sample.prompts[0] if cfg.sample.prompts else ""
    seq = cfg.model.seq_len
    gguf = (
        f"""
llama.cpp (the GGUF file `{gguf_file}`, its tokenizer included; llama.cpp adds the BOS token itself):

```bash
llama-cli -m {gguf_file} -p "{prompt}" -n 64 --temp {cfg.sample.temperature} --top-k {cfg.sample.top_k} -c {seq}
```
"""
        if gguf_file
        else ""
    )
    return f"""## Usage

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("path/to/this/folder")
model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")
inputs = tok("{prompt}", return_tensors="pt")  # with the attention mask
out = model.generate(**inputs, max_new_tokens=64, do_sample=True,
                     temperature={cfg.sample.temperature}, top_k={cfg.sample.top_k})
print(tok.decode(out[0], skip_special_tokens=True))
```
{gguf}
lm-evaluation-harness scores it as any causal LM (float32 as trained; a context of at most {seq} tokens):

```bash
lm_eval --model hf --model_args pretrained=path/to/this/folder,dtype=float32 --tasks TASK
```

vLLM serves it; say the dtype (vLLM otherwise downcasts float32 weights) and keep the length within the
context the model was trained on:

```bash
vllm serve path/to/this/folder --dtype float32 --max-model-len {seq}   # or --dtype bfloat16
```
"""


def model_card(
    cfg: Config, summary: dict, run_name: str, params: int, eos: int, card: dict | None = None, gguf_file=None
) -> str:
    """README.md: metadata, what the model is, how to run it, its final metrics (summary.json) and the config."""
    rows = [
        ("eval/loss", "held-out cross-entropy (nats/token)"),
        ("eval/bpb", "bits per byte of held-out text"),
        ("eval/perplexity", "held-out perplexity"),
        ("train/global_step", "optimizer steps"),
        ("tokens", "training tokens"),
        ("train_runtime", "training seconds"),
        ("status", "run status"),
        ("stop_reason", "why the run stopped"),
    ]
    metrics = "\n".join(f"| `{k}` | {_fmt(summary[k])} | {what} |" for k, what in rows if summary.get(k) is not None)
    metrics = f"| metric | value | what |\n| --- | --- | --- |\n{metrics}" if metrics else "No summary.json was found."
    m = cfg.model
    return f"""---
{card_metadata(card or {}, gguf_file).rstrip()}
---

# {run_name}

A {params / 1e6:.1f}M-parameter Llama-style language model ({m.n_layer} layers, width {m.n_embd},
{m.n_head} heads, context {m.seq_len} tokens, vocabulary {m.vocab_size}) trained from scratch with
slovo {__version__}{f", preset `{cfg.preset}`" if cfg.preset else ""}.

The tokenizer starts every text with `{EOT_TOKEN}` (id {eos}, which is BOS, EOS and PAD), because the
model saw that token before every training document.

{usage_section(cfg, gguf_file).rstrip()}

## Final metrics

{metrics}

## Training config

```yaml
{yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True).rstrip()}
```
"""


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_model_files(model: GPT, cfg: Config, eos: int, folder: Path) -> None:
    """model.safetensors, config.json and generation_config.json: enough for
    `AutoModelForCausalLM.from_pretrained(folder)` (the tokenizer files are written by `export_run`)."""
    save_file(llama_state_dict(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    _write_json(folder / "config.json", llama_config(cfg, eos))
    _write_json(folder / "generation_config.json", generation_config(cfg, eos))


def _writable_out(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SlovoError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise SlovoError(f"{out_dir}: folder is not empty; pass --force to replace it")


def hub_datasets(run_dir: Path) -> list[str]:
    """Hub dataset ids the run's dataset was prepared from (its `hf:NAME[:...]` sources), for the card."""
    try:
        meta = read_json(Path(read_json(run_dir / "run.json")["dataset"]["path"]) / "meta.json")
    except (OSError, ValueError, KeyError, TypeError):
        return []  # the dataset folder moved or was deleted: the card then names none
    specs = [str(s.get("spec", "")) for s in meta.get("sources", []) if isinstance(s, dict)]
    return [spec.split(":")[1] for spec in specs if spec.startswith("hf:") and len(spec.split(":")) > 1]


def export_run(
    path: str | Path, out_dir: str | Path, force: bool = False, gguf_type: str | None = None, card: dict | None = None
) -> Path:
    """Write the run (folder or checkpoint) at `path` as a transformers model folder `out_dir`; with
    `gguf_type` (f32, bf16, q8_0) also `model-<type>.gguf` for llama.cpp in it. `card`: the model card's
    `language`, `license` and `datasets` (added to the run's own hub datasets).

    The folder is written under a temporary name beside `out_dir` and renamed into place, so an
    interrupted export never leaves a folder that looks complete. Returns `out_dir`.
    """
    from slovo.checkpoint import load_for_inference, resolve_checkpoint

    out_dir = Path(out_dir)
    _writable_out(out_dir, force)
    if gguf_type is not None:
        from slovo.export_gguf import check_gguf_type, import_gguf

        check_gguf_type(gguf_type)
        import_gguf()  # the missing extra is one line before anything is written
    run_dir, ckpt = resolve_checkpoint(path)
    model, cfg, tokenizer = load_for_inference(path, device="cpu")
    eos = eot_id(tokenizer)
    summary_path = run_dir / "summary.json"
    summary = read_json(summary_path) if summary_path.exists() else {}
    card = dict(card or {})
    card["datasets"] = list(dict.fromkeys([*hub_datasets(run_dir), *card.get("datasets", [])]))
    name = summary.get("name") or run_dir.resolve().name

    with staged_dir(out_dir) as tmp:
        write_model_files(model, cfg, eos, tmp)
        _write_tokenizer_files(tmp, cfg, tokenizer)
        gguf_file = None
        if gguf_type is not None:
            from slovo.export_gguf import gguf_file_name, write_gguf

            gguf_file = gguf_file_name(gguf_type)
            write_gguf(model, cfg, tokenizer, tmp / gguf_file, gguf_type, name=name)
        text = model_card(cfg, summary, name, model.num_params(), eos, card, gguf_file)
        (tmp / "README.md").write_text(text, encoding="utf-8")
        _write_json(
            tmp / "slovo_export.json",
            {"run_dir": str(run_dir.resolve()), "checkpoint": ckpt.name, "slovo_version": __version__},
        )
    return out_dir


def _write_tokenizer_files(folder: Path, cfg: Config, tokenizer) -> None:
    files = {
        "tokenizer_config.json": tokenizer_config(cfg),
        "special_tokens_map.json": {k: EOT_TOKEN for k in ("bos_token", "eos_token", "unk_token", "pad_token")},
    }
    for name, obj in files.items():
        _write_json(folder / name, obj)
    (folder / "tokenizer.json").write_text(hf_tokenizer_json(tokenizer), encoding="utf-8")
