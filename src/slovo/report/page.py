"""The report page: HTML sections (runs, sweeps, curves, config, samples) around the SVG plots, in one file.

Every user-controlled string (run names, config values, samples, leaderboard cells) goes through
`html.escape`: a sample that reads `<script>` shows as text. The page's style sheet and its two small scripts
are package data (slovo/report/assets/) inlined into the page, so it opens offline as one file.
"""

from __future__ import annotations

import datetime as _dt
import functools
import html
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from slovo import stats, window_losses
from slovo.format import (
    budget_text,
    format_bpb,
    format_duration,
    format_float,
    format_lr,
    human_count,
    short_number,
)
from slovo.report.plots import LOSS_PLOTS, OPTIM_PLOTS, palette, plot_importances, plot_metric
from slovo.runs import RunInfo
from slovo.runs.suites import format_accuracy, saved_suite_result, suite_accuracy
from slovo.sweep.results import SweepFolder

_e = html.escape


@functools.cache
def _asset(name: str) -> str:
    """A file of slovo/report/assets/ (the page's CSS and scripts), as text to inline."""
    return resources.files("slovo.report").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


def _run_cell(i: int, run: RunInfo, colors: list[str]) -> str:
    return f'<td data-run="{i}"><span class="swatch" style="background:{colors[i]}"></span>{_e(run.label)}</td>'


def _status(status: str) -> str:
    return f'<span class="status {_e(status)}">{_e(status)}</span>'


def _tied_with_best(runs: list[RunInfo], best: RunInfo | None) -> set[int]:
    """Indices of the runs a window-by-window test cannot tell from the best run (Holm over every pair): those
    whose final eval left per-window losses over the same windows as the best's; eval noise only."""
    if best is None:
        return set()
    losses = {i: window_losses.load(r.path, r.eval_bpb) for i, r in enumerate(runs) if r.eval_bpb is not None}
    mine = losses.get(runs.index(best))
    if mine is None:
        return set()
    same = {str(i): (w.nats, w.bytes) for i, w in losses.items() if w is not None and w.same_windows(mine)}
    _, tied, _ = stats.windows_tied_with_best(same)
    return {int(i) for i in tied} - {runs.index(best)}


def runs_section(runs: list[RunInfo], colors: list[str]) -> str:
    scored = [r for r in runs if r.eval_bpb is not None]
    best_run = min(scored, key=lambda r: r.eval_bpb) if scored else None
    best = best_run.eval_bpb if best_run is not None else None
    head = (
        "<tr><th>run</th><th>status</th><th>preset</th><th>budget</th><th>lr</th><th>steps</th><th>tokens</th>"
        "<th>train time</th><th>eval loss</th><th>eval bpb ± se</th><th>vs best</th><th>best loss</th>"
        "<th>best bpb</th><th>tokens/s</th><th>params</th><th>folder</th></tr>"
    )
    rows = []
    tied_runs = _tied_with_best(runs, best_run)
    for i, r in enumerate(runs):
        tied = i in tied_runs
        cls = ' class="best"' if best is not None and r.eval_bpb == best and len(runs) > 1 else ""
        cls = ' class="tied"' if tied else cls
        mark = "best" if cls == ' class="best"' else ("within noise" if tied else "")
        params = r.summary.get("params") or r.run_json.get("params")
        nums = [
            format_lr(r.lr_nominal, r.lr_scale),
            human_count(r.steps),
            human_count(r.tokens),
            format_duration(r.train_runtime),
            format_float(r.eval_loss),
            format_bpb(r.eval_bpb, r.eval_bpb_se),
            mark,
            format_float(r.best_loss),
            format_float(r.best_bpb),
            human_count(r.tokens_per_second),
            human_count(params if isinstance(params, (int, float)) else None),
        ]
        rows.append(
            f"<tr{cls}>{_run_cell(i, r, colors)}<td>{_status(r.status)}</td><td>{_e(r.preset or '-')}</td>"
            f"<td>{_e(budget_text(r.budget))}</td>"
            + "".join(f'<td class="num">{_e(n)}</td>' for n in nums)
            + f'<td class="note">{_e(_short_path(r.path))}</td></tr>'
        )
    errors = [(r, r.summary.get("error")) for r in runs if r.summary.get("error")]
    notes = "".join(f'<p class="note">{_e(r.label)} failed: {_e(str(err))}</p>' for r, err in errors)
    return (
        f'<section id="runs"><h2>Runs</h2><div class="scroll"><table>{head}{"".join(rows)}</table></div>'
        f'{notes}<p class="note">best final eval bpb in bold; ± its standard error over the eval windows (how far '
        f'another evenly spread set of windows of the same validation text could move it); "within noise": paired '
        f"window by window with the best on the eval windows both scored, no difference (Holm over every pair of "
        f"runs; eval noise only, seed noise needs repeats: slovo compare). lr: the peak lr trained at, after the "
        f"divergence guard's cuts. bpb (bits per byte) compares runs with different tokenizers; loss does not."
        f"</p></section>"
    )


def _short_path(path: Path) -> str:
    """The folder relative to where the report is made, when that is shorter."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return rel if len(rel) < len(str(path)) else str(path)


def _legend(runs: list[RunInfo], colors: list[str]) -> str:
    items = "".join(
        f'<span data-run="{i}"><span class="swatch" style="background:{colors[i]}"></span>{_e(r.label)}</span>'
        for i, r in enumerate(runs)
    )
    return f'<div class="legend">{items}</div>'


def curves_section(runs: list[RunInfo], colors: list[str], first_fig: int) -> tuple[str, int]:
    parts = [
        '<section id="curves"><h2>Curves</h2>',
        _legend(runs, colors),
        '<p class="note">hover a run\'s name to bring its lines forward. Train loss: light = logged, '
        "solid = smoothed (EMA); its y axis (and grad norm's) fits the part after the first steps.</p>",
    ]
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
        parts.append(f'<h3>{heading}</h3><div class="grid">{"".join(figures)}</div>')
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
    head = (
        "<tr><th>setting</th>"
        + "".join(
            f'<th data-run="{i}"><span class="swatch" style="background:{colors[i]}"></span>{_e(r.label)}</th>'
            for i, r in enumerate(runs)
        )
        + "</tr>"
    )

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
            parts.append(
                f'<p class="note">{len(differing)} of {len(keys)} settings differ between the runs '
                f'(highlighted).</p><div class="scroll"><table>{head}{rows(differing)}</table></div>'
            )
        else:
            parts.append(f'<p class="note">all {len(keys)} settings are the same in every run.</p>')
    parts.append(
        f"<details{' open' if len(runs) == 1 else ''}><summary>all {len(keys)} settings</summary>"
        f'<div class="scroll"><table>{head}{rows(keys)}</table></div></details></section>'
    )
    return "".join(parts)


BASELINE_COLUMNS = ("mean", "shorter_chars", "shorter_tokens")  # beside the primary criterion, in this order


def suite_section(runs: list[RunInfo], colors: list[str], fig_no: int) -> str:
    """RuBLiMP: each run's accuracy with its interval beside the no-model baselines, the curve of the evals during
    training, and a per-phenomenon table of the runs scored by `slovo eval --suite` ("" when no run has it)."""
    accs = [suite_accuracy(r) for r in runs]
    if all(a is None for a in accs):
        return ""
    saved = [saved_suite_result(r) for r in runs]
    head = (
        "<tr><th>run</th><th>eval bpb</th><th>accuracy (95% CI)</th><th>mean/token</th><th>shorter (chars)</th>"
        "<th>shorter (tokens)</th><th>pairs</th><th>scored by</th></tr>"
    )
    rows = []
    for i, (r, acc, res) in enumerate(zip(runs, accs, saved)):
        if acc is None:
            continue
        overall = res.get("overall", {})
        pairs = human_count(res["pairs"]) if res else "subset"
        nums = [format_float(r.eval_bpb), format_accuracy(acc)]
        nums += [f"{100 * overall[c]['acc']:.1f}%" if c in overall else "-" for c in BASELINE_COLUMNS]
        rows.append(
            f"<tr>{_run_cell(i, r, colors)}"
            + "".join(f'<td class="num">{_e(n)}</td>' for n in nums)
            + f'<td class="num">{_e(pairs)}</td><td>{"slovo eval --suite" if res else "evals in training"}</td></tr>'
        )
    parts = [
        '<section id="rublimp"><h2>RuBLiMP grammar accuracy</h2><div class="scroll"><table>',
        head,
        "".join(rows),
        '</table></div><p class="note">share of minimal pairs where the grammatical sentence gets the higher total '
        "log-probability, mean over phenomena (chance 50%); the no-model baselines pick the shorter sentence.</p>",
    ]
    svg = plot_metric(runs, colors, "eval/rublimp_acc", "train_runtime", "RuBLiMP accuracy", "accuracy", fig_no)
    if svg is not None:
        parts.append(f'<div class="grid"><figure class="plot" data-metric="eval/rublimp_acc">{svg}</figure></div>')
    scored = [(i, r, res) for i, (r, res) in enumerate(zip(runs, saved)) if res.get("phenomena")]
    if scored:
        names = list(dict.fromkeys(n for _, _, res in scored for n in res["phenomena"]))
        cols = "".join(_run_cell(i, r, colors).replace("<td", "<th").replace("</td>", "</th>") for i, r, _ in scored)
        body = []
        for name in names:
            info = next(res["phenomena"][name] for _, _, res in scored if name in res["phenomena"])
            cells = "".join(
                f'<td class="num">{_e(format_accuracy(_phenomenon_acc(res, name)))}</td>' for _, _, res in scored
            )
            body.append(
                f"<tr><td>{_e(name)}</td><td>{_e(str(info.get('level', '')))}</td>"
                f"<td>{_e(str(info.get('group', '')))}</td>{cells}</tr>"
            )
        parts.append(
            f'<h3>Per phenomenon</h3><div class="scroll"><table><tr><th>phenomenon</th><th>level</th><th>group</th>'
            f"{cols}</tr>{''.join(body)}</table></div>"
        )
    parts.append("</section>")
    return "".join(parts)


def _phenomenon_acc(result: dict, name: str):
    from slovo.runs.suites import Accuracy

    fig = (result["phenomena"].get(name) or {}).get(result.get("primary", "sum"))
    return Accuracy(fig["acc"], fig["ci"]) if isinstance(fig, dict) else None


def _sample_html(sample: dict) -> str:
    return (
        f'<div class="sample"><span class="prompt">{_e(str(sample.get("prompt", "")))}</span>'
        f"{_e(str(sample.get('text', '')))}</div>"
    )


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
        rows.append(
            f'<tr>{_run_cell(i, r, colors)}<td class="num">{_e(human_count(last_step))}</td>'
            f"<td>{''.join(_sample_html(s) for s in last)}</td></tr>"
        )
    parts.append(
        "<h3>At the last eval</h3><table><tr><th>run</th><th>step</th><th>samples</th></tr>"
        + "".join(rows)
        + "</table><h3>At every eval</h3>"
    )
    for i, r in with_samples:
        body = []
        for s in sorted(r.samples, key=lambda s: (s.get("train/global_step", 0) or 0, s.get("index", 0) or 0)):
            body.append(
                f'<tr><td class="num">{_e(human_count(s.get("train/global_step")))}</td>'
                f'<td class="num">{_e(human_count(s.get("tokens")))}</td>'
                f'<td class="num">{_e(format_duration(s.get("train_runtime")))}</td>'
                f"<td>{_sample_html(s)}</td></tr>"
            )
        parts.append(
            f'<details><summary data-run="{i}"><span class="swatch" style="background:{colors[i]}">'
            f"</span>{_e(r.label)} — {len(r.samples)} samples</summary>"
            "<table><tr><th>step</th><th>tokens</th><th>time</th><th>sample</th></tr>"
            + "".join(body)
            + "</table></details>"
        )
    parts.append("</section>")
    return "".join(parts)


def sweep_section(sweep: SweepFolder, fig_no: int) -> str:
    parts = [
        f'<section id="sweep-{_e(sweep.name)}"><h2>Sweep {_e(sweep.name)}</h2>',
        f'<p class="note">{_e(str(sweep.path))}</p><h3>Leaderboard</h3>',
    ]
    if sweep.leaderboard:
        cols = list(sweep.leaderboard[0])
        head = "".join(f"<th>{_e(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{_e(short_number(row.get(c, '')))}</td>" for c in cols) + "</tr>"
            for row in sweep.leaderboard
        )
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


def _labels(runs: list[RunInfo]) -> list[str]:
    """Run names, or paths where two runs share a name (trials of different sweeps)."""
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return names
    return [
        f"{r.sweep}/{r.name}"
        if r.sweep and names.count(r.name) > 1
        else (str(r.path) if names.count(r.name) > 1 else r.name)
        for r in runs
    ]


def build_report(runs: list[RunInfo], sweeps: list[SweepFolder] | None = None, title: str | None = None) -> str:
    """The whole page as one HTML string."""
    from slovo import __version__

    sweeps = sweeps or []
    colors = palette(len(runs))
    for run, label in zip(runs, _labels(runs)):
        run.label = label
    title = title or (
        "slovo report: "
        + (
            ", ".join(s.name for s in sweeps)
            if sweeps
            else ", ".join(r.label for r in runs[:4]) + (f" and {len(runs) - 4} more" if len(runs) > 4 else "")
        )
    )
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    nav = ['<a href="#runs">runs</a>'] + [f'<a href="#sweep-{_e(s.name)}">sweep {_e(s.name)}</a>' for s in sweeps]
    nav += ['<a href="#curves">curves</a>', '<a href="#config">config</a>', '<a href="#samples">samples</a>']
    suites = suite_section(runs, colors, 900) if runs else ""  # fig 900: apart from the curves' numbers
    if suites:
        nav.insert(1, '<a href="#rublimp">rublimp</a>')
    body = [
        f'<header><h1>{_e(title)}</h1><p class="meta">{len(runs)} run{"s" if len(runs) != 1 else ""}'
        f" · generated {_e(now)} · slovo {_e(__version__)}</p><nav>{''.join(nav)}</nav></header>"
    ]
    fig_no = 0
    if runs:
        body.append(runs_section(runs, colors))
        body.append(suites)
    for sweep in sweeps:
        body.append(sweep_section(sweep, fig_no))
        fig_no += 1
    if runs:
        curves, _ = curves_section(runs, colors, fig_no)
        body += [curves, config_section(runs, colors), samples_section(runs, colors)]
    body.append('<footer><p id="render-check" class="note">render check: the page script did not run</p></footer>')
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>\n{_asset('report.css')}</style><script>\n{_asset('errors.js')}</script></head>"
        f"<body>{''.join(body)}<script>\n{_asset('report.js')}</script></body></html>\n"
    )
