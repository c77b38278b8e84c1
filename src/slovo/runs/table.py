"""The `slovo runs` table: its columns, sorting, filtering, and the rich Table the command prints."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from typing import Any

from slovo.errors import SlovoError
from slovo.format import format_bpb, format_duration, format_float, format_lr, human_count
from slovo.runs.folders import RunInfo
from slovo.runs.suites import format_accuracy, suite_accuracy

# column key -> (header, row key, formatter, right-aligned)
COLUMNS: dict[str, tuple[str, str, Callable[[Any], str], bool]] = {
    "name": ("run", "name", str, False),
    "sweep": ("sweep", "sweep", lambda v: v or "", False),
    "preset": ("preset", "preset", lambda v: v or "-", False),
    "budget": ("budget", "budget", str, False),
    "steps": ("steps", "steps", human_count, True),
    "tokens": ("tokens", "tokens", human_count, True),
    "time": ("time", "train_runtime", format_duration, True),
    "lr": ("lr", "lr", format_float, True),  # as trained: nominal x the guard's lr_scale (see _cells)
    "loss": ("eval loss", "eval_loss", format_float, True),
    "bpb": ("eval bpb", "eval_bpb", format_float, True),
    "best_loss": ("best loss", "best_loss", format_float, True),
    "best_bpb": ("best bpb", "best_bpb", format_float, True),
    "rublimp": ("rublimp", "rublimp", format_accuracy, True),  # shown when a run has it (runs/suites.py)
    "tok_s": ("tok/s", "tokens_per_second", human_count, True),
    "status": ("status", "status", str, False),
    "started": ("started", "started", lambda v: (v or "-")[:19].replace("T", " "), False),
}
_ALIASES = {
    "eval_loss": "loss",
    "eval/loss": "loss",
    "eval_bpb": "bpb",
    "eval/bpb": "bpb",
    "best": "best_bpb",
    "tokens_per_second": "tok_s",
    "tok/s": "tok_s",
    "train_time": "time",
    "train_runtime": "time",
    "runtime": "time",
    "run": "name",
    "global_step": "steps",
    "step": "steps",
    "rublimp_acc": "rublimp",
    "eval/rublimp_acc": "rublimp",
}


def table_row(run: RunInfo) -> dict[str, Any]:
    """`run.row()` and the suite accuracy (RuBLiMP, with its 95% interval, when the run has one)."""
    acc = suite_accuracy(run)
    return {**run.row(), "rublimp": acc, "rublimp_ci": list(acc.ci) if acc is not None else None}


def sort_column(name: str) -> str:
    key = name.strip().lower().lstrip("-").replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in COLUMNS:
        raise SlovoError(f"--sort {name!r}: unknown column; choose from {', '.join(COLUMNS)}")
    return key


def sort_runs(runs: list[RunInfo], column: str = "started", reverse: bool = False) -> list[RunInfo]:
    """Sort by a column; runs without a value go last either way. A leading '-' on `column` reverses."""
    if column.startswith("-"):
        reverse = not reverse
    key = COLUMNS[sort_column(column)][1]
    rows = [(run, table_row(run)[key]) for run in runs]
    have = [r for r in rows if r[1] not in (None, "", "-") and not (isinstance(r[1], float) and math.isnan(r[1]))]
    missing = [r for r in rows if r not in have]
    have.sort(
        key=lambda r: (r[1], r[0].name) if not isinstance(r[1], str) else (r[1].lower(), r[0].name), reverse=reverse
    )
    return [r[0] for r in have + missing]


def filter_runs(runs: list[RunInfo], pattern: str | None = None, sweep: str | None = None) -> list[RunInfo]:
    """Keep runs whose name or path matches the glob `pattern`, and that belong to `sweep`."""
    out = runs
    if pattern:
        out = [
            r
            for r in out
            if fnmatch.fnmatch(r.name, pattern)
            or fnmatch.fnmatch(str(r.path), pattern)
            or fnmatch.fnmatch(str(r.path), f"*{pattern}")
        ]
    if sweep:
        out = [r for r in out if r.sweep == sweep or fnmatch.fnmatch(r.sweep or "", sweep)]
    return out


STATUS_STYLE = {
    "finished": "green",
    "running": "cyan",
    "interrupted": "yellow",
    "stale": "yellow",
    "failed": "red",
    "pruned": "magenta",
    "unknown": "dim",
}


# Columns in the order they are given up when the terminal is too narrow for all of them.
_DROP_FIRST = [
    "started",
    "best_loss",
    "budget",
    "preset",
    "sweep",
    "tok_s",
    "best_bpb",
    "lr",
    "time",
    "tokens",
    "rublimp",
]


def _cell(row: dict, column: str) -> str:
    if column == "bpb":  # with its eval standard error where the run recorded one
        return format_bpb(row["eval_bpb"], row.get("eval_bpb_se"))
    if column == "lr":  # a rollback's cut shows: '0.0005 (0.002 x 1/4)'
        return format_lr(row["lr_nominal"], row["lr_scale"])
    return COLUMNS[column][2](row[COLUMNS[column][1]])


def _cells(run: RunInfo, columns: list[str]) -> list[str]:
    row = table_row(run)
    return [_cell(row, c) for c in columns]


def runs_table(runs: list[RunInfo], title: str | None = None, width: int | None = None):
    """A rich Table of the runs: the sweep column only when some run is a sweep trial, and, when `width`
    is given, the least telling columns left out until the rest fit (names are never cut)."""
    from rich.markup import escape
    from rich.table import Table

    rows = {id(r): table_row(r) for r in runs}
    columns = [
        c
        for c in COLUMNS
        if (c != "sweep" or any(r.sweep for r in runs))
        and (c != "rublimp" or any(rows[id(r)]["rublimp"] is not None for r in runs))
    ]
    texts = [_cells(r, columns) for r in runs]
    widths = {c: max([len(COLUMNS[c][0])] + [len(t[i]) for t in texts]) for i, c in enumerate(columns)}
    if width:
        for col in _DROP_FIRST:
            if sum(widths[c] + 3 for c in columns) <= width:
                break
            if col in columns:
                columns.remove(col)
    table = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    for col in columns:
        header, _, _, right = COLUMNS[col]
        table.add_column(
            header,
            justify="right" if right else "left",
            no_wrap=True,
            min_width=min(widths[col], 48) if col == "name" else None,
        )
    best = min((r.eval_bpb for r in runs if r.eval_bpb is not None), default=None)
    for run in runs:
        cells = []
        for col, text in zip(columns, _cells(run, columns)):
            if col == "status":
                text = f"[{STATUS_STYLE.get(text, 'white')}]{text}[/]"
            elif col == "bpb" and len(runs) > 1 and best is not None and run.eval_bpb == best:
                text = f"[bold green]{text}[/]"  # the best final bpb stands out
            else:
                text = escape(text)
            cells.append(text)
        table.add_row(*cells)
    return table
