"""Choices that depend on the processor: made on the machine that runs, kept per processor, and right on a CPU
without bf16 matrix instructions too. That CPU is imitated in a subprocess by limiting ATen and oneDNN to AVX2
kernels (what a machine without AVX-512 BF16 or AMX runs). The tests check what was chosen, never how fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slovo.config import preset_path, read_yaml
from slovo.muon import Muon
from tests.helpers import tiny_train_args

AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
SRC = Path(__file__).resolve().parents[1] / "src"
# a model whose matrix work outweighs Python overhead, so what the run prints reflects the matmuls (about 1 s)
WIDER = ["--set=model.n_embd=128", "--set=model.seq_len=64", "--set=train.per_device_train_batch_size=8"]


def _weights(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen) for shape in ((48, 96), (96, 48), (32, 32))]


def _steps(optimizer_of, steps: int = 3) -> list[torch.Tensor]:
    params = [w.clone().requires_grad_() for w in _weights()]
    optimizer = optimizer_of(params)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        optimizer.step()
    return [p.detach() for p in params]


def test_slovo_muon_in_bf16_steps_exactly_as_torch_muon():
    settings = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True, ns_steps=5, adjust_lr_fn="original")
    ours = _steps(lambda ps: Muon(ps, **settings, ns_dtype=torch.bfloat16))
    torch_muon = _steps(lambda ps: torch.optim.Muon(ps, **settings))
    assert all(torch.equal(a, b) for a, b in zip(ours, torch_muon))


def test_slovo_muon_in_float32_stays_close_to_bf16_and_differs_from_it():
    start = _weights()
    bf16 = _steps(lambda ps: Muon(ps, lr=0.02, ns_dtype=torch.bfloat16))
    fp32 = _steps(lambda ps: Muon(ps, lr=0.02, ns_dtype=torch.float32))
    for a, b, w in zip(bf16, fp32, start):
        moved = (a - w).norm()
        assert 0 < (a - b).norm() < 0.1 * moved  # the same update up to bf16's rounding


def test_muon_ns_dtype_auto_takes_bf16_only_where_measured_faster(monkeypatch):
    from slovo import accel, device
    from slovo.accel import choose_muon_ns_dtype

    calls = []

    def measure(bf16: float, fp32: float):
        def run():
            calls.append(1)
            return bf16, fp32

        return run

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(accel, "bf16_matmul_speedup", lambda: 1.0)
    assert choose_muon_ns_dtype("auto", "cpu", "amx", measure(300.0, 100.0))[0] == "bfloat16"
    dtype, why = choose_muon_ns_dtype("auto", "cpu", "amx", measure(1.0, 100.0))
    assert dtype == "bfloat16" and "measured earlier" in why and len(calls) == 1
    dtype, why = choose_muon_ns_dtype("auto", "cpu", "emulated", measure(20.0, 100.0))
    assert dtype == "float32" and "Newton-Schulz" in why and "measured now" in why
    assert choose_muon_ns_dtype("auto", "cpu", "tie", measure(105.0, 100.0))[0] == "float32"
    assert choose_muon_ns_dtype("bfloat16", "cpu", "emulated", measure(1.0, 1.0))[0] == "bfloat16"
    assert choose_muon_ns_dtype("auto", "cuda", "gpu", measure(1.0, 1.0))[0] == "bfloat16"
    monkeypatch.setattr(accel, "bf16_matmul_speedup", lambda: 0.05)  # instructions there, kernels barred
    dtype, why = choose_muon_ns_dtype("auto", "cpu", "barred", measure(9e9, 1.0))
    assert dtype == "float32" and "emulated" in why
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    dtype, why = choose_muon_ns_dtype("auto", "cpu", "zen1", measure(9e9, 1.0))
    assert dtype == "float32" and "no bf16 matrix instructions" in why
    assert len(calls) == 3  # neither emulated bf16 nor a CPU without it is timed on the model


def test_speed_cache_keeps_each_processors_figures_apart(monkeypatch):
    from slovo import accel

    monkeypatch.setattr(accel, "processor_id", lambda: "Intel Xeon 8488C | amx+avx512_bf16 | torch 2.13")
    accel.remember("tiny", compile_s=10.0)
    assert accel.measured("tiny") == {"compile_s": 10.0}
    monkeypatch.setattr(accel, "processor_id", lambda: "AMD EPYC 7571 | no bf16 instructions | torch 2.13")
    assert accel.measured("tiny") == {}
    notice = accel.cache_notice()
    assert "another processor" in notice and "Intel Xeon 8488C" in notice and "AMD EPYC 7571" in notice
    accel.remember("tiny", compile_s=99.0)  # the other processor's figures stay
    monkeypatch.setattr(accel, "processor_id", lambda: "Intel Xeon 8488C | amx+avx512_bf16 | torch 2.13")
    assert accel.measured("tiny") == {"compile_s": 10.0} and accel.cache_notice() is None


@pytest.mark.parametrize(
    "content, says",
    [("{not json", "unreadable"), ('{"cpu|torch 2.13.0|3x256": {"compile_s": 1}}', "no processor recorded")],
    ids=["corrupt", "old-format"],
)
def test_speed_cache_from_elsewhere_is_ignored_with_one_line_and_rewritten(content, says):
    from slovo import accel

    accel.cache_path().parent.mkdir(parents=True, exist_ok=True)
    accel.cache_path().write_text(content)
    assert accel.measured("cpu|torch 2.13.0|3x256") == {}
    assert says in accel.cache_notice() and "\n" not in accel.cache_notice()
    accel.remember("k", eager_step_s=0.5)
    assert accel.measured("k") == {"eager_step_s": 0.5} and accel.cache_notice() is None


def _train_in_subprocess(dataset, tmp_path, name: str, env_extra: dict, *extra: str) -> tuple[dict, str]:
    env = {**os.environ, **env_extra, "PYTHONPATH": str(SRC), "SLOVO_CACHE_DIR": str(tmp_path / "cache")}
    args = tiny_train_args(dataset, tmp_path / "runs", name, *extra)
    args.remove("--quiet")
    proc = subprocess.run([sys.executable, "-m", "slovo", *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((tmp_path / "runs" / name / "run.json").read_text()), proc.stdout + proc.stderr


def test_imitated_avx2_only_cpu_trains_muon_and_forward_in_float32(small_dataset, tmp_path):
    """The tiny preset's recipe (Muon, train.dtype=auto) on a CPU whose bf16 is emulated: both choices float32,
    said in the run's output and recorded in run.json."""
    from slovo.device import cpu_has_native_bf16

    sets = ["--set=optim.name=muon", "--set=train.dtype=auto", "--set=budget.max_steps=2", *WIDER]
    info, out = _train_in_subprocess(small_dataset, tmp_path, "avx2", AVX2_ONLY, *sets)
    assert info["dtype"] == "float32" and info["muon_ns_dtype"] == "float32"
    # the hardware has bf16 instructions but its kernels are barred: a matmul finds bf16 emulated; else none
    why = "emulated" if cpu_has_native_bf16() else "no bf16 matrix instructions"
    assert "muon: Newton-Schulz in auto: float32" in out and why in out
    cache = json.loads((tmp_path / "cache" / "speed.json").read_text()) if cpu_has_native_bf16() else None
    assert cache is None or all("ATen AVX2 | oneDNN AVX2" in key for key in cache["machines"])


def test_muon_run_records_the_ns_dtype_its_measurement_implies(tiny_config, tmp_path, monkeypatch):
    from slovo import accel, device
    from slovo.accel import CPU_BF16_MIN_SPEEDUP, measured, shape_key
    from slovo.train import train

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(accel, "bf16_matmul_speedup", lambda: 1.0)
    cfg = tiny_config(**{"optim.name": "muon", "budget.max_steps": 2})
    train(cfg, tmp_path / "run", quiet=True)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    seen = measured(f"{shape_key(cfg, 'cpu', 'muon-ns')}|ns {cfg.optim.muon_ns_steps}")
    faster = seen["bf16_matrices_per_s"] >= CPU_BF16_MIN_SPEEDUP * seen["fp32_matrices_per_s"]
    assert info["muon_ns_dtype"] == ("bfloat16" if faster else "float32")
    adamw = train(tiny_config(**{"budget.max_steps": 1}), tmp_path / "adamw", quiet=True)
    assert adamw["status"] == "finished"
    assert json.loads((tmp_path / "adamw" / "run.json").read_text())["muon_ns_dtype"] is None


# the tiny preset's optimizer section as shipped, with both dtypes left to the machine
TINY_RECIPE = {
    **{f"optim.{key}": value for key, value in read_yaml(preset_path("tiny"))["optim"].items()},
    "train.dtype": "auto",
}


def test_tiny_recipe_resumed_ends_as_the_unbroken_run(tiny_config, tmp_path):
    """The tiny preset's optimizer and precision choices (Muon, both dtypes auto) on this CPU, as it is."""
    from slovo.train import train
    from tests.helpers import StopAt

    over = {**TINY_RECIPE, "budget.max_steps": 8, "eval.every": 2}
    straight = train(tiny_config(**over), tmp_path / "straight", quiet=True)
    assert (
        train(tiny_config(**over), tmp_path / "resumed", callbacks=[StopAt(4)], quiet=True)["status"] == "interrupted"
    )
    resumed = train(tiny_config(**over), tmp_path / "resumed", resume=True, quiet=True)
    assert resumed["train/global_step"] == straight["train/global_step"] == 8
    assert resumed["eval/loss"] == pytest.approx(straight["eval/loss"], rel=1e-6)


@pytest.mark.skipif(bool(os.environ.get("ATEN_CPU_CAPABILITY")), reason="already on the imitated CPU")
def test_tiny_recipe_resumed_on_an_imitated_avx2_only_cpu_ends_as_the_unbroken_run(tmp_path):
    env = {**os.environ, **AVX2_ONLY, "SLOVO_CACHE_DIR": str(tmp_path / "cache")}
    test = f"{__file__}::test_tiny_recipe_resumed_ends_as_the_unbroken_run"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        env=env,
        cwd=SRC.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:]


def test_train_loss_is_logged_by_time_as_well_as_by_steps(tiny_config, tmp_path):
    from slovo.train import train
    from slovo.train.state import Clock
    from slovo.utils import read_jsonl
    from tests.helpers import TickingTime

    cfg = tiny_config(**{"train.log_every": 1000, "train.log_every_seconds": 1.0, "budget.max_steps": 6})
    train(cfg, tmp_path / "timed", clock=Clock(now=TickingTime()), quiet=True)
    records = [r for r in read_jsonl(tmp_path / "timed" / "metrics.jsonl") if "train/loss" in r]
    assert len(records) >= 3  # every second of (fake) training time, though no step is a multiple of 1000
    cfg = tiny_config(**{"train.log_every": 1000, "train.log_every_seconds": 0, "budget.max_steps": 6})
    train(cfg, tmp_path / "steps", clock=Clock(now=TickingTime()), quiet=True)
    assert not [r for r in read_jsonl(tmp_path / "steps" / "metrics.jsonl") if "train/loss" in r]


def test_a_run_too_short_for_words_says_so_in_one_line_with_what_to_do():
    from slovo.terminal import MIN_STEPS_FOR_WORDS, undertrained_note

    slow = {"status": "finished", "train/global_step": 12, "budget": {"time_s": 180.0}, "train_tokens_per_second": 130}
    note = undertrained_note(slow, "runs/demo")
    assert "12 optimizer steps in 3m00s" in note and "130 tokens/s" in note and "\n" not in note
    assert f"--resume runs/demo --time {-(-180 * MIN_STEPS_FOR_WORDS // 12 // 60)}m" in note
    assert undertrained_note({**slow, "train/global_step": MIN_STEPS_FOR_WORDS}, "runs/demo") is None
    assert undertrained_note({**slow, "status": "interrupted"}, "runs/demo") is None
    assert undertrained_note({**slow, "budget": {"time_s": None, "max_steps": 12}}, "runs/demo") is None


@pytest.mark.parametrize(
    "section",
    [
        [1, 2],
        {"k": "fast"},
        {"k": {"compile_s": 5, "eager_step_s": 0.5, "compiled_step_s": 0}},
        {"k": {"compile_s": "x", "eager_step_s": 0.5, "compiled_step_s": 0.4}},
    ],
    ids=["section-a-list", "entry-a-string", "speed-up-of-zero", "figure-a-string"],
)
def test_a_damaged_speed_cache_entry_is_measured_again_not_a_crash(monkeypatch, section):
    import json

    from slovo import accel

    monkeypatch.setattr(accel, "processor_id", lambda: "this cpu")
    accel.cache_path().parent.mkdir(parents=True, exist_ok=True)
    accel.cache_path().write_text(json.dumps({"format": accel.CACHE_FORMAT, "machines": {"this cpu": section}}))
    _, why = accel.choose_compile("auto", "cpu", 300.0, "k")  # not a ZeroDivisionError or a TypeError
    assert "measured on this machine" not in why  # the damaged figures are not taken
    accel.remember("k", eager_step_s=0.5)
    assert accel.measured("k")["eager_step_s"] == 0.5
