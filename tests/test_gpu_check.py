"""bench/gpu_check.py's stage machinery on the CPU: stages run in priority order while their least time is left,
a stage that fails or overruns keeps the others' figures, the results are on disk after every stage, and a stage's
process is killed before the deadline. The GPU stages themselves run on a GPU machine."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gpu_check  # noqa: E402


class FakeTime:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def plan(**needs):
    return gpu_check.Plan(1, "0", "t", "t", "t", "1s", 1, "1s", (), needs)


def test_stages_run_in_order_until_the_deadline_and_each_result_is_on_disk_when_it_ends(tmp_path):
    clock = FakeTime()
    check = gpu_check.Check(tmp_path, 100, plan(a=(10, 50), b=(10, 50), c=(30, 50), d=(5, 50)), "cpu", clock)
    seen_on_disk = []

    def stage(seconds, figures=None, fail=False):
        def run(c):
            seen_on_disk.append(sorted(json.loads((tmp_path / "gpu_check.json").read_text())["stages"]))
            clock.t += seconds
            if fail:
                raise RuntimeError("card fell off")
            return dict(figures or {})

        return run

    check.save()
    check.stage("a", stage(40, {"tokens_per_s": 1000.0, "steps": 10}))
    check.stage("b", stage(35, fail=True))
    check.stage("c", stage(1))  # 25 s left, needs 30: skipped
    check.stage("d", stage(1, {"x": 1}))  # 25 s left, needs 5: runs
    results = json.loads((tmp_path / "gpu_check.json").read_text())["stages"]
    assert seen_on_disk == [[], ["a"], ["a", "b", "c"]]
    assert results["a"]["status"] == "done" and results["a"]["seconds"] == 40
    assert results["b"]["status"] == "failed" and "card fell off" in results["b"]["error"]
    assert results["c"]["status"] == "skipped" and "needs 30" in results["c"]["why"]
    assert results["d"] == {"x": 1, "status": "done", "seconds": 1}
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| a | done | - | - | 10 | 1,000 |" in table and "| c | skipped |" in table


def test_a_stage_process_is_killed_before_the_deadline(tmp_path):
    check = gpu_check.Check(tmp_path, gpu_check.RESERVE_S + 1.5, plan(), "cpu")
    start = time.monotonic()
    rc = check.run("sleep", [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"], 60)
    assert rc == 124 and time.monotonic() - start < 10
    assert "up" in check.log_text("sleep")


def test_without_the_full_corpus_the_data_comes_from_the_sample_and_a_suite_from_its_sentences(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "FULL_CORPUS", tmp_path / "absent.jsonl.gz")
    assert gpu_check.choose_corpus(gpu_check.GPU) == gpu_check.SAMPLE_CORPUS and gpu_check.SAMPLE_CORPUS.exists()
    monkeypatch.setattr(gpu_check, "FULL_CORPUS", gpu_check.SAMPLE_CORPUS)  # as if present
    assert gpu_check.choose_corpus(gpu_check.GPU) == gpu_check.FULL_CORPUS

    from slovo.suites import load_suite

    folder = gpu_check.write_word_order_suite(tmp_path / "suite", gpu_check.SAMPLE_CORPUS, pairs=5)
    suite = load_suite(f"rublimp:{folder}")
    assert 8 <= len(suite.good) <= 10 and all(g != b for g, b in zip(suite.good, suite.bad))


def test_the_check_refuses_a_cpu_without_smoke_in_one_line(capsys, tmp_path):
    assert gpu_check.main(["--device", "cpu", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().out.count("\n") == 1
