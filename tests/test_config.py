"""The config tree: presets load, overrides apply, bad keys and values are rejected by name."""

import re

import pytest

from slovo.config import (
    Config,
    apply_overrides,
    from_dict,
    known_keys,
    load_config,
    parse_duration,
    preset_names,
    save_config,
    to_dict,
)
from slovo.errors import SlovoError


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_builds_a_model(name):
    from slovo.model import GPT

    cfg = load_config(preset=name)
    assert cfg.preset == name
    cfg.model.vocab_size = 512
    if cfg.model.n_embd <= 256:  # only build the small ones; the shape check covers the rest
        assert GPT(cfg.model).num_params() > 0


def test_presets_cover_tiny_small_base_in_growing_size():
    assert {"tiny", "small", "base"} <= set(preset_names())
    sizes = [load_config(preset=n).model for n in ("tiny", "small", "base")]
    widths = [m.n_layer * m.n_embd**2 for m in sizes]
    assert widths == sorted(widths) and len(set(widths)) == 3


def test_dotted_overrides_are_typed_from_yaml_scalars():
    cfg = load_config(
        preset="tiny",
        overrides=[
            "optim.lr=1e-4",
            "train.per_device_train_batch_size=6",
            "schedule.drop_steps=[100, 200]",
            "sample.prompts=Привет",
        ],
    )
    assert cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.train.per_device_train_batch_size == 6
    assert cfg.schedule.drop_steps == [100, 200]
    assert cfg.sample.prompts == ["Привет"]


@pytest.mark.parametrize(
    "override, needle",
    [
        ("optim.lrr=1", "did you mean 'lr'"),
        ("nosuch.key=1", "unknown config key 'nosuch'"),
        ("optim=1", "is a section"),
        ("optim.lr.x=1", "is a value, not a section"),
        ("optim.lr=fast", "optim.lr: expected a number"),
        ("train.per_device_train_batch_size=2.5", "expected an integer"),
        ("schedule.name=linear", "schedule.name: must be one of"),
        ("optim.lr=-1", "optim.lr: must be positive"),
        ("budget.time=-5m", "budget.time: must not be negative"),
        ("model.n_embd=102", "divisible by model.n_head"),
    ],
)
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(SlovoError, match=re.escape(needle)):
        load_config(preset="tiny", overrides=[override])


def test_unknown_key_in_yaml_file_is_rejected(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text("optim:\n  learning_rate: 0.1\n", encoding="utf-8")
    with pytest.raises(SlovoError, match="optim.learning_rate"):
        load_config(config_file=p)


def test_step_drop_needs_drop_points():
    with pytest.raises(SlovoError, match="step_drop needs"):
        from_dict({"schedule": {"name": "step_drop"}})


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(preset="tiny", overrides={"optim.lr": 5e-4, "schedule.drop_at": [0.5]})
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(config_file=tmp_path / "config.yaml")
    assert to_dict(again) == to_dict(cfg)


def test_known_keys_lists_dotted_paths():
    keys = known_keys()
    for k in ("optim.lr", "train.gradient_accumulation_steps", "schedule.name", "budget.time", "model.n_layer"):
        assert k in keys


@pytest.mark.parametrize(
    "text, seconds", [("300s", 300), ("30m", 1800), ("1h30m", 5400), ("2h", 7200), ("90", 90), (45, 45)]
)
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["-5m", "soon", "", "5x", 0])
def test_bad_durations_are_rejected(text):
    with pytest.raises(SlovoError):
        parse_duration(text)


def test_defaults_validate():
    assert isinstance(from_dict({}), Config)
    assert apply_overrides({}, {"optim.lr": 1}) == {"optim": {"lr": 1}}
