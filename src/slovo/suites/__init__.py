"""Benchmark suites of minimal pairs, by name: `--suite NAME[:ARG]` and `eval.suites` are checked against `SUITES`.

A suite loader takes the part after the colon ("" when there is none) and returns a `MinimalPairs`
(`slovo.suites.rublimp`). Scoring lives in `slovo.suites.scoring`, which imports torch; this module does not,
so the config can check names cheaply.
"""

from __future__ import annotations

from collections.abc import Callable

from slovo.errors import SlovoError
from slovo.suites.rublimp import MinimalPairs, load_rublimp

# name -> loader(arg) -> MinimalPairs; `rublimp` (the shared copy, $SLOVO_RUBLIMP_DIR, else the hub),
# `rublimp:DIR` (a folder of the published CSVs), `rublimp:hub` (the HF hub dataset)
SUITES: dict[str, Callable[[str], MinimalPairs]] = {"rublimp": load_rublimp}


def split_suite_spec(spec: str, where: str = "--suite") -> tuple[str, str]:
    """'rublimp:/data/rublimp' -> ('rublimp', '/data/rublimp'); an unknown name is one line listing the known."""
    name, _, arg = str(spec).partition(":")
    name = name.strip()
    if name not in SUITES:
        raise SlovoError(f"{where}: unknown suite {name!r}; known: {', '.join(SUITES)} (NAME or NAME:FOLDER)")
    return name, arg.strip()


def load_suite(spec: str, where: str = "--suite") -> MinimalPairs:
    """The suite `spec` names, read and checked (one SlovoError line for a missing or malformed source)."""
    name, arg = split_suite_spec(spec, where)
    return SUITES[name](arg)
