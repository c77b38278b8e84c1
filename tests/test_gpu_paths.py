"""The GPU user's paths that a CPU can check: the line when a driver is here but torch cannot use it, the
precision `train.dtype=auto` takes on a card without native bf16, scoring in true float32 while TF32 is on."""

from __future__ import annotations

import pytest
import torch

from slovo.cli import main
from tests.helpers import tiny_train_args


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An `nvidia-smi` first on PATH, as on a machine with an NVIDIA driver."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'CUDA Version: 12.8'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a torch without CUDA")
def test_train_on_a_machine_with_a_driver_but_cpu_torch_says_so_in_one_line(
    small_dataset, tmp_path, capsys, fake_nvidia_smi
):
    assert main(tiny_train_args(small_dataset, tmp_path, "r", "--max-steps", "1")) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "NVIDIA driver" in line]
    assert len(lines) == 1 and "CPU build" in lines[0] and "training runs on the CPU" in lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a torch without CUDA")
def test_no_driver_no_line(small_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("slovo.device.nvidia_driver_present", lambda: False)
    assert main(tiny_train_args(small_dataset, tmp_path, "r", "--max-steps", "1")) == 0
    assert "NVIDIA" not in capsys.readouterr().err


def test_suite_scoring_during_training_runs_without_tf32_and_leaves_it_as_it_was(tmp_path, monkeypatch):
    """Training turns TF32 on for the whole process on CUDA; suites are scored in true float32 (as `slovo eval
    --suite` scores afterwards), so close pairs rank the same in both. The switch is a flag a CPU can read."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_generate import make_checkpointed_run
    from test_suites import write_suite

    import slovo.suites.scoring
    from slovo.checkpoint import load_for_inference
    from slovo.data import token_byte_lengths
    from slovo.extra_evals import prepare_eval_extras, suite_metrics

    run, _, _ = make_checkpointed_run(tmp_path / "run", seq_len=64)
    model, cfg, tok = load_for_inference(run)
    cfg.eval.suites, cfg.eval.suite_pairs = [f"rublimp:{write_suite(tmp_path / 'rublimp')}"], 2
    extras = prepare_eval_extras(cfg, tok)
    seen, real = [], slovo.suites.scoring.sentence_logprobs

    def spy(*args, **kwargs):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return real(*args, **kwargs)

    monkeypatch.setattr(slovo.suites.scoring, "sentence_logprobs", spy)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as enable_fast_matmul does
    try:
        suite_metrics(model, extras, tok, cfg, token_byte_lengths(tok), "cpu")
        assert seen == [(False, False)]
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize(
    ("native", "train_dtype", "ns_dtype"), [(True, "bfloat16", "bfloat16"), (False, "float16", "float32")]
)
def test_auto_dtype_on_a_card_without_native_bf16_is_fp16_and_muon_ns_float32(
    monkeypatch, native, train_dtype, ns_dtype
):
    """T4 / V100 (compute capability 7.x) emulate bf16 slowly: train.dtype=auto takes fp16 autocast (with the
    GradScaler), Muon's Newton-Schulz float32. The card is imitated through torch's capability query."""
    from slovo.accel import choose_dtype, choose_muon_ns_dtype
    from slovo.device import resolve_dtype

    def is_bf16_supported(including_emulation=True):
        return native or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_dtype("auto", "cuda") == train_dtype
    never = lambda: pytest.fail("CUDA's choice measures nothing")  # noqa: E731
    dtype, why = choose_dtype("auto", "cuda:0", "key", never)
    assert dtype == train_dtype and ("no native bf16" in why) == (not native)
    assert choose_muon_ns_dtype("auto", "cuda:0", "key", never)[0] == ns_dtype
    assert resolve_dtype("bfloat16", "cuda") == "bfloat16"  # an explicit setting is obeyed


def test_the_peer_benchmarks_refuse_a_comparison_across_devices_and_put_hf_on_slovos_device():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import peer

    assert peer.hf_device_args("bf16", "cuda") == {"use_cpu": False, "bf16": True, "fp16": False}
    assert peer.hf_device_args("fp32", "cpu")["use_cpu"] is True
    assert peer.hf_precision("auto", "cpu") == "fp32"
    same = [
        {"side": "slovo", "device_name": "NVIDIA H100 80GB HBM3"},
        {"side": "hf", "device_name": "NVIDIA H100 80GB HBM3"},
    ]
    peer.refuse_mixed_devices(same)
    with pytest.raises(SystemExit, match="refusing to compare across devices") as refused:
        peer.refuse_mixed_devices([same[0], {"side": "hf", "device_name": "cpu"}])
    assert "\n" not in str(refused.value)


def _muon_steps(batched: bool, ns_dtype, nesterov: bool, steps: int = 3) -> list[torch.Tensor]:
    """Three Muon steps over matrices of a model's kinds: several of one shape, a tall one, a square one."""
    from slovo.muon import Muon

    gen = torch.Generator().manual_seed(0)
    shapes = [(48, 96)] * 3 + [(96, 48)] * 2 + [(32, 32)]
    params = [torch.randn(s, generator=gen).requires_grad_() for s in shapes]
    opt = Muon(params, lr=0.02, weight_decay=0.1, nesterov=nesterov, ns_dtype=ns_dtype, batched=batched)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()
    return [p.detach() for p in params]


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize(("ns_dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_muon_batched_by_shape_gives_the_one_by_one_update(ns_dtype, tol, nesterov):
    """The CUDA path (a Newton-Schulz chain per shape, foreach momentum and update) run on the CPU: the same
    parameters as the one-by-one loop within float rounding."""
    start = _muon_steps(False, ns_dtype, nesterov, steps=0)
    one_by_one = _muon_steps(False, ns_dtype, nesterov)
    batched = _muon_steps(True, ns_dtype, nesterov)
    for a, b, w in zip(one_by_one, batched, start):
        assert (a - b).norm() <= tol * (a - w).norm()


def test_muon_batched_runs_one_newton_schulz_per_shape(monkeypatch):
    import slovo.muon

    shapes, real = [], slovo.muon.orthogonalise_batched
    monkeypatch.setattr(slovo.muon, "orthogonalise_batched", lambda x, *a: shapes.append(tuple(x.shape)) or real(x, *a))
    _muon_steps(True, torch.float32, True, steps=1)
    assert shapes == [(3, 48, 96), (2, 96, 48), (1, 32, 32)]


def test_a_prefetched_batch_is_the_one_next_batch_would_build_and_the_state_counts_handed_out_batches():
    import numpy as np

    from slovo.data.loader import BatchLoader

    tokens = np.arange(10_000, dtype=np.uint16)
    plain, ahead = BatchLoader(tokens, 4, 16, seed=3), BatchLoader(tokens, 4, 16, seed=3)
    expected = [plain.next_batch()[0] for _ in range(5)]
    got = []
    for _ in range(5):
        ahead.prefetch()
        ahead.prefetch()  # twice: still one batch ahead, not two
        got.append(ahead.next_batch()[0])
    assert all(torch.equal(a, b) for a, b in zip(expected, got))
    ahead.prefetch()
    assert ahead.state_dict()["position"] == 5  # the prefetched batch is not handed out: a checkpoint resumes there
    ahead.load_state_dict({"position": 2, "seed": 3})
    assert torch.equal(ahead.next_batch()[0], expected[2])


def test_train_step_fetches_the_next_batch_before_it_waits_for_the_steps_figures(tiny_config):
    """The step's wait for the card (its loss and grad norm) comes after the next batch is on its way."""
    from slovo.data import load_dataset
    from slovo.data.loader import BatchLoader
    from slovo.distributed import Dist
    from slovo.model import GPT
    from slovo.train import train_step
    from slovo.train.state import Clock

    cfg = tiny_config()
    ds = load_dataset(cfg.data.path)
    cfg.model.vocab_size = ds.vocab_size
    events = []

    class Recording(BatchLoader):
        def prefetch(self):
            events.append(("prefetch", self.position))
            super().prefetch()

        def next_batch(self):
            events.append(("next", self.position))
            return super().next_batch()

    model = GPT(cfg.model)
    loader = Recording(ds.train, 4, cfg.model.seq_len, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):
        result = train_step(model, opt, loader, 2, 1.0, None, None, Dist(), Clock())
    assert events == [("next", 0), ("next", 1), ("prefetch", 2), ("next", 2), ("next", 3), ("prefetch", 4)]
    assert isinstance(result.loss, float) and isinstance(result.grad_norm, float)
