"""Checkpoint policy of a training run: what a resume restores, when to save, the decay-start checkpoint a
longer budget continues from, and what a failed save does (slovo/checkpoint.py writes and reads the files).

Resuming with a larger budget extends the run: a schedule that decays to the deadline (wsd) goes back to the
checkpoint saved where its decay began, so the stable phase runs on and a new decay ends at the new deadline;
progress and the eval points follow the new budget.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from slovo.checkpoint import (
    CKPT_DIR,
    CheckpointSaveError,
    checkpoint_name,
    checkpoint_to_resume,
    drop_checkpoints_after,
    load_training_state,
    prune_checkpoints,
    save_checkpoint,
    verify_checkpoint,
)
from slovo.errors import SlovoError
from slovo.schedules import decay_start
from slovo.sharded import is_sharded, load_sharded, save_sharded
from slovo.train.guard import rng_state, set_rng_state
from slovo.train.run import Run
from slovo.train.state import Budget, Clock, TrainState
from slovo.utils import read_json_dict, sha256_file


class Checkpointer:
    """Saves on rank 0 (under distributed.strategy=fsdp every rank writes its shards). A periodic save that fails
    (disk full, permission) is reported once and tried again at the next; the run goes on. The final one's failure
    fails the run."""

    def __init__(self, run: Run, run_dir: Path, clock: Clock, say: Callable[[str], None]):
        self.run, self.dir, self.clock, self.say = run, Path(run_dir), clock, say
        self.fsdp = run.cfg.distributed.strategy == "fsdp"
        self.failing = False  # a periodic save failed; said once, not at every try

    # ---- saving ---------------------------------------------------------------------------------------------

    def is_decay_start(self, state: TrainState) -> bool:
        """The first step at or past the schedule's decay start (`schedules.decay_start`), once per budget."""
        start = decay_start(self.run.cfg.schedule)
        return start is not None and state.decay_ckpt_step < 0 and state.progress >= start

    def is_due(self, state: TrainState) -> bool:
        c = self.run.cfg.checkpoint
        return bool(
            (c.every_steps and state.step % c.every_steps == 0)
            or (c.every_seconds and state.train_time - state.last_ckpt_train_time >= c.every_seconds)
        )

    def maybe_save(self, state: TrainState) -> None:
        """Save when one is due, and always where the lr begins to decay (a longer budget continues from there)."""
        if self.is_decay_start(state):
            state.decay_ckpt_step = state.step
            self.save(state, final=False)
        elif self.is_due(state):
            self.save(state, final=False)

    def after_rollback(self, state: TrainState) -> None:
        """Checkpoints saved past the step a rollback went back to hold the discarded steps: they are deleted (rank
        0), so a resume, `generate` or `export` never takes them over the run's newer ones; a decay-start
        checkpoint among them is saved again when the run gets there."""
        if state.decay_ckpt_step > state.step:
            state.decay_ckpt_step = -1
        with self.clock.measure("checkpoint"):
            dropped = drop_checkpoints_after(self.dir, state.step) if self.run.dist.is_main else []
            self.run.dist.barrier()  # the other ranks wait here, off the budget clock
        if dropped:
            self.say(f"  guard: deleted {len(dropped)} checkpoint(s) saved after step {state.step}")

    def save(self, state: TrainState, final: bool) -> None:
        """Save on the ranks that write; every rank waits for them on the `checkpoint` ledger (a rank that went on
        would wait in the next step's all-reduce instead, on its budget clock, and the ranks agree on the largest)."""
        state.last_ckpt_train_time = state.train_time  # every rank: the next periodic checkpoint is agreed too
        with self.clock.measure("checkpoint"):
            try:
                if self.run.dist.is_main or self.fsdp:
                    self._save_here(state, final)
            finally:
                self.run.dist.barrier()

    def _save_here(self, state: TrainState, final: bool) -> None:
        try:
            path = self._write(state, final)
        except CheckpointSaveError as e:
            if final:
                raise
            if not self.failing:
                self.say(f"[yellow]{e}; training goes on and the next checkpoint tries again[/]")
            self.failing = True
            return
        self.failing = False
        if path is not None:  # rank 0
            prune_checkpoints(self.dir, self.run.cfg.checkpoint.keep_last, keep=path)

    def _write(self, state: TrainState, final: bool) -> Path | None:
        run = self.run
        payload = {
            "loader": run.loader.state_dict(),
            "clock": self.clock.state_dict(),
            "loop": state.state_dict(),
            "rng": rng_state(),
        }
        if not self.fsdp:  # a sharded checkpoint keeps the optimizer in its dcp/ folder
            payload["optimizer"] = run.optimizer.state_dict()
        if run.scaler is not None:
            payload["scaler"] = run.scaler.state_dict()
        info = {"tokens": state.tokens, "train_time": state.train_time, "final": final}
        if state.decay_ckpt_step == state.step:  # where a longer budget continues from; pruning keeps it
            info["tag"] = "decay_start"
        if not self.fsdp:
            return save_checkpoint(self.dir, state.step, run.model, payload, info)
        run.gather_weights()
        return save_sharded(run.dist, self.dir, state.step, run.model, run.trained, run.optimizer, payload, info)

    # ---- resuming -------------------------------------------------------------------------------------------

    def restore(self, state: TrainState, budget: Budget) -> None:
        """Load the newest good checkpoint (or, when the budget grew after the decay began, the decay-start one)
        into the run, the clock and `state`; then progress, the next eval point and the decay checkpoint follow
        `budget`."""
        run = self.run
        self.check_same_data()
        ckpt, notice = checkpoint_to_resume(self.dir)  # the newest good one; says which damaged ones it skipped
        # the peak lrs are the config's, not the checkpoint's: a run resumed with another optim.lr (or tune's final
        # run, continuing its winning probe at the lr carried to the longer horizon) trains on at the new lr
        peak_lrs = [group["initial_lr"] for group in run.optimizer.param_groups]
        if notice:
            self.say(f"[yellow]{notice}[/]")
        saved = self._load(ckpt)
        extension = self._extension_start(saved["loop"], budget)
        if extension is not None:  # a longer budget after the decay began: go back to where it began
            ckpt, line = extension
            self.say(line)
            if ckpt is not None:
                saved = self._load(ckpt)
                self._drop_superseded(saved["loop"]["step"])
        if "optimizer" in saved:  # a sharded checkpoint's optimizer was loaded with the weights
            run.optimizer.load_state_dict(saved["optimizer"])
        for group, peak in zip(run.optimizer.param_groups, peak_lrs, strict=True):
            group["initial_lr"] = peak
        run.loader.load_state_dict(saved["loader"])
        self.clock.load_state_dict(saved["clock"])
        state.load_state_dict(saved["loop"])
        set_rng_state(saved["rng"])
        if run.scaler is not None and "scaler" in saved:
            run.scaler.load_state_dict(saved["scaler"])
        self.say(f"resuming [bold]{self.dir}[/] from step {state.step} ({state.train_time:.1f}s of training spent)")
        self._follow_budget(state, budget)

    def check_same_data(self) -> None:
        """A resume trains on the data and tokenizer the run began with: another --data, or the dataset prepared
        anew in place, is refused in one line (compared by run.json's dataset fingerprint and the sha256 of the run
        folder's tokenizer.json, not by path: a moved copy of the same dataset resumes)."""
        ds, recorded = self.run.ds, read_json_dict(self.dir / "run.json").get("dataset") or {}
        was, now = recorded.get("fingerprint"), ds.meta.get("fingerprint")
        where = f"{self.dir} was trained on {recorded.get('path') or 'another dataset'}"
        if was and now and was != now:
            raise SlovoError(
                f"{where} (fingerprint {was[:12]}), but {ds.dir} holds other data (fingerprint {now[:12]}); "
                f"resume with the run's own dataset, or train a new run"
            )
        tokenizer = self.dir / "tokenizer.json"
        if tokenizer.is_file() and sha256_file(tokenizer) != sha256_file(ds.tokenizer_path):
            raise SlovoError(
                f"{where}, and {ds.dir} has another tokenizer than the run's {tokenizer.name}; "
                f"resume with the run's own dataset, or train a new run"
            )

    def _load(self, ckpt: Path) -> dict:
        """Load checkpoint `ckpt`'s weights (and, when sharded, its optimizer) and return its saved state; the
        checkpoint's format must be the run's distributed.strategy's."""
        sharded = is_sharded(ckpt)
        if sharded != self.fsdp:
            saved_with = "fsdp" if sharded else "ddp"
            raise SlovoError(
                f"{ckpt}: saved with distributed.strategy={saved_with}; resume it with "
                f"--set distributed.strategy={saved_with}"
            )
        if not sharded:
            return load_training_state(ckpt, self.run.model)
        saved = load_sharded(ckpt, self.run.trained, self.run.optimizer)
        self.run.gather_weights()
        return saved

    def _drop_superseded(self, step: int) -> None:
        """An extension went back to `step`: the checkpoints after it (the old decay, the old final one) hold steps
        the run now trains again. Deleted as after a rollback, so they never outrank the new ones in pruning, a
        resume after a kill, `generate` or `export`."""
        dropped = drop_checkpoints_after(self.dir, step) if self.run.dist.is_main else []
        self.run.dist.barrier()
        if dropped:
            self.say(f"  extending: deleted {len(dropped)} checkpoint(s) of the old decay, saved after step {step}")

    def _extension_start(self, loop: dict, budget: Budget) -> tuple[Path | None, str] | None:
        """(checkpoint, line) when a run whose lr had begun to decay is resumed with a larger budget: the checkpoint
        saved where the decay began. (None, line) when that checkpoint is gone or damaged (the run goes on from its
        end). None otherwise: an interrupted run resumed with the same budget, no decay start, a smaller budget."""
        decay_step = loop.get("decay_ckpt_step", -1)
        if decay_start(self.run.cfg.schedule) is None or decay_step < 0 or decay_step >= loop["step"]:
            return None
        if budget.progress(loop["train_time"], loop["step"], loop["tokens"]) >= loop["progress"]:
            return None  # the budget did not grow
        ckpt = self.dir / CKPT_DIR / checkpoint_name(decay_step)
        why = verify_checkpoint(ckpt) if ckpt.is_dir() else "it is gone"
        if why:
            return None, (
                f"[yellow]extending: the checkpoint where the lr began to decay ({ckpt.name}) cannot be used "
                f"({why}); continuing from step {loop['step']}, where the lr was already decaying[/]"
            )
        return ckpt, (
            f"extending to the larger budget from {ckpt.name}, saved where the lr began to decay (step "
            f"{decay_step}); the stable phase runs on and a new decay ends at the new deadline"
        )

    def _follow_budget(self, state: TrainState, budget: Budget) -> None:
        """A run resumed under another budget: progress, the next eval point and the decay checkpoint follow it, so
        a longer run evaluates over its extension and saves a new decay-start checkpoint where its own decay
        begins."""
        progress = budget.progress_of(state)
        if progress == state.progress:
            return
        state.progress = progress
        every = self.run.cfg.eval.every
        if every:
            state.next_eval = min(every, int(progress * every) + 1)
        start = decay_start(self.run.cfg.schedule)
        if start is not None and progress < start:
            state.decay_ckpt_step = -1
