"""What a training run writes into its folder besides checkpoints: config.yaml, run.json, tokenizer.json,
metrics.jsonl / samples.jsonl (through the trackers) and summary.json.

Only rank 0 writes; on other ranks every method is a no-op, so the loop needs no `if rank == 0`.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slovo.config import Config, save_config, to_dict
from slovo.utils import atomic_write_json, code_version, command_line, read_json_dict


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunFolder:
    def __init__(self, run_dir: Path, cfg: Config, *, writer: bool):
        """The run folder, not yet touched: `open` writes (a resume may still be refused before it)."""
        from slovo.tracking import NullTracker

        self.dir, self.cfg, self.writer = Path(run_dir), cfg, writer
        self.summary: dict[str, Any] = {}
        self.tracker = NullTracker()

    def open(self, *, resume: bool, resume_step: int = 0) -> None:
        """On a new run copy the tokenizer; always (re)write config.yaml; open the trackers (on resume dropping
        records of steps after the checkpoint, which belong to a lost future)."""
        from slovo.tracking import make_trackers

        started = read_json_dict(self.dir / "summary.json").get("started") if resume else None
        self.summary.update(
            name=self.dir.name,
            status="running",
            preset=self.cfg.preset,
            started=started or now_iso(),
            pid=os.getpid(),
            host=socket.gethostname(),
        )  # lets `slovo runs` spot a dead run
        if not self.writer:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        save_config(self.cfg, self.dir / "config.yaml")
        self.tracker = make_trackers(self.cfg, self.dir, resume=resume)
        if resume:
            self.tracker.truncate_after(resume_step)

    def describe(self, info: dict, tokenizer_path: Path, resume: bool) -> None:
        """run.json (what ran, on what, from which data and code) and, on a new run, the tokenizer."""
        if not self.writer:
            return
        if not resume:
            shutil.copyfile(tokenizer_path, self.dir / "tokenizer.json")
        atomic_write_json(
            self.dir / "run.json",
            {
                "name": self.dir.name,
                "created": now_iso(),
                "command": command_line(),
                **info,
                "config": to_dict(self.cfg),
            },
        )
        self.summary.update(params=info["params"], budget=info["budget"])

    def record(self, state, metrics: dict) -> dict:
        """One metrics.jsonl record, stamped with where the run is."""
        full = {
            "train/global_step": state.step,
            "train_runtime": round(state.train_time, 4),
            "tokens": state.tokens,
            "progress": round(state.progress, 6),
            "wall_time": time.time(),
            **metrics,
        }
        self.tracker.log(full, state.step)
        return full

    def samples(self, state, samples: list[dict]) -> None:
        stamp = {"train/global_step": state.step, "train_runtime": round(state.train_time, 4), "tokens": state.tokens}
        self.tracker.log_samples([{**stamp, **s} for s in samples], state.step)
        self.summary["last_samples"] = samples

    def write_summary(self, status: str, figures: dict, **extra) -> dict:
        self.summary.update(figures, status=status, **extra)
        if self.writer:
            atomic_write_json(self.dir / "summary.json", self.summary)
        return self.summary

    def close(self) -> None:
        self.tracker.close()


def run_figures(state, ledger: dict, train_tokens: int, seq_len: int, flops_per_token: float) -> dict:
    """The summary's training figures (HF Trainer's names where it has one)."""
    t = state.train_time
    return {
        "train/global_step": state.step,
        "train_runtime": round(t, 3),
        "tokens": state.tokens,
        "train/epoch": state.tokens / train_tokens,
        "train_tokens_per_second": state.tokens / t if t > 0 else None,
        "train_samples_per_second": state.tokens / seq_len / t if t > 0 else None,
        "total_flos": flops_per_token * state.tokens,
        "ledger": {k: round(v, 3) for k, v in ledger.items()},
        "progress": state.progress,
        **cuda_memory(),
    }


def cuda_memory() -> dict:
    """Peak GPU memory this process allocated (training and eval), for sizing batches; {} off CUDA."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return {}
    return {"peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3)}


def run_info(cfg: Config, ds, model, device: str, tokens_per_step: int, world: int, budget: dict) -> dict:
    """run.json's facts about the data, code, device and model."""
    import torch

    from slovo.device import device_name
    from slovo.evaluate import eval_set_facts

    meta = ds.meta
    return {
        "dataset": {
            "path": str(Path(cfg.data.path).resolve()),
            "fingerprint": meta.get("fingerprint"),
            "tokenizer_sha256": (meta.get("tokenizer") or {}).get("sha256"),
            "vocab_size": ds.vocab_size,
            "train_tokens": len(ds.train),
            "val_tokens": len(ds.val),
            "val_documents": (meta.get("split") or {}).get("val_documents"),
            **eval_set_facts(ds.val, cfg.model.seq_len, cfg.eval.tokens, ds.eot_id),  # what the final eval scores
        },
        "code": code_version(),
        "torch": torch.__version__,
        "device": device,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "params": model.num_params(),
        "non_embedding_params": model.num_params(embedding=False),
        "flops_per_token": model.flops_per_token(),
        "tokens_per_step": tokens_per_step,
        "world_size": world,
        "budget": budget,
    }
