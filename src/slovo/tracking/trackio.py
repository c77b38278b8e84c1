"""trackio sink: a local, wandb-like dashboard (`trackio show --project slovo`).

trackio keeps every project in one SQLite file under its own folder ($TRACKIO_DIR, default
~/.cache/huggingface/trackio), so one dashboard shows all runs of a project side by side.
"""

from __future__ import annotations

import contextlib
import inspect
import io
from pathlib import Path

from slovo.tracking import WandbStyleSink


class TrackioSink(WandbStyleSink):
    name = "trackio"

    def __init__(self, cfg, run_dir: str | Path, resume: bool = False, name: str | None = None):
        import trackio

        from slovo.config import to_dict

        self._module = trackio
        self.project = cfg.tracking.project
        # The Run object itself is used (not trackio.log), so several trials in one process stay apart.
        wanted = dict(
            project=self.project,
            name=name or Path(run_dir).name,
            config=to_dict(cfg),
            resume="allow" if resume else "never",
            embed=False,
            auto_log_cpu=False,
            auto_log_gpu=False,
        )
        accepted = inspect.signature(trackio.init).parameters  # older trackio lacks some of these keywords
        kwargs = {k: v for k, v in wanted.items() if k in accepted}
        # trackio prints a banner on stdout; slovo's end-of-run summary says where to look instead.
        with contextlib.redirect_stdout(io.StringIO()):
            self.run = trackio.init(**kwargs)

    def locations(self) -> dict[str, str]:
        # trackio has no public call for its run file; where the private one moved, slovo names no location.
        try:
            from trackio.sqlite_storage import SQLiteStorage

            return {"trackio": str(SQLiteStorage.get_project_db_path(self.project))}
        except (ImportError, AttributeError):
            return {}

    def view_hints(self) -> dict[str, str]:
        return {"trackio": f"trackio show --project {self.project}"}

    def close(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self.run.finish()
        # trackio.init() also made this the module's current run; let go of it, or trackio's exit hook
        # finishes it a second time.
        current = getattr(getattr(self._module, "context_vars", None), "current_run", None)
        if current is not None and current.get() is self.run:
            current.set(None)
