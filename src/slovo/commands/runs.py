"""`slovo runs [DIR]`: a table of the runs in a folder (sweep trials included), sortable and filterable.

Status `stale` means the summary still says `running` but nothing has been written for a while (see
slovo.runs.SILENT_RUN_STALE_AFTER_S): the process died without closing the run; `slovo train --resume RUN_DIR`
continues it from its last checkpoint.

examples:
  slovo runs runs
  slovo runs sweeps/lr/trials
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs",
        nargs="*",
        metavar="DIR",
        help="folders to search for runs (default: runs, and sweeps with --sweep); a run folder "
        "or a sweep folder works too",
    )
    parser.add_argument(
        "--sort",
        default="started",
        metavar="COL",
        help="column to sort by: name, preset, budget, steps, tokens, time, loss, bpb, best_loss, "
        "best_bpb, tok_s, status, started (default); --sort=-COL sorts descending",
    )
    parser.add_argument("--reverse", action="store_true", help="reverse the sort order")
    parser.add_argument("--filter", metavar="GLOB", help="only runs whose name (or path) matches, e.g. 'lr-*'")
    parser.add_argument("--sweep", metavar="NAME", help="only the trials of this sweep (a name or glob)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from slovo.errors import SlovoError
    from slovo.runs import filter_runs, load_runs, runs_table, sort_column, sort_runs
    from slovo.runs.table import table_row

    sort_column(args.sort)  # an unknown column fails before any folder is read
    dirs = [Path(d) for d in args.dirs]
    if not dirs:
        dirs = [Path("runs")] + ([Path("sweeps")] if args.sweep else [])
        dirs = [d for d in dirs if d.is_dir()]
        if not dirs:
            raise SlovoError("runs: no 'runs' folder here; give the folder to look in, e.g. slovo runs path/to/runs")
    for d in dirs:
        if not d.is_dir():
            raise SlovoError(f"{d}: no such folder")
    runs = []
    seen = set()
    for d in dirs:
        for run in load_runs(d):
            if run.path.resolve() not in seen:
                seen.add(run.path.resolve())
                runs.append(run)
    runs = sort_runs(filter_runs(runs, args.filter, args.sweep), args.sort, args.reverse)
    if args.json:
        print(json.dumps([table_row(r) for r in runs], indent=2, ensure_ascii=False))
        return 0
    console = Console()
    where = ", ".join(str(d) for d in dirs)
    if not runs:
        what = " matching" if args.filter or args.sweep else ""
        console.print(f"no{what} runs in {where}")
        return 0
    title = f"{len(runs)} run{'s' if len(runs) != 1 else ''} in {where}"
    console.print(runs_table(runs, title=title, width=console.width))
    return 0
