"""The training loop: budget stop, run folder contents, exact resume, extension, and CLI errors."""

from __future__ import annotations

import json

import pytest

from slovo import window_losses
from slovo.cli import main
from slovo.train import train
from slovo.train.callbacks import Callback
from slovo.train.state import Clock
from slovo.utils import read_json, read_jsonl
from tests.helpers import TINY_SETS, StopAt, TickingTime, tiny_train_args, train_losses


def test_time_budget_stops_within_one_step_and_keeps_eval_off_the_clock(tiny_config, tmp_path):
    cfg = tiny_config(**{"budget.time": "10s", "eval.every": 4})
    summary = train(cfg, tmp_path / "run", clock=Clock(now=TickingTime()), quiet=True)
    steps = summary["train/global_step"]
    step_time = summary["train_runtime"] / steps
    assert summary["stop_reason"] == "time" and summary["status"] == "finished"
    assert 10.0 <= summary["train_runtime"] < 10.0 + 2 * step_time
    assert summary["ledger"]["eval"] > 0 and summary["ledger"]["checkpoint"] > 0
    assert summary["train_runtime"] == pytest.approx(summary["ledger"]["train"] + summary["ledger"]["data"], abs=1e-3)


def test_run_folder_holds_config_metrics_samples_summary_and_checkpoint(tiny_config, tmp_path):
    run = tmp_path / "run"
    summary = train(tiny_config(**{"budget.max_steps": 6}), run, quiet=True)
    for name in ("config.yaml", "run.json", "tokenizer.json", "metrics.jsonl", "samples.jsonl", "summary.json"):
        assert (run / name).exists(), name
    assert (run / "checkpoints" / "step_0000006" / "model.safetensors").exists()
    records = read_jsonl(run / "metrics.jsonl")
    train_recs = [r for r in records if "train/loss" in r]
    eval_recs = [r for r in records if "eval/loss" in r]
    assert len(train_recs) == 6 and len(eval_recs) == 2  # one mid-run eval (every=2) and the final one
    for key in ("train/learning_rate", "train/grad_norm", "train/epoch", "train/global_step", "total_flos", "tokens"):
        assert key in train_recs[-1]
    assert eval_recs[-1]["eval/bpb"] > 0
    on_disk = read_json(run / "summary.json")
    assert on_disk["status"] == "finished" and on_disk["train/global_step"] == 6
    for key in ("eval/loss", "eval/bpb", "train_runtime", "tokens", "ledger", "best/eval_bpb"):
        assert on_disk[key] is not None, key
    samples = read_jsonl(run / "samples.jsonl")
    assert samples and samples[0]["prompt"] == "В начале было слово" and "train/global_step" in samples[0]
    assert summary == on_disk
    # the final eval's per-window losses, for comparisons paired window by window: they give its bpb
    windows = window_losses.load(run, on_disk["eval/bpb"])
    assert windows is not None and windows.step == 6 and windows.nats.size == on_disk["eval/windows"]


@pytest.mark.parametrize("abrupt", [False, True], ids=["ctrl-c", "killed-between-checkpoints"])
def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tiny_config, tmp_path, abrupt):
    over = {"budget.max_steps": 12, "checkpoint.every_steps": 4, "schedule.name": "cosine", "schedule.warmup": 3}
    straight = train(tiny_config(**over), tmp_path / "straight", quiet=True)

    run = tmp_path / "broken"
    if abrupt:
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config(**over), run, callbacks=[StopAt(6, abrupt=True)], quiet=True)
        assert read_json(run / "summary.json")["status"] == "interrupted"
    else:
        first = train(tiny_config(**over), run, callbacks=[StopAt(6)], quiet=True)
        assert first["status"] == "interrupted" and first["train/global_step"] == 6
    resumed = train(tiny_config(**over), run, resume=True, quiet=True)

    assert resumed["train/global_step"] == straight["train/global_step"] == 12
    assert resumed["eval/loss"] == pytest.approx(straight["eval/loss"], rel=1e-6)
    assert train_losses(run) == pytest.approx(
        train_losses(tmp_path / "straight"), rel=1e-6
    )  # no lost or doubled records


def test_resuming_with_a_larger_budget_extends_the_run(tiny_config, tmp_path):
    over = {"schedule.name": "constant", "schedule.warmup": 2}
    straight = train(tiny_config(**over, **{"budget.max_steps": 12}), tmp_path / "straight", quiet=True)
    train(tiny_config(**over, **{"budget.max_steps": 6}), tmp_path / "ext", quiet=True)
    extended = train(tiny_config(**over, **{"budget.max_steps": 12}), tmp_path / "ext", resume=True, quiet=True)
    assert extended["train/global_step"] == 12
    assert extended["eval/loss"] == pytest.approx(straight["eval/loss"], rel=1e-6)


def test_a_run_resumed_with_another_optim_lr_trains_on_at_that_lr(tiny_config, tmp_path, monkeypatch):
    import slovo.optim

    lrs_set = []  # the optimizer's own lrs after each step's schedule factor, not the logged figure
    real = slovo.optim.set_lr_factor

    def spy(optimizer, factor):
        real(optimizer, factor)
        lrs_set.append({group["lr"] for group in optimizer.param_groups})

    monkeypatch.setattr(slovo.optim, "set_lr_factor", spy)
    over = {"budget.max_steps": 8, "schedule.name": "constant", "schedule.warmup": 0}
    first = train(tiny_config(**over), tmp_path / "run", callbacks=[StopAt(4)], quiet=True)
    assert first["status"] == "interrupted" and lrs_set[-1] == {2e-3}
    lrs_set.clear()
    resumed = train(tiny_config(**over, **{"optim.lr": 5e-4}), tmp_path / "run", resume=True, quiet=True)
    assert resumed["train/global_step"] == 8
    assert lrs_set and all(lrs == {5e-4} for lrs in lrs_set)  # not the checkpoint's saved peak lr


def test_prune_callback_stops_the_run_with_status_pruned(tiny_config, tmp_path):
    class Prune(Callback):
        def on_eval(self, state, control, metrics):
            assert "eval/bpb" in metrics
            control.stop("pruned")

    summary = train(tiny_config(**{"budget.max_steps": 10}), tmp_path / "run", callbacks=[Prune()], quiet=True)
    assert summary["status"] == "pruned" and summary["train/global_step"] == 5


def test_diverging_loss_fails_the_run_with_a_message(tiny_config, tmp_path):
    summary = train(
        tiny_config(**{"budget.max_steps": 5, "optim.lr": 1e9, "optim.grad_clip": 0.0}), tmp_path / "r", quiet=True
    )
    assert summary["status"] == "failed" and "optim.lr" in summary["error"]


def _cli(capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--time=-5m"], "must not be negative"),
        (["--time", "soon"], "expected a duration"),
        (["--max-steps", "0"], "--max-steps: must be positive"),
        (["--set", "optim.lrr=1"], "did you mean 'lr'"),
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--max-steps", "1", "--set", "model.seq_len=8192", "--set", "model.n_layer=1"], "smaller model.seq_len"),
    ],
)
def test_bad_train_arguments_give_one_line_and_exit_2(small_dataset, tmp_path, capsys, args, needle):
    code, err = _cli(capsys, "train", "--data", str(small_dataset), "--runs-dir", str(tmp_path), *args)
    assert code == 2 and needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys):
    code, err = _cli(capsys, "train", "--data", str(tmp_path / "nope"), "--max-steps", "1", "--runs-dir", str(tmp_path))
    assert code == 2 and "nope" in err and len(err.splitlines()) == 1


def test_existing_run_is_not_overwritten_without_the_flag(small_dataset, tmp_path, capsys):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "keep.txt").write_text("precious")
    code, err = _cli(
        capsys,
        "train",
        "--data",
        str(small_dataset),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "r",
        "--max-steps",
        "1",
    )
    assert code == 2 and "--resume" in err
    assert (run / "keep.txt").read_text() == "precious"


def test_cli_trains_and_eval_reports_bpb(small_dataset, tmp_path, capsys):
    assert main(tiny_train_args(small_dataset, tmp_path, "c", "--max-steps", "4")) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "c"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eval/bpb"] == pytest.approx(read_json(tmp_path / "c" / "summary.json")["eval/bpb"], rel=1e-5)
    # a negative batch scored no window and printed bpb 0.0000, perplexity 1.00, exit 0
    before = sorted(p.name for p in (tmp_path / "c").rglob("*"))
    for flag in ("--batch-size", "--pairs"):
        assert main(["eval", str(tmp_path / "c"), flag, "-1"]) == 2
        err = capsys.readouterr().err
        assert flag in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "c").rglob("*")) == before  # nothing written


def test_usage_errors_are_one_line_too(capsys):
    code, err = _cli(capsys, "train", "--max-steps", "many")
    assert code == 2 and len(err.splitlines()) == 1 and "--max-steps" in err


def test_eval_every_seconds_spaces_evals_by_training_time(tiny_config, tmp_path):
    cfg = tiny_config(**{"budget.time": "10s", "eval.every_seconds": 2.5})
    train(cfg, tmp_path / "run", clock=Clock(now=TickingTime()), quiet=True)
    times = [r["train_runtime"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/loss" in r]
    assert len(times) == 4  # at ~2.5, 5, 7.5 s and the final one at 10 s
    assert all(b - a >= 2.5 for a, b in zip(times, times[1:-1]))


def test_eval_on_another_text_source_uses_the_runs_tokenizer(small_dataset, tmp_path, capsys):
    assert main(tiny_train_args(small_dataset, tmp_path, "c", "--max-steps", "3")) == 0
    other = tmp_path / "other.txt"
    other.write_text("Слово было у бога. " * 200, encoding="utf-8")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "c"), "--data", str(other), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eval/bytes"] > 0 and out["eval/bpb"] > 0
    assert out["eval/bpb"] != pytest.approx(read_json(tmp_path / "c" / "summary.json")["eval/bpb"], rel=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize(("signame", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_real_ctrl_c_or_sigterm_stops_after_the_step_with_a_resumable_checkpoint(
    small_dataset, tmp_path, signame, status
):
    """Ctrl-C, and SIGTERM (SLURM preemption, docker stop, torchrun's teardown): save, then exit 128 + signal."""
    import os
    import signal
    import subprocess
    import sys
    import time

    sets = TINY_SETS
    cmd = [
        sys.executable,
        "-m",
        "slovo",
        "train",
        "--data",
        str(small_dataset),
        "--runs-dir",
        str(tmp_path),
        "--name",
        "c",
        "--time",
        "120s",
        "--quiet",
        *sets,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    metrics = tmp_path / "c" / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and len(read_jsonl(metrics)) < 5:
        time.sleep(0.2)
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err  # the shell's convention: `slovo train ... && slovo generate ...` stops
    summary = read_json(tmp_path / "c" / "summary.json")
    assert summary["status"] == "interrupted" and summary["train_runtime"] < 120
    step = summary["train/global_step"]
    assert (tmp_path / "c" / "checkpoints" / f"step_{step:07d}").is_dir()
    assert main(["train", "--resume", str(tmp_path / "c"), "--max-steps", str(step + 2), "--quiet"]) == 0
    assert read_json(tmp_path / "c" / "summary.json")["train/global_step"] == step + 2


def _steps_and_lrs(run_dir):
    return [
        (r["train/global_step"], r["train/learning_rate"])
        for r in read_jsonl(run_dir / "metrics.jsonl")
        if "train/loss" in r
    ]


def _checkpoint_tags(run_dir):
    return {
        int(p.name[5:]): read_json(p / "checkpoint.json").get("tag")
        for p in (run_dir / "checkpoints").iterdir()
        if p.name.startswith("step_")
    }


def test_decay_start_is_where_the_lr_leaves_its_peak_for_good():
    from slovo.config import ScheduleConfig
    from slovo.schedules import decay_start

    assert decay_start(ScheduleConfig(name="wsd", decay_fraction=0.3)) == pytest.approx(0.7)
    assert decay_start(ScheduleConfig(name="step_drop", drop_at=[0.8, 0.5])) == 0.5
    assert decay_start(ScheduleConfig(name="step_drop", drop_steps=[100])) is None  # steps do not move with a budget
    assert decay_start(ScheduleConfig(name="cosine")) is None  # decays from the start
    assert decay_start(ScheduleConfig(name="constant")) is None


# a WSD run that checkpoints (every one kept) and evaluates every 4 steps: the runs the extension tests extend
WSD_EVERY_4_STEPS = {
    "schedule.name": "wsd",
    "schedule.decay_fraction": 0.3,
    "schedule.warmup": 1,
    "checkpoint.every_steps": 4,
    "checkpoint.keep_last": 0,
    "eval.every": 4,
}


def test_extending_a_wsd_run_goes_back_to_where_the_decay_began_and_decays_again_at_the_new_end(
    tiny_config, tmp_path, capsys
):
    run = tmp_path / "run"
    short = train(tiny_config(**WSD_EVERY_4_STEPS, **{"budget.max_steps": 20}), run, quiet=True)
    # the decay began at progress 0.7 = step 14: that checkpoint is always saved and pruning keeps it
    assert _checkpoint_tags(run) == {14: "decay_start", 20: None}
    peak = tiny_config(**WSD_EVERY_4_STEPS).optim.lr

    assert main(["train", "--resume", str(run), "--max-steps", "40"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "extending to the larger budget from step_0000014, saved where the lr began to decay" in said
    extended = read_json(run / "summary.json")
    assert extended["status"] == "finished" and extended["train/global_step"] == 40
    steps_lrs = _steps_and_lrs(run)
    assert [s for s, _ in steps_lrs] == list(range(1, 41))  # the old decay's records are gone, none doubled
    lr = dict(steps_lrs)
    # a step's lr comes from the progress before it: the stable phase runs on through 0.7 x 40 = step 28 (+1)
    assert all(lr[s] == pytest.approx(peak) for s in range(2, 30))
    decay = [lr[s] for s in range(29, 41)]
    assert all(a > b for a, b in zip(decay, decay[1:])) and decay[-1] < 0.1 * peak  # a new decay to the new end
    evals = [r["train/global_step"] for r in read_jsonl(run / "metrics.jsonl") if "eval/loss" in r]
    assert [s for s in evals if s > 14] == [20, 30, 40]  # evals at 0.5 and 0.75 of the new budget, and the last
    assert extended["eval/loss"] < short["eval/loss"]
    assert _checkpoint_tags(run)[28] == "decay_start"  # where a further extension would continue from


def test_an_extension_deletes_the_checkpoints_of_the_old_decay_it_went_back_from(tiny_config, tmp_path):
    # the old final checkpoint (step 20) outranked the extension's own: pruning deleted them, and a kill, generate
    # or export took the stale model
    run = tmp_path / "run"
    train(tiny_config(**WSD_EVERY_4_STEPS, **{"budget.max_steps": 20}), run, quiet=True)
    assert _checkpoint_tags(run) == {14: "decay_start", 20: None}
    longer = tiny_config(**WSD_EVERY_4_STEPS, **{"budget.max_steps": 40})
    train(longer, run, resume=True, callbacks=[StopAt(17)], quiet=True)
    assert _checkpoint_tags(run) == {14: "decay_start", 17: None}  # the step the extension reached, kept


def test_resuming_an_interrupted_wsd_run_with_the_same_budget_continues_from_its_newest_checkpoint(
    tiny_config, tmp_path
):
    over = {"budget.max_steps": 20, "schedule.name": "wsd", "checkpoint.every_steps": 2}
    straight = train(tiny_config(**over), tmp_path / "straight", quiet=True)
    first = train(tiny_config(**over), tmp_path / "run", callbacks=[StopAt(18)], quiet=True)
    assert first["status"] == "interrupted"
    resumed = train(tiny_config(**over), tmp_path / "run", resume=True, quiet=True)
    assert resumed["eval/loss"] == pytest.approx(straight["eval/loss"], rel=1e-6)
    assert train_losses(tmp_path / "run") == pytest.approx(train_losses(tmp_path / "straight"), rel=1e-6)


def test_an_extended_constant_run_evaluates_over_its_extension(tiny_config, tmp_path):
    over = {"schedule.name": "constant", "schedule.warmup": 2, "eval.every": 4}
    train(tiny_config(**over, **{"budget.max_steps": 6}), tmp_path / "ext", quiet=True)
    train(tiny_config(**over, **{"budget.max_steps": 12}), tmp_path / "ext", resume=True, quiet=True)
    evals = [r["train/global_step"] for r in read_jsonl(tmp_path / "ext" / "metrics.jsonl") if "eval/loss" in r]
    assert [s for s in evals if s > 6] == [9, 12]  # progress 0.75 of the new budget, and the end
    assert len(_steps_and_lrs(tmp_path / "ext")) == 12  # from its end: nothing trained twice


def test_a_run_stopped_right_after_a_subset_eval_still_ends_with_a_full_eval(tiny_config, tmp_path):
    class StopAtFirstEval(Callback):
        def on_eval(self, state, control, metrics):
            control.stop("interrupted")

    over = {"budget.max_steps": 40, "eval.every": 4, "eval.max_fraction": 0.01, "eval.tokens": 4096}
    summary = train(tiny_config(**over), tmp_path / "run", callbacks=[StopAtFirstEval()], quiet=True)
    evals = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "eval/loss" in r]
    assert summary["status"] == "interrupted"
    assert evals[0]["eval/windows"] < evals[-1]["eval/windows"] == summary["eval/windows"]
    assert evals[-1]["train/global_step"] == evals[0]["train/global_step"]  # the same step, scored in full


def test_pruning_keeps_the_decay_start_checkpoint_saved_last(tmp_path):
    import torch

    from slovo.train.checkpoint import prune_checkpoints, save_checkpoint

    model = torch.nn.Linear(2, 2)
    # step 6 was tagged after step 5 (a rollback or an extension saves it again, lower): the later one counts
    for step, train_time, tag in (
        (5, 5.0, "decay_start"),
        (8, 8.0, None),
        (6, 9.0, "decay_start"),
        (10, 10.0, None),
        (12, 12.0, None),
    ):
        save_checkpoint(tmp_path, step, model, {}, {"train_time": train_time, **({"tag": tag} if tag else {})})
    prune_checkpoints(tmp_path, keep_last=1)
    assert sorted(int(p.name[5:]) for p in (tmp_path / "checkpoints").iterdir()) == [6, 10, 12]
