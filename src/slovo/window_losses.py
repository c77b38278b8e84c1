"""A run's per-window eval losses: `RUN/eval_windows.npz`, written at the final eval.

Every run of a dataset and context length scores the same eval windows, so two single runs are compared window by
window (`slovo.stats.paired_windows`): what the windows do to both alike cancels, and a difference far smaller than
either run's `eval/bpb_se` can be told from eval noise. The file holds the summed nats of each window's text
tokens and its UTF-8 bytes, in the windows' (text) order, and the step that scored them.
"""

from __future__ import annotations

import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FILE = "eval_windows.npz"


@dataclass(frozen=True)
class WindowLosses:
    nats: np.ndarray  # float64, per window
    bytes: np.ndarray  # float64, per window
    step: int

    @property
    def bpb(self) -> float:
        return float(self.nats.sum() / math.log(2) / max(self.bytes.sum(), 1.0))

    def same_windows(self, other: WindowLosses) -> bool:
        return self.bytes.shape == other.bytes.shape and bool(np.array_equal(self.bytes, other.bytes))


def save(run_dir: str | Path, nats: np.ndarray, n_bytes: np.ndarray, step: int) -> None:
    """Write the file atomically (readers see the old one or the new one)."""
    from slovo.utils import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, nats=np.asarray(nats, dtype=np.float64), bytes=np.asarray(n_bytes, dtype=np.float64), step=step)
    atomic_write_bytes(Path(run_dir) / FILE, buf.getvalue())


def load(run_dir: str | Path, bpb: float | None = None) -> WindowLosses | None:
    """The run's per-window losses, or None when there are none (a run from before them, no final eval yet), the
    file cannot be read, or its bpb is not `bpb` (the run's recorded final figure: a file left by an earlier
    final eval of a run extended since does not stand for it)."""
    path = Path(run_dir) / FILE
    try:
        with np.load(path) as z:
            out = WindowLosses(np.asarray(z["nats"], np.float64), np.asarray(z["bytes"], np.float64), int(z["step"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if out.nats.shape != out.bytes.shape or out.nats.size < 2:
        return None
    if bpb is not None and not math.isclose(out.bpb, bpb, rel_tol=1e-6, abs_tol=1e-9):
        return None
    return out
