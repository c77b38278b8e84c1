"""docs/ARCHITECTURE.md "How to add": each recipe there registers a toy one here and runs it end to end."""

from __future__ import annotations

import pytest

from slovo import optim, schedules, tracking
from slovo.config import load_config
from slovo.errors import SlovoError
from slovo.train import train
from slovo.utils import read_jsonl


def _lrs(run_dir) -> list[float]:
    return [r["train/learning_rate"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/learning_rate" in r]


def test_a_registered_schedule_is_a_config_choice_and_drives_the_lr(tiny_config, tmp_path, monkeypatch):
    def halves_every_step(cfg, progress, step):
        return 0.5**step

    monkeypatch.setitem(schedules.SHAPES, "halving", halves_every_step)
    cfg = tiny_config(**{"schedule.name": "halving", "schedule.warmup": 0, "budget.max_steps": 4, "optim.lr": 1e-3})
    train(cfg, tmp_path / "run", quiet=True)
    assert _lrs(tmp_path / "run") == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])


def test_a_registered_optimizer_is_a_config_choice_with_its_own_peak_lr_per_group(tiny_config, tmp_path, monkeypatch):
    seen = {}

    def build_sgd(model, cfg, device):
        import torch

        decay, no_decay = optim.split_for_decay(model, cfg.decay_embeddings)
        opt = torch.optim.SGD([{"params": decay, "lr": cfg.lr}, {"params": no_decay, "lr": cfg.lr * 10}], lr=cfg.lr)
        seen["optimizer"] = opt
        return opt

    monkeypatch.setitem(optim.OPTIMIZERS, "toy_sgd", build_sgd)
    with pytest.raises(SlovoError, match="optim.name: must be one of .*toy_sgd"):
        tiny_config(**{"optim.name": "not_registered"})
    cfg = tiny_config(
        **{
            "optim.name": "toy_sgd",
            "schedule.name": "constant",
            "schedule.warmup": 0,
            "budget.max_steps": 3,
            "optim.lr": 1e-2,
        }
    )
    summary = train(cfg, tmp_path / "run", quiet=True)
    assert summary["status"] == "finished" and summary["train/global_step"] == 3
    groups = seen["optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-2, 1e-1])  # the schedule scaled each group's own peak


class ListSink:
    """A toy tracker sink: keeps what it is sent (the class a SINKS entry names)."""

    received: list[dict] = []

    def __init__(self, cfg, run_dir, resume=False, name=None):
        ListSink.received = []

    def log(self, metrics, step):
        ListSink.received.append(metrics)

    def log_samples(self, samples, step):
        ListSink.received.extend({"sample": s["text"]} for s in samples)

    def close(self):
        pass


def test_a_registered_tracker_sink_receives_every_record(tiny_config, tmp_path, monkeypatch):
    # (module, class, package that must be importable, pip extra named in the error when it is not)
    monkeypatch.setitem(tracking.SINKS, "listsink", (__name__, "ListSink", "json", "listsink"))
    cfg = tiny_config(**{"tracking.report_to": ["listsink"], "budget.max_steps": 4})
    train(cfg, tmp_path / "run", quiet=True)
    on_disk = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r for r in ListSink.received if "sample" not in r] == on_disk
    assert any("sample" in r for r in ListSink.received)


def test_a_preset_file_in_the_presets_folder_is_loadable_by_name(tmp_path, monkeypatch):
    import slovo.config

    (tmp_path / "pico.yaml").write_text("model:\n  n_layer: 1\n  n_embd: 64\n  n_head: 2\nbudget:\n  time: 1m\n")
    monkeypatch.setattr(slovo.config, "PRESETS_DIR", tmp_path)
    cfg = load_config(preset="pico")
    assert (cfg.model.n_layer, cfg.model.n_embd, cfg.preset, cfg.budget.time) == (1, 64, "pico", "1m")
    with pytest.raises(SlovoError, match="unknown preset 'nano'; choose one of: pico"):
        load_config(preset="nano")


def test_every_shipped_preset_loads_and_builds_its_model():
    """litgpt-style: the presets are tested, so a typo in one fails here, not 30 minutes into a run."""
    from slovo.config import preset_names
    from slovo.model import GPT

    names = preset_names()
    assert {"tiny", "small", "base"} <= set(names)
    for name in names:
        cfg = load_config(preset=name)
        cfg.model.vocab_size = 512
        assert GPT(cfg.model).num_params() > 0


def test_a_registered_file_format_is_read_by_prepare(tmp_path, monkeypatch):
    """A toy `.csvtext` format: one document per line after a header."""
    from slovo.cli import main
    from slovo.data import load_dataset, load_tokenizer, sources

    def read_lines(path, opts, stats):
        lines = path.read_text(encoding="utf-8").splitlines()[1:]  # after the header
        for i, line in enumerate(lines):
            yield f"{path.name}:{i}", line, path.stat().st_size * (i + 1) // len(lines)

    monkeypatch.setitem(sources.FILE_READERS, "csvtext", ((".csvtext",), read_lines))
    words = "в начале было слово и слово было у бога".split()
    lines = [" ".join(words[i % 9 :] + words[: i % 9]) + f" {i}" for i in range(400)]
    (tmp_path / "corpus.csvtext").write_text("text\n" + "\n".join(lines) + "\n", encoding="utf-8")
    assert (
        main(
            [
                "prepare",
                "--data",
                str(tmp_path / "corpus.csvtext"),
                "--out",
                str(tmp_path / "ds"),
                "--vocab-size",
                "300",
                "--min-val-tokens",
                "200",
                "--quiet",
            ]
        )
        == 0
    )
    ds = load_dataset(tmp_path / "ds")
    assert ds.meta["reading"]["documents"] == 400
    text = load_tokenizer(ds.tokenizer_path).decode(list(map(int, ds.train[:200])))
    assert "слово" in text and "text" not in text.split()  # the header line was not a document
