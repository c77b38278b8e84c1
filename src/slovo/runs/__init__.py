"""Run folders for `slovo runs` (a table) and `slovo report` (a page).

`slovo.runs.folders` finds run folders, reads them (`RunInfo`) and tells whether a `running` run is still
alive; `slovo.runs.table` is the `slovo runs` table (columns, sorting, filtering). How figures are written
lives in `slovo.format`.
"""

from slovo.runs.folders import (
    MAX_DEPTH,
    SILENT_RUN_STALE_AFTER_S,
    RunInfo,
    find_runs,
    is_run_dir,
    is_sweep_dir,
    load_run,
    load_runs,
    run_status,
)
from slovo.runs.table import COLUMNS, STATUS_STYLE, filter_runs, runs_table, sort_column, sort_runs

__all__ = [
    "COLUMNS",
    "MAX_DEPTH",
    "SILENT_RUN_STALE_AFTER_S",
    "STATUS_STYLE",
    "RunInfo",
    "filter_runs",
    "find_runs",
    "is_run_dir",
    "is_sweep_dir",
    "load_run",
    "load_runs",
    "run_status",
    "runs_table",
    "sort_column",
    "sort_runs",
]
