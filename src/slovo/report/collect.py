"""Which runs and sweeps a report shows: the folders named on the command line, searched for run folders."""

from __future__ import annotations

from pathlib import Path

from slovo.errors import SlovoError
from slovo.runs import RunInfo, find_runs, is_run_dir, is_sweep_dir, load_run
from slovo.sweep.results import SweepFolder, read_sweep_folder


def collect(paths: list[str | Path]) -> tuple[list[RunInfo], list[SweepFolder]]:
    """Runs and sweeps named on the command line: a run folder, a sweep folder, or a folder of runs."""
    runs: list[RunInfo] = []
    sweeps: list[SweepFolder] = []
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
        sweep_dirs = (
            [path]
            if is_sweep_dir(path)
            else sorted(child for child in path.iterdir() if child.is_dir() and is_sweep_dir(child))
        )
        sweeps.extend(read_sweep_folder(d) for d in sweep_dirs)
        if not found and not sweep_dirs:
            raise SlovoError(f"{path}: no run folders in it (a run folder has summary.json)")
        for run_path in found:
            add(run_path)
    if not runs and not sweeps:
        raise SlovoError("report: no runs given")
    if sweeps:  # a sweep's trials read best first, as on its leaderboard
        runs.sort(key=lambda r: (r.eval_bpb is None, r.eval_bpb if r.eval_bpb is not None else 0.0, r.name))
    return runs, sweeps
