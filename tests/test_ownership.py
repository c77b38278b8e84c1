"""Each training component owns its state: `TrainState` is small and only the Trainer writes it, no component
writes another's fields, and a checkpoint written before the components owned their state (one flat `loop` dict
in state.pt) still resumes."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import torch

from slovo.train import TrainState, train
from slovo.train.checkpoint import STATE_FILE, checkpoint_to_resume, load_for_inference, load_state, save_checkpoint

TRAIN = Path(__file__).resolve().parents[1] / "src" / "slovo" / "train"
COMPONENTS = ("evaluator.py", "checkpointer.py", "guard.py", "metrics.py", "state.py")


def foreign_writes(source: str, allowed_roots: tuple[str, ...] = ("self",)) -> list[str]:
    """Attribute assignments whose target is not a direct field of one of `allowed_roots` (`self.x = ...` is
    fine; `state.next_eval = ...` or `self.run.x = ...` write someone else's field)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            targets = [
                t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        for t in targets:
            if isinstance(t, ast.Attribute) and not (isinstance(t.value, ast.Name) and t.value.id in allowed_roots):
                found.append(f"line {t.lineno}: {ast.unparse(t)}")
    return found


def test_the_checker_finds_a_write_into_another_objects_field():
    assert foreign_writes("self.a = 1\nself.b, c = 2, 3\n") == []
    assert foreign_writes("state.next_eval = 2\nself.run.x += 1\n") == ["line 1: state.next_eval", "line 2: self.run.x"]
    assert foreign_writes("state.step = 1", ("self", "state")) == []


def test_no_component_writes_another_components_or_the_train_states_fields():
    for name in COMPONENTS:
        assert foreign_writes((TRAIN / name).read_text(encoding="utf-8")) == [], name
    # the Trainer writes its own fields and the TrainState (`state.step += 1`), nothing of a component's
    assert foreign_writes((TRAIN / "trainer.py").read_text(encoding="utf-8"), ("self", "state")) == []


def test_train_state_keeps_at_most_five_fields():
    assert [f.name for f in dataclasses.fields(TrainState)][:4] == ["step", "tokens", "train_time", "progress"]
    assert len(dataclasses.fields(TrainState)) <= 5


def _to_old_layout(saved: dict, **old_fields) -> dict:
    """state.pt as checkpoints were written before: every loop field in one flat `loop` dict."""
    loop = {}
    for part in ("train", "evaluator", "guard", "checkpointer"):
        loop |= saved.pop(part)
    return saved | {"loop": loop | old_fields}


def test_a_checkpoint_in_the_old_flat_layout_resumes(tiny_config, tmp_path):
    run = tmp_path / "run"
    over = {"schedule.name": "cosine"}  # no decay-start checkpoint: the resume takes the rewritten one
    first = train(tiny_config(**over, **{"budget.max_steps": 4}), run, quiet=True)
    ckpt, _ = checkpoint_to_resume(run)
    saved = load_state(ckpt / STATE_FILE)
    assert {"train", "evaluator", "guard", "checkpointer"} <= saved.keys() and "loop" not in saved
    old = _to_old_layout(saved, rollbacks=1, lr_scale=0.5, best_eval_loss=0.125)
    model, _, _ = load_for_inference(ckpt)
    info = {"tokens": old["loop"]["tokens"], "train_time": old["loop"]["train_time"], "final": True}
    save_checkpoint(run, old["loop"]["step"], model, old, info)  # the same step, now in the old layout
    assert "loop" in torch.load(checkpoint_to_resume(run)[0] / STATE_FILE, weights_only=True)

    resumed = train(tiny_config(**over, **{"budget.max_steps": 6}), run, resume=True, quiet=True)
    assert resumed["status"] == "finished" and resumed["train/global_step"] == 6
    assert resumed["tokens"] == first["tokens"] * 6 // 4  # the step count and tokens went on from the checkpoint
    assert resumed["rollbacks"] == 1 and resumed["lr_scale"] == 0.5  # the guard took its fields
    assert resumed["best/eval_loss"] == 0.125  # and the evaluator its own
