"""Where a run's metrics and samples go: the run folder's own jsonl files, plus optional sinks.

The training loop talks to one object with three calls (the `Tracker` protocol)::

    tracker = make_trackers(cfg, run_dir, resume)
    tracker.log(metrics, step)            # a metrics.jsonl record (see docs/ARCHITECTURE.md)
    tracker.log_samples(samples, step)    # the samples.jsonl records of one eval
    tracker.close()

`make_trackers` fans out to a `JsonlTracker` (always on: RUN_DIR/metrics.jsonl and samples.jsonl are what
`slovo runs`, `slovo report` and sweeps read) and to the sinks named in `cfg.tracking.report_to`
(`wandb`, `tensorboard`, `trackio`; `--report-to` on the command line, HF Trainer's spelling).
Each sink lives in its own module and imports its package only when chosen. A sink that is unknown or
not installed stops the run before training starts, with the pip extra to install; a sink that raises
mid-run (disk full, a package bug) is reported once on stderr and dropped, and the run and its own
jsonl files go on.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from slovo.errors import SlovoError
from slovo.utils import read_json_dict

# name -> (module inside slovo.tracking, class, the package it needs, the pip extra that brings it)
SINKS: dict[str, tuple[str, str, str, str]] = {
    "wandb": ("slovo.tracking.wandb", "WandbSink", "wandb", "wandb"),
    "tensorboard": ("slovo.tracking.tensorboard", "TensorBoardSink", "tensorboard", "tensorboard"),
    "trackio": ("slovo.tracking.trackio", "TrackioSink", "trackio", "trackio"),
}
# Names that mean "only the run folder's own files" (HF Trainer accepts "none" too).
NO_SINK = {"jsonl", "none", ""}


@runtime_checkable
class Tracker(Protocol):
    """What the training loop calls. Sinks may also define `locations()`, `view_hints()`, `truncate_after(step)`."""

    def log(self, metrics: dict[str, Any], step: int) -> None: ...

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None: ...

    def close(self) -> None: ...


def _plain(value: Any) -> Any:
    """json.dumps fallback: numpy / torch scalars become Python numbers, paths become strings."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def scalar_items(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics record (None, strings and bools left out), for sinks that plot."""
    out = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key] = float(value) if isinstance(value, float) else value
    return out


class WandbStyleSink:
    """log/log_samples for sinks with wandb's API (`run.log(dict, step=)`, `Table(columns=, data=)`):
    wandb and trackio. Subclasses set `self.run` and `self._module` (the imported package)."""

    run: Any
    _module: Any
    SAMPLE_COLUMNS = ["train/global_step", "tokens", "prompt", "index", "text"]

    def log(self, metrics: dict[str, Any], step: int) -> None:
        values = {k: v for k, v in scalar_items(metrics).items() if k != "train/global_step"}
        self.run.log(values, step=step)

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None:
        rows = [
            [s.get("train/global_step", step), s.get("tokens"), s.get("prompt"), s.get("index"), s.get("text")]
            for s in samples
        ]
        self.run.log({"samples": self._module.Table(columns=self.SAMPLE_COLUMNS, data=rows)}, step=step)


class JsonlTracker:
    """Appends one JSON object per line to RUN_DIR/metrics.jsonl and RUN_DIR/samples.jsonl.

    Every line is flushed as it is written, so a run killed at any moment leaves at most one torn last
    line (which `slovo.utils.read_jsonl` skips, and which is closed off before appending on resume).
    """

    name = "jsonl"

    def __init__(self, run_dir: str | Path, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.samples_path = self.run_dir / "samples.jsonl"
        # A fresh run starts its files empty; a resumed one appends after what is there.
        self._metrics = self._open(self.metrics_path, resume)
        self._samples = self._open(self.samples_path, resume)

    @staticmethod
    def _open(path: Path, append: bool):
        if append and path.exists() and path.stat().st_size > 0:
            with open(path, "rb") as f:
                f.seek(-1, 2)
                torn = f.read(1) != b"\n"
            f = open(path, "a", encoding="utf-8")
            if torn:  # killed mid-line: end that line so the next record is not glued onto it
                f.write("\n")
            return f
        return open(path, "a" if append else "w", encoding="utf-8")

    @staticmethod
    def _write(f, record: dict) -> None:
        f.write(json.dumps(record, ensure_ascii=False, default=_plain) + "\n")
        f.flush()

    def log(self, metrics: dict[str, Any], step: int) -> None:
        record = dict(metrics)
        record.setdefault("train/global_step", step)
        self._write(self._metrics, record)

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None:
        for sample in samples:
            record = dict(sample)
            record.setdefault("train/global_step", step)
            self._write(self._samples, record)

    def truncate_after(self, step: int) -> None:
        """Drop records with train/global_step > step (a resumed run redoes those steps)."""
        from slovo.utils import atomic_write_text, read_jsonl

        for attr, path in (("_metrics", self.metrics_path), ("_samples", self.samples_path)):
            getattr(self, attr).close()
            kept = [r for r in read_jsonl(path) if not _after(r, step)]
            atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=_plain) + "\n" for r in kept))
            setattr(self, attr, open(path, "a", encoding="utf-8"))

    def locations(self) -> dict[str, str]:
        return {"metrics": str(self.metrics_path), "samples": str(self.samples_path)}

    def close(self) -> None:
        for f in (self._metrics, self._samples):
            if not f.closed:
                f.close()


def _after(record: dict, step: int) -> bool:
    s = record.get("train/global_step")
    return isinstance(s, (int, float)) and not (isinstance(s, float) and math.isnan(s)) and s > step


class NullTracker:
    """A tracker that keeps nothing: what ranks other than 0 log to under torchrun (rank 0 writes the run folder)."""

    name = "null"

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None:
        pass

    def locations(self) -> dict[str, str]:
        return {}

    def view_hints(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


class FanOutTracker:
    """The object `make_trackers` returns: the jsonl tracker plus sinks, each sink's failure contained.

    Errors of the jsonl tracker are not swallowed: the run's own record is the one thing that must not
    silently stop. A sink that raises is reported once on stderr and disabled for the rest of the run.
    """

    def __init__(self, jsonl: JsonlTracker, sinks: list[Any] | None = None, stream=None):
        self.jsonl = jsonl
        self.sinks = list(sinks or [])
        self.failed: dict[str, str] = {}  # sink name -> the error that disabled it
        self._stream = stream
        self._closed = False

    def _call(self, method: str, *args) -> None:
        for sink in list(self.sinks):
            fn = getattr(sink, method, None)
            if fn is None:
                continue
            try:
                fn(*args)
            except Exception as e:  # noqa: BLE001 - any sink failure must leave the run alone
                self._disable(sink, method, e)

    def _disable(self, sink: Any, method: str, error: BaseException) -> None:
        name = getattr(sink, "name", type(sink).__name__)
        message = f"{type(error).__name__}: {error}".strip().splitlines()[0] if str(error) else type(error).__name__
        self.failed[name] = message
        if sink in self.sinks:
            self.sinks.remove(sink)
        stream = self._stream or sys.stderr
        print(
            f"slovo: tracker {name!r} failed in {method}() ({message}); it is disabled for the rest of this run, "
            f"which goes on (metrics.jsonl keeps every record)",
            file=stream,
            flush=True,
        )
        try:  # let it release what it holds; its errors are no longer news
            sink.close()
        except Exception:  # noqa: BLE001
            pass

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.jsonl.log(metrics, step)
        self._call("log", metrics, step)

    def log_samples(self, samples: list[dict[str, Any]], step: int) -> None:
        if not samples:
            return
        self.jsonl.log_samples(samples, step)
        self._call("log_samples", samples, step)

    def truncate_after(self, step: int) -> None:
        """Resume support: drop jsonl records past `step` and tell sinks that can rewind (tensorboard)."""
        self.jsonl.truncate_after(step)
        self._call("truncate_after", step)

    def locations(self) -> dict[str, str]:
        """Where each tracker writes, label -> path (or URL), for the end-of-run summary."""
        out = dict(self.jsonl.locations())
        for sink in self.sinks:
            try:
                out.update(sink.locations())
            except Exception:  # noqa: BLE001
                pass
        return out

    def view_hints(self) -> dict[str, str]:
        """How to look at each sink's files, label -> a shell command (e.g. `tensorboard --logdir ...`)."""
        out: dict[str, str] = {}
        for sink in self.sinks:
            fn = getattr(sink, "view_hints", None)
            if fn is not None:
                try:
                    out.update(fn())
                except Exception:  # noqa: BLE001
                    pass
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._call("close")
        self.jsonl.close()

    def __enter__(self) -> FanOutTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sink_names(report_to: list[str] | str | None) -> list[str]:
    """Normalise `report_to`: 'wandb,tensorboard' or ['wandb', 'tensorboard'] -> ['wandb', 'tensorboard']."""
    if report_to is None:
        return []
    items = [report_to] if isinstance(report_to, str) else list(report_to)
    names: list[str] = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip().lower()
            if part not in NO_SINK and part not in names:
                names.append(part)
    return names


def check_sink_available(name: str) -> None:
    """Raise SlovoError (one line, naming the pip extra) if `name` is unknown or its package is missing."""
    if name not in SINKS:
        raise SlovoError(f"tracking.report_to: unknown tracker {name!r}; choose from {', '.join(SINKS)}")
    _, _, package, extra = SINKS[name]
    if importlib.util.find_spec(package) is None:
        raise SlovoError(
            f"tracking.report_to: {name} is not installed; install it with: pip install 'slovo-lm[{extra}]'"
        )


def _run_name(run_dir: Path) -> str:
    run_json = read_json_dict(run_dir / "run.json")
    return str(run_json["name"]) if "name" in run_json else run_dir.name


def make_trackers(cfg, run_dir: str | Path, resume: bool = False, name: str | None = None) -> FanOutTracker:
    """The run's tracker: jsonl files always, plus every sink in cfg.tracking.report_to.

    Raises SlovoError before anything is written if a sink is unknown, not installed, or fails to start,
    so a 30-minute run does not start without the dashboard its user asked for.
    """
    run_dir = Path(run_dir)
    names = sink_names(cfg.tracking.report_to)
    for sink_name in names:  # all checks before any sink starts
        check_sink_available(sink_name)
    name = name or _run_name(run_dir)
    sinks = []
    try:
        for sink_name in names:
            module_name, class_name, _, extra = SINKS[sink_name]
            cls = getattr(importlib.import_module(module_name), class_name)
            try:
                sinks.append(cls(cfg, run_dir, resume=resume, name=name))
            except SlovoError:
                raise
            except Exception as e:  # noqa: BLE001 - a package error at start is the user's to see, in one line
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise SlovoError(f"tracking.report_to: {sink_name} could not start: {type(e).__name__}: {first}") from e
        jsonl = JsonlTracker(run_dir, resume=resume)  # last: a sink that cannot start leaves the files alone
    except BaseException:
        for sink in sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001
                pass
        raise
    return FanOutTracker(jsonl, sinks)


__all__ = [
    "Tracker",
    "JsonlTracker",
    "NullTracker",
    "FanOutTracker",
    "make_trackers",
    "sink_names",
    "check_sink_available",
    "scalar_items",
    "SINKS",
]
