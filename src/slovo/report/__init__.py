"""`slovo report`: one self-contained HTML page that compares runs, the offline answer to a wandb dashboard.

The page holds a table of the runs' final figures, curves (train loss, eval loss and eval bpb against
training time and against tokens; learning rate, grad norm and tokens/s against training time; one line per
run), the config values that differ between runs, every run's samples at every eval and, for a sweep, its
leaderboard and parameter importances.

Everything is inline: plots are matplotlib SVG, the style sheet and the small scripts (package data in
slovo/report/assets/) are copied into the page, nothing is fetched from the network, so the file can be
mailed, archived or opened on a plane. The page's only script highlights one run's lines when its name is
hovered, and writes a render check (plots drawn, script errors) into `#render-check` for tests.

By stage: `collect` finds the runs and sweeps behind the paths given, `plots` draws the figures, `page`
builds the HTML.
"""

from __future__ import annotations

from pathlib import Path

from slovo.report.collect import collect
from slovo.report.page import build_report

__all__ = ["build_report", "collect", "write_report"]


def write_report(paths: list[str | Path], out: str | Path, title: str | None = None) -> dict:
    """Collect the runs behind `paths`, write the page atomically to `out`; returns what went in."""
    from slovo.utils import atomic_write_text

    runs, sweeps = collect(paths)
    page = build_report(runs, sweeps, title)
    atomic_write_text(out, page)
    return {
        "path": str(out),
        "runs": len(runs),
        "sweeps": len(sweeps),
        "plots": page.count('<figure class="plot"'),
        "bytes": len(page.encode("utf-8")),
    }
