"""The report's plots: matplotlib figures written as inline SVG, one line per run.

Each line's SVG group gets an id `run{i}-f{fig}-line` (and `-raw` for unsmoothed train loss) so the page's
script can bring one run's lines forward, and so the render check can count drawn lines.
"""

from __future__ import annotations

import io
import math
import re

from slovo.records import split_evals
from slovo.runs import RunInfo

MAX_POINTS = 1500  # per line; longer series are thinned evenly so a page of many long runs stays small

# (metric, x key, title, y label); the x key is train_runtime (seconds on the budget clock) or tokens
LOSS_PLOTS = [
    ("train/loss", "train_runtime", "train loss", "loss"),
    ("train/loss", "tokens", "train loss", "loss"),
    ("eval/loss", "train_runtime", "eval loss", "loss"),
    ("eval/loss", "tokens", "eval loss", "loss"),
    ("eval/bpb", "train_runtime", "eval bits per byte", "bpb"),
    ("eval/bpb", "tokens", "eval bits per byte", "bpb"),
]
OPTIM_PLOTS = [
    ("train/learning_rate", "train_runtime", "learning rate", "lr"),
    ("train/muon_learning_rate", "train_runtime", "Muon learning rate (hidden matrices)", "lr"),  # Muon runs only
    ("train/grad_norm", "train_runtime", "grad norm (before clipping)", "norm"),
    ("train/tokens_per_second", "train_runtime", "throughput", "tokens/s"),
]
# Curves whose first steps dwarf the rest: the y axis is fitted to the later part of training.
CLIP_EARLY = {"train/loss", "train/grad_norm"}


def palette(n: int) -> list[str]:
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


def _svg_style(fig_no: int) -> dict:
    """matplotlib settings every figure of the page shares: text kept as text, ids stable per figure, no box."""
    return {
        "svg.fonttype": "none",
        "svg.hashsalt": f"slovo-{fig_no}",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


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
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE: the page is HTML5
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    # A fixed-size SVG would not shrink on a narrow screen; width 100% keeps the aspect via viewBox.
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 width="100%"', svg, count=1)


def _time_axis(max_seconds: float) -> tuple[float, str]:
    if max_seconds >= 2 * 3600:
        return 3600.0, "training time (h)"
    if max_seconds >= 180:
        return 60.0, "training time (min)"
    return 1.0, "training time (s)"


def plot_metric(
    runs: list[RunInfo], colors: list[str], metric: str, x_key: str, title: str, ylabel: str, fig_no: int
) -> str | None:
    """One SVG figure of `metric` against `x_key` with a line per run, or None when no run has the metric."""
    import matplotlib
    from matplotlib.figure import Figure

    data, finals = _curves(runs, metric, x_key)
    if not data:
        return None
    scale, xlabel = 1.0, "tokens"
    if x_key == "train_runtime":
        scale, xlabel = _time_axis(max([x for _, xs, _ in data for x in xs] + [f[0] for f in finals.values()]))
    with matplotlib.rc_context({**_svg_style(fig_no), "font.family": ["DejaVu Sans", "sans-serif"]}):
        fig = Figure(figsize=(5.6, 3.2), dpi=100)
        ax = fig.subplots()
        few_points = all(len(xs) <= 30 for _, xs, _ in data)
        for i, xs, ys in data:
            label, gid = runs[i].label or runs[i].name, f"run{i}-f{fig_no}"
            _draw_run(ax, [x / scale for x in xs], ys, colors[i], label, gid, metric, few_points)
            if i in finals:
                fx, fy, se = finals[i]
                mark = ax.errorbar(
                    [fx / scale], [fy], yerr=[1.96 * se] if se else None, color=colors[i], marker="*",
                    markersize=8, linestyle="none", capsize=3,
                )  # fmt: skip
                mark[0].set_gid(f"{gid}-full")
        if finals:
            ax.plot([], [], color="gray", marker="*", linestyle="none", label="full final eval (± 95%)")
        _format_axes(ax, metric, x_key, [ys for _, _, ys in data])
        ax.set_title(f"{title} vs {'tokens' if x_key == 'tokens' else 'training time'}", fontsize=10, loc="left")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3, linewidth=0.6)
        if len(data) <= 8:
            ax.legend(fontsize=7, frameon=False, loc="best")
        svg = _svg_of(fig)
    return svg


def _curves(runs: list[RunInfo], metric: str, x_key: str) -> tuple[list, dict]:
    """([(run index, xs, ys)] of the runs that have `metric`, {run index: (x, y, se) of its full final eval}).

    Eval curves: the evals during training (one subset of windows) are the line; the final full eval, over other
    text, is a separate point with its 95% interval, so the line does not jump at the end for no training reason."""
    finals: dict[int, tuple[float, float, float | None]] = {}
    data = []
    for i, run in enumerate(runs):
        records = run.metrics
        if metric.startswith("eval/"):
            records, full = split_evals(run.metrics, metric)
            fx, fy = _series([full] if full else [], metric, x_key)
            if fx:
                se = full.get("eval/bpb_se" if metric == "eval/bpb" else f"{metric}_se")
                finals[i] = (fx[0], fy[0], float(se) if isinstance(se, (int, float)) else None)
        data.append((i, *_series(records, metric, x_key)))
    return [d for d in data if d[1] or d[0] in finals], finals


def _draw_run(ax, xs: list, ys: list, color: str, label: str, gid: str, metric: str, few_points: bool) -> None:
    """One run's line (a long train/loss curve: faint raw values under their moving average)."""
    if metric == "train/loss" and len(ys) > 40:
        (raw,) = ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8)
        raw.set_gid(f"{gid}-raw")
        (line,) = ax.plot(xs, _ema(ys), color=color, linewidth=1.6, label=label)
    else:
        marker = "o" if few_points else None
        (line,) = ax.plot(xs, ys, color=color, linewidth=1.6, label=label, marker=marker, markersize=3)
    line.set_gid(f"{gid}-line")


def _format_axes(ax, metric: str, x_key: str, ys: list[list[float]]) -> None:
    """Limits and tick labels the metric reads best with."""
    from matplotlib.ticker import EngFormatter, FuncFormatter

    if metric in CLIP_EARLY:
        _fit_later_part(ax, ys)
    if metric in ("train/learning_rate", "train/muon_learning_rate"):
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
    if metric == "train/tokens_per_second":
        ax.set_ylim(bottom=0)  # throughput differences read as ratios, not as magnified noise
        ax.yaxis.set_major_formatter(EngFormatter(sep=""))
    if x_key == "tokens":
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def _fit_later_part(ax, series: list[list[float]]) -> None:
    """Fit the y axis to the curves after their first 10% when the start would squash the rest."""
    later = [y for ys in series for y in ys[len(ys) // 10 :]]
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
    with matplotlib.rc_context(_svg_style(fig_no)):
        fig = Figure(figsize=(5.6, 0.5 + 0.35 * len(items)), dpi=100)
        ax = fig.subplots()
        bars = ax.barh([k for k, _ in items], [v for _, v in items], color="#4c78a8")
        for j, bar in enumerate(bars):
            bar.set_gid(f"imp-f{fig_no}-{j}")
        ax.set_xlabel("importance (from the sweep's importances.json)")
        ax.set_title("parameter importance", fontsize=10, loc="left")
        ax.grid(True, axis="x", alpha=0.3, linewidth=0.6)
        return _svg_of(fig)
