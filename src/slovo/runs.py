"""Finding run folders and reading what they say, for `slovo runs` (a table) and `slovo report` (a page).

A run folder is recognised by its `summary.json` (written when training starts), or by `config.yaml`
beside `metrics.jsonl`. Folders are searched a few levels deep, so `slovo runs` finds both
`runs/NAME/` and sweep trials in `sweeps/SWEEP/trials/NAME/`.

Status: `finished`, `interrupted`, `failed` and `pruned` are read from summary.json. A summary that says
`running` is believed while the run keeps writing (summary.json or metrics.jsonl changed in the last
`STALE_AFTER_S` seconds, and, where summary/run.json name a pid on this host, that process exists);
otherwise the process is gone without saying so (killed, machine rebooted) and the status shows as
`stale`: its last checkpoint can be continued with `slovo train --resume RUN_DIR`.
"""

from __future__ import annotations

import fnmatch
import math
import os
import socket
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from slovo.errors import SlovoError
from slovo.utils import read_json_dict, read_jsonl

STALE_AFTER_S = 15 * 60  # no write for this long while "running" -> the process is presumed gone
MAX_DEPTH = 4  # runs/NAME (1), sweeps/SWEEP/trials/NAME (3), one more for a folder of sweeps
_NEVER_RUNS = {"checkpoints", "wandb", "tensorboard", "__pycache__", "node_modules"}


def is_run_dir(path: Path) -> bool:
    return (path / "summary.json").is_file() or (
        (path / "config.yaml").is_file() and (path / "metrics.jsonl").is_file()
    )


def is_sweep_dir(path: Path) -> bool:
    return (path / "trials").is_dir() or (path / "leaderboard.csv").is_file()


def find_runs(root: str | Path, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Run folders at or under `root` (breadth first, not looking inside a run folder)."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    found: list[Path] = []
    level = [root]
    for _ in range(max_depth):
        next_level = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                if child.name.startswith(".") or child.name in _NEVER_RUNS:
                    continue
                if is_run_dir(child):
                    found.append(child)
                else:
                    next_level.append(child)
        level = next_level
    return found


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _process_gone(info: dict) -> bool:
    """True only when the record names a pid on this host and no such process exists."""
    pid, host = info.get("pid"), info.get("host") or info.get("hostname")
    if not isinstance(pid, int) or (host and host != socket.gethostname()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but belongs to someone else
        return False
    return False


@dataclass
class RunInfo:
    """One run folder, read lazily: the summary at once, config/metrics/samples when asked for."""

    path: Path
    summary: dict = field(default_factory=dict)
    run_json: dict = field(default_factory=dict)
    status: str = "unknown"
    label: str = ""  # how a report names it where names collide (trials of two sweeps); "" = the name

    @property
    def name(self) -> str:
        return str(self.summary.get("name") or self.run_json.get("name") or self.path.name)

    @property
    def sweep(self) -> str | None:
        if self.summary.get("sweep") or self.run_json.get("sweep"):
            return str(self.summary.get("sweep") or self.run_json.get("sweep"))
        if self.path.parent.name == "trials":
            return self.path.parent.parent.name
        return None

    @cached_property
    def config(self) -> dict:
        """config.yaml as plain nested data ({} when missing or unreadable)."""
        import yaml

        try:
            data = yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, yaml.YAMLError):
            return {}

    @cached_property
    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    @cached_property
    def samples(self) -> list[dict]:
        return read_jsonl(self.path / "samples.jsonl")

    def _last(self, key: str) -> float | None:
        """The summary's figure, or the newest metrics.jsonl value while the summary has none yet."""
        value = _number(self.summary.get(key))
        if value is None:
            for record in reversed(self.metrics):
                value = _number(record.get(key))
                if value is not None:
                    break
        return value

    # -- the figures a table or report shows -------------------------------------------------------
    @property
    def preset(self) -> str:
        return str(self.summary.get("preset") or self.config.get("preset") or "")

    def _progress(self, summary_key: str, metric_key: str) -> float | None:
        """How far the run got: the summary's figure, or metrics.jsonl's newest while running (the
        summary is only rewritten at evals, so it lags behind a live run)."""
        value = _number(self.summary.get(summary_key))
        if value is None or self.status in ("running", "stale"):
            seen = [v for r in self.metrics if (v := _number(r.get(metric_key))) is not None]
            if seen:
                value = max(seen + ([value] if value is not None else []))
        return value

    @property
    def steps(self) -> float | None:
        return self._progress("train/global_step", "train/global_step")

    @property
    def tokens(self) -> float | None:
        return self._progress("tokens", "tokens")

    @property
    def train_time(self) -> float | None:
        return self._progress("train_runtime", "train_time")

    @property
    def eval_loss(self) -> float | None:
        return self._last("eval/loss")

    @property
    def eval_bpb(self) -> float | None:
        return self._last("eval/bpb")

    def _best(self, summary_key: str, metric: str) -> float | None:
        """The summary's best value, else the lowest in metrics.jsonl (a run still going, or killed)."""
        value = _number(self.summary.get(summary_key))
        if value is None:
            values = [v for r in self.metrics if (v := _number(r.get(metric))) is not None]
            value = min(values) if values else None
        return value

    @property
    def best_loss(self) -> float | None:
        return self._best("best/eval_loss", "eval/loss")

    @property
    def best_bpb(self) -> float | None:
        return self._best("best/eval_bpb", "eval/bpb")

    @property
    def tokens_per_second(self) -> float | None:
        value = _number(self.summary.get("train_tokens_per_second"))
        if value is None:
            value = self._last("train/tokens_per_second")
        return value

    @property
    def budget(self) -> dict:
        budget = self.summary.get("budget")
        if isinstance(budget, dict):
            return budget
        cfg_budget = self.config.get("budget") or {}
        out: dict[str, Any] = {}
        if cfg_budget.get("time"):
            from slovo.config import parse_duration

            try:
                out["time_s"] = parse_duration(cfg_budget["time"])
            except SlovoError:
                pass
        out["max_steps"] = cfg_budget.get("max_steps") or 0
        out["max_tokens"] = cfg_budget.get("max_tokens") or 0
        return out

    @property
    def started(self) -> str:
        return str(self.summary.get("started") or "")

    def row(self) -> dict[str, Any]:
        """The table row as plain data (what `slovo runs --json` prints)."""
        whole = lambda x: int(x) if x is not None and float(x).is_integer() else x  # noqa: E731
        return {
            "name": self.name,
            "path": str(self.path),
            "sweep": self.sweep,
            "preset": self.preset,
            "budget": budget_text(self.budget),
            "steps": whole(self.steps),
            "tokens": whole(self.tokens),
            "train_time": self.train_time,
            "eval_loss": self.eval_loss,
            "eval_bpb": self.eval_bpb,
            "best_loss": self.best_loss,
            "best_bpb": self.best_bpb,
            "tokens_per_second": self.tokens_per_second,
            "status": self.status,
            "started": self.started,
        }


def run_status(path: Path, summary: dict, run_json: dict | None = None, now: float | None = None) -> str:
    """The summary's status, with `running` turned into `stale` when the process is evidently gone."""
    status = str(summary.get("status") or ("running" if summary else "unknown"))
    if status != "running" and summary:
        return status
    now = time.time() if now is None else now
    if _process_gone(summary) or _process_gone(run_json or {}):
        return "stale"
    mtimes = []
    for name in ("summary.json", "metrics.jsonl"):
        try:
            mtimes.append((path / name).stat().st_mtime)
        except OSError:
            pass
    if mtimes and now - max(mtimes) <= STALE_AFTER_S:
        return "running"
    return "stale"


def load_run(path: str | Path, now: float | None = None) -> RunInfo:
    """Read one run folder. Raises SlovoError when `path` is not a run folder."""
    path = Path(path)
    if not path.is_dir():
        raise SlovoError(f"{path}: no such run folder")
    if not is_run_dir(path):
        raise SlovoError(f"{path}: not a run folder (no summary.json, or config.yaml with metrics.jsonl)")
    summary = read_json_dict(path / "summary.json")
    run_json = read_json_dict(path / "run.json")
    return RunInfo(path=path, summary=summary, run_json=run_json, status=run_status(path, summary, run_json, now))


def load_runs(root: str | Path, now: float | None = None) -> list[RunInfo]:
    return [load_run(p, now) for p in find_runs(root)]


# ---------------------------------------------------------------------------------------------
# formatting, sorting, filtering


def human_count(n: float | None) -> str:
    """1234 -> '1.2k', 3_500_000 -> '3.5M'."""
    if n is None:
        return "-"
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"


def fmt_float(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    if math.isnan(x):
        return "nan"
    return f"{x:.{digits}f}"


def fmt_seconds(x: float | None) -> str:
    from slovo.config import format_duration

    return "-" if x is None else format_duration(x)


def budget_text(budget: dict) -> str:
    """{'time_s': 1800, 'max_steps': 0, ...} -> '30m00s'; several limits are joined with ' | '."""
    parts = []
    time_s = _number(budget.get("time_s"))
    if time_s:
        parts.append(fmt_seconds(time_s))
    if budget.get("max_steps"):
        parts.append(f"{human_count(budget['max_steps'])} steps")
    if budget.get("max_tokens"):
        parts.append(f"{human_count(budget['max_tokens'])} tok")
    return " | ".join(parts) or "-"


# column key -> (header, row key, formatter, right-aligned)
COLUMNS: dict[str, tuple[str, str, Callable[[Any], str], bool]] = {
    "name": ("run", "name", str, False),
    "sweep": ("sweep", "sweep", lambda v: v or "", False),
    "preset": ("preset", "preset", lambda v: v or "-", False),
    "budget": ("budget", "budget", str, False),
    "steps": ("steps", "steps", human_count, True),
    "tokens": ("tokens", "tokens", human_count, True),
    "time": ("time", "train_time", fmt_seconds, True),
    "loss": ("eval loss", "eval_loss", fmt_float, True),
    "bpb": ("eval bpb", "eval_bpb", fmt_float, True),
    "best_loss": ("best loss", "best_loss", fmt_float, True),
    "best_bpb": ("best bpb", "best_bpb", fmt_float, True),
    "tok_s": ("tok/s", "tokens_per_second", human_count, True),
    "status": ("status", "status", str, False),
    "started": ("started", "started", lambda v: (v or "-")[:19].replace("T", " "), False),
}
_ALIASES = {
    "eval_loss": "loss", "eval/loss": "loss", "eval_bpb": "bpb", "eval/bpb": "bpb", "best": "best_bpb",
    "tokens_per_second": "tok_s", "tok/s": "tok_s", "train_time": "time", "runtime": "time", "run": "name",
    "global_step": "steps", "step": "steps",
}


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
    rows = [(run, run.row()[key]) for run in runs]
    have = [r for r in rows if r[1] not in (None, "", "-") and not (isinstance(r[1], float) and math.isnan(r[1]))]
    missing = [r for r in rows if r not in have]
    have.sort(key=lambda r: (r[1], r[0].name) if not isinstance(r[1], str) else (r[1].lower(), r[0].name),
              reverse=reverse)
    return [r[0] for r in have + missing]


def filter_runs(runs: list[RunInfo], pattern: str | None = None, sweep: str | None = None) -> list[RunInfo]:
    """Keep runs whose name or path matches the glob `pattern`, and that belong to `sweep`."""
    out = runs
    if pattern:
        out = [r for r in out if fnmatch.fnmatch(r.name, pattern) or fnmatch.fnmatch(str(r.path), pattern)
               or fnmatch.fnmatch(str(r.path), f"*{pattern}")]
    if sweep:
        out = [r for r in out if r.sweep == sweep or fnmatch.fnmatch(r.sweep or "", sweep)]
    return out


STATUS_STYLE = {
    "finished": "green", "running": "cyan", "interrupted": "yellow", "stale": "yellow",
    "failed": "red", "pruned": "magenta", "unknown": "dim",
}


# Columns in the order they are given up when the terminal is too narrow for all of them.
_DROP_FIRST = ["started", "best_loss", "budget", "preset", "sweep", "tok_s", "best_bpb", "time", "tokens"]


def _cells(run: RunInfo, columns: list[str]) -> list[str]:
    row = run.row()
    return [COLUMNS[c][2](row[COLUMNS[c][1]]) for c in columns]


def runs_table(runs: list[RunInfo], title: str | None = None, width: int | None = None):
    """A rich Table of the runs: the sweep column only when some run is a sweep trial, and, when `width`
    is given, the least telling columns left out until the rest fit (names are never cut)."""
    from rich.markup import escape
    from rich.table import Table

    columns = [c for c in COLUMNS if c != "sweep" or any(r.sweep for r in runs)]
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
        table.add_column(header, justify="right" if right else "left", no_wrap=True,
                         min_width=min(widths[col], 48) if col == "name" else None)
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
