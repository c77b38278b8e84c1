"""The command line's conventions: usage errors point at the subcommand's own help, `slovo config keys`."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from slovo.cli import main
from slovo.config import Config, known_keys


def test_a_subcommands_unknown_option_points_at_that_subcommands_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "--bogus" in err and "(see slovo train --help)" in err


def test_a_missing_argument_and_an_unknown_command_point_at_the_right_help(capsys):
    with pytest.raises(SystemExit):
        main(["generate"])
    assert "(see slovo generate --help)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bogus"])
    assert "(see slovo --help)" in capsys.readouterr().err


def test_bare_slovo_is_a_usage_error_with_the_help_on_stderr(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "usage: slovo" in err and "export" in err


def test_version_names_slovo_torch_cuda_and_python(capsys):
    import platform

    import torch

    from slovo import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert f"slovo {__version__}" in out and f"torch {torch.__version__}" in out and "CUDA" in out
    assert f"Python {platform.python_version()}" in out


@pytest.mark.parametrize("command", ["train", "generate", "eval", "export"])
def test_a_commands_help_shows_the_examples_of_its_docstring(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and (f"  slovo {command} runs/" in out or f"  slovo {command} --data" in out)


def test_config_keys_prints_every_key_with_its_default_and_comment(capsys):
    assert main(["config", "keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {}
    for line in lines:
        setting, sep, comment = line.partition("  # ")
        key, _, value = setting.strip().partition(" = ")
        assert sep and comment.strip(), f"no comment: {line}"
        listed[key] = yaml.safe_load(value)
    defaults = Config()
    for key in known_keys():
        value = defaults
        for part in key.split("."):
            value = getattr(value, part)
        if dataclasses.is_dataclass(value):  # a nested section: its own keys are listed
            assert any(k.startswith(key + ".") for k in listed), key
        else:
            assert listed[key] == value, key
    assert listed["debug.lr_spike.factor"] == Config().debug.lr_spike.factor


def test_config_keys_with_a_prefix_lists_only_those_and_an_unknown_prefix_is_one_line(capsys):
    assert main(["config", "keys", "optim.muon"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out and all(line.startswith("optim.muon") for line in out)
    assert main(["config", "keys", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nosuch" in err
