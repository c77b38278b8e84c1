"""Weights & Biases sink: offline by default (RUN_DIR/wandb/offline-run-*; `wandb sync` uploads it later).

`tracking.wandb_mode: online` streams to the server live (needs `wandb login`).
The wandb run id is kept in RUN_DIR/wandb/slovo-run-id so `slovo train --resume` continues the same
wandb run instead of starting a second one.
"""

from __future__ import annotations

import secrets
import string
from pathlib import Path

from slovo.tracking import WandbStyleSink

_ID_FILE = "slovo-run-id"


class WandbSink(WandbStyleSink):
    name = "wandb"

    def __init__(self, cfg, run_dir: str | Path, resume: bool = False, name: str | None = None):
        import wandb

        from slovo.config import to_dict

        self._module = wandb
        self.mode = cfg.tracking.wandb_mode
        root = Path(run_dir) / "wandb"
        root.mkdir(parents=True, exist_ok=True)
        id_file = root / _ID_FILE
        run_id = id_file.read_text().strip() if resume and id_file.exists() else ""
        if not run_id:
            run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
            id_file.write_text(run_id + "\n")
        self.run = wandb.init(
            project=cfg.tracking.project,
            name=name or Path(run_dir).name,
            id=run_id,
            resume="allow" if resume else None,
            dir=str(run_dir),  # wandb adds the wandb/ folder itself
            mode=self.mode,
            config=to_dict(cfg),
            reinit="create_new",  # sweeps may run several trials in one process
            # console="off": wandb must not wrap stdout (slovo's own progress display owns it).
            settings=wandb.Settings(console="off", silent=True),
        )

    def run_folder(self) -> Path:
        return Path(self.run.dir).parent  # run.dir is <...>/wandb/offline-run-*/files

    def locations(self) -> dict[str, str]:
        if self.mode == "online" and getattr(self.run, "url", None):
            return {"wandb": str(self.run.url)}
        return {"wandb": str(self.run_folder())}

    def view_hints(self) -> dict[str, str]:
        if self.mode == "offline":
            return {"wandb": f"wandb sync {self.run_folder()}"}
        return {}

    def close(self) -> None:
        self.run.finish()
