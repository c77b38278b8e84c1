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
