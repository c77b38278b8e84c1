"""The shape rule for all of src/: no function longer than 60 lines (decorators and docstring included), except the
named ones below. The list only shrinks: a function on it that has been split to 60 lines or fewer fails the test
until its entry is removed, and nothing may join it."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "slovo"
MAX_LINES = 60

# Functions still longer than MAX_LINES, to be split; shorter than the 14 the rule started with.
ALLOWED = {
    "data/prepare.py::prepare",
    "sweep/workers.py::run_sweep",
    "evaluate.py::evaluate",
}


def function_lengths(root: Path) -> dict[str, int]:
    """'path/module.py::function' -> its length in lines (decorators and docstring included), for every function
    and method under `root` (a method is named by its function name alone)."""
    lengths = {}
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                key = f"{name}::{node.name}"
                lengths[key] = max(lengths.get(key, 0), node.end_lineno - start + 1)
    return lengths


def test_the_counter_counts_decorators_and_body(tmp_path):
    (tmp_path / "m.py").write_text("@staticmethod\ndef f():\n    x = 1\n\n    return x\n")
    assert function_lengths(tmp_path) == {"m.py::f": 5}


def test_no_function_in_src_is_longer_than_60_lines_except_the_shrinking_allowlist():
    lengths = function_lengths(SRC)
    assert "train/trainer.py::train_step" in lengths
    too_long = {name for name, n in lengths.items() if n > MAX_LINES}
    assert too_long - ALLOWED == set(), "split these (the allowlist only shrinks)"
    assert ALLOWED - too_long == set(), "these are short now (or gone): remove them from ALLOWED"
    assert len(ALLOWED) < 14
