"""What only a CUDA machine can check: compile, bf16 autocast, fused AdamW, flash attention through SDPA,
generation and export on the GPU; training in the card's own precision (bf16, or fp16 through the GradScaler), a
guard rollback and suite scoring there. Skipped without CUDA; `bench/gpu_check.py` runs them on a GPU machine.

tests/conftest.py's TINY_RUN trains in float32 (CPU results must not depend on the machine); these tests opt out
with `on_card(...)`, which leaves train.dtype to the card unless a test names it."""

from __future__ import annotations

import math

import pytest
import torch

from slovo.train import train
from slovo.utils import read_jsonl
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
    from slovo.checkpoint import load_for_inference
    from slovo.export import export_run

    train(tiny_config(**{"train.device": "cuda", "budget.max_steps": 3}), tmp_path / "run", quiet=True)
    torch.backends.cuda.matmul.allow_tf32 = False  # training turned TF32 on; compare in true fp32
    export_run(tmp_path / "run", tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").cuda().eval()
    model, _, _ = load_for_inference(tmp_path / "run", "cuda")
    idx = torch.randint(0, 300, (2, 16), device="cuda")
    with torch.no_grad():
        assert torch.allclose(hf(idx).logits.float(), model(idx)[0].float(), atol=1e-4)


def on_card(tiny_config, **over):
    """The tiny run on the card, in the precision train.dtype=auto picks there unless `over` names one; eager (the
    first test compiles), so the file fits bench/gpu_check.py's share of a short GPU slot."""
    return tiny_config(**{"train.device": "cuda", "train.dtype": "auto", "train.compile": "false", **over})


def _run_json(run_dir):
    import json

    return json.loads((run_dir / "run.json").read_text())


def test_auto_precision_trains_in_the_cards_native_half_precision(tiny_config, tmp_path):
    from slovo.device import cuda_has_native_bf16

    summary = train(on_card(tiny_config, **{"budget.max_steps": 12}), tmp_path / "run", quiet=True)
    losses = train_losses(tmp_path / "run")
    assert summary["status"] == "finished" and losses[-1] < losses[0]
    assert _run_json(tmp_path / "run")["dtype"] == ("bfloat16" if cuda_has_native_bf16() else "float16")


def test_fp16_trains_through_the_grad_scaler_and_resumes_with_its_scale(tiny_config, tmp_path):
    over = {"train.dtype": "float16", "budget.max_steps": 12}
    train(on_card(tiny_config, **over), tmp_path / "run", callbacks=[StopAt(6)], quiet=True)
    saved = torch.load(tmp_path / "run" / "checkpoints" / "step_0000006" / "state.pt", weights_only=True)
    assert saved["scaler"]["scale"] > 0  # the GradScaler's state is part of the checkpoint
    summary = train(on_card(tiny_config, **over), tmp_path / "run", resume=True, quiet=True)
    losses = train_losses(tmp_path / "run")
    assert summary["status"] == "finished" and all(math.isfinite(x) for x in losses)
    assert _run_json(tmp_path / "run")["dtype"] == "float16" and losses[-1] < losses[0]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_the_guard_rolls_back_a_spike_on_the_card(tiny_config, tmp_path, dtype):
    over = {
        "train.dtype": dtype,
        "budget.max_steps": 40,
        "guard.spike_window": 10,
        "debug.lr_spike.at": 0.5,
        "debug.lr_spike.factor": 1000,
    }
    summary = train(on_card(tiny_config, **over), tmp_path / "run", quiet=True)
    assert summary["status"] == "finished" and summary["rollbacks"] >= 1


def test_suite_accuracy_in_training_is_what_slovo_eval_scores_afterwards(tiny_config, tmp_path, capsys):
    """Training scores suites with TF32 off, as `slovo eval --suite` does in its own process: the same pairs
    give the same accuracy."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_suites import write_suite

    from slovo.cli import main

    suite = write_suite(tmp_path / "rublimp")
    over = {"budget.max_steps": 8, "eval.suites": [f"rublimp:{suite}"], "eval.suite_final_pairs": 0}
    summary = train(on_card(tiny_config, **over), tmp_path / "run", quiet=True)
    assert summary["status"] == "finished"
    during = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/rublimp_acc" in r][-1]
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--suite", f"rublimp:{suite}", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["overall"]["sum"]["acc"] == during["eval/rublimp_acc"]


@pytest.mark.parametrize(("ns_dtype", "tol"), [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_muon_batched_on_the_card_gives_the_one_by_one_update(ns_dtype, tol):
    from slovo.muon import Muon

    def steps(batched):
        gen = torch.Generator(device="cuda").manual_seed(0)
        shapes = [(64, 128)] * 4 + [(128, 64)] * 2
        params = [torch.randn(s, generator=gen, device="cuda").requires_grad_() for s in shapes]
        start = [p.detach().clone() for p in params]
        opt = Muon(params, lr=0.02, weight_decay=0.1, ns_dtype=ns_dtype, batched=batched)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, device="cuda")
            opt.step()
        return [p.detach() for p in params], start

    one_by_one, start = steps(False)
    batched, _ = steps(None)  # None: batched, on CUDA
    for a, b, w in zip(one_by_one, batched, start):
        assert (a - b).norm() <= tol * (a - w).norm()
