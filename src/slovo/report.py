"""`slovo report`: one self-contained HTML page that compares runs, the offline answer to a wandb dashboard.

The page holds a table of the runs' final figures, curves (train loss, eval loss and eval bpb against
training time and against tokens; learning rate, grad norm and tokens/s against training time; one line per
run), the config values that differ between runs, every run's samples at every eval and, for a sweep, its
leaderboard and parameter importances.

Everything is inline: plots are matplotlib SVG, styles and the small script are in the page, nothing is
fetched from the network, so the file can be mailed, archived or opened on a plane. Every user-controlled
string (run names, config values, samples, leaderboard cells) goes through `html.escape`: a sample that
reads `<script>` shows as text. The page's only script highlights one run's lines when its name is
hovered, and writes a render check (plots drawn, script errors) into `#render-check` for tests.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slovo.errors import SlovoError
from slovo.runs import (
    RunInfo,
    budget_text,
    find_runs,
    fmt_float,
    fmt_seconds,
    human_count,
    is_run_dir,
    is_sweep_dir,
    load_run,
)

MAX_POINTS = 1500  # per line; longer series are thinned evenly so a page of many long runs stays small

# (metric, x key, title, y label); the x key is train_time or tokens
LOSS_PLOTS = [
    ("train/loss", "train_time", "train loss", "loss"),
    ("train/loss", "tokens", "train loss", "loss"),
    ("eval/loss", "train_time", "eval loss", "loss"),
    ("eval/loss", "tokens", "eval loss", "loss"),
    ("eval/bpb", "train_time", "eval bits per byte", "bpb"),
    ("eval/bpb", "tokens", "eval bits per byte", "bpb"),
]
OPTIM_PLOTS = [
    ("train/learning_rate", "train_time", "learning rate", "lr"),
    ("train/grad_norm", "train_time", "grad norm (before clipping)", "norm"),
    ("train/tokens_per_second", "train_time", "throughput", "tokens/s"),
]
# Curves whose first steps dwarf the rest: the y axis is fitted to the later part of training.
CLIP_EARLY = {"train/loss", "train/grad_norm"}


@dataclass
class Sweep:
    """A sweep folder: its trials are ordinary runs; the leaderboard and importances are the sweep's own."""

    path: Path
    leaderboard: list[dict[str, str]] = field(default_factory=list)
    importances: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


def _read_sweep(path: Path) -> Sweep:
    sweep = Sweep(path=path)
    board = path / "leaderboard.csv"
    if board.is_file():
        try:
            with open(board, newline="", encoding="utf-8") as f:
                sweep.leaderboard = list(csv.DictReader(f))
        except (OSError, csv.Error, UnicodeDecodeError):
            sweep.leaderboard = []
    imp = path / "importances.json"
    if imp.is_file():
        try:
            data = json.loads(imp.read_text(encoding="utf-8"))
            sweep.importances = {str(k): float(v) for k, v in data.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        except (OSError, ValueError, AttributeError):
            sweep.importances = {}
    return sweep


def collect(paths: list[str | Path]) -> tuple[list[RunInfo], list[Sweep]]:
    """Runs and sweeps named on the command line: a run folder, a sweep folder, or a folder of runs."""
    runs: list[RunInfo] = []
    sweeps: list[Sweep] = []
    seen: set[Path] = set()

    def add(run_path: Path) -> None:
        key = run_path.resolve()
        if key not in seen:
            seen.add(key)
            runs.append(load_run(run_path))

    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SlovoError(f"{path}: no such run or folder")
        if not path.is_dir():
            raise SlovoError(f"{path}: not a folder; give run folders, sweep folders or a folder of runs")
        if is_run_dir(path):
            add(path)
            continue
        found = find_runs(path)
        # the folder itself may be a sweep, or a folder of sweeps (`slovo report sweeps`)
        sweep_dirs = [path] if is_sweep_dir(path) else sorted(
            child for child in path.iterdir() if child.is_dir() and is_sweep_dir(child))
        sweeps.extend(_read_sweep(d) for d in sweep_dirs)
        if not found and not sweep_dirs:
            raise SlovoError(f"{path}: no run folders in it (a run folder has summary.json)")
        for run_path in found:
            add(run_path)
    if not runs and not sweeps:
        raise SlovoError("report: no runs given")
    if sweeps:  # a sweep's trials read best first, as on its leaderboard
        runs.sort(key=lambda r: (r.eval_bpb is None, r.eval_bpb if r.eval_bpb is not None else 0.0, r.name))
    return runs, sweeps


# ---------------------------------------------------------------------------------------------
# plots


def _palette(n: int) -> list[str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if n <= 10:
        cmap = colormaps["tab10"]
        return [to_hex(cmap(i)) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [to_hex(cmap(i)) for i in range(n)]
    cmap = colormaps["turbo"]
    return [to_hex(cmap(0.05 + 0.9 * i / (n - 1))) for i in range(n)]


def _series(records: list[dict], metric: str, x_key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        x, y = r.get(x_key), r.get(metric)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(y, bool):
            if math.isfinite(float(y)):
                xs.append(float(x))
                ys.append(float(y))
    if len(xs) > MAX_POINTS:
        keep = sorted({round(i * (len(xs) - 1) / (MAX_POINTS - 1)) for i in range(MAX_POINTS)})
        xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
    return xs, ys


def _ema(ys: list[float], beta: float = 0.85) -> list[float]:
    """Debiased exponential moving average, as TensorBoard and wandb smooth noisy train loss."""
    out, avg = [], 0.0
    for i, y in enumerate(ys, 1):
        avg = beta * avg + (1 - beta) * y
        out.append(avg / (1 - beta**i))
    return out


def _svg_of(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and DOCTYPE: the page is HTML5
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    # A fixed-size SVG would not shrink on a narrow screen; width 100% keeps the aspect via viewBox.
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%"', svg, count=1)


def _time_axis(max_seconds: float) -> tuple[float, str]:
    if max_seconds >= 2 * 3600:
        return 3600.0, "training time (h)"
    if max_seconds >= 180:
        return 60.0, "training time (min)"
    return 1.0, "training time (s)"


def plot_metric(runs: list[RunInfo], colors: list[str], metric: str, x_key: str, title: str, ylabel: str,
                fig_no: int) -> str | None:
    """One SVG figure of `metric` against `x_key` with a line per run, or None when no run has the metric."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter, FuncFormatter

    data = [(i, *_series(run.metrics, metric, x_key)) for i, run in enumerate(runs)]
    data = [d for d in data if d[1]]
    if not data:
        return None
    scale, xlabel = 1.0, "tokens"
    if x_key == "train_time":
        scale, xlabel = _time_axis(max(max(xs) for _, xs, _ in data))
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"slovo-{fig_no}", "font.size": 9,
                                "axes.spines.top": False, "axes.spines.right": False,
                                "font.family": ["DejaVu Sans", "sans-serif"]}):
        fig = Figure(figsize=(5.6, 3.2), dpi=100)
        ax = fig.subplots()
        few_points = all(len(xs) <= 30 for _, xs, _ in data)
        for i, xs, ys in data:
            xs = [x / scale for x in xs]
            label = runs[i].label or runs[i].name
            if metric == "train/loss" and len(ys) > 40:
                raw, = ax.plot(xs, ys, color=colors[i], alpha=0.25, linewidth=0.8)
                raw.set_gid(f"run{i}-f{fig_no}-raw")
                line, = ax.plot(xs, _ema(ys), color=colors[i], linewidth=1.6, label=label)
            else:
                line, = ax.plot(xs, ys, color=colors[i], linewidth=1.6, label=label,
                                marker="o" if few_points else None, markersize=3)
            line.set_gid(f"run{i}-f{fig_no}-line")
        if metric in CLIP_EARLY:
            _fit_later_part(ax, [ys for _, _, ys in data])
        if metric == "train/learning_rate":
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
        if metric == "train/tokens_per_second":
            ax.set_ylim(bottom=0)  # throughput differences read as ratios, not as magnified noise
            ax.yaxis.set_major_formatter(EngFormatter(sep=""))
        if x_key == "tokens":
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_title(f"{title} vs {'tokens' if x_key == 'tokens' else 'training time'}", fontsize=10,
                     loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3, linewidth=0.6)
        if len(data) <= 8:
            ax.legend(fontsize=7, frameon=False, loc="best")
        svg = _svg_of(fig)
    return svg


def _fit_later_part(ax, series: list[list[float]]) -> None:
    """Fit the y axis to the curves after their first 10% when the start would squash the rest."""
    later = [y for ys in series for y in ys[len(ys) // 10:]]
    everything = [y for ys in series for y in ys]
    if not later:
        return
    lo, hi = min(everything), max(later)
    if max(everything) > hi + 0.5 * (hi - lo) and hi > lo:
        pad = 0.08 * (hi - lo)
        ax.set_ylim(lo - pad, hi + pad)


def plot_importances(importances: dict[str, float], fig_no: int) -> str | None:
    import matplotlib
    from matplotlib.figure import Figure

    if not importances:
        return None
    items = sorted(importances.items(), key=lambda kv: kv[1])
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"slovo-{fig_no}", "font.size": 9,
                                "axes.spines.top": False, "axes.spines.right": False}):
        fig = Figure(figsize=(5.6, 0.5 + 0.35 * len(items)), dpi=100)
        ax = fig.subplots()
        bars = ax.barh([k for k, _ in items], [v for _, v in items], color="#4c78a8")
        for j, bar in enumerate(bars):
            bar.set_gid(f"imp-f{fig_no}-{j}")
        ax.set_xlabel("importance (from the sweep's importances.json)")
        ax.set_title("parameter importance", fontsize=10, loc="left")
        ax.grid(True, axis="x", alpha=0.3, linewidth=0.6)
        return _svg_of(fig)


# ---------------------------------------------------------------------------------------------
# html pieces

_e = html.escape

CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#fff; --soft:#f6f7f9; --hi:#fff4d6; --accent:#2f6fdf; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg);
       background: var(--bg); margin: 0; padding: 24px 32px 48px; max-width: 1500px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 32px 0 10px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; } h3 { font-size: 14px; margin: 18px 0 8px; }
.meta, .note { color: var(--muted); font-size: 12.5px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; font-size: 13px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.diff td { background: var(--hi); } tr.diff td.key { font-weight: 600; }
tr.best td { font-weight: 600; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.status { font-size: 11.5px; padding: 1px 6px; border-radius: 8px; background: var(--soft); }
.status.finished { background: #e3f4e8; color: #1b7a3a; } .status.failed { background: #fde8e8; color: #b42318; }
.status.running { background: #e0efff; color: #175cd3; } .status.stale, .status.interrupted { background: #fff4d6; color: #8a5a00; }
.status.pruned { background: #f3e8ff; color: #6b21a8; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 4px 0 10px; font-size: 12.5px; }
.legend span, [data-run] { cursor: default; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 14px; }
figure.plot { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px; background: #fff; }
figure.plot svg { display: block; height: auto; }
.sample { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
          font-size: 12px; max-width: 900px; }
.sample .prompt { color: var(--muted); }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
.scroll { overflow-x: auto; max-width: 100%; }
#runs td, #runs th, td[data-run], th[data-run] { white-space: nowrap; }
body.focus g[id^="run"] { opacity: 0.12; } body.focus g[id^="run"].on { opacity: 1; }
"""

# Collects script errors from the first moment, for the render check at the end of the page.
HEAD_SCRIPT = """
window.__slovoErrors = [];
window.addEventListener('error', function (e) { window.__slovoErrors.push(String(e.message || e)); });
(function () { var orig = console.error; console.error = function () {
  window.__slovoErrors.push(Array.prototype.join.call(arguments, ' ')); return orig.apply(console, arguments); }; })();
"""

TAIL_SCRIPT = """
(function () {
  // Hovering a run's name (legend, tables) brings its lines forward in every plot.
  document.querySelectorAll('[data-run]').forEach(function (el) {
    el.addEventListener('mouseenter', function () {
      var i = el.getAttribute('data-run');
      document.querySelectorAll('g[id^="run' + i + '-"]').forEach(function (g) { g.classList.add('on'); });
      document.body.classList.add('focus');
    });
    el.addEventListener('mouseleave', function () {
      document.body.classList.remove('focus');
      document.querySelectorAll('g.on').forEach(function (g) { g.classList.remove('on'); });
    });
  });
  // Render check: a plot counts when its SVG has a size and at least one drawn data line or bar.
  var plots = document.querySelectorAll('figure.plot svg'), drawn = 0;
  plots.forEach(function (svg) {
    var box = svg.getBoundingClientRect(), lines = 0;
    svg.querySelectorAll('g[id^="run"] path, g[id^="imp-"] path').forEach(function (p) {
      var b = p.getBBox(); if (b.width > 0 || b.height > 0) lines++; });
    if (box.width > 0 && box.height > 0 && lines > 0) drawn++;
  });
  var out = document.getElementById('render-check');
  out.setAttribute('data-plots', plots.length);
  out.setAttribute('data-drawn', drawn);
  out.setAttribute('data-errors', window.__slovoErrors.length);
  out.textContent = 'render check: ' + drawn + ' of ' + plots.length + ' plots drawn, '
    + window.__slovoErrors.length + ' script errors' + (window.__slovoErrors.length ? ': ' + window.__slovoErrors.join('; ') : '');
})();
"""


def _run_cell(i: int, run: RunInfo, colors: list[str]) -> str:
    return (f'<td data-run="{i}"><span class="swatch" style="background:{colors[i]}"></span>'
            f'{_e(run.label)}</td>')


def _status(status: str) -> str:
    return f'<span class="status {_e(status)}">{_e(status)}</span>'


def runs_section(runs: list[RunInfo], colors: list[str]) -> str:
    best = min((r.eval_bpb for r in runs if r.eval_bpb is not None), default=None)
    head = ("<tr><th>run</th><th>status</th><th>preset</th><th>budget</th><th>steps</th><th>tokens</th>"
            "<th>train time</th><th>eval loss</th><th>eval bpb</th><th>best loss</th><th>best bpb</th>"
            "<th>tokens/s</th><th>params</th><th>folder</th></tr>")
    rows = []
    for i, r in enumerate(runs):
        cls = ' class="best"' if best is not None and r.eval_bpb == best and len(runs) > 1 else ""
        params = r.summary.get("params") or r.run_json.get("params")
        nums = [human_count(r.steps), human_count(r.tokens), fmt_seconds(r.train_time), fmt_float(r.eval_loss),
                fmt_float(r.eval_bpb), fmt_float(r.best_loss), fmt_float(r.best_bpb),
                human_count(r.tokens_per_second), human_count(params if isinstance(params, (int, float)) else None)]
        rows.append(f"<tr{cls}>{_run_cell(i, r, colors)}<td>{_status(r.status)}</td><td>{_e(r.preset or '-')}</td>"
                    f"<td>{_e(budget_text(r.budget))}</td>" + "".join(f'<td class="num">{_e(n)}</td>' for n in nums)
                    + f'<td class="note">{_e(_short_path(r.path))}</td></tr>')
    errors = [(r, r.summary.get("error")) for r in runs if r.summary.get("error")]
    notes = "".join(f'<p class="note">{_e(r.label)} failed: {_e(str(err))}</p>'
                    for r, err in errors)
    return (f'<section id="runs"><h2>Runs</h2><div class="scroll"><table>{head}{"".join(rows)}</table></div>'
            f'{notes}<p class="note">best final eval bpb in bold. bpb (bits per byte) compares runs with '
            f"different tokenizers; loss does not.</p></section>")


def _short_path(path: Path) -> str:
    """The folder relative to where the report is made, when that is shorter."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return rel if len(rel) < len(str(path)) else str(path)


def _legend(runs: list[RunInfo], colors: list[str]) -> str:
    items = "".join(f'<span data-run="{i}"><span class="swatch" style="background:{colors[i]}"></span>'
                    f"{_e(r.label)}</span>" for i, r in enumerate(runs))
    return f'<div class="legend">{items}</div>'


def curves_section(runs: list[RunInfo], colors: list[str], first_fig: int) -> tuple[str, int]:
    parts = ['<section id="curves"><h2>Curves</h2>', _legend(runs, colors),
             '<p class="note">hover a run\'s name to bring its lines forward. Train loss: light = logged, '
             "solid = smoothed (EMA); its y axis (and grad norm's) fits the part after the first steps.</p>"]
    fig_no, count = first_fig, 0
    for heading, plots in (("Loss", LOSS_PLOTS), ("Optimisation", OPTIM_PLOTS)):
        figures = []
        for metric, x_key, title, ylabel in plots:
            svg = plot_metric(runs, colors, metric, x_key, title, ylabel, fig_no)
            fig_no += 1
            if svg is None:
                figures.append(f'<p class="note">no {_e(metric)} records yet.</p>')
            else:
                count += 1
                figures.append(f'<figure class="plot" data-metric="{_e(metric)}" data-x="{_e(x_key)}">{svg}</figure>')
        parts.append(f"<h3>{heading}</h3><div class=\"grid\">{''.join(figures)}</div>")
    parts.append("</section>")
    return "".join(parts), count


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def config_section(runs: list[RunInfo], colors: list[str]) -> str:
    flat = [_flatten(r.config) for r in runs]
    keys = []
    for f in flat:
        keys.extend(k for k in f if k not in keys)
    differing = [k for k in keys if len({_show(f[k]) if k in f else "\0" for f in flat}) > 1]
    head = "<tr><th>setting</th>" + "".join(
        f'<th data-run="{i}"><span class="swatch" style="background:{colors[i]}"></span>{_e(r.label)}</th>'
        for i, r in enumerate(runs)) + "</tr>"

    def rows(which: list[str]) -> str:
        out = []
        for k in which:
            cls = ' class="diff"' if k in differing else ""
            cells = "".join(f"<td>{_e(_show(f[k])) if k in f else '—'}</td>" for f in flat)
            out.append(f'<tr{cls}><td class="key">{_e(k)}</td>{cells}</tr>')
        return "".join(out)

    parts = ['<section id="config"><h2>Config</h2>']
    if len(runs) > 1:
        if differing:
            parts.append(f'<p class="note">{len(differing)} of {len(keys)} settings differ between the runs '
                         f"(highlighted).</p><div class=\"scroll\"><table>{head}{rows(differing)}</table></div>")
        else:
            parts.append(f'<p class="note">all {len(keys)} settings are the same in every run.</p>')
    parts.append(f"<details{' open' if len(runs) == 1 else ''}><summary>all {len(keys)} settings</summary>"
                 f'<div class="scroll"><table>{head}{rows(keys)}</table></div></details></section>')
    return "".join(parts)


def _sample_html(sample: dict) -> str:
    return (f'<div class="sample"><span class="prompt">{_e(str(sample.get("prompt", "")))}</span>'
            f'{_e(str(sample.get("text", "")))}</div>')


def samples_section(runs: list[RunInfo], colors: list[str]) -> str:
    parts = ['<section id="samples"><h2>Samples</h2>']
    with_samples = [(i, r) for i, r in enumerate(runs) if r.samples]
    if not with_samples:
        parts.append('<p class="note">no samples (sample.enabled is off, or no eval has run yet).</p></section>')
        return "".join(parts)
    rows = []
    for i, r in with_samples:
        last_step = max(s.get("train/global_step", 0) or 0 for s in r.samples)
        last = [s for s in r.samples if (s.get("train/global_step", 0) or 0) == last_step]
        rows.append(f"<tr>{_run_cell(i, r, colors)}<td class=\"num\">{_e(human_count(last_step))}</td>"
                    f"<td>{''.join(_sample_html(s) for s in last)}</td></tr>")
    parts.append("<h3>At the last eval</h3><table><tr><th>run</th><th>step</th><th>samples</th></tr>"
                 + "".join(rows) + "</table><h3>At every eval</h3>")
    for i, r in with_samples:
        body = []
        for s in sorted(r.samples, key=lambda s: (s.get("train/global_step", 0) or 0, s.get("index", 0) or 0)):
            body.append(f'<tr><td class="num">{_e(human_count(s.get("train/global_step")))}</td>'
                        f'<td class="num">{_e(human_count(s.get("tokens")))}</td>'
                        f'<td class="num">{_e(fmt_seconds(s.get("train_time")))}</td><td>{_sample_html(s)}</td></tr>')
        parts.append(f'<details><summary data-run="{i}"><span class="swatch" style="background:{colors[i]}">'
                     f"</span>{_e(r.label)} — {len(r.samples)} samples</summary>"
                     "<table><tr><th>step</th><th>tokens</th><th>time</th><th>sample</th></tr>"
                     + "".join(body) + "</table></details>")
    parts.append("</section>")
    return "".join(parts)


def sweep_section(sweep: Sweep, fig_no: int) -> str:
    parts = [f'<section id="sweep-{_e(sweep.name)}"><h2>Sweep {_e(sweep.name)}</h2>',
             f'<p class="note">{_e(str(sweep.path))}</p><h3>Leaderboard</h3>']
    if sweep.leaderboard:
        cols = list(sweep.leaderboard[0])
        head = "".join(f"<th>{_e(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{_e(_short(row.get(c, '')))}</td>" for c in cols) + "</tr>"
                       for row in sweep.leaderboard)
        parts.append(f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>')
    else:
        parts.append('<p class="note">no leaderboard.csv in this sweep folder yet.</p>')
    parts.append("<h3>Parameter importance</h3>")
    svg = plot_importances(sweep.importances, fig_no)
    if svg:
        parts.append(f'<figure class="plot" data-metric="importance" style="max-width:620px">{svg}</figure>')
    else:
        parts.append('<p class="note">no importances.json (written once enough trials have finished).</p>')
    parts.append("</section>")
    return "".join(parts)


def _short(value: Any) -> str:
    """A leaderboard cell: long floats shortened, everything else as written."""
    text = "" if value is None else str(value)
    try:
        number = float(text)
    except ValueError:
        return text
    if "." in text and len(text) > 8 and math.isfinite(number):
        return f"{number:.5g}"
    return text


def _labels(runs: list[RunInfo]) -> list[str]:
    """Run names, or paths where two runs share a name (trials of different sweeps)."""
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{r.sweep}/{r.name}" if r.sweep and names.count(r.name) > 1 else
            (str(r.path) if names.count(r.name) > 1 else r.name) for r in runs]


def build_report(runs: list[RunInfo], sweeps: list[Sweep] | None = None, title: str | None = None) -> str:
    """The whole page as one HTML string."""
    from slovo import __version__

    sweeps = sweeps or []
    colors = _palette(len(runs))
    for run, label in zip(runs, _labels(runs)):
        run.label = label
    title = title or ("slovo report: " + (", ".join(s.name for s in sweeps) if sweeps else
                                          ", ".join(r.label for r in runs[:4])
                                          + (f" and {len(runs) - 4} more" if len(runs) > 4 else "")))
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    nav = ['<a href="#runs">runs</a>'] + [f'<a href="#sweep-{_e(s.name)}">sweep {_e(s.name)}</a>' for s in sweeps]
    nav += ['<a href="#curves">curves</a>', '<a href="#config">config</a>', '<a href="#samples">samples</a>']
    body = [f"<header><h1>{_e(title)}</h1><p class=\"meta\">{len(runs)} run{'s' if len(runs) != 1 else ''}"
            f" · generated {_e(now)} · slovo {_e(__version__)}</p><nav>{''.join(nav)}</nav></header>"]
    fig_no = 0
    if runs:
        body.append(runs_section(runs, colors))
    for sweep in sweeps:
        body.append(sweep_section(sweep, fig_no))
        fig_no += 1
    if runs:
        curves, _ = curves_section(runs, colors, fig_no)
        body += [curves, config_section(runs, colors), samples_section(runs, colors)]
    body.append('<footer><p id="render-check" class="note">render check: the page script did not run</p></footer>')
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style><script>{HEAD_SCRIPT}</script></head>"
            f"<body>{''.join(body)}<script>{TAIL_SCRIPT}</script></body></html>\n")


def write_report(paths: list[str | Path], out: str | Path, title: str | None = None) -> dict:
    """Collect the runs behind `paths`, write the page atomically to `out`; returns what went in."""
    from slovo.utils import atomic_write_text

    runs, sweeps = collect(paths)
    page = build_report(runs, sweeps, title)
    atomic_write_text(out, page)
    return {"path": str(out), "runs": len(runs), "sweeps": len(sweeps), "plots": page.count('<figure class="plot"'),
            "bytes": len(page.encode("utf-8"))}
