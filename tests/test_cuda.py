"""What only a CUDA machine can check: compile, bf16 autocast, fused AdamW, flash attention through SDPA,
generation and export on the GPU. Skipped without CUDA; `bench/gpu_check.py` runs them on a GPU machine."""

from __future__ import annotations

import pytest
import torch

from slovo.train import train
from tests.helpers import StopAt, train_losses

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_defaults_are_bf16_compiled_fused_and_resume_exactly(tiny_config, tmp_path):
    over = {
        "train.device": "cuda",
        "budget.max_steps": 8,
        "schedule.name": "cosine",
        "schedule.warmup": 2,
        "train.compile": "true",
        "eval.every": 2,
    }
    straight = train(tiny_config(**over), tmp_path / "straight", quiet=True)
    train(tiny_config(**over), tmp_path / "resumed", callbacks=[StopAt(4)], quiet=True)
    resumed = train(tiny_config(**over), tmp_path / "resumed", resume=True, quiet=True)
    assert straight["status"] == resumed["status"] == "finished"
    assert straight["ledger"]["compile"] > 0 and straight["peak_memory_gb"] > 0
    # GPU kernels may reorder float sums between processes' compilations: close, not bit-equal
    assert resumed["eval/loss"] == pytest.approx(straight["eval/loss"], rel=1e-3)
    assert train_losses(tmp_path / "resumed") == pytest.approx(train_losses(tmp_path / "straight"), rel=1e-3)


def test_auto_dtype_on_cuda_is_bf16_autocast_and_adamw_is_fused(tiny_config):
    from slovo.device import autocast_for
    from slovo.model import GPT
    from slovo.optim import make_optimizer

    cfg = tiny_config()
    cfg.model.vocab_size = 300
    ac = autocast_for("auto", "cuda")
    assert ac is not None and ac.fast_dtype == torch.bfloat16
    opt = make_optimizer(GPT(cfg.model).cuda(), cfg.optim, "cuda")
    assert opt.defaults["fused"] is True


def test_attention_runs_on_the_flash_kernel():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from slovo.config import ModelConfig
    from slovo.model import GPT

    model = GPT(ModelConfig(vocab_size=512, n_layer=2, n_head=4, n_embd=256, seq_len=256)).cuda()
    idx = torch.randint(0, 512, (4, 256), device="cuda")
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION), torch.autocast("cuda", dtype=torch.bfloat16):
        logits, loss = model(idx, idx)  # raises if the flash kernel cannot take these inputs
        loss.backward()
    assert torch.isfinite(loss)


def test_muon_trains_on_cuda(tiny_config, tmp_path):
    summary = train(
        tiny_config(**{"train.device": "cuda", "optim.name": "muon", "budget.max_steps": 6}),
        tmp_path / "run",
        quiet=True,
    )
    assert summary["status"] == "finished"


def test_generation_with_cache_matches_without_on_cuda():
    from slovo.config import ModelConfig
    from slovo.generate import generate
    from slovo.model import GPT

    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=300, n_layer=2, n_head=2, n_embd=64, seq_len=64)).cuda().eval()
    prompt = [0, 5, 17, 42]
    with_cache = generate(model, prompt, 20, greedy=True, use_cache=True)
    without = generate(model, prompt, 20, greedy=True, use_cache=False)
    assert with_cache == without


def test_export_from_a_cuda_run_loads_in_transformers_with_the_same_logits(tiny_config, tmp_path):
    transformers = pytest.importorskip("transformers")
    from slovo.export import export_run
    from slovo.train.checkpoint import load_for_inference

    train(tiny_config(**{"train.device": "cuda", "budget.max_steps": 3}), tmp_path / "run", quiet=True)
    torch.backends.cuda.matmul.allow_tf32 = False  # training turned TF32 on; compare in true fp32
    export_run(tmp_path / "run", tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").cuda().eval()
    model, _, _ = load_for_inference(tmp_path / "run", "cuda")
    idx = torch.randint(0, 300, (2, 16), device="cuda")
    with torch.no_grad():
        assert torch.allclose(hf(idx).logits.float(), model(idx)[0].float(), atol=1e-4)
