"""A run's minimal-pair suite accuracy for `slovo runs` and the report.

Where it comes from: `RUN/evals/<suite>.json` (written by `slovo eval RUN --suite`, the whole suite or the
`--pairs` subset it names) when it scored the run's current final checkpoint and at least as many pairs as the
run's own last suite eval; else the run's own evals (`eval/<suite>_acc` and `_acc_se` in summary.json, else the
newest metrics.jsonl record that has them). A file that scored an earlier checkpoint (the run was extended since)
or fewer pairs than the run's own final eval is stale and not shown. The accuracy is the primary criterion's
(total log-probability), the mean over phenomena.
"""

from __future__ import annotations

import re

from slovo.runs.folders import RunInfo
from slovo.utils import read_json_dict

Z95 = 1.959963984540054


class Accuracy(float):
    """An accuracy that sorts and prints in JSON as a plain float and carries its 95% interval for the table."""

    ci: tuple[float, float]

    def __new__(cls, acc: float, ci: tuple[float, float]):
        obj = super().__new__(cls, acc)
        obj.ci = (float(ci[0]), float(ci[1]))
        return obj


def saved_suite_result(run: RunInfo, suite: str = "rublimp") -> dict:
    """RUN/evals/<suite>.json as written by `slovo eval --suite` ({} when there is none, it is unreadable, or it is
    stale: it scored another checkpoint than the run's final one, or fewer pairs than the run's own final suite
    eval of that checkpoint)."""
    data = read_json_dict(run.path / "evals" / f"{suite}.json")
    if not isinstance(data.get("overall"), dict):
        return {}
    scored = re.search(r"step_(\d+)", str(data.get("checkpoint") or ""))
    step = run.summary.get("train/global_step")
    if scored and isinstance(step, int) and int(scored.group(1)) != step:
        return {}
    own_pairs = run.summary.get(f"eval/{suite}_pairs")
    if isinstance(own_pairs, int) and isinstance(data.get("pairs"), int) and data["pairs"] < own_pairs:
        return {}
    return data


def suite_accuracy(run: RunInfo, suite: str = "rublimp") -> Accuracy | None:
    """The run's accuracy on `suite` with its interval, or None when it was never scored."""
    saved = saved_suite_result(run, suite)
    figure = saved.get("overall", {}).get(saved.get("primary", "sum"))
    if isinstance(figure, dict) and isinstance(figure.get("acc"), (int, float)) and len(figure.get("ci") or ()) == 2:
        return Accuracy(figure["acc"], figure["ci"])
    acc, se = run.summary.get(f"eval/{suite}_acc"), run.summary.get(f"eval/{suite}_acc_se")
    if not isinstance(acc, (int, float)):
        for record in reversed(run.metrics):
            if isinstance(record.get(f"eval/{suite}_acc"), (int, float)):
                acc, se = record[f"eval/{suite}_acc"], record.get(f"eval/{suite}_acc_se")
                break
        else:
            return None
    half = Z95 * se if isinstance(se, (int, float)) else float("nan")
    return Accuracy(acc, (max(0.0, acc - half), min(1.0, acc + half)))


def format_accuracy(value: float | None) -> str:
    """'63.1% ±0.4' (the 95% interval's half width, in points), '-' when there is none."""
    if value is None:
        return "-"
    ci = getattr(value, "ci", None)
    if ci is None or ci[0] != ci[0]:  # no interval (nan)
        return f"{100 * value:.1f}%"
    return f"{100 * value:.1f}% ±{100 * (ci[1] - ci[0]) / 2:.1f}"
