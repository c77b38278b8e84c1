"""torchrun data parallelism on the CPU (gloo): two ranks train one run folder together."""

import os
import shutil
import subprocess
import sys

import pytest

from slovo.utils import read_json, read_jsonl
from tests.conftest import TINY_RUN


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="gloo over localhost is tested on Linux")
def test_two_ranks_write_one_run_with_twice_the_tokens_per_step(small_dataset, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    sets = [f"--set={k}={'null' if v is None else v}" for k, v in TINY_RUN.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2",
           "-m", "slovo", "train", "--data", str(small_dataset), "--runs-dir", str(tmp_path), "--name", "ddp",
           "--max-steps", "4", "--quiet", *sets]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "ddp"
    summary = read_json(run / "summary.json")
    info = read_json(run / "run.json")
    assert summary["status"] == "finished" and summary["train/global_step"] == 4
    assert info["world_size"] == 2
    assert info["tokens_per_step"] == 2 * TINY_RUN["train.per_device_train_batch_size"] * TINY_RUN["model.seq_len"]
    assert summary["tokens"] == 4 * info["tokens_per_step"]
    # only rank 0 writes: one train record per step, one set of samples per eval
    assert len([r for r in read_jsonl(run / "metrics.jsonl") if "train/loss" in r]) == 4
