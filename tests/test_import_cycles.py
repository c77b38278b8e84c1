"""slovo's modules import each other without cycles (function-level and `if TYPE_CHECKING:` imports included),
so each stage's package can be read, tested and changed on its own (function lengths: tests/test_shape.py)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source: at the top, inside functions and under
    `if TYPE_CHECKING:` (a cycle hidden there is still two modules that cannot be understood apart)."""
    modules = {}
    for path in (src / package).rglob("*.py"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in modules:  # `from slovo.x import f` -> slovo.x
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    graph[mod].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_finds_a_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.a import g\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "e.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.e2 import T\n")
    (pkg / "e2.py").write_text("from pkg.e import f\n")
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"], ["pkg.e", "pkg.e2"]]


def test_slovo_has_no_import_cycles():
    graph = import_graph(SRC, "slovo")
    assert "slovo.sweep.results" in graph and "slovo.report.page" in graph
    assert "slovo.config" in graph["slovo.train.guard"]  # imported there under `if TYPE_CHECKING:` only
    assert cycles(graph) == []


def test_the_training_path_does_not_import_the_run_folder_readers():
    graph = import_graph(SRC, "slovo")
    training = [m for m in graph if m.startswith("slovo.train.") or m == "slovo.terminal"]
    assert "slovo.train.trainer" in training
    assert {
        m: sorted(d for d in graph[m] if d.startswith("slovo.runs"))
        for m in training
        if any(d.startswith("slovo.runs") for d in graph[m])
    } == {}
