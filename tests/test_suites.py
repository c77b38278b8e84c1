"""Minimal-pair suites (RuBLiMP): reading the CSV folder and refusing malformed ones, the fixed stratified subset,
sentence scoring (padding, windows, batching) against a plain one-sentence-at-a-time computation and against
transformers on an exported model, planted preferences, accuracy tables, and `slovo eval --suite`."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from test_generate import make_checkpointed_run, make_model, make_tokenizer  # noqa: E402

from slovo.cli import main  # noqa: E402
from slovo.errors import SlovoError  # noqa: E402
from slovo.suites import load_suite, split_suite_spec  # noqa: E402
from slovo.suites.rublimp import SHARED_DIR, load_csv_folder, select_pairs  # noqa: E402
from slovo.suites.scoring import (  # noqa: E402
    accuracy_report,
    encode_pairs,
    pair_outcomes,
    score_pairs,
    sentence_logprobs,
    sentence_windows,
    wilson_interval,
)

COLUMNS = [
    "id",
    "source_sentence",
    "target_sentence",
    "source_word",
    "target_word",
    "level",
    "phenomenon",
    "PID",
    "subtype",
    "domain",
    "tree_depth",
]
# two phenomena as RuBLiMP publishes them; every ungrammatical twin carries a '#', which no good sentence has
PAIRS = {
    "noun_agreement": (
        "Morphology",
        "Noun Phrase Agreement",
        [
            ("В начале было слово.", "В начале было слова #."),
            ("Мороз и солнце; день чудесный!", "Мороз и солнце; день чудесная #!"),
            ("Ещё ты дремлешь, друг прелестный.", "Ещё ты дремлешь, друг прелестная #."),
            ("Слово было у Бога.", "Слово были у Бога #."),
            ("Все семьи похожи друг на друга.", "Все семьи похожа друг на друга #."),
        ],
    ),
    "verb_aspect": (
        "Syntax",
        "Aspect",
        [
            ("И слово было Бог.", "И слово будет было Бог #."),
            ("День чудесный.", "День #."),
            ("Каждая семья несчастлива по-своему.", "Каждая семья несчастливы по-своему #."),
            ("Друг прелестный дремлешь.", "Друг прелестный дремлешь #."),
        ],
    ),
}


def write_suite(folder: Path, pairs: dict = PAIRS, columns: list[str] = COLUMNS) -> Path:
    """A folder of RuBLiMP-format CSV files, one per phenomenon."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for pid, (level, group, rows) in pairs.items():
        with open(folder / f"{pid}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for good, bad in rows:
                n += 1
                writer.writerow(
                    {
                        "id": n,
                        "source_sentence": good,
                        "target_sentence": bad,
                        "source_word": "",
                        "target_word": "",
                        "level": level,
                        "phenomenon": group,
                        "PID": pid,
                        "subtype": pid,
                        "domain": "test",
                        "tree_depth": 2,
                    }
                )
    return folder


@pytest.fixture
def suite_dir(tmp_path) -> Path:
    return write_suite(tmp_path / "rublimp")


def plain_logprob(model, ids: list[int], bos: int = 0) -> float:
    """One sentence, alone, no batching or padding: sum of log p(token | <|endoftext|> and the tokens before)."""
    seq = torch.tensor([[bos, *ids]])
    with torch.no_grad():
        logits, _ = model(seq[:, :-1])
    return float(F.log_softmax(logits.double(), -1)[0].gather(1, seq[0, 1:, None]).sum())


# ---------------------------------------------------------------------------------------------
# reading


def test_csv_folder_gives_every_pair_with_its_phenomenon_group_and_level(suite_dir):
    suite = load_suite(f"rublimp:{suite_dir}")
    assert len(suite) == 9
    assert suite.good[0] == "В начале было слово." and suite.bad[0] == "В начале было слова #."
    assert set(suite.phenomenon) == {"noun_agreement", "verb_aspect"}
    assert suite.level[suite.phenomenon.index("verb_aspect")] == "Syntax"
    assert suite.group[0] == "Noun Phrase Agreement"


def test_plain_rublimp_reads_the_folder_named_by_the_environment(suite_dir, monkeypatch):
    monkeypatch.setenv("SLOVO_RUBLIMP_DIR", str(suite_dir))
    assert load_suite("rublimp").source == str(suite_dir.resolve())


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda d: d / "absent", "no such folder"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "holds no .csv files"),
        (lambda d: write_suite(d / "cols", columns=[c for c in COLUMNS if c != "target_sentence"]), "target_sentence"),
        (lambda d: write_suite(d / "blank", {"p": ("Syntax", "G", [("Хорошо.", "")])}), "empty source_sentence"),
        (lambda d: (d / "f.csv").write_text("x") and d / "f.csv", "is a file"),
    ],
)
def test_a_missing_or_malformed_suite_folder_is_one_line_naming_the_problem(tmp_path, make, says):
    with pytest.raises(SlovoError) as err:
        load_suite(f"rublimp:{make(tmp_path)}")
    assert says in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_suite_name_is_one_line_listing_the_known_ones():
    with pytest.raises(SlovoError, match="unknown suite 'blimp'; known: rublimp"):
        split_suite_spec("blimp")


@pytest.mark.slow  # importing datasets takes seconds
def test_hub_offline_is_one_line_pointing_at_a_local_copy(monkeypatch, tmp_path):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to fall back on
    with pytest.raises(SlovoError, match=r"rublimp:hub: could not load RussianNLP/rublimp.*rublimp:FOLDER"):
        load_suite("rublimp:hub")


def test_subset_takes_n_pairs_of_each_phenomenon_the_same_every_time_and_nested(suite_dir):
    suite = load_csv_folder(suite_dir)
    two = select_pairs(suite, 2)
    assert [suite.phenomenon[i] for i in two].count("noun_agreement") == 2
    assert [suite.phenomenon[i] for i in two].count("verb_aspect") == 2
    assert np.array_equal(two, select_pairs(suite, 2))
    assert set(two) <= set(select_pairs(suite, 3))
    assert len(select_pairs(suite, 100)) == len(suite) == len(select_pairs(suite, 0))


def test_first_subset_takes_each_phenomenons_first_pairs_in_file_order(suite_dir):
    suite = load_csv_folder(suite_dir)
    first = select_pairs(suite, 2, first=True)
    expected = []
    for name in dict.fromkeys(suite.phenomenon):
        expected += [i for i, p in enumerate(suite.phenomenon) if p == name][:2]
    assert first.tolist() == sorted(expected)
    assert len(select_pairs(suite, 100, first=True)) == len(suite)


# ---------------------------------------------------------------------------------------------
# scoring


def test_windows_score_every_token_of_a_long_sentence_once_with_at_least_half_a_context():
    ids = list(range(1, 80))
    rows = sentence_windows(ids, 0, seq_len=16)
    targets = []
    for row, first in rows:
        assert len(row) <= 17
        targets += row[first:]
        if row[0] != 0:  # a later window
            assert first >= 8
    assert targets == ids
    assert sentence_windows([5, 6], 0, 16) == [([0, 5, 6], 1)]


def test_batched_padded_windowed_scores_equal_one_sentence_at_a_time(suite_dir):
    tok = make_tokenizer()
    model = make_model(tok.get_vocab_size(), seq_len=16)
    pairs = encode_pairs(load_csv_folder(suite_dir), tok)
    assert max(len(s) for s in pairs.good + pairs.bad) > 16  # some sentences need windows
    good, bad = sentence_logprobs(model, pairs, seq_len=16, batch_size=4)
    big = make_model(tok.get_vocab_size(), seq_len=64)
    big.load_state_dict(model.state_dict())  # same weights, a context every sentence fits in
    for i in range(len(pairs.good)):
        assert good[i] == pytest.approx(plain_logprob(big, pairs.good[i]), abs=1e-3) or len(pairs.good[i]) > 16
        assert bad[i] == pytest.approx(plain_logprob(big, pairs.bad[i]), abs=1e-3) or len(pairs.bad[i]) > 16
    good64, bad64 = sentence_logprobs(big, pairs, seq_len=64, batch_size=3)
    for i in range(len(pairs.good)):  # no window needed: batched and padded equals alone
        assert good64[i] == pytest.approx(plain_logprob(big, pairs.good[i]), abs=1e-4)
        assert bad64[i] == pytest.approx(plain_logprob(big, pairs.bad[i]), abs=1e-4)


def test_a_windowed_sentence_scores_each_token_with_its_own_window_context(suite_dir):
    # a later window predicts its tokens from the tokens before them in the sentence: computed here by hand, token
    # by token, so a context shifted by one (a wrong offset) would not match
    tok = make_tokenizer()
    model = make_model(tok.get_vocab_size(), seq_len=16)
    pairs = encode_pairs(load_csv_folder(suite_dir), tok)
    i = max(range(len(pairs.good)), key=lambda k: len(pairs.good[k]))
    ids = pairs.good[i]
    assert len(ids) > 24  # three windows or more
    seq, expected, step = [pairs.bos_id, *ids], 0.0, 8
    for t in range(1, len(seq)):  # target t: the 16 tokens before it up to its window's start
        start = 0 if t <= 16 else min(len(seq), 17 + ((t - 17) // step + 1) * step) - 17
        ctx = torch.tensor([seq[start:t]])
        with torch.no_grad():
            logits, _ = model(ctx)
        expected += float(F.log_softmax(logits[0, -1].double(), -1)[seq[t]])
    good, _ = sentence_logprobs(model, pairs, seq_len=16, batch_size=4)
    assert good[i] == pytest.approx(expected, abs=1e-3)
    big = make_model(tok.get_vocab_size(), seq_len=64)
    big.load_state_dict(model.state_dict())
    assert good[i] != pytest.approx(plain_logprob(big, ids), abs=1e-3)  # the windows' shorter contexts tell


class PlantedModel(torch.nn.Module):
    """Prefers sentences without the given token ids: predicting one costs 30 nats more than any other token."""

    def __init__(self, vocab: int, penalised: set[int]):
        super().__init__()
        self.bias = torch.zeros(vocab)
        self.bias[list(penalised)] = -30.0

    def forward(self, idx):
        return self.bias.expand(*idx.shape, -1).clone(), None


def test_a_model_that_prefers_every_good_sentence_scores_100_and_swapping_scores_0(suite_dir):
    tok = make_tokenizer()
    suite = load_csv_folder(suite_dir)
    pairs = encode_pairs(suite, tok)
    only_bad = {i for s in pairs.bad for i in s} - {i for s in pairs.good for i in s}
    assert all(set(s) & only_bad for s in pairs.bad)
    model = PlantedModel(tok.get_vocab_size(), only_bad)
    result = score_pairs(model, pairs, seq_len=64)
    assert result["overall"]["sum"]["acc"] == 1.0 and result["overall"]["mean"]["acc"] == 1.0
    assert all(p["sum"]["acc"] == 1.0 for p in result["phenomena"].values())
    swapped = score_pairs(model, encode_pairs(suite.swapped(), tok), seq_len=64)
    assert swapped["overall"]["sum"]["acc"] == 0.0 and swapped["overall"]["mean"]["acc"] == 0.0


def test_swapping_good_and_bad_gives_exactly_one_minus_every_accuracy(suite_dir):
    tok = make_tokenizer()
    suite = load_csv_folder(suite_dir)
    model = make_model(tok.get_vocab_size())
    result = score_pairs(model, encode_pairs(suite, tok), seq_len=64)
    swapped = score_pairs(model, encode_pairs(suite.swapped(), tok), seq_len=64)
    accs = [result["overall"][c]["acc"] for c in result["criteria"]]
    assert any(0 < a < 1 for a in accs)  # a real mix, not a planted 100%
    for c in result["criteria"]:
        assert swapped["overall"][c]["acc"] == pytest.approx(1 - result["overall"][c]["acc"], abs=1e-12)
        for name, fig in result["phenomena"].items():
            assert swapped["phenomena"][name][c]["acc"] == pytest.approx(1 - fig[c]["acc"], abs=1e-12)


def test_baselines_pick_the_shorter_sentence_and_count_ties_as_half(suite_dir):
    tok = make_tokenizer()
    suite = load_csv_folder(suite_dir)
    pairs = encode_pairs(suite, tok, select_pairs(suite, 0))
    zeros = np.zeros(len(pairs.good))
    out = pair_outcomes(pairs, zeros, zeros)
    assert out["sum"].tolist() == [0.5] * len(zeros)  # equal scores: a tie each
    # every bad twin has the '#': longer in characters, except "День #." against "День чудесный."
    assert out["shorter_chars"].tolist() == [1.0] * 6 + [0.0] + [1.0] * 2
    report = accuracy_report(pairs, out)
    assert report["phenomena"]["verb_aspect"]["shorter_chars"]["acc"] == 0.75


def test_overall_is_the_mean_over_phenomena_with_an_interval_around_it(suite_dir):
    tok = make_tokenizer()
    result = score_pairs(make_model(tok.get_vocab_size()), encode_pairs(load_csv_folder(suite_dir), tok), 64)
    per = [p["sum"]["acc"] for p in result["phenomena"].values()]
    overall = result["overall"]["sum"]
    assert overall["acc"] == pytest.approx(sum(per) / len(per))
    assert overall["ci"][0] <= overall["acc"] <= overall["ci"][1]
    assert set(result["levels"]) == {"Morphology", "Syntax"}
    assert result["levels"]["Syntax"]["sum"]["acc"] == result["phenomena"]["verb_aspect"]["sum"]["acc"]
    assert set(result["groups"]) == {"Noun Phrase Agreement", "Aspect"}


def test_wilson_interval_matches_the_textbook_value_and_stays_inside_0_1():
    lo, hi = wilson_interval(8, 10)  # 0.8 of 10: 0.490 to 0.943 (Wilson 1927 / Agresti-Coull tables)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == pytest.approx(0.0)
    assert 0.0 <= wilson_interval(0, 3)[0] and wilson_interval(3, 3)[1] <= 1.0


# ---------------------------------------------------------------------------------------------
# the command


def test_slovo_eval_suite_prints_both_criteria_and_baselines_and_saves_the_result(suite_dir, tmp_path, capsys):
    run, _, _ = make_checkpointed_run(tmp_path / "run", seq_len=16)
    assert main(["eval", str(run), "--suite", f"rublimp:{suite_dir}"]) == 0
    out = capsys.readouterr().out
    for text in ("total log-prob (primary)", "mean log-prob per token", "shorter in characters", "shorter in tokens"):
        assert text in out
    assert "best phenomena" in out and "worst phenomena" in out
    assert "scored in windows" in out  # some test sentences are longer than 16 tokens
    saved = json.loads((run / "evals" / "rublimp.json").read_text())
    assert saved["pairs"] == 9 and saved["primary"] == "sum"
    assert main(["eval", str(run), "--suite", f"rublimp:{suite_dir}", "--pairs", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["pairs"] == 2 and printed["pairs_per_phenomenon"] == 1
    assert json.loads((run / "evals" / "rublimp.json").read_text())["pairs"] == 2
    assert main(["eval", str(run), "--suite", f"rublimp:{suite_dir}", "--pairs", "1", "--pairs-select", "first"]) == 0
    assert json.loads((run / "evals" / "rublimp.json").read_text())["pairs_select"] == "first"


@pytest.mark.parametrize(
    "args, says",
    [
        (["--suite", "blimp"], "unknown suite 'blimp'"),
        (["--suite", "rublimp:/no/such/folder"], "no such folder"),
        (["--pairs", "3"], "--pairs: only with --suite"),
    ],
)
def test_slovo_eval_suite_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, says):
    run, _, _ = make_checkpointed_run(tmp_path / "run")
    assert main(["eval", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err
    assert not (run / "evals").exists()


# ---------------------------------------------------------------------------------------------
# cross-checks


@pytest.mark.slow
def test_pair_scores_equal_those_transformers_computes_on_the_exported_model(suite_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    from slovo.export import export_run

    run, model, tok = make_checkpointed_run(tmp_path / "run", seq_len=64)
    hf = transformers.AutoModelForCausalLM.from_pretrained(export_run(run, tmp_path / "hf")).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    pairs = encode_pairs(load_csv_folder(suite_dir), tok)
    good, bad = sentence_logprobs(model, pairs, seq_len=64, batch_size=4)
    suite = pairs.suite
    for i in range(len(suite)):
        for text, ours in ((suite.good[i], good[i]), (suite.bad[i], bad[i])):
            ids = hf_tok(text, return_tensors="pt").input_ids  # the export's tokenizer puts <|endoftext|> first
            with torch.no_grad():
                logits = hf(ids).logits[0, :-1].double()
            theirs = float(F.log_softmax(logits, -1).gather(1, ids[0, 1:, None]).sum())
            assert ours == pytest.approx(theirs, abs=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DIR.is_dir(), reason="needs the shared RuBLiMP copy")
def test_the_shared_rublimp_has_45_phenomena_of_1000_pairs_in_three_levels():
    suite = load_suite("rublimp:" + str(SHARED_DIR))
    assert len(suite) == 45_000
    assert len(set(suite.phenomenon)) == 45
    assert set(suite.level) == {"Morphology", "Syntax", "Semantics"}
    subset = select_pairs(suite, 20)
    assert len(subset) == 900
    tok = make_tokenizer()
    two = select_pairs(suite, 2)  # scoring: 90 pairs are enough to see every phenomenon reported
    result = score_pairs(make_model(tok.get_vocab_size()), encode_pairs(suite, tok, two), seq_len=64)
    assert len(result["phenomena"]) == 45 and not math.isnan(result["overall"]["sum"]["acc"])
