"""What a training run shows in the terminal.

A live progress bar whose length is the budget (training time spent / left, step, loss, lr,
tokens/s), one line per eval, and at the end the run summary: final and best eval figures, the time
ledger, the last samples, and sparklines of the curves (the "Run history" block wandb printed).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from slovo.format import budget_text, format_bpb, format_duration, format_number
from slovo.records import split_evals
from slovo.utils import read_jsonl

SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 40) -> str:
    """Unicode sparkline of `values`, resampled to at most `width` points."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return ""
    if len(vals) > width:
        vals = [vals[int(i * len(vals) / width)] for i in range(width)]
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))] for v in vals)


# Fewer optimizer steps than this and a small model's samples are punctuation and the commonest short words
# (bench/results/tiny_demo_every_cpu.md)
MIN_STEPS_FOR_WORDS = 40


def undertrained_note(summary: dict, run_dir: str | Path) -> str | None:
    """One line when a time-budgeted run made too few optimizer steps for its samples to be words, saying what
    to do; None otherwise (or for a run that has not finished)."""
    steps, budget = summary.get("train/global_step") or 0, (summary.get("budget") or {}).get("time_s")
    if summary.get("status") != "finished" or not budget or steps >= MIN_STEPS_FOR_WORDS:
        return None
    rate = summary.get("train_tokens_per_second") or 0
    minutes = math.ceil(budget * MIN_STEPS_FOR_WORDS / max(steps, 1) / 60)
    return (
        f"this machine made {steps} optimizer steps in {format_duration(budget)} ({rate:,.0f} tokens/s), too few "
        f"for samples made of words (about {MIN_STEPS_FOR_WORDS} are needed): train longer "
        f"(slovo train --resume {run_dir} --time {minutes}m) or on a GPU"
    )


def split_eval_series(records: list[dict], key: str) -> tuple[list[float], tuple[float, int] | None]:
    """The subset evals' values of `key` and (the full final eval's value, its windows) or None
    (slovo.records.split_evals)."""
    subset, full = split_evals(records, key)
    return [r[key] for r in subset], (full[key], int(full["eval/windows"])) if full is not None else None


class ProgressBar:
    """The one progress bar of train (budget spent), tune (its total time) and prepare (bytes read, encoded): a
    label, the bar, then a percentage, or with `in_bytes` the bytes done, elapsed and remaining time; then a line
    of text. Does nothing when not `enabled` (quiet, or output that is not a terminal)."""

    def __init__(self, console: Console, label: str, total: float | None, enabled: bool, in_bytes: bool = False):
        self.total = total
        self._progress = self._task = None
        if not enabled:
            return
        amount = [DownloadColumn(), TimeElapsedColumn(), TimeRemainingColumn()] if in_bytes else []
        self._progress = Progress(
            TextColumn(label),
            BarColumn(),
            *(amount or [TextColumn("{task.percentage:>3.0f}%")]),
            TextColumn("{task.fields[text]}"),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(label, total=total, text="")

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    @property
    def enabled(self) -> bool:
        return self._progress is not None

    def update(self, completed: float, text: str | None = None) -> None:
        if self._progress is not None:
            fields = {} if text is None else {"text": text}
            self._progress.update(self._task, completed=completed, **fields)

    def complete(self) -> None:
        """Show the bar full (a total of None: at what was done)."""
        if self._progress is not None and self.total is not None:
            self._progress.update(self._task, completed=self.total)


class TrainDisplay:
    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        self.console = console or Console(highlight=False)
        self.bar: ProgressBar | None = None  # while the loop runs
        self.budget = None

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text)

    def start(self, cfg, model, device: str, tokens_per_step: int, budget, ds) -> None:
        t = cfg.train
        self.say(
            f"[bold]slovo train[/] {cfg.preset or 'custom'} on {device}: {model.num_params() / 1e6:.2f}M params, "
            f"{model.flops_per_token() / 1e6:.1f} MFLOPs/token; budget: {budget_text(budget.as_dict())}\n"
            f"  tokens per optimizer step: {t.per_device_train_batch_size} x {t.gradient_accumulation_steps} x "
            f"{cfg.model.seq_len} = {tokens_per_step:,}; train split {len(ds.train):,} tokens; "
            f"schedule {cfg.schedule.name}, lr {cfg.optim.lr:g}"
        )

    @contextmanager
    def progress_bar(self, budget):
        """The run's bar, its length the budget (`show_step` moves it)."""
        with ProgressBar(self.console, "[bold blue]train", 1.0, not self.quiet and self.console.is_terminal) as bar:
            self.bar, self.budget = bar, budget
            try:
                yield bar
            finally:
                self.bar = None

    def show_step(self, state, clock, loss: float, lr: float, muon_lr: float | None = None) -> None:
        """Training time spent and left, step, loss, lr (and Muon's, for Muon runs) and tokens/s on the bar."""
        if self.bar is None or not self.bar.enabled:  # quiet, or not a terminal: nothing to format
            return
        t = clock.train_time
        left = (self.budget.time_s - t) if self.budget.time_s else None
        tps = state.tokens / t if t > 0 else 0.0
        lrs = f"lr {lr:.2e}" + (f"  muon lr {muon_lr:.2e}" if muon_lr is not None else "")
        self.bar.update(
            state.progress,
            f"{format_duration(t)} / left {format_duration(max(left, 0)) if left is not None else '-'}  "
            f"step {state.step}  loss {loss:.4f}  {lrs}  {tps:,.0f} tok/s",
        )

    def eval_line(self, state, clock, metrics: dict) -> None:
        self.say(
            f"eval  step {state.step:>6}  {format_duration(clock.train_time):>8}  progress {state.progress:5.1%}  "
            f"loss {metrics['eval/loss']:.4f}  bpb {format_bpb(metrics['eval/bpb'], metrics.get('eval/bpb_se'))}  "
            f"ppl {metrics['eval/perplexity']:.1f}"
        )

    def finish(self, run_dir: Path, summary: dict, tracker=None, report: Path | None = None) -> None:
        if self.quiet:
            return
        records = read_jsonl(Path(run_dir) / "metrics.jsonl")
        table = Table(title=f"run {summary.get('name')} — {summary.get('status')}", show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column()

        def fig(key: str, digits: int = 4) -> str:
            return format_number(summary.get(key), digits)

        rows = [
            ("eval loss / best", f"{fig('eval/loss')} / {fig('best/eval_loss')}"),
            (
                "eval bpb / best",
                f"{format_bpb(summary.get('eval/bpb'), summary.get('eval/bpb_se'))} / {fig('best/eval_bpb')}",
            ),
            ("steps", fig("train/global_step")),
            ("tokens", fig("tokens")),
            ("tokens/s", fig("train_tokens_per_second", 5)),
            ("train time", format_duration(summary.get("train_runtime") or 0)),
            ("ledger", "  ".join(f"{k} {v:.1f}s" for k, v in (summary.get("ledger") or {}).items() if v)),
        ]
        for key, label in (
            ("train/loss", "train loss"),
            ("eval/loss", "eval loss"),
            ("train/learning_rate", "learning rate"),
            ("train/muon_learning_rate", "muon learning rate"),
            ("train/grad_norm", "grad norm"),
        ):
            series = [r[key] for r in records if r.get(key) is not None]
            final = None
            if key == "eval/loss":
                series, final = split_eval_series(records, key)
            if series:
                line = f"{sparkline(series)}  {format_number(series[0])} → {format_number(series[-1])}"
                if final is not None:
                    line += f"; all {final[1]:,} windows: {format_number(final[0])}"
                rows.append((label, line))
            elif final is not None:
                rows.append((label, f"all {final[1]:,} windows: {format_number(final[0])}"))
        if summary.get("error"):
            rows.append(("error", str(summary["error"])))
        for k, v in rows:
            table.add_row(k, v)
        self.console.print(table)
        for s in summary.get("last_samples") or []:
            self.console.print(f"[bold]sample[/] [dim]{escape(s['prompt'])}[/]{escape(s['text'])}")
        note = undertrained_note(summary, run_dir)
        if note:
            self.console.print(f"[yellow]{escape(note)}[/]")
        self.console.print(f"run folder: {run_dir}")
        if tracker is not None:
            for name, where in tracker.locations().items():
                self.console.print(f"  {name}: {where}")
        if report is not None:
            self.console.print(f"  report: {report}  (compare runs: slovo report RUN... -o report.html)")
        if tracker is not None:
            for name, command in tracker.view_hints().items():
                self.console.print(f"  view {name}: {command}")
