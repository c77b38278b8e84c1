"""slovo compare: configs trained over paired seeds as one resumable sweep, then the verdict; bad input refused."""

from __future__ import annotations

import json

import pytest
import yaml

from slovo.cli import main
from slovo.compare import build_candidates, parse_assignments
from slovo.errors import SlovoError
from slovo.utils import read_json, read_jsonl
from tests.conftest import TINY_RUN

# the tiny run's values for every config compared; the budget comes from compare's own flags
TINY_COMPARE_SETS = [
    f"--set={k}={v}" for k, v in TINY_RUN.items() if not k.startswith("budget.") and k != "optim.lr"
] + ["--set=sample.enabled=false", "--set=eval.every=2"]


def _compare(dataset, out, *extra):
    return main(
        [
            "compare",
            "--data",
            str(dataset),
            "--out",
            str(out),
            "--name",
            "lr",
            "--seeds",
            "2",
            "--seed",
            "7",
            "--max-steps",
            "3",
            "--variant",
            "optim.lr=0.002",
            "--variant",
            "optim.lr=0.03",
            *TINY_COMPARE_SETS,
            *extra,
        ]
    )


def test_compare_trains_each_config_on_paired_seeds_prints_the_verdict_and_resumes(small_dataset, tmp_path, capsys):
    out = tmp_path / "compares"
    assert _compare(small_dataset, out) == 0
    printed = capsys.readouterr().out
    folder = out / "lr"
    trials = sorted(p.name for p in (folder / "trials").iterdir())
    assert len(trials) == 4  # 2 configs x 2 seeds
    seeds = {}
    for t in trials:
        cfg = yaml.safe_load((folder / "trials" / t / "config.yaml").read_text())
        seeds.setdefault(cfg["optim"]["lr"], []).append(cfg["train"]["seed"])
    assert sorted(seeds[0.002]) == sorted(seeds[0.03]) == [7, 8]  # the same two seeds, from --seed
    result = read_json(folder / "verdict.json")
    assert [r["name"] for r in result["rows"]] == ["optim.lr=0.002", "optim.lr=0.03"]
    assert all(r["seeds"] == 2 and r["eval_se"] > 0 for r in result["rows"])  # the loop records eval/bpb_se
    (pair,) = result["pairs"]
    assert pair["n"] == 2 and pair["low"] <= pair["diff"] <= pair["high"]
    assert pair["line"] in printed and "paired seeds (train.seed 7, 8)" in printed
    assert "lower than" in pair["line"] or pair["line"].startswith("no difference detectable with 2 seeds")
    assert (folder / "verdict.md").read_text().count("| optim.lr=") == 2

    # the folder is a sweep: the same command again trains nothing and gives the same verdict
    steps = {t: len(read_jsonl(folder / "trials" / t / "metrics.jsonl")) for t in trials}
    assert _compare(small_dataset, out) == 0
    again = capsys.readouterr().out
    assert "nothing left to run" in again and pair["line"] in again
    assert steps == {t: len(read_jsonl(folder / "trials" / t / "metrics.jsonl")) for t in trials}
    # and another comparison under the same name is refused rather than mixed in
    assert _compare(small_dataset, out, "--set=optim.weight_decay=0.2") == 2
    assert "holds another comparison" in capsys.readouterr().err


def test_compare_refuses_a_single_seed_with_one_line_naming_the_minimum(small_dataset, tmp_path, capsys):
    code = main(["compare", "tiny", "small", "--seeds", "1", "--data", str(small_dataset), "--max-steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--seeds" in err and "at least 2" in err


def _fake_run(folder, dataset, seq_len=32):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": {"path": str(dataset)}, "model": {"seq_len": seq_len}}))
    return folder


def test_compare_refuses_run_folders_trained_on_different_datasets(small_dataset, tmp_path, capsys):
    a = _fake_run(tmp_path / "a", small_dataset)
    b = _fake_run(tmp_path / "b", tmp_path / "other-dataset")
    code = main(["compare", str(a), str(b), "--seeds", "2", "--max-steps", "2", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "different datasets" in err


def test_compare_refuses_configs_scoring_different_eval_sets(small_dataset, tmp_path, capsys):
    code = main(
        ["compare", "--variant", "model.seq_len=32", "--variant", "model.seq_len=64", "--seeds", "2"]
        + ["--data", str(small_dataset), "--max-steps", "2", "--out", str(tmp_path / "c")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "different eval sets" in err
    assert not list((tmp_path / "c").glob("*/trials"))  # refused before anything trained


def test_variants_parse_dotted_values_and_lists():
    assert parse_assignments("optim.lr=0.002,schedule.name=wsd", "v") == {"optim.lr": 0.002, "schedule.name": "wsd"}
    assert parse_assignments("tracking.report_to=[a,b]", "v") == {"tracking.report_to": ["a", "b"]}
    with pytest.raises(SlovoError):
        parse_assignments("optim.lr", "v")


def test_a_comparison_needs_two_configs():
    with pytest.raises(SlovoError, match="two or more configs"):
        build_candidates(["tiny"], [], None, None)
    names = [c.name for c in build_candidates(["tiny", "tiny"], [], None, None)]
    assert names == ["tiny", "tiny#2"]


def test_verdict_json_is_plain_json(small_dataset, tmp_path):
    # the verdict figures are floats and lists a reader can load without slovo
    from slovo.compare import verdict

    groups = {
        "a": {i: {"value": 1.0 + 0.001 * i, "se": 0.01, "run_dir": "x", "eval_set": None} for i in range(3)},
        "b": {i: {"value": 1.1 + 0.002 * i, "se": 0.01, "run_dir": "y", "eval_set": None} for i in range(3)},
    }
    result = verdict(groups, ["a", "b"])
    assert json.loads(json.dumps(result))["best"] == "a"
    assert result["lines"][0].startswith("a lower than b by 0.1")


def test_compare_rows_carry_the_mean_eval_standard_error_of_their_runs(tmp_path):
    from slovo.compare import group_results, verdict

    runs = []
    for name, base in (("a", 1.0), ("b", 1.2)):
        for seed in range(2):
            run_dir = tmp_path / f"{name}{seed}"
            run_dir.mkdir()
            (run_dir / "summary.json").write_text(json.dumps({"eval/bpb_se": 0.01 * (seed + 1)}))
            runs.append(
                {
                    "status": "finished",
                    "eval/bpb": base + 0.01 * seed,
                    "run_dir": str(run_dir),
                    "seed_index": seed,
                    "params": {"variant": name},
                }
            )
    result = verdict(group_results(runs), ["a", "b"])
    assert [r["eval_se"] for r in result["rows"]] == [pytest.approx(0.015), pytest.approx(0.015)]


def test_the_same_set_key_twice_points_to_variant(small_dataset, capsys):
    code = main(
        ["compare", "--preset", "tiny", "--set", "optim.muon_lr=0.015", "--set", "optim.muon_lr=0.0075"]
        + ["--seeds", "3", "--data", str(small_dataset), "--time", "60s"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--variant optim.muon_lr=VALUE" in err


def test_an_unknown_key_in_a_variant_is_one_line_naming_it(small_dataset, tmp_path, capsys):
    code = main(
        ["compare", "--variant", "optim.lrr=0.1", "--variant", "optim.lr=0.1", "--seeds", "2"]
        + ["--data", str(small_dataset), "--max-steps", "2", "--out", str(tmp_path / "c")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "optim.lrr" in err and "did you mean 'optim.lr'" in err


@pytest.mark.parametrize("second", [1.0141, 1.0, 1.0 + 1e-15, 1.3])
def test_two_seeds_give_a_verdict_whatever_their_spread_zero_included(second):
    # spreads like these made detectable_difference raise (nan power at df = 1) after every run had trained
    from slovo.compare import verdict

    groups = {
        "a": {i: {"value": 1.0, "se": 0.01, "run_dir": "x", "eval_set": None} for i in range(2)},
        "b": {0: {"value": 1.0, "se": 0.01, "run_dir": "y", "eval_set": None}},
    }
    groups["b"][1] = {"value": second, "se": 0.01, "run_dir": "y", "eval_set": None}
    result = verdict(groups, ["a", "b"])
    (line,) = result["lines"]
    assert "2 seeds" in line and "nan" not in line
    json.loads(json.dumps(result, allow_nan=False))


def test_more_than_two_configs_are_judged_with_holm_over_every_pair():
    from slovo.compare import verdict

    values = {"a": [1.000, 1.010, 1.020], "b": [1.004, 1.016, 1.022], "c": [1.004, 1.013, 1.026]}
    groups = {
        n: {i: {"value": v, "se": 0.01, "run_dir": n, "eval_set": None} for i, v in enumerate(vs)}
        for n, vs in values.items()
    }
    result = verdict(groups, list(values))
    assert result["best"] == "a"
    pairs = {p["b"] if p["a"] == "a" else p["a"]: p for p in result["pairs"]}
    # a - c alone: p = 0.039 < 0.05; adjusted over the 3 pairs the best could have been picked from, not called
    assert pairs["c"]["p"] > 0.05 and all(r["indistinguishable_from_best"] for r in result["rows"])
    assert "Holm-adjusted over 3 pairs" in pairs["c"]["line"]
