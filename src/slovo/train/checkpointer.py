"""Checkpoint policy of a training run: when to save, what a resume restores, the decay-start checkpoint a
longer budget continues from, and what a failed save does (checkpoint.py beside it writes and reads the files).

The checkpointer is handed the run's stateful parts (`states`: name -> an object with `state_dict` /
`load_state_dict`, as torchtitan's `CheckpointManager(states=...)`); a checkpoint's `state.pt` holds each part's
state dict under its name, and its own fields under `checkpointer`. Resuming with a larger budget extends the run:
a schedule that decays to the deadline (wsd) goes back to the checkpoint saved where its decay began, so the stable
phase runs on and a new decay ends at the new deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from slovo.config import CheckpointConfig
from slovo.distributed import Dist
from slovo.errors import SlovoError
from slovo.schedules import ScheduleConfig, decay_start
from slovo.train.checkpoint import (
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
from slovo.train.run import Models
from slovo.train.sharded import is_sharded, load_sharded, save_sharded
from slovo.train.state import Budget, Clock, OwnState, TrainState
from slovo.utils import read_json_dict, sha256_file

# Checkpoints written before the components owned their state kept every loop field in one flat `loop` dict;
# each part takes its own keys from it (every `load_state_dict` ignores the others').
OLD_LOOP_OWNERS = ("train", "evaluator", "guard", "checkpointer")


def upgrade_payload(saved: dict) -> dict:
    """An old checkpoint's payload in today's layout (one state dict per part); a new one as it is."""
    if "loop" not in saved:
        return saved
    loop = saved.pop("loop")
    return saved | {name: loop for name in OLD_LOOP_OWNERS}


class Checkpointer(OwnState):
    """Saves on rank 0 (under distributed.strategy=fsdp every rank writes its shards). A periodic save that fails
    (disk full, permission) is reported once and tried again at the next; the run goes on. The final one's failure
    fails the run."""

    STATE_FIELDS = ("last_ckpt_train_time", "decay_ckpt_step")

    def __init__(
        self,
        run_dir: Path,
        cfg: CheckpointConfig,
        schedule: ScheduleConfig,
        models: Models,
        optimizer,
        states: dict,
        clock: Clock,
        say: Callable[[str], None],
        *,
        fsdp: bool,
    ):
        self.dir, self.cfg, self.models, self.optimizer = Path(run_dir), cfg, models, optimizer
        self.states, self.clock, self.say, self.fsdp = states, clock, say, fsdp
        self.dist: Dist = models.dist
        self.decay_at = decay_start(schedule)  # progress where the lr leaves its peak for good; None: no such point
        self.failing = False  # a periodic save failed; said once, not at every try
        self.last_ckpt_train_time = 0.0
        self.decay_ckpt_step = -1  # step of the checkpoint saved where the lr began to decay; -1 none yet

    # ---- saving ---------------------------------------------------------------------------------------------

    def is_decay_start(self, state: TrainState) -> bool:
        """The first step at or past the schedule's decay start (`schedules.decay_start`), once per budget."""
        return self.decay_at is not None and self.decay_ckpt_step < 0 and state.progress >= self.decay_at

    def is_due(self, state: TrainState) -> bool:
        c = self.cfg
        return bool(
            (c.every_steps and state.step % c.every_steps == 0)
            or (c.every_seconds and state.train_time - self.last_ckpt_train_time >= c.every_seconds)
        )

    def save(self, state: TrainState, *, last_step: bool = False, finished: bool = False) -> None:
        """Save when one is due, always where the lr begins to decay (a longer budget continues from there), and at
        the run's last step (`finished`: the run trained its whole budget). Every rank waits for the writers on the
        `checkpoint` ledger (a rank that went on would wait in the next step's all-reduce instead, on its budget
        clock)."""
        if self.is_decay_start(state) and not last_step:
            self.decay_ckpt_step = state.step
        elif not (last_step or self.is_due(state)):
            return
        self.last_ckpt_train_time = state.train_time  # every rank: the next periodic checkpoint is agreed too
        with self.clock.measure("checkpoint"):
            try:
                if self.dist.is_main or self.fsdp:
                    self._save_here(state, finished)
            finally:
                self.dist.barrier()

    def after_rollback(self, state: TrainState) -> None:
        """Checkpoints saved past the step a rollback went back to hold the discarded steps: they are deleted (rank
        0), so a resume, `generate` or `export` never takes them over the run's newer ones; a decay-start
        checkpoint among them is saved again when the run gets there."""
        if self.decay_ckpt_step > state.step:
            self.decay_ckpt_step = -1
        with self.clock.measure("checkpoint"):
            dropped = drop_checkpoints_after(self.dir, state.step) if self.dist.is_main else []
            self.dist.barrier()  # the other ranks wait here, off the budget clock
        if dropped:
            self.say(f"  guard: deleted {len(dropped)} checkpoint(s) saved after step {state.step}")

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
            prune_checkpoints(self.dir, self.cfg.keep_last, keep=path)

    def _write(self, state: TrainState, final: bool) -> Path | None:
        payload = {name: part.state_dict() for name, part in self.states.items() if part is not None}
        payload["checkpointer"] = self.state_dict()
        info = {"tokens": state.tokens, "train_time": state.train_time, "final": final}
        if self.decay_ckpt_step == state.step:  # where a longer budget continues from; pruning keeps it
            info["tag"] = "decay_start"
        m = self.models
        if not self.fsdp:
            return save_checkpoint(self.dir, state.step, m.model, payload, info)
        m.gather_weights()
        return save_sharded(self.dist, self.dir, state.step, m.model, m.trained, self.optimizer, payload, info)

    # ---- resuming -------------------------------------------------------------------------------------------

    def restore(self, budget: Budget) -> None:
        """Load the newest good checkpoint (or, when the budget grew after the decay began, the decay-start one)
        into the weights and every stateful part."""
        ckpt, notice = checkpoint_to_resume(self.dir)  # the newest good one; says which damaged ones it skipped
        # the peak lrs are the config's, not the checkpoint's: a run resumed with another optim.lr (or tune's final
        # run, continuing its winning probe at the lr carried to the longer horizon) trains on at the new lr
        peak_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]
        if notice:
            self.say(f"[yellow]{notice}[/]")
        saved = self._load(ckpt)
        extension = self._extension_start(saved, budget)
        if extension is not None:  # a longer budget after the decay began: go back to where it began
            ckpt, line = extension
            self.say(line)
            if ckpt is not None:
                saved = self._load(ckpt)
                self._drop_superseded(saved["train"]["step"])
        for name, part in self.states.items():  # a sharded checkpoint's optimizer was loaded with the weights
            if part is not None and name in saved:
                part.load_state_dict(saved[name])
        self.load_state_dict(saved["checkpointer"])
        for group, peak in zip(self.optimizer.param_groups, peak_lrs, strict=True):
            group["initial_lr"] = peak

    def follow_budget(self, progress: float) -> None:
        """A run resumed under another budget that puts it before the decay start saves a new decay-start
        checkpoint where its own decay begins."""
        if self.decay_at is not None and progress < self.decay_at:
            self.decay_ckpt_step = -1

    def _load(self, ckpt: Path) -> dict:
        """Load checkpoint `ckpt`'s weights (and, when sharded, its optimizer) and return its saved state in
        today's layout; the checkpoint's format must be the run's distributed.strategy's."""
        sharded = is_sharded(ckpt)
        if sharded != self.fsdp:
            saved_with = "fsdp" if sharded else "ddp"
            raise SlovoError(
                f"{ckpt}: saved with distributed.strategy={saved_with}; resume it with "
                f"--set distributed.strategy={saved_with}"
            )
        if not sharded:
            return upgrade_payload(load_training_state(ckpt, self.models.model))
        saved = load_sharded(ckpt, self.models.trained, self.optimizer)
        self.models.gather_weights()
        return upgrade_payload(saved)

    def _drop_superseded(self, step: int) -> None:
        """An extension went back to `step`: the checkpoints after it (the old decay, the old final one) hold steps
        the run now trains again. Deleted as after a rollback, so they never outrank the new ones in pruning, a
        resume after a kill, `generate` or `export`."""
        dropped = drop_checkpoints_after(self.dir, step) if self.dist.is_main else []
        self.dist.barrier()
        if dropped:
            self.say(f"  extending: deleted {len(dropped)} checkpoint(s) of the old decay, saved after step {step}")

    def _extension_start(self, saved: dict, budget: Budget) -> tuple[Path | None, str] | None:
        """(checkpoint, line) when a run whose lr had begun to decay is resumed with a larger budget: the checkpoint
        saved where the decay began. (None, line) when that checkpoint is gone or damaged (the run goes on from its
        end). None otherwise: an interrupted run resumed with the same budget, no decay start, a smaller budget."""
        where, decay_step = saved["train"], saved["checkpointer"].get("decay_ckpt_step", -1)
        if self.decay_at is None or decay_step < 0 or decay_step >= where["step"]:
            return None
        if budget.progress(where["train_time"], where["step"], where["tokens"]) >= where["progress"]:
            return None  # the budget did not grow
        ckpt = self.dir / CKPT_DIR / checkpoint_name(decay_step)
        why = verify_checkpoint(ckpt) if ckpt.is_dir() else "it is gone"
        if why:
            return None, (
                f"[yellow]extending: the checkpoint where the lr began to decay ({ckpt.name}) cannot be used "
                f"({why}); continuing from step {where['step']}, where the lr was already decaying[/]"
            )
        return ckpt, (
            f"extending to the larger budget from {ckpt.name}, saved where the lr began to decay (step "
            f"{decay_step}); the stable phase runs on and a new decay ends at the new deadline"
        )


def check_same_data(run_dir: Path, ds) -> None:
    """A resume trains on the data and tokenizer the run began with: another --data, or the dataset prepared anew in
    place, is refused in one line (compared by run.json's dataset fingerprint and the sha256 of the run folder's
    tokenizer.json, not by path: a moved copy of the same dataset resumes)."""
    recorded = read_json_dict(run_dir / "run.json").get("dataset") or {}
    was, now = recorded.get("fingerprint"), ds.meta.get("fingerprint")
    where = f"{run_dir} was trained on {recorded.get('path') or 'another dataset'}"
    if was and now and was != now:
        raise SlovoError(
            f"{where} (fingerprint {was[:12]}), but {ds.dir} holds other data (fingerprint {now[:12]}); "
            f"resume with the run's own dataset, or train a new run"
        )
    tokenizer = run_dir / "tokenizer.json"
    if tokenizer.is_file() and sha256_file(tokenizer) != sha256_file(ds.tokenizer_path):
        raise SlovoError(
            f"{where}, and {ds.dir} has another tokenizer than the run's {tokenizer.name}; "
            f"resume with the run's own dataset, or train a new run"
        )
