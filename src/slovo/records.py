"""Reading a run's metrics.jsonl records: shared by the terminal (training), `slovo runs` and the report, so the
training path never imports the run-folder readers."""

from __future__ import annotations

import re


def split_evals(records: list[dict], key: str) -> tuple[list[dict], dict | None]:
    """Evals during training and the final full eval, told apart: (the records of the evals that scored the
    subset of windows, the last full eval's record or None when every eval scored the same windows).

    Joined in one curve the last point would jump for no training reason: the full set scores other text than
    the subset. `eval/windows` in each record says which set it scored; for a suite's accuracy
    (`eval/<suite>_acc...`) `eval/<suite>_pairs` does (the final eval scores `eval.suite_final_pairs`)."""
    suite = re.fullmatch(r"(eval/[^/]+)_acc(?:_se|_mean)?", key)
    size = f"{suite.group(1)}_pairs" if suite else "eval/windows"
    evals = [r for r in records if r.get(key) is not None]
    sizes = [r.get(size) for r in evals]
    full = max((w for w in sizes if isinstance(w, (int, float))), default=None)
    if full is None or all(w == full for w in sizes):
        return evals, None
    subset = [r for r in evals if r.get(size) != full]
    return subset, next(r for r in reversed(evals) if r.get(size) == full)
