"""`slovo runs` shows each run's bpb with its eval standard error and the lr it trained at after rollbacks."""

from __future__ import annotations

import json

from slovo.cli import main
from tests.fake_runs import make_fake_run


def _patch_summary(run, **values):
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, **values}))


def test_runs_table_shows_bpb_with_its_standard_error_and_the_lr_after_rollbacks(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    cut = make_fake_run(tmp_path, "cut", overrides={"optim.name": "adamw", "optim.lr": 0.004})
    plain = make_fake_run(tmp_path, "plain", overrides={"optim.name": "adamw", "optim.lr": 0.002})
    _patch_summary(cut, **{"eval/bpb_se": 0.0123, "lr_scale": 0.25, "rollbacks": 2})
    _patch_summary(plain, **{"lr_scale": 1.0})
    assert main(["runs", str(tmp_path), "--sort", "name"]) == 0
    out = capsys.readouterr().out
    assert "± 0.0123" in out
    assert "0.001 (0.004 x 1/4)" in out  # the effective lr, with the nominal and the cut
    assert main(["runs", str(tmp_path), "--json", "--sort", "name"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["cut"]["lr"] == 0.001 and rows["cut"]["lr_nominal"] == 0.004 and rows["cut"]["eval_bpb_se"] == 0.0123
    assert rows["plain"]["lr"] == 0.002 and rows["plain"]["eval_bpb_se"] is None


def test_muon_runs_show_the_muon_lr(tmp_path, capsys):
    run = make_fake_run(tmp_path, "m", overrides={"optim.name": "muon", "optim.muon_lr": 0.015})
    _patch_summary(run, lr_scale=0.5)
    assert main(["runs", str(tmp_path), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["lr_nominal"] == 0.015 and row["lr"] == 0.0075
