"""`slovo config keys [PREFIX]`: every config key (what `--set KEY=VALUE` and sweep parameters take), with its
default and the comment that slovo/config.py gives it, one line each: `optim.lr = 0.001  # peak learning rate`.

The comments are read from config.py's source (a field's trailing comment, or the comment lines right above
it), so the schema stays the one place that says what a key means.

examples:
  slovo config keys
  slovo config keys optim.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["keys"], help="keys: list the config keys with their defaults and comments")
    parser.add_argument("prefix", nargs="?", default="", help="only keys starting with this, e.g. optim or optim.lr")


def all_keys() -> list[tuple[str, object]]:
    """(dotted key, default) for every settable key, nested sections included (debug.lr_spike.at)."""
    import dataclasses
    import typing

    from slovo.config import Config

    out: list[tuple[str, object]] = []

    def walk(cls, instance, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            value = getattr(instance, f.name)
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], value, f"{prefix}{f.name}.")
            else:
                out.append((prefix + f.name, value))

    walk(Config, Config(), "")
    return out


def section_classes() -> dict[str, str]:
    """{'OptimConfig': 'optim.'}: the dotted prefix of each dataclass in the config tree."""
    import dataclasses
    import typing

    from slovo.config import Config

    out = {"Config": ""}

    def walk(cls, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                out[hints[f.name].__name__] = f"{prefix}{f.name}."
                walk(hints[f.name], f"{prefix}{f.name}.")

    walk(Config, "")
    return out


def key_comments() -> dict[str, str]:
    """{'section.field': comment} for every config field commented where its section is defined (config.py, and
    optim.py / schedules.py for the sections kept beside their registries): its trailing comment, after the block
    of comment lines right above it."""
    import inspect

    from slovo import config, optim, schedules

    out: dict[str, str] = {}
    for module in (config, optim, schedules):
        out.update(_module_key_comments(inspect.getsource(module)))
    return out


def _module_key_comments(source: str) -> dict[str, str]:
    import ast
    import io
    import tokenize

    comments, own_line = {}, set()  # line -> comment text; lines holding nothing but a comment
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
            if tok.line.lstrip().startswith("#"):
                own_line.add(tok.start[0])
    prefixes = section_classes()
    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef) or node.name not in prefixes:
            continue
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            above, line = [], item.lineno - 1
            while line in own_line:
                above.insert(0, comments[line])
                line -= 1
            trailing = comments.get(item.end_lineno, "") if item.end_lineno not in own_line else ""
            text = "; ".join(filter(None, [*above, trailing]))
            if text:
                out[prefixes[node.name] + item.target.id] = text
    return out


def _default(value) -> str:
    """A default as it would be written in a YAML config."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip().removesuffix("...").strip()


def run(args: argparse.Namespace) -> int:
    from slovo.errors import SlovoError

    keys = [(k, v) for k, v in all_keys() if k.startswith(args.prefix)]
    if not keys:
        raise SlovoError(f"no config key starts with {args.prefix!r}; `slovo config keys` lists them all")
    comments = key_comments()
    rows = [(key, _default(value), comments.get(key, "")) for key, value in keys]
    width = max(len(k) + len(v) for k, v, _ in rows) + 3
    for key, value, comment in rows:
        line = f"{key} = {value}"
        print(f"{line:<{width}}  # {comment}" if comment else line)
    return 0
