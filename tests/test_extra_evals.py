"""`eval.suites`, `eval.suite_pairs` and `eval.extra` in the config, and what each eval calls: the sets are read
once before training (bad ones are one line then) and `suite_metrics` records eval/NAME/bpb and eval/rublimp_acc,
the extra sets scored by the same code as `slovo eval --data`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_generate import TEXTS, make_checkpointed_run  # noqa: E402
from test_suites import write_suite  # noqa: E402

from slovo.cli import main  # noqa: E402
from slovo.config import load_config  # noqa: E402
from slovo.data import token_byte_lengths  # noqa: E402
from slovo.errors import SlovoError  # noqa: E402
from slovo.extra_evals import prepare_eval_extras, suite_metrics  # noqa: E402
from slovo.train.checkpoint import load_for_inference  # noqa: E402


def test_eval_suites_and_extra_sets_are_read_from_set_flags():
    cfg = load_config(preset="tiny", overrides=["eval.suites=[rublimp]", "eval.extra.wiki=/data/wiki.jsonl"])
    assert cfg.eval.suites == ["rublimp"] and cfg.eval.extra == {"wiki": "/data/wiki.jsonl"}
    assert cfg.eval.suite_pairs == 20 and cfg.eval.suite_final_pairs == 100


@pytest.mark.parametrize(
    "overrides, says",
    [
        (["eval.suites=[blimp]"], "eval.suites[0]: unknown suite 'blimp'"),
        (["eval.extra=5"], "eval.extra: expected a mapping"),
        (["eval.extra.a/b=x.txt"], "eval.extra: name 'a/b'"),
        (["eval.suite_pairs=0"], "eval.suite_pairs: must be positive"),
    ],
)
def test_a_bad_suite_or_extra_set_setting_is_one_line_naming_the_key(overrides, says):
    with pytest.raises(SlovoError) as err:
        load_config(preset="tiny", overrides=overrides)
    assert says in str(err.value) and "\n" not in str(err.value)


@pytest.fixture
def run_with_sets(tmp_path):
    """A run (float32, context 64), a text file for eval.extra and a two-phenomenon RuBLiMP folder."""
    run, _, _ = make_checkpointed_run(tmp_path / "run", seq_len=64)
    cfg_path = run / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace("dtype: auto", "dtype: float32"))
    text = tmp_path / "other.txt"
    text.write_text("\n\n".join(TEXTS * 4), encoding="utf-8")
    return run, text, write_suite(tmp_path / "rublimp")


def test_an_unreadable_extra_set_or_suite_is_one_line_before_training(run_with_sets, tmp_path):
    run, _, suite_dir = run_with_sets
    _, cfg, tok = load_for_inference(run)
    cfg.eval.extra = {"wiki": str(tmp_path / "missing.jsonl")}
    with pytest.raises(SlovoError, match=r"^eval\.extra\.wiki: .*missing\.jsonl") as err:
        prepare_eval_extras(cfg, tok)
    assert "\n" not in str(err.value)
    cfg.eval.extra, cfg.eval.suites = {}, [f"rublimp:{tmp_path / 'nowhere'}"]
    with pytest.raises(SlovoError, match="no such folder"):
        prepare_eval_extras(cfg, tok)


def test_suite_metrics_record_the_extra_bpb_of_slovo_eval_data_and_the_suite_accuracy(run_with_sets, capsys):
    run, text, suite_dir = run_with_sets
    model, cfg, tok = load_for_inference(run)
    cfg.eval.extra = {"other": str(text)}
    cfg.eval.suites = [f"rublimp:{suite_dir}"]
    cfg.eval.suite_pairs, cfg.eval.suite_final_pairs = 2, 0
    extras = prepare_eval_extras(cfg, tok)
    during = suite_metrics(model, extras, tok, cfg, token_byte_lengths(tok), "cpu")
    final = suite_metrics(model, extras, tok, cfg, token_byte_lengths(tok), "cpu", final=True)

    assert main(["eval", str(run), "--data", str(text), "--json"]) == 0
    assert during["eval/other/bpb"] == pytest.approx(json.loads(capsys.readouterr().out)["eval/bpb"], rel=1e-6)
    assert during["eval/rublimp_pairs"] == 4  # 2 of each phenomenon during training
    assert final["eval/rublimp_pairs"] == 9  # the whole suite at the end (eval.suite_final_pairs=0)
    assert 9 / 4 * 0.5 < extras.final_cost_ratio() < 9 / 4  # extra set the same at both, suite 9 pairs against 4
    assert 0 <= during["eval/rublimp_acc"] <= 1 and during["eval/rublimp_acc_se"] > 0
    assert during == suite_metrics(model, extras, tok, cfg, token_byte_lengths(tok), "cpu") | {
        "eval/rublimp_runtime": during["eval/rublimp_runtime"]
    }  # the same subset, the same figures, every eval


def test_a_run_with_suites_and_extra_sets_records_them_at_every_eval_within_the_eval_share(
    small_dataset, tmp_path, capsys
):
    from slovo.utils import read_jsonl
    from tests.helpers import tiny_train_args

    text = tmp_path / "other.txt"
    text.write_text("\n\n".join(TEXTS * 4), encoding="utf-8")
    suite_dir = write_suite(tmp_path / "rublimp")
    sets = [f"--set=eval.suites=[rublimp:{suite_dir}]", f"--set=eval.extra.other={text}", "--set=eval.suite_pairs=2"]
    assert main(tiny_train_args(small_dataset, tmp_path, "r", "--max-steps", "4", *sets)) == 0
    evals = [r for r in read_jsonl(tmp_path / "r" / "metrics.jsonl") if "eval/loss" in r]
    assert len(evals) >= 2 and all("eval/other/bpb" in r and "eval/rublimp_acc" in r for r in evals)
    assert [r["eval/rublimp_pairs"] for r in evals][:-1] == [4] * (len(evals) - 1)  # 2 per phenomenon
    assert evals[-1]["eval/rublimp_pairs"] == 9  # the final eval: min(100, all) per phenomenon
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["eval/rublimp_acc"] == evals[-1]["eval/rublimp_acc"] and "eval/rublimp_acc_se" in summary
    assert summary["eval/rublimp_pairs"] == evals[-1]["eval/rublimp_pairs"]  # what a saved file must match
    assert summary["eval/other/bpb"] == evals[-1]["eval/other/bpb"]


def test_an_unreadable_extra_set_stops_training_before_it_starts_with_one_line(small_dataset, tmp_path, capsys):
    from tests.helpers import tiny_train_args

    args = tiny_train_args(small_dataset, tmp_path, "bad", "--max-steps", "2", f"--set=eval.extra.x={tmp_path}/no.txt")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "eval.extra.x" in err and "\n" not in err
    assert not any((tmp_path / "bad").iterdir())  # stopped before any of the run folder was written
