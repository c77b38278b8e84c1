"""A sweep's results: the leaderboard (terminal, CSV, markdown), the best config as a preset, importances;
and reading them back from a sweep folder (`read_sweep_folder`, for `slovo report`), so one module both
writes and reads those files.

Rows are configurations: a configuration trained with several seeds is one row whose figures are the
mean and standard deviation over its finished seeds. Figures come from each trial's own run folder
(`summary.json`), so the leaderboard agrees with `slovo runs` and `slovo report` on the same folders.

Each row says whether it can be told from the best (`vs_best`, slovo.stats): with seeds, by a paired t-test on
the seeds both share; with single runs, paired window by window on the eval windows every run scored (their
`eval_windows.npz`, `slovo.window_losses`). Every pair is tested and Holm adjusts over all of them, since the best
was picked from the same runs. The window test leaves out seed noise, which only seeds measure, so a single-run
leaderboard's "worse" says the two trained models differ on this text, not that another seed would agree.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from slovo import stats
from slovo.format import format_float, format_lr, format_value
from slovo.sweep.spec import SweepSpec, config_key
from slovo.sweep.study import LOST_ATTR, superseded
from slovo.utils import atomic_write_json, atomic_write_text, read_json_dict

_STATE_NAMES = {
    "COMPLETE": "finished",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "waiting",
}
_FIGURES = ("eval/bpb", "eval/loss")


def trial_rows(study, spec: SweepSpec, sweep_dir: Path) -> list[dict]:
    """One row per run (the latest attempt of each trial), with its parameters, state and figures."""
    trials = study.get_trials(deepcopy=False)
    replaced = superseded(trials)
    rows = []
    for t in trials:
        if t.number in replaced or "run_name" not in t.user_attrs:
            continue
        run_dir = sweep_dir / "trials" / t.user_attrs["run_name"]
        summary = read_json_dict(run_dir / "summary.json")
        row: dict[str, Any] = {
            "trial": t.number,
            "run": t.user_attrs["run_name"],
            "run_dir": str(run_dir),
            "seed_index": t.user_attrs.get("seed_index", 0),
            "status": _STATE_NAMES.get(t.state.name, t.state.name),
            "params": {p.name: p.decode(t.params[p.name]) for p in spec.params if p.name in t.params},
            "key": config_key({k: t.params[k] for k in sorted(t.params)}),
            "error": t.user_attrs.get("error") or study.user_attrs.get(LOST_ATTR.format(t.number)),
        }
        for fig in (*_FIGURES, spec.metric, "train_runtime", "eval/bpb_se", "lr_scale"):
            value = summary.get(fig, t.user_attrs.get(fig))
            row[fig] = float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
        rows.append(row)
    return rows


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    s = stats.spread(values)
    return s.mean, s.std


def leaderboard(runs: list[dict], spec: SweepSpec) -> list[dict]:
    """Group runs by configuration, average finished seeds, and rank best first."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["key"], []).append(r)
    rows = []
    for members in groups.values():
        members.sort(key=lambda r: r["seed_index"])
        finished = [r for r in members if r["status"] == "finished"]
        counted = finished or [r for r in members if r["status"] == "pruned"]
        states = [r["status"] for r in members]
        state = (
            states[0]
            if len(set(states)) == 1
            else ", ".join(
                f"{states.count(s)} {s}" for s in ("finished", "pruned", "running", "waiting", "failed") if s in states
            )
        )
        row: dict[str, Any] = {
            "params": members[0]["params"],
            "status": state,
            "seeds": len(finished),
            "runs": [r["run"] for r in members],
            "run_dirs": [r["run_dir"] for r in members],
            "trials": [r["trial"] for r in members],
            "errors": sorted({r["error"] for r in members if r.get("error")}),
        }
        for fig in dict.fromkeys((*_FIGURES, spec.metric, "train_runtime")):
            mean, std = _mean_std([r[fig] for r in counted if r[fig] is not None])
            row[fig], row[f"{fig}_std"] = mean, std
        ses = [r["eval/bpb_se"] for r in counted if r["eval/bpb_se"] is not None]
        row["eval/bpb_se"] = stats.spread(ses).mean if ses else None
        # the divergence guard's lr cut: the lowest over the seeds (None: every seed trained at the nominal lr)
        scales = [r["lr_scale"] for r in counted if r["lr_scale"] is not None and r["lr_scale"] != 1]
        row["lr_scale"] = min(scales) if scales else None
        row["_seed_values"] = {r["seed_index"]: r[spec.metric] for r in finished if r[spec.metric] is not None}
        row["_tier"] = 0 if finished else (1 if counted else 2)
        rows.append(row)
    sign = 1.0 if spec.goal == "minimize" else -1.0
    rows.sort(
        key=lambda r: (r["_tier"], sign * r[spec.metric] if r[spec.metric] is not None else math.inf, min(r["trials"]))
    )
    mark_noise(rows, spec)
    for i, r in enumerate(rows, 1):
        r["rank"] = i
        del r["_tier"], r["_seed_values"]
    return rows


def mark_noise(rows: list[dict], spec: SweepSpec) -> None:
    """Set each row's `vs_best`: "best", "within noise" (cannot be told from the best) or "" (worse, or unknown),
    `noise` (what decided it: "seeds", "windows" or None) and `p_vs_best` (Holm-adjusted over every pair)."""
    finished = [r for r in rows if r["_tier"] == 0 and r["_seed_values"]]
    for r in rows:
        r["vs_best"], r["noise"], r["p_vs_best"] = "", None, None
    if not finished:
        return
    minimize = spec.goal == "minimize"
    if any(len(r["_seed_values"]) >= 2 for r in finished):
        groups = {str(i): r["_seed_values"] for i, r in enumerate(finished)}
        means = {k: stats.spread(list(v.values())).mean for k, v in groups.items()}
        best, tied, p = stats.tied_with_best(means, lambda a, b: stats.seed_pvalue(groups[a], groups[b]), minimize)
        _mark(finished, best, tied, p, "seeds")
        return
    finished[0]["vs_best"] = "best"  # sorted best first
    losses = _window_losses(finished) if spec.metric == "eval/bpb" else None
    if losses is None:  # runs from before per-window losses, or another metric: no noise claim
        return
    best, tied, p = stats.windows_tied_with_best({str(i): (w.nats, w.bytes) for i, w in enumerate(losses)}, minimize)
    _mark(finished, best, tied, p, "windows")


def _window_losses(finished: list[dict]) -> list | None:
    """Each single run's per-window eval losses when all of them have them, over the same windows; else None."""
    from slovo import window_losses

    losses = [window_losses.load(r["run_dirs"][0], r["eval/bpb"]) for r in finished]
    if any(w is None for w in losses) or not all(w.same_windows(losses[0]) for w in losses):
        return None
    return losses


def _mark(finished: list[dict], best: str | None, tied: set[str], p: dict[str, float], basis: str) -> None:
    for i, r in enumerate(finished):
        key = str(i)
        r["vs_best"] = "best" if key == best else ("within noise" if key in tied else "")
        r["noise"], r["p_vs_best"] = basis, p.get(key)


def _param_text(row: dict, name: str) -> str:
    """A parameter's value as shown; an lr the divergence guard cut shows as what the run trained at."""
    value = row["params"].get(name, "")
    if name.split(".")[-1] in ("lr", "muon_lr") and row.get("lr_scale") is not None:
        return format_lr(value, row["lr_scale"])
    return format_value(value)


def _columns(spec: SweepSpec) -> list[str]:
    return list(dict.fromkeys((*_FIGURES, spec.metric)))


def to_csv(rows: list[dict], spec: SweepSpec) -> str:
    out = io.StringIO()
    figures = _columns(spec)
    header = ["rank", *[p.name for p in spec.params]]
    for f in figures:
        header += [f, f"{f}_std"]
    header += ["eval/bpb_se", "vs_best", "lr_scale", "seeds", "status", "train_runtime", "runs"]
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        line = [r["rank"], *[format_value(r["params"].get(p.name, "")) for p in spec.params]]
        for f in figures:
            line += ["" if r[f] is None else f"{r[f]:.6g}", "" if r[f"{f}_std"] is None else f"{r[f'{f}_std']:.6g}"]
        runtime = "" if r["train_runtime"] is None else f"{r['train_runtime']:.1f}"
        se = "" if r["eval/bpb_se"] is None else f"{r['eval/bpb_se']:.6g}"
        scale = "" if r["lr_scale"] is None else f"{r['lr_scale']:.6g}"
        line += [se, r["vs_best"], scale, r["seeds"], r["status"], runtime, " ".join(r["runs"])]
        w.writerow(line)
    return out.getvalue()


def to_markdown(rows: list[dict], spec: SweepSpec) -> str:
    figures = _columns(spec)
    header = ["#", *[p.name for p in spec.params], *figures, "eval se", "vs best", "status", "runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            str(r["rank"]),
            *[_param_text(r, p.name) for p in spec.params],
            *[format_float(r[f], std=r[f"{f}_std"]) for f in figures],
            format_float(r["eval/bpb_se"]),
            r["vs_best"],
            r["status"],
            " ".join(r["runs"]),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return (
        f"# sweep {spec.name}\n\nmetric: {spec.metric} ({spec.goal}); figures are mean ± sd over seeds\n\n"
        + "\n".join(lines)
        + f"\n\n{noise_note(rows)}\n"
    )


def noise_note(rows: list[dict]) -> str:
    """One line on what `vs best` rests on."""
    basis = next((r["noise"] for r in rows if r.get("noise")), None)
    if basis == "seeds":
        return (
            "vs best: within noise = a paired t-test over the seeds both share finds no difference, Holm-adjusted "
            "over every pair of configs (the best was picked from the same runs)"
        )
    if basis == "windows":
        return (
            "vs best: within noise = paired window by window on the same eval windows, no difference (Holm over "
            "every pair); eval noise only: single runs carry seed noise too, which only seeds measure (slovo compare)"
        )
    return "vs best: no noise estimate (no seeds, no per-window eval losses)"


def importances(study) -> dict[str, float]:
    """Optuna's parameter importances over finished trials ({} when there are too few to say)."""
    import optuna

    if len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {k: round(float(v), 6) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError, ImportError):  # fANOVA's forest needs scikit-learn
        return {}


def best_config_yaml(row: dict, spec: SweepSpec) -> str:
    """The best configuration as a full config YAML, ready for `slovo train --config`."""
    from slovo.config import to_dict

    stored = {
        p.name: next(v for v in p.choices() if p.decode(v) == row["params"][p.name])
        if p.kind == "categorical"
        else row["params"][p.name]
        for p in spec.params
    }
    cfg = spec.build_config(stored, 0)
    figures = ", ".join(
        f"{f} {format_float(row[f], std=row[f'{f}_std'])}" for f in _columns(spec) if row[f] is not None
    )
    header = (
        f"# best configuration of sweep {spec.name} ({', '.join(row['runs'])}): {figures}\n"
        f"# {', '.join(f'{k}={format_value(v)}' for k, v in row['params'].items())}\n"
        f"# train it: slovo train --config best.yaml\n"
    )
    if row.get("lr_scale") is not None:
        header += (
            f"# the divergence guard cut the lr of a run of this configuration to x{row['lr_scale']:g} "
            f"(the lrs below are nominal): {', '.join(_param_text(row, p.name) for p in spec.params)}\n"
        )
    return header + yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def write_results(study, spec: SweepSpec, sweep_dir: Path) -> dict:
    """Write leaderboard.csv / .md, best.yaml and importances.json into the sweep folder."""
    runs = trial_rows(study, spec, sweep_dir)
    rows = leaderboard(runs, spec)
    atomic_write_text(sweep_dir / "leaderboard.csv", to_csv(rows, spec))
    atomic_write_text(sweep_dir / "leaderboard.md", to_markdown(rows, spec))
    best = next((r for r in rows if r["seeds"] > 0), None)
    if best is not None:
        atomic_write_text(sweep_dir / "best.yaml", best_config_yaml(best, spec))
    imp = importances(study)
    atomic_write_json(sweep_dir / "importances.json", imp)
    return {"rows": rows, "runs": runs, "best": best, "importances": imp, "sweep_dir": str(sweep_dir)}


def print_leaderboard(results: dict, spec: SweepSpec, sweep_dir: Path, limit: int = 30) -> None:
    """The leaderboard as a rich table, then where the files are."""
    from rich.console import Console
    from rich.table import Table

    rows, figures = results["rows"], _columns(spec)
    done = sum(1 for r in results["runs"] if r["status"] in ("finished", "pruned"))
    table = Table(title=f"sweep {spec.name}: {done} of {len(results['runs'])} runs done, by {spec.metric}")
    table.add_column("#", justify="right")
    for p in spec.params:
        table.add_column(p.name)
    for f in figures:
        table.add_column(f, justify="right")
    table.add_column("eval se", justify="right")
    table.add_column("vs best")
    table.add_column("status")
    table.add_column("runs")
    for r in rows[:limit]:
        table.add_row(
            str(r["rank"]),
            *[_param_text(r, p.name) for p in spec.params],
            *[format_float(r[f], std=r[f"{f}_std"]) for f in figures],
            format_float(r["eval/bpb_se"]),
            r["vs_best"],
            r["status"],
            " ".join(r["runs"]),
        )
    console = Console()
    console.print(table)
    if len(rows) > limit:
        console.print(f"... {len(rows) - limit} more rows in {sweep_dir / 'leaderboard.md'}")
    console.print(noise_note(rows), highlight=False)
    if results["best"] is not None:
        b = results["best"]
        console.print(
            f"best: {', '.join(f'{k}={format_value(v)}' for k, v in b['params'].items())} -> {sweep_dir / 'best.yaml'}",
            highlight=False,
        )
    if results["importances"]:
        console.print(
            "importance: " + ", ".join(f"{k} {v:.2f}" for k, v in results["importances"].items()), highlight=False
        )
    journal = sweep_dir / "optuna.journal"
    study = f"; study: {journal} (optuna-dashboard {journal})" if journal.exists() else ""
    console.print(
        f"leaderboard: {sweep_dir / 'leaderboard.csv'}, {sweep_dir / 'leaderboard.md'}{study}", highlight=False
    )


# ---------------------------------------------------------------------------------------------
# reading a sweep folder back (for `slovo report`)


@dataclass
class SweepFolder:
    """A sweep folder: its trials are ordinary runs; the leaderboard and importances are the sweep's own."""

    path: Path
    leaderboard: list[dict[str, str]] = field(default_factory=list)  # leaderboard.csv rows, as text
    importances: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


def read_sweep_folder(path: Path) -> SweepFolder:
    """What `write_results` left in a sweep folder; a file that is missing or unreadable reads as empty."""
    sweep = SweepFolder(path=path)
    board = path / "leaderboard.csv"
    if board.is_file():
        try:
            with open(board, newline="", encoding="utf-8") as f:
                sweep.leaderboard = list(csv.DictReader(f))
        except (OSError, csv.Error, UnicodeDecodeError):
            sweep.leaderboard = []
    sweep.importances = {
        str(k): float(v)
        for k, v in read_json_dict(path / "importances.json").items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    return sweep
