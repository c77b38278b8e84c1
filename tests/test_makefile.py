"""The Makefile's set-up on a fresh machine: which corpus the demo takes, and one line for each bad input
(a DATA that names nothing, a TORCH that cannot be installed, a Python without venv). Nothing is installed:
a stand-in interpreter fails the way pip does, and the Makefile is run from a copy where ../shared is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def make(cwd: Path, *args: str, driver_cuda: str | None = None) -> subprocess.CompletedProcess:
    """make in `cwd` with a stand-in `nvidia-smi` first on PATH: one that reports a driver supporting CUDA
    `driver_cuda`, or (None) one that fails as it does on a machine without an NVIDIA driver."""
    bin_dir = cwd / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    banner = f"| NVIDIA-SMI 570.86.15    Driver Version: 570.86.15    CUDA Version: {driver_cuda}     |"
    failing = "echo 'NVIDIA-SMI has failed'\nexit 9"
    smi.write_text(f"#!/bin/sh\n{f'echo {banner!r}' if driver_cuda else failing}\n")
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("TORCH_INDEX", None)
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A checkout with no ../shared beside it: the Makefile, pyproject.toml and a stand-in sample corpus."""
    root = tmp_path / "clone"
    (root / "data" / "sample").mkdir(parents=True)
    shutil.copy(REPO / "Makefile", root / "Makefile")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "data" / "sample" / "ruslit-sample.jsonl.gz").write_bytes(b"")
    return root


def test_without_shared_corpora_the_demo_takes_the_sample_shipped_in_the_repository(checkout):
    shown = make(checkout, "--eval=show: ; @echo $(DATA) $(DATASET)", "show")
    assert shown.stdout.split() == ["data/sample/ruslit-sample.jsonl.gz", "data/ruslit-sample-8k"]
    assert (REPO / "data" / "sample" / "ruslit-sample.jsonl.gz").stat().st_size < 5_000_000


def test_with_shared_corpora_beside_the_checkout_the_demo_takes_the_full_corpus(checkout):
    corpora = checkout.parent / "shared" / "corpora"
    corpora.mkdir(parents=True)
    (corpora / "ruslit.jsonl.gz").write_bytes(b"")
    shown = make(checkout, "--eval=show: ; @echo $(DATA) $(DATASET)", "show")
    assert shown.stdout.split() == ["../shared/corpora/ruslit.jsonl.gz", "data/ruslit-8k"]


def test_a_data_that_names_nothing_is_one_line_before_anything_is_installed(checkout):
    done = make(checkout, "demo", "DATA=nowhere/corpus.jsonl.gz", "VENV=venv")
    assert done.returncode == 2 and not (checkout / "venv").exists()
    assert len(done.stderr.strip().splitlines()) == 1 and "DATA=nowhere/corpus.jsonl.gz: no such file" in done.stderr


def test_a_torch_that_cannot_be_installed_is_one_line_naming_the_variable(checkout):
    venv = checkout / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\necho 'ERROR: No matching distribution found' >&2\nexit 1\n")
    (venv / "bin" / "python").chmod(0o755)
    done = make(checkout, "install", "TORCH=torch==0.0.1", "VENV=venv")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "TORCH=torch==0.0.1 with TORCH_INDEX=cpu cannot be installed" in done.stderr
    assert "No matching distribution" in (venv / "torch-install.log").read_text()
    assert not (venv / ".venv-ok").exists()


def test_a_python_without_venv_is_one_line_with_the_package_to_install(checkout, tmp_path):
    python = tmp_path / "python3"  # a Python whose venv module is missing, as on Debian without python3-venv
    python.write_text('#!/bin/sh\ncase "$*" in *ensurepip*) exit 1;; esac\nexit 0\n')
    python.chmod(0o755)
    done = make(checkout, "install", f"PYTHON={python}", "VENV=venv")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "-m venv is not available" in done.stderr and "python3-venv" in done.stderr


def test_another_torch_index_reinstalls_torch_and_the_venv_records_which_build_it_holds(checkout):
    venv = checkout / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = checkout / "pip-calls.txt"  # a stand-in pip that succeeds and notes what it was asked
    (venv / "bin" / "python").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 0\n')
    (venv / "bin" / "python").chmod(0o755)
    assert make(checkout, "install", "VENV=venv").returncode == 0
    assert (venv / ".venv-ok").read_text().strip() == "torch==2.13.0 cpu"
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in calls.read_text()

    calls.unlink()
    assert make(checkout, "install", "VENV=venv").returncode == 0
    assert not calls.exists()  # the same build: nothing reinstalled

    assert make(checkout, "install", "VENV=venv", "TORCH_INDEX=cu128").returncode == 0
    asked = calls.read_text()
    assert "--force-reinstall --no-deps --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0" in asked
    assert "-e ." in asked  # slovo itself is installed again over the new torch
    assert (venv / ".venv-ok").read_text().strip() == "torch==2.13.0 cu128"


@pytest.mark.parametrize(
    ("driver_cuda", "index"),
    [(None, "cpu"), ("12.8", "cu128"), ("13.0", "cu130"), ("12.9", "cu128"), ("12.6", "cu126")],
)
def test_the_torch_build_follows_the_driver_nvidia_smi_reports(checkout, driver_cuda, index):
    shown = make(checkout, "print-torch-index", driver_cuda=driver_cuda)
    assert shown.returncode == 0 and shown.stdout.split() == [index]


def test_a_driver_too_old_for_the_cuda_builds_takes_the_cpu_build_and_says_why(checkout):
    shown = make(checkout, "print-torch-index", driver_cuda="11.8")
    assert shown.stdout.splitlines()[-1] == "cpu"
    assert "supports CUDA up to 11.8" in shown.stdout and "TORCH_INDEX" in shown.stdout


def test_torch_index_given_overrides_the_driver(checkout):
    assert make(checkout, "print-torch-index", "TORCH_INDEX=cpu", driver_cuda="12.8").stdout.split() == ["cpu"]


def test_make_demo_on_a_gpu_machine_installs_the_cuda_build(checkout):
    """A dry run of `make demo` where nvidia-smi reports CUDA 12.8: the torch wheel comes from the cu128 index."""
    venv = checkout / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = checkout / "pip-calls.txt"  # a stand-in pip that succeeds and notes what it was asked
    (venv / "bin" / "python").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 0\n')
    (venv / "bin" / "python").chmod(0o755)
    done = make(checkout, "-n", "demo", "VENV=venv", driver_cuda="12.8")
    assert done.returncode == 0, done.stderr
    assert "--index-url https://download.pytorch.org/whl/cu128 torch==2.13.0" in calls.read_text()
    assert "echo 'torch==2.13.0 cu128' > venv/.venv-ok" in done.stdout
