"""`slovo report RUN_OR_DIR... -o report.html`: one self-contained HTML page comparing runs (see slovo.report).

examples:
  slovo report runs/demo -o report.html
  slovo report runs/a runs/b sweeps/lr -o compare.html
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="RUN_OR_DIR",
        help="run folders, sweep folders (their trials, leaderboard and importances), or folders of runs",
    )
    parser.add_argument(
        "-o", "--out", default="report.html", metavar="FILE", help="the HTML file to write (default: report.html)"
    )
    parser.add_argument("--title", help="page title (default: names of the runs or sweep)")


def run(args: argparse.Namespace) -> int:
    from slovo.errors import SlovoError
    from slovo.report import write_report

    if not args.out.lower().endswith((".html", ".htm")):
        raise SlovoError(f"-o {args.out}: the report is an HTML file; give a name ending in .html")
    info = write_report(args.paths, args.out, title=args.title)
    sweeps = f", {info['sweeps']} sweep{'s' if info['sweeps'] != 1 else ''}" if info["sweeps"] else ""
    print(
        f"wrote {info['path']}: {info['runs']} run{'s' if info['runs'] != 1 else ''}{sweeps}, "
        f"{info['plots']} plots, {info['bytes'] / 1024:.0f} KiB (self-contained: open it in any browser, offline)"
    )
    return 0
