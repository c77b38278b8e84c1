"""RuBLiMP accuracy in `slovo runs` (a column with its interval, beside bpb, only when some run has it) and in the
report (overall against the baselines, the curve, the per-phenomenon table), from RUN/evals/rublimp.json or from
the run's own evals."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fake_runs import make_fake_run  # noqa: E402

from slovo.cli import main  # noqa: E402
from slovo.report.page import build_report  # noqa: E402
from slovo.runs import load_run  # noqa: E402
from slovo.runs.suites import suite_accuracy  # noqa: E402
from slovo.utils import atomic_write_json  # noqa: E402


def fig(acc: float, half: float = 0.02) -> dict:
    return {"acc": acc, "se": half / 1.96, "ci": [acc - half, acc + half]}


def save_result(run: Path, acc: float) -> None:
    """RUN/evals/rublimp.json as `slovo eval --suite` writes it (two phenomena)."""
    crit = {"sum": fig(acc), "mean": fig(0.51), "shorter_chars": fig(0.596), "shorter_tokens": fig(0.58)}
    atomic_write_json(
        run / "evals" / "rublimp.json",
        {
            "suite": "rublimp",
            "primary": "sum",
            "pairs": 2000,
            "overall": crit,
            "phenomena": {
                "add_new_suffix": {"level": "Morphology", "group": "Word Formation", "sum": fig(0.91)},
                "verb_ins_object": {"level": "Syntax", "group": "Government", "sum": fig(0.42)},
            },
        },
    )


def test_saved_suite_result_wins_over_the_runs_own_evals_and_both_carry_an_interval(tmp_path):
    run = make_fake_run(tmp_path, "a")
    summary = json.loads((run / "summary.json").read_text())
    atomic_write_json(run / "summary.json", {**summary, "eval/rublimp_acc": 0.6, "eval/rublimp_acc_se": 0.01})
    acc = suite_accuracy(load_run(run))
    assert acc == 0.6 and acc.ci[0] < 0.6 < acc.ci[1]
    (run / "evals").mkdir()
    save_result(run, 0.63)
    acc = suite_accuracy(load_run(run))
    assert acc == 0.63 and acc.ci == (0.61, 0.65)
    assert suite_accuracy(load_run(make_fake_run(tmp_path, "b"))) is None


def test_runs_table_shows_rublimp_with_its_interval_only_when_a_run_has_it(tmp_path, capsys):
    make_fake_run(tmp_path, "plain")
    assert main(["runs", str(tmp_path)]) == 0
    assert not re.search(r"┃\s+rublimp", capsys.readouterr().out)  # no run has it: no column
    scored = make_fake_run(tmp_path, "scored", seed=1)
    (scored / "evals").mkdir()
    save_result(scored, 0.631)
    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"┃\s+rublimp", out) and "63.1% ±2.0" in out
    assert main(["runs", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["scored"]["rublimp"] == 0.631 and rows["plain"]["rublimp"] is None


def test_report_compares_runs_accuracy_against_the_baselines_and_per_phenomenon(tmp_path):
    runs = []
    for i, acc in enumerate((0.631, 0.655)):
        run = make_fake_run(tmp_path, f"r{i}", seed=i)
        (run / "evals").mkdir()
        save_result(run, acc)
        runs.append(load_run(run))
    page = build_report(runs + [load_run(make_fake_run(tmp_path, "none", seed=5))])
    section = page[page.index('<section id="rublimp">') :]
    section = section[: section.index("</section>")]
    assert "63.1% ±2.0" in section and "65.5% ±2.0" in section and "59.6%" in section
    assert "add_new_suffix" in section and "91.0% ±2.0" in section and "Per phenomenon" in section
    assert ">none<" not in section  # a run without a score has no row
    assert 'id="rublimp"' not in build_report([load_run(tmp_path / "none")])


def test_a_stale_saved_suite_result_does_not_win_over_the_runs_own_final_eval(tmp_path):
    run = make_fake_run(tmp_path, "a")
    summary = json.loads((run / "summary.json").read_text())
    step = summary["train/global_step"]
    own = {"eval/rublimp_acc": 0.6, "eval/rublimp_acc_se": 0.01, "eval/rublimp_pairs": 2000}
    atomic_write_json(run / "summary.json", {**summary, **own})
    (run / "evals").mkdir()
    save_result(run, 0.63)
    result = json.loads((run / "evals" / "rublimp.json").read_text())

    def saved(checkpoint_step, pairs):
        atomic_write_json(
            run / "evals" / "rublimp.json",
            {**result, "checkpoint": str(run / "checkpoints" / f"step_{checkpoint_step:07d}"), "pairs": pairs},
        )
        return suite_accuracy(load_run(run))

    assert saved(step - 1, 2000) == 0.6  # scored an earlier checkpoint: the run was extended since
    assert saved(step, 100) == 0.6  # the current model, but fewer pairs than the run's own final eval
    assert saved(step, 2000) == 0.63


def test_the_suite_curve_keeps_the_final_evals_larger_pair_set_apart():
    # the report joined the final eval's 100-pair accuracy to the 20-pair line of the evals during training
    from slovo.records import split_evals

    records = [{"eval/rublimp_acc": a, "eval/rublimp_pairs": 20, "eval/windows": 32} for a in (0.55, 0.57, 0.6)]
    records.append({"eval/rublimp_acc": 0.58, "eval/rublimp_pairs": 100, "eval/windows": 32})
    line, final = split_evals(records, "eval/rublimp_acc")
    assert [r["eval/rublimp_acc"] for r in line] == [0.55, 0.57, 0.6] and final["eval/rublimp_acc"] == 0.58
    assert split_evals(records[:3], "eval/rublimp_acc") == (records[:3], None)
