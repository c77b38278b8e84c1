"""Finding run folders, reading what they say and telling whether a run is still alive.

A run folder is recognised by its `summary.json` (written when training starts), or by `config.yaml`
beside `metrics.jsonl`. Folders are searched a few levels deep, so `slovo runs` finds both
`runs/NAME/` and sweep trials in `sweeps/SWEEP/trials/NAME/`.

Status: `finished`, `interrupted`, `failed` and `pruned` are read from summary.json. A summary that says
`running` is believed while the run keeps writing (summary.json or metrics.jsonl changed in the last
`SILENT_RUN_STALE_AFTER_S` seconds, and, where summary/run.json name a pid on this host, that process
exists); otherwise the process is gone without saying so (killed, machine rebooted) and the status shows
as `stale`: its last checkpoint can be continued with `slovo train --resume RUN_DIR`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from slovo.errors import SlovoError
from slovo.format import budget_text
from slovo.utils import process_alive, read_json_dict, read_jsonl

# A run whose summary says "running" but that wrote nothing for this long is presumed dead (shown as stale).
SILENT_RUN_STALE_AFTER_S = 15 * 60
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


def split_evals(records: list[dict], key: str) -> tuple[list[dict], dict | None]:
    """Evals during training and the final full eval, told apart: (the records of the evals that scored the
    subset of windows, the last full eval's record or None when every eval scored the same windows).

    Joined in one curve the last point would jump for no training reason: the full set scores other text than
    the subset (bug 11). `eval/windows` in each record says which set it scored; for a suite's accuracy
    (`eval/<suite>_acc...`) `eval/<suite>_pairs` does (the final eval scores `eval.suite_final_pairs`)."""
    suite = re.fullmatch(r"(eval/[^/]+)_acc(?:_se|_mean)?", key)
    size = f"{suite.group(1)}_pairs" if suite else "eval/windows"
    evals = [r for r in records if r.get(key) is not None]
    sizes = [r.get(size) for r in evals]
    full = max((w for w in sizes if isinstance(w, (int, float))), default=None)
    if full is None or all(w == full for w in sizes):
        return evals, None
    subset = [r for r in evals if r.get(size) != full]
    return subset, next(r for r in reversed(evals) if r.get(size) == full)


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
    def train_runtime(self) -> float | None:
        return self._progress("train_runtime", "train_runtime")

    @property
    def eval_loss(self) -> float | None:
        return self._last("eval/loss")

    @property
    def eval_bpb(self) -> float | None:
        return self._last("eval/bpb")

    @property
    def eval_bpb_se(self) -> float | None:
        """The standard error of eval_bpb over its eval windows (runs written before it was recorded: None)."""
        return self._last("eval/bpb_se")

    @property
    def lr_nominal(self) -> float | None:
        """The config's peak lr: optim.muon_lr for Muon runs (the hidden matrices', the one tune varies), else
        optim.lr."""
        optim = self.config.get("optim") or {}
        return _number(optim.get("muon_lr") if optim.get("name") == "muon" else optim.get("lr"))

    @property
    def lr_scale(self) -> float | None:
        """What the divergence guard's rollbacks did to the peak lr (summary.json's `lr_scale`; 1 without)."""
        return _number(self.summary.get("lr_scale"))

    @property
    def lr(self) -> float | None:
        """The peak lr the run trained at last: nominal x lr_scale."""
        if self.lr_nominal is None:
            return None
        return self.lr_nominal * (self.lr_scale if self.lr_scale is not None else 1.0)

    def _best(self, summary_key: str, metric: str) -> float | None:
        """The summary's best value, else the lowest in metrics.jsonl (a run still going, or killed) over the evals
        during training, as the loop keeps it (`split_evals`: a full final eval is not mixed in with the subset)."""
        value = _number(self.summary.get(summary_key))
        if value is None:
            during, _ = split_evals(self.metrics, metric)
            values = [v for r in during if (v := _number(r.get(metric))) is not None]
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
            "train_runtime": self.train_runtime,
            "eval_loss": self.eval_loss,
            "eval_bpb": self.eval_bpb,
            "eval_bpb_se": self.eval_bpb_se,
            "lr": self.lr,
            "lr_nominal": self.lr_nominal,
            "lr_scale": self.lr_scale,
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
    for record in (summary, run_json or {}):  # a pid on this host that no longer exists: gone at once
        pid = record.get("pid")
        if isinstance(pid, int) and not process_alive(pid, record.get("host") or record.get("hostname")):
            return "stale"
    mtimes = []
    for name in ("summary.json", "metrics.jsonl"):
        try:
            mtimes.append((path / name).stat().st_mtime)
        except OSError:
            pass
    if mtimes and now - max(mtimes) <= SILENT_RUN_STALE_AFTER_S:
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
