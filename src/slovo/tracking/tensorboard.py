"""TensorBoard sink: event files in RUN_DIR/tensorboard, one scalar tag per metric, samples as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slovo.tracking import scalar_items

# Axes of every record rather than curves of their own: the step is the x axis, wall_time the event time.
_NOT_SCALARS = {"train/global_step", "wall_time"}


class TensorBoardSink:
    """Writes with torch's SummaryWriter (which needs the `tensorboard` package); view with
    `tensorboard --logdir RUN_DIR/tensorboard` or point it at a whole runs folder to compare runs."""

    name = "tensorboard"

    def __init__(self, cfg, run_dir: str | Path, resume: bool = False, name: str | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self._writer_cls = SummaryWriter
        self.log_dir = Path(run_dir) / "tensorboard"
        # Opened on first write: a resumed run's first step tells TensorBoard to hide the earlier
        # session's events from that step on (purge_step), so redone steps are not drawn twice.
        self._writer = None
        self._resume = resume
        self._purge_step: int | None = None

    def _get_writer(self, step: int):
        if self._writer is None:
            purge = self._purge_step if self._purge_step is not None else (step if self._resume else None)
            self._writer = self._writer_cls(log_dir=str(self.log_dir), purge_step=purge)
        return self._writer

    def log(self, metrics: dict[str, Any], step: int) -> None:
        wall_time = metrics.get("wall_time")
        writer = self._get_writer(step)
        for key, value in scalar_items(metrics).items():
            if key not in _NOT_SCALARS:
                writer.add_scalar(key, value, global_step=step, walltime=wall_time)

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None:
        # One text entry per prompt and sample number; a fenced block keeps the text as written
        # (TensorBoard renders markdown and sanitises HTML).
        writer = self._get_writer(step)
        prompts: dict[str, int] = {}
        for sample in samples:
            prompt_no = prompts.setdefault(str(sample.get("prompt", "")), len(prompts))
            tag = f"samples/prompt_{prompt_no}_{sample.get('index', 0)}"
            fence = "~~~~" if "```" in str(sample.get("text", "")) else "```"
            body = f"{fence}\n{sample.get('prompt', '')}{sample.get('text', '')}\n{fence}"
            writer.add_text(tag, body, global_step=step)
        writer.flush()

    def truncate_after(self, step: int) -> None:
        """On resume, make TensorBoard hide events past `step` from the earlier, interrupted session."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._purge_step = step + 1

    def locations(self) -> dict[str, str]:
        return {"tensorboard": str(self.log_dir)}

    def view_hints(self) -> dict[str, str]:
        return {"tensorboard": f"tensorboard --logdir {self.log_dir}"}

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
