"""Trackers: the run folder's jsonl files always; wandb / tensorboard / trackio sinks when chosen."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from slovo.config import load_config
from slovo.errors import SlovoError
from slovo.tracking import SINKS, FanOutTracker, JsonlTracker, make_trackers, sink_names
from slovo.utils import read_jsonl

SRC = Path(__file__).resolve().parents[1] / "src"


def _cfg(report_to=()):
    cfg = load_config(preset="tiny", overrides={"budget.max_steps": 40})
    cfg.tracking.report_to = list(report_to)  # set after validation: tests also feed names it would reject
    return cfg


def _train_record(step: int) -> dict:
    return {
        "train/global_step": step,
        "train_runtime": step * 0.1,
        "tokens": step * 512,
        "progress": step / 40,
        "wall_time": 1_700_000_000 + step,
        "train/loss": 9.0 / step,
        "train/learning_rate": 1e-3,
        "train/grad_norm": 0.5,
        "train/epoch": 0.0,
        "train/tokens_per_second": 5000.0,
        "train/mfu": None,
        "total_flos": 1e9 * step,
    }


def _eval_record(step: int) -> dict:
    return {
        "train/global_step": step,
        "train_runtime": step * 0.1,
        "tokens": step * 512,
        "progress": step / 40,
        "wall_time": 1_700_000_000 + step,
        "eval/loss": 5.0 / step,
        "eval/perplexity": 2.0,
        "eval/bpb": 1.5,
        "eval/runtime": 0.2,
    }


def _samples(step: int) -> list[dict]:
    return [
        {
            "train/global_step": step,
            "train_runtime": step * 0.1,
            "tokens": step * 512,
            "prompt": "В начале",
            "text": f" было слово {step} <b>",
            "index": i,
        }
        for i in range(2)
    ]


def _steps(path: Path) -> list[int]:
    return [r["train/global_step"] for r in read_jsonl(path)]


def test_jsonl_files_are_always_written(tmp_path):
    tracker = make_trackers(_cfg(), tmp_path / "run", resume=False)
    for step in (1, 2, 3):
        tracker.log(_train_record(step), step)
    tracker.log(_eval_record(3), 3)
    tracker.log_samples(_samples(3), 3)
    assert set(tracker.locations()) == {"metrics", "samples"}
    tracker.close()
    tracker.close()  # closing twice is harmless (the train loop closes on every exit path)
    metrics = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["train/global_step"] for r in metrics] == [1, 2, 3, 3]
    assert metrics[0]["train/mfu"] is None and metrics[-1]["eval/loss"] == pytest.approx(5.0 / 3)
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert [s["index"] for s in samples] == [0, 1] and samples[0]["text"] == " было слово 3 <b>"


def test_fresh_run_starts_empty_and_resume_appends(tmp_path):
    run = tmp_path / "run"
    with make_trackers(_cfg(), run) as t:
        for step in (1, 2):
            t.log(_train_record(step), step)
    with make_trackers(_cfg(), run, resume=True) as t:
        t.log(_train_record(3), 3)
    assert _steps(run / "metrics.jsonl") == [1, 2, 3]
    with make_trackers(_cfg(), run, resume=False) as t:
        t.log(_train_record(1), 1)
    assert _steps(run / "metrics.jsonl") == [1]


def test_truncate_after_drops_the_lost_future_and_survives_a_torn_line(tmp_path):
    run = tmp_path / "run"
    with make_trackers(_cfg(), run) as t:
        for step in range(1, 11):
            t.log(_train_record(step), step)
        t.log_samples(_samples(4), 4)
        t.log_samples(_samples(8), 8)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"train/global_step": 11, "train/lo')  # killed mid-write
    with make_trackers(_cfg(), run, resume=True) as t:
        t.truncate_after(5)
        for step in (6, 7):
            t.log(_train_record(step), step)
    assert _steps(run / "metrics.jsonl") == [1, 2, 3, 4, 5, 6, 7]
    assert _steps(run / "samples.jsonl") == [4, 4]


def test_torn_last_line_is_closed_before_appending(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps(_train_record(1)) + "\n" + '{"train/glob')
    tracker = JsonlTracker(run, resume=True)
    tracker.log(_train_record(2), 2)
    tracker.close()
    assert _steps(run / "metrics.jsonl") == [1, 2]


class _BrokenSink:
    name = "broken"

    def __init__(self):
        self.calls = 0
        self.closed = False

    def log(self, metrics, step):
        self.calls += 1
        raise OSError(28, "No space left on device")

    def log_samples(self, samples, step):
        self.calls += 1

    def close(self):
        self.closed = True


def test_failing_sink_is_reported_once_and_the_run_goes_on(tmp_path):
    sink, stream = _BrokenSink(), io.StringIO()
    tracker = FanOutTracker(JsonlTracker(tmp_path), [sink], stream=stream)
    for step in (1, 2, 3):
        tracker.log(_train_record(step), step)
    tracker.log_samples(_samples(3), 3)
    tracker.close()
    report = stream.getvalue().strip().splitlines()
    assert len(report) == 1 and "broken" in report[0] and "No space left" in report[0]
    assert (
        sink.calls == 1 and sink.closed and tracker.failed == {"broken": "OSError: [Errno 28] No space left on device"}
    )
    assert _steps(tmp_path / "metrics.jsonl") == [1, 2, 3]


def test_unknown_sink_fails_before_anything_is_written(tmp_path):
    with pytest.raises(SlovoError, match="unknown tracker 'mlflow'"):
        make_trackers(_cfg(["mlflow"]), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_missing_package_names_the_pip_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(SlovoError) as err:
        make_trackers(_cfg(["tensorboard", "wandb"]), tmp_path / "run")
    assert "pip install 'slovo-lm[wandb]'" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_sink_that_cannot_start_is_a_one_line_error(tmp_path, monkeypatch):
    class Boom:
        def __init__(self, *a, **k):
            raise RuntimeError("api key missing\nsecond line")

    module = types.ModuleType("slovo_test_boom_sink")
    module.BoomSink = Boom
    monkeypatch.setitem(sys.modules, "slovo_test_boom_sink", module)
    monkeypatch.setitem(SINKS, "boom", ("slovo_test_boom_sink", "BoomSink", "json", "boom"))
    with pytest.raises(SlovoError, match=r"boom could not start: RuntimeError: api key missing$"):
        make_trackers(_cfg(["boom"]), tmp_path / "run")


def test_report_to_accepts_the_comma_spelling():
    assert sink_names("wandb,tensorboard") == ["wandb", "tensorboard"]
    assert sink_names(["none"]) == [] and sink_names(["tensorboard", "tensorboard"]) == ["tensorboard"]


def _tensorboard_scalars(log_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return [event.step for event in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def test_tensorboard_has_as_many_train_loss_points_as_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'slovo-lm[tensorboard]')")
    run = tmp_path / "run"
    with make_trackers(_cfg(["tensorboard"]), run) as t:
        for step in range(1, 41):
            if step % 3 == 0:
                t.log(_train_record(step), step)
            if step % 10 == 0:
                t.log(_eval_record(step), step)
                t.log_samples(_samples(step), step)
        assert t.locations()["tensorboard"] == str(run / "tensorboard")
    jsonl = read_jsonl(run / "metrics.jsonl")
    train_steps = [r["train/global_step"] for r in jsonl if "train/loss" in r]
    assert _tensorboard_scalars(run / "tensorboard", "train/loss") == train_steps
    assert len(_tensorboard_scalars(run / "tensorboard", "eval/loss")) == sum("eval/loss" in r for r in jsonl) == 4
    assert _tensorboard_scalars(run / "tensorboard", "train/mfu") == []  # None is not a point


def test_tensorboard_after_resume_matches_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'slovo-lm[tensorboard]')")
    run = tmp_path / "run"
    with make_trackers(_cfg(["tensorboard"]), run) as t:
        for step in range(1, 21):
            t.log(_train_record(step), step)
    with make_trackers(_cfg(["tensorboard"]), run, resume=True) as t:  # the checkpoint was at step 10
        t.truncate_after(10)
        for step in range(11, 26):
            t.log(_train_record(step), step)
    tb = _tensorboard_scalars(run / "tensorboard", "train/loss")
    assert tb == _steps(run / "metrics.jsonl") == list(range(1, 26))


@pytest.mark.slow
def test_wandb_offline_writes_a_run_folder_wandb_recognises(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'slovo-lm[wandb]')")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = tmp_path / "run"
    with make_trackers(_cfg(["wandb"]), run) as t:
        for step in range(1, 11):
            t.log(_train_record(step), step)
        t.log(_eval_record(10), 10)
        t.log_samples(_samples(10), 10)
        folder = Path(t.locations()["wandb"])
        hint = t.view_hints()["wandb"]
    assert folder.parent == run / "wandb" and folder.name.startswith("offline-run-")
    assert hint == f"wandb sync {folder}"
    assert list(folder.glob("run-*.wandb")) and list(folder.glob("run-*.wandb"))[0].stat().st_size > 0
    # wandb's own CLI must see it as a run to upload
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--dry-run", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert "Would sync 1 run(s)" in out.stdout + out.stderr, out.stdout + out.stderr


_TRACKIO_SCRIPT = """
import json, sys
from slovo.config import load_config
from slovo.tracking import make_trackers
cfg = load_config(preset="tiny", overrides={"tracking.report_to": ["trackio"], "tracking.project": "slovo-test"})
with make_trackers(cfg, sys.argv[1]) as t:
    for step in range(1, 8):
        t.log({"train/global_step": step, "train/loss": 1.0 / step, "train/mfu": None}, step)
    where = t.locations()["trackio"]
from trackio.sqlite_storage import SQLiteStorage
logs = SQLiteStorage.get_logs("slovo-test", "run")
print(json.dumps({"where": where, "losses": [r["train/loss"] for r in logs if "train/loss" in r]}))
"""


@pytest.mark.slow
def test_trackio_logs_into_its_local_project(tmp_path):
    pytest.importorskip("trackio", reason="trackio is not installed (pip install 'slovo-lm[trackio]')")
    # trackio reads its folder from the environment when imported, so it runs in a child process.
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", _TRACKIO_SCRIPT, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(result["where"]).parent == tmp_path / "trackio"
    assert result["losses"] == pytest.approx([1.0 / s for s in range(1, 8)])
    assert len(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == 7
