"""torchrun data parallelism on the CPU (gloo): two ranks train one run folder together.

The torchrun tests run `slovo train` under `torchrun --nproc_per_node 2` in a subprocess with a timeout (a rank
that waits for a collective the other never makes hangs, and the timeout turns that into a failure). The probe in
tests/distributed_probe (a sitecustomize) records what each rank saw and can slow one rank down.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from slovo.utils import read_json, read_jsonl
from tests.conftest import TINY_RUN

PROBE = Path(__file__).parent / "distributed_probe"
TIMEOUT_S = 120  # far above a healthy run (a few seconds); only a hang gets there
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="gloo over localhost is tested on Linux")


def tiny_sets(**overrides) -> list[str]:
    merged = {**TINY_RUN, **overrides}
    return [f"--set={k}={'null' if v is None else v}" for k, v in merged.items()]


def torchrun(
    args: list[str],
    probe_dir: Path | None = None,
    slow: str | None = None,
    nproc: int = 2,
    slow_save: str | None = None,
    slow_start: str | None = None,
    fast_compile: str | None = None,
    slow_suite: str | None = None,
    ok: bool = True,
):
    """`torchrun --nproc_per_node 2 -m slovo ARGS`; returns the finished process (asserting it exited 0 if `ok`)."""
    torchrun_bin = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    if probe_dir is not None:
        probe_dir.mkdir(parents=True, exist_ok=True)
        env["PYTHONPATH"] = os.pathsep.join([str(PROBE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["SLOVO_PROBE_DIR"] = str(probe_dir)
        if slow:
            env["SLOVO_PROBE_SLOW"] = slow
        if slow_save:
            env["SLOVO_PROBE_SLOW_SAVE"] = slow_save
        if slow_start:
            env["SLOVO_PROBE_SLOW_START"] = slow_start
        if fast_compile:
            env["SLOVO_PROBE_FAST_COMPILE"] = fast_compile
        if slow_suite:
            env["SLOVO_PROBE_SLOW_SUITE"] = slow_suite
    cmd = [torchrun_bin, "--standalone", "--nproc_per_node", str(nproc), "-m", "slovo", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert proc.returncode == 0 or not ok, proc.stderr[-3000:]
    return proc


def probed(probe_dir: Path, rank: int, key: str) -> list:
    return [r[key] for r in read_jsonl(probe_dir / f"rank{rank}.jsonl") if key in r]


def weights(run: Path, step: int) -> dict:
    return load_file(str(run / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert (a[name] == b[name]).all(), name


def drop_checkpoints_after(run: Path, step: int) -> None:
    """Make `run` look like it was stopped at `step`: later checkpoints gone (resume truncates the records)."""
    for ckpt in (run / "checkpoints").iterdir():
        if ckpt.name.startswith("step_") and int(ckpt.name[5:]) > step:
            shutil.rmtree(ckpt)


def train_args(dataset, runs_dir, name, *extra, steps=4) -> list[str]:
    return [
        "train",
        "--data",
        str(dataset),
        "--runs-dir",
        str(runs_dir),
        "--name",
        name,
        "--max-steps",
        str(steps),
        "--quiet",
        *extra,
    ]


@pytest.mark.slow
@linux_only
def test_two_ranks_write_one_run_with_twice_the_tokens_per_step(small_dataset, tmp_path):
    torchrun(train_args(small_dataset, tmp_path, "ddp", *tiny_sets()))
    run = tmp_path / "ddp"
    summary = read_json(run / "summary.json")
    info = read_json(run / "run.json")
    assert summary["status"] == "finished" and summary["train/global_step"] == 4
    assert info["world_size"] == 2
    assert info["tokens_per_step"] == 2 * TINY_RUN["train.per_device_train_batch_size"] * TINY_RUN["model.seq_len"]
    assert summary["tokens"] == 4 * info["tokens_per_step"]
    # only rank 0 writes: one train record per step, one set of samples per eval
    assert len([r for r in read_jsonl(run / "metrics.jsonl") if "train/loss" in r]) == 4
    # the final eval's per-window losses, gathered from both ranks' shares in window order: they give its bpb
    from slovo import window_losses

    windows = window_losses.load(run, summary["eval/bpb"])
    assert windows is not None and windows.nats.size == summary["eval/windows"] and (windows.bytes > 0).all()


@pytest.mark.slow
@linux_only
def test_a_slow_rank_under_a_time_budget_ends_at_the_same_step_on_both_ranks(small_dataset, tmp_path):
    """Rank 1 sleeps in every step, so its clock runs ahead; with an eval due at every step, a rank that decided
    from its own clock would skip an eval the other makes (a collective) and the job would hang or fail."""
    probe = tmp_path / "probe"
    sets = tiny_sets(**{"eval.every_seconds": 0.01, "sample.enabled": False})
    torchrun(
        [
            "train",
            "--data",
            str(small_dataset),
            "--runs-dir",
            str(tmp_path),
            "--name",
            "slow",
            "--time",
            "1s",
            "--quiet",
            *sets,
        ],
        probe_dir=probe,
        slow="1:0.05",
    )
    summary = read_json(tmp_path / "slow" / "summary.json")
    assert summary["status"] == "finished" and summary["stop_reason"] == "time"
    steps = summary["train/global_step"]
    assert steps >= 3  # several steps, so the clocks drifted apart
    hashes = [probed(probe, rank, "params") for rank in (0, 1)]
    assert len(hashes[0]) == len(hashes[1]) == steps  # both ranks made every step, no more
    # one model: identical weights on both ranks before every step, and they change from step to step
    assert hashes[0] == hashes[1]
    assert len(set(hashes[0])) >= steps - 1  # (the warmup's first step has lr 0)
    # each rank trains on its own batches: their first losses differ (same weights, other data)
    losses = [probed(probe, rank, "loss") for rank in (0, 1)]
    assert losses[0][0] != losses[1][0]
    # the logged loss is the mean over the ranks
    logged = [r["train/loss"] for r in read_jsonl(tmp_path / "slow" / "metrics.jsonl") if "train/loss" in r]
    assert logged[0] == pytest.approx((losses[0][0] + losses[1][0]) / 2, rel=1e-5)


@pytest.mark.slow
@linux_only
def test_a_ddp_run_with_slow_rank_0_checkpoints_trains_its_full_time_on_the_budget_clock(small_dataset, tmp_path):
    """Rank 0 sleeps 0.3 s in every checkpoint save (about every 0.4 s of training). The other rank waits for it on
    its `checkpoint` ledger, not in the next step's all-reduce on its budget clock; so the clock the ranks agree on
    (the largest) is rank 0's own, and rank 0 trains the whole budget."""
    sets = tiny_sets(**{"checkpoint.every_seconds": 0.4, "sample.enabled": False, "eval.every": 1})
    args = ["train", "--data", str(small_dataset), "--runs-dir", str(tmp_path), "--name", "ckpt", "--time", "2s"]
    torchrun([*args, "--quiet", *sets], probe_dir=tmp_path / "probe", slow_save="0:0.3")
    summary = read_json(tmp_path / "ckpt" / "summary.json")
    ledger = summary["ledger"]  # rank 0's
    assert summary["status"] == "finished" and summary["stop_reason"] == "time"
    assert ledger["checkpoint"] >= 4 * 0.3  # the slowed saves happened
    # rank 0's own training seconds: before the fix, each save's 0.3 s went onto rank 1's clock and the run ended
    # with rank 0 short of the budget by about that much per save
    assert ledger["train"] + ledger["data"] >= 0.9 * 2.0


@pytest.mark.slow
@linux_only
def test_two_ranks_resume_exactly_on_two_ranks(small_dataset, tmp_path):
    sets = tiny_sets(**{"checkpoint.every_steps": 4, "checkpoint.keep_last": 5})
    torchrun(train_args(small_dataset, tmp_path, "whole", *sets, steps=8))
    shutil.copytree(tmp_path / "whole", tmp_path / "resumed")
    drop_checkpoints_after(tmp_path / "resumed", 4)
    torchrun(["train", "--resume", str(tmp_path / "resumed"), "--max-steps", "8", "--quiet"])
    assert read_json(tmp_path / "resumed" / "summary.json")["train/global_step"] == 8
    assert_same_weights(weights(tmp_path / "whole", 8), weights(tmp_path / "resumed", 8))
    losses = [
        [r["train/loss"] for r in read_jsonl(tmp_path / name / "metrics.jsonl") if "train/loss" in r]
        for name in ("whole", "resumed")
    ]
    assert losses[0] == losses[1]


@pytest.mark.slow
@linux_only
def test_fsdp_trains_checkpoints_sharded_resumes_on_two_ranks_and_one_and_exports(small_dataset, tmp_path):
    from slovo.cli import main
    from slovo.train.checkpoint import load_for_inference, verify_checkpoint

    sets = tiny_sets(**{"distributed.strategy": "fsdp", "checkpoint.every_steps": 4, "checkpoint.keep_last": 5})
    torchrun(train_args(small_dataset, tmp_path, "fsdp", *sets, steps=8))
    run = tmp_path / "fsdp"
    assert read_json(run / "summary.json")["status"] == "finished"
    ckpt = run / "checkpoints" / "step_0000004"
    recorded = read_json(ckpt / "checkpoint.json")
    shards = sorted(name for name in recorded["files"] if name.startswith("dcp/"))
    assert shards == ["dcp/.metadata", "dcp/__0_0.distcp", "dcp/__1_0.distcp"]  # each rank wrote its own shard
    assert recorded["sharded"]["world_size"] == 2 and verify_checkpoint(ckpt, files=tuple(recorded["files"])) is None
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no staging left

    # exact resume on the same two ranks
    shutil.copytree(run, tmp_path / "again")
    drop_checkpoints_after(tmp_path / "again", 4)
    torchrun(["train", "--resume", str(tmp_path / "again"), "--max-steps", "8", "--quiet"])
    assert_same_weights(weights(run, 8), weights(tmp_path / "again", 8))

    # resume on one process (no torchrun): the shards of two ranks load into the whole model and optimizer
    shutil.copytree(run, tmp_path / "alone")
    drop_checkpoints_after(tmp_path / "alone", 4)
    assert main(["train", "--resume", str(tmp_path / "alone"), "--max-steps", "8", "--quiet"]) == 0
    summary = read_json(tmp_path / "alone" / "summary.json")
    assert summary["status"] == "finished" and summary["train/global_step"] == 8
    records = [r for r in read_jsonl(tmp_path / "alone" / "metrics.jsonl") if "train/loss" in r]
    whole_run = [r for r in read_jsonl(run / "metrics.jsonl") if "train/loss" in r]
    assert records[:4] == whole_run[:4]  # the first four steps are the two-rank run's, kept on resume
    assert records[4]["train/loss"] < records[0]["train/loss"]  # it went on from the trained weights, not from scratch

    # export reads the gathered weights
    assert main(["export", str(run), str(tmp_path / "hf")]) == 0
    model, _, _ = load_for_inference(run)
    exported = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert exported["model.embed_tokens.weight"].equal(model.embed_tokens.weight.detach())
    assert_same_weights(
        {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"},
        {k: v for k, v in weights(run, 8).items() if k != "lm_head.weight"},
    )


def test_muon_with_fsdp_is_refused_in_one_line(tiny_config):
    from slovo.distributed import Dist
    from slovo.errors import SlovoError
    from slovo.model import GPT

    cfg = tiny_config(**{"distributed.strategy": "fsdp", "optim.name": "muon", "model.vocab_size": 300})
    with pytest.raises(SlovoError, match="optim.name=muon does not work with distributed.strategy=fsdp"):
        Dist().shard(GPT(cfg.model), cfg)


def test_fsdp_in_one_process_trains_the_plain_model_and_saves_a_sharded_checkpoint(tiny_config, tmp_path):
    """One process under distributed.strategy=fsdp: nothing to shard, but the checkpoints are the sharded kind,
    so the run can go on under torchrun later; resuming it with ddp is one line."""
    from slovo.errors import SlovoError
    from slovo.train import train

    cfg = tiny_config(**{"distributed.strategy": "fsdp", "budget.max_steps": 3})
    summary = train(cfg, tmp_path / "run", quiet=True)
    assert summary["status"] == "finished"
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000003"
    assert (ckpt / "dcp" / ".metadata").is_file() and (ckpt / "model.safetensors").is_file()
    cfg = tiny_config(**{"distributed.strategy": "ddp", "budget.max_steps": 5})
    with pytest.raises(SlovoError, match="saved with distributed.strategy=fsdp"):
        train(cfg, tmp_path / "run", resume=True, quiet=True)
    cfg = tiny_config(**{"distributed.strategy": "fsdp", "budget.max_steps": 5})
    assert train(cfg, tmp_path / "run", resume=True, quiet=True)["train/global_step"] == 5


@pytest.mark.slow
@linux_only
def test_overwrite_under_torchrun_deletes_the_folder_on_rank_0_once_the_group_exists(small_dataset, tmp_path):
    old = tmp_path / "ow"
    old.mkdir()
    (old / "old.txt").write_text("a previous run")
    probe = tmp_path / "probe"
    torchrun(train_args(small_dataset, tmp_path, "ow", "--overwrite", *tiny_sets(), steps=2), probe_dir=probe)
    assert read_json(old / "summary.json")["status"] == "finished" and not (old / "old.txt").exists()
    deleted = [[r for r in read_jsonl(probe / f"rank{rank}.jsonl") if r.get("rmtree") == str(old)] for rank in (0, 1)]
    assert deleted == [[{"rmtree": str(old), "group": True}], []]


@pytest.mark.slow
@linux_only
def test_the_default_name_is_rank_0s_and_fsdp_records_the_whole_grad_norm(small_dataset, tmp_path):
    """Rank 1 starts 1.2 s late, so a name from its own clock would differ: one folder holds the run, and it is
    the one every rank trained in (its sharded checkpoints go through rank 0's staging folder, so this holds
    also where a rank's name differs). FSDP's grad norm is the whole model's: the same as DDP's on the same
    batches."""
    runs = tmp_path / "runs"
    sets = tiny_sets(**{"distributed.strategy": "fsdp", "checkpoint.every_steps": 2, "sample.enabled": False})
    args = ["train", "--data", str(small_dataset), "--runs-dir", str(runs), "--max-steps", "3", "--quiet"]
    torchrun([*args, *sets], probe_dir=tmp_path / "probe", slow_start="1:1.2")
    (run,) = runs.iterdir()
    assert run.name.startswith("tiny-") and read_json(run / "summary.json")["status"] == "finished"
    torchrun(train_args(small_dataset, tmp_path, "ddp", *tiny_sets(**{"sample.enabled": False}), steps=3))
    norms = [
        [r["train/grad_norm"] for r in read_jsonl(folder / "metrics.jsonl") if "train/grad_norm" in r]
        for folder in (run, tmp_path / "ddp")
    ]
    assert len(norms[0]) == 3 and norms[0] == pytest.approx(norms[1], rel=1e-4)


@pytest.mark.parametrize("how", ["explicit", "auto on an older card"])
def test_fp16_with_fsdp_is_refused_in_one_line(tiny_config, how):
    from slovo.distributed import Dist
    from slovo.errors import SlovoError
    from slovo.model import GPT

    dtype = "float16" if how == "explicit" else "auto"
    cfg = tiny_config(**{"distributed.strategy": "fsdp", "train.dtype": dtype, "model.vocab_size": 300})
    with pytest.raises(SlovoError, match="train.dtype=float16 does not work with distributed.strategy=fsdp"):
        Dist().shard(GPT(cfg.model), cfg)
        Dist().check_precision(cfg, "float16")  # what train.dtype=auto resolves to on a card without bf16


@pytest.mark.slow
@linux_only
def test_train_compile_auto_is_rank_0s_choice_on_every_rank(small_dataset, tmp_path):
    """Rank 1's speed cache says compiling pays off; rank 0 has no figures and trains eager, so rank 1 must too."""
    probe = tmp_path / "probe"
    sets = tiny_sets(**{"train.compile": "auto", "sample.enabled": False})
    args = ["train", "--data", str(small_dataset), "--runs-dir", str(tmp_path), "--name", "c", "--time", "1s"]
    torchrun([*args, "--quiet", *sets], probe_dir=probe, fast_compile="1")
    assert read_json(tmp_path / "c" / "run.json")["compiled"] is False
    assert probed(probe, 0, "compile") == probed(probe, 1, "compile") == []


@pytest.mark.slow
@linux_only
def test_the_eval_subset_size_is_rank_0s_on_every_rank(small_dataset, tmp_path):
    """Rank 1's suite scoring takes a second longer, so sized from its own timing its subset would be smaller."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_suites import write_suite

    suite = write_suite(tmp_path / "rublimp")
    probe = tmp_path / "probe"
    sets = tiny_sets(**{"eval.suites": f"[rublimp:{suite}]", "eval.max_fraction": 0.2, "sample.enabled": False})
    args = ["train", "--data", str(small_dataset), "--runs-dir", str(tmp_path), "--name", "e", "--time", "3s"]
    torchrun([*args, "--quiet", *sets], probe_dir=probe, slow_suite="1:1.0")
    assert read_json(tmp_path / "e" / "summary.json")["status"] == "finished"
    sizes = [probed(probe, rank, "subset") for rank in (0, 1)]
    assert len(sizes[0]) == 1 and sizes[0] == sizes[1]


@pytest.mark.slow
@linux_only
def test_bad_input_under_torchrun_is_one_line_per_rank_and_exit_2_once_the_group_exists(small_dataset, tmp_path):
    """The run's name is checked on rank 0 after the process group started: every rank prints rank 0's line and
    exits 2, and none aborts in gloo's teardown ("terminate called without an active exception")."""
    proc = torchrun(train_args(small_dataset, tmp_path, "a/b", *tiny_sets()), ok=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("slovo train: error:")]
    assert len(lines) == 2 and "a run name is a single folder name" in lines[0]
    assert "terminate called" not in proc.stderr and "exitcode: 2" in proc.stderr
