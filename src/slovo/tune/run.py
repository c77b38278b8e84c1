"""`slovo tune`: the two phases (probe sweep, final run) on one clock, and what they leave in tune/NAME/.

    tune/NAME/
      plan.json        what was measured and decided before training (a rerun continues this plan)
      clock.json       seconds this tune has run so far, over all its invocations (written every 2 s)
      probes.yaml      the probe sweep's file;  probes/  the sweep folder (trials are ordinary run folders)
      choice.yaml      the chosen config, ready for `slovo train --config`
      final/           the final run, an ordinary run folder: the winning probe continued from the checkpoint
                       where its lr began to decay (its stable phase kept, its cooldown dropped)
      report.html      the probes and the final run's curves;  tune.json  the figures of both phases

The final run's budget clock is the wall clock (`WallClock`): evals, samples, checkpoints, compiling and start-up
count, only the final eval does not, so its schedule's cooldown ends at tune's deadline rather than after it.
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from pathlib import Path

import yaml

from slovo.errors import SlovoError
from slovo.format import format_bpb, format_duration, format_lr, format_value, human_count
from slovo.terminal import ProgressBar
from slovo.train.callbacks import Callback
from slovo.train.state import Clock
from slovo.tune.plan import HYPERBAND, PROBE_EVALS, Plan, horizon_lr, make_plan, probe_eval_tokens
from slovo.utils import atomic_write_json, atomic_write_text, read_json_dict

MIN_TOTAL_S = 120.0  # below this there is no time to measure, probe and still train
HEARTBEAT_S = 2.0  # how often clock.json is written: a killed tune loses at most this much of its clock


class WallClock(Clock):
    """The final run's budget clock: wall seconds since it started (over resumes), less the final eval."""

    def __init__(self):
        super().__init__()
        self.origin = self.now()

    @property
    def train_time(self) -> float:
        return self.now() - self.origin - self.ledger.get("final_eval", 0.0)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "wall_s": self.train_time}

    @staticmethod
    def spent_in(state: dict) -> float:
        """The seconds a saved clock had run, as this clock counts them: all the ledger but the final eval (a
        probe's train-time clock has no wall_s)."""
        return float(state.get("wall_s", sum(state["ledger"].values()) - state["ledger"].get("final_eval", 0.0)))

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.origin = self.now() - self.spent_in(state) - self.ledger.get("final_eval", 0.0)


class TuneClock:
    """Seconds this tune has run, kept in clock.json across invocations, and the one progress bar over them."""

    def __init__(self, folder: Path, total_s: float, console, show_bar: bool):
        self.path, self.total_s, self.console = folder / "clock.json", total_s, console
        self.before = float(read_json_dict(self.path).get("spent_s", 0.0))
        self.start = time.monotonic()
        self.info = ""  # what runs now (the probe, the final run, its step and loss), beside the time on the bar
        self._stop = threading.Event()
        self._bar = ProgressBar(console, "[bold blue]tune", total_s, show_bar)
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def spent(self) -> float:
        return self.before + time.monotonic() - self.start

    def left(self) -> float:
        return self.total_s - self.spent()

    def _write(self) -> None:
        atomic_write_json(
            self.path, {"spent_s": round(self.spent(), 3), "total_s": self.total_s, "updated": time.time()}
        )

    def _beat(self) -> None:
        last = 0.0
        while not self._stop.wait(0.25):
            clock = f"{format_duration(self.spent())} / {format_duration(self.total_s)}"
            self._bar.update(min(self.spent(), self.total_s), f"{clock}  {self.info}")
            if time.monotonic() - last >= HEARTBEAT_S:
                self._write()
                last = time.monotonic()

    def __enter__(self):
        self._bar.__enter__()
        self._write()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._write()
        self._bar.update(min(self.spent(), self.total_s))
        self._bar.__exit__(*exc)


class _Show(Callback):
    """Puts the running trial's or final run's step and loss on the bar; eval lines of the final run."""

    def __init__(self, clock: TuneClock, label: str, console=None):
        self.clock, self.label, self.console = clock, label, console

    def on_log(self, state, control, metrics: dict) -> None:
        loss = metrics.get("train/loss")
        self.clock.info = f"{self.label}  step {state.step}  loss {loss:.4f}" if loss is not None else self.label

    def on_eval(self, state, control, metrics: dict) -> None:
        if self.console is not None:
            self.console.print(
                f"eval  step {state.step:>6}  progress {state.progress:5.1%}  "
                f"loss {metrics['eval/loss']:.4f}  bpb {metrics['eval/bpb']:.4f}",
                highlight=False,
            )


# ---------------------------------------------------------------------------------------------
# inputs


def base_config(base: str, data: str):
    """The base preset (a name) or config (a YAML path), on `data`, with the dataset's vocabulary."""
    is_file = base.endswith((".yaml", ".yml")) or Path(base).is_file()
    overrides = {"data.path": str(Path(data).resolve())}
    return _load_base(base, is_file, overrides), is_file


def _load_base(base: str, is_file: bool, overrides: dict):
    """The base config file or preset with `overrides`."""
    from slovo.config import load_config

    return load_config(preset=None if is_file else base, config_file=base if is_file else None, overrides=overrides)


def check_inputs(cfg, ds, total_s: float, total_text: str, probe_fraction: float) -> None:
    """Bad input is one line: a total too short, a fraction outside (0, 0.9], a dataset smaller than a batch."""
    if total_s < MIN_TOTAL_S:
        raise SlovoError(
            f"--time {total_text}: too short to probe and train; slovo tune needs at least "
            f"{format_duration(MIN_TOTAL_S)}"
        )
    if not 0 < probe_fraction <= 0.9:
        raise SlovoError(f"--probe-fraction: must be above 0 and at most 0.9, got {probe_fraction}")
    batch, window = cfg.train.per_device_train_batch_size, cfg.model.seq_len + 1
    if len(ds.train) < batch * window:
        raise SlovoError(
            f"{ds.dir}: the train split has {len(ds.train):,} tokens, fewer than one batch of "
            f"windows ({batch} x {window} = {batch * window:,}); use more text or a smaller "
            f"model.seq_len"
        )
    if len(ds.val) < window:
        raise SlovoError(
            f"{ds.dir}: the validation split has {len(ds.val):,} tokens, fewer than one window of "
            f"{window}; use more text or a smaller model.seq_len"
        )


def default_name(data: str, total_text: str) -> str:
    """Same data and time, same name: rerunning the same command continues the same tune."""
    return f"{Path(data).resolve().name}-{total_text.strip().replace(' ', '')}"


# ---------------------------------------------------------------------------------------------
# the probe sweep


def probe_sweep_yaml(plan: Plan, base: str, is_file: bool, cfg) -> str:
    """The probe sweep as an ordinary sweep file; the best predicted shape's values come first in the grid."""
    fixed = {
        "eval.every": PROBE_EVALS,
        "eval.tokens": probe_eval_tokens(cfg),
        "sample.enabled": False,
        "tracking.report": False,
        "checkpoint.every_seconds": 0,
        "train.compile": "false",
        "train.seed": cfg.train.seed,
    }
    params = {
        "model.n_layer": {"values": plan.depths},
        "model.n_embd": {"values": plan.widths},
        "train.per_device_train_batch_size": {"values": plan.batches},
        plan.lr_key: {"values": plan.lrs},
    }
    params.update({k: {"value": v} for k, v in fixed.items()})
    doc = {
        "name": "probes",
        "method": "grid",
        "metric": {"name": "eval/bpb", "goal": "minimize"},
        ("config" if is_file else "preset"): str(Path(base).resolve()) if is_file else base,
        "data": plan.data,
        "budget": f"{plan.trial_s:.1f}s",
        "parameters": params,
        "early_terminate": dict(HYPERBAND),
    }
    header = (
        "# slovo tune's probe sweep: short runs of each candidate shape x lr (x batch), successive halving\n"
        "# on evals at fixed fractions of each probe's budget. Rerun with `slovo tune` (same arguments).\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def run_probes(folder: Path, plan: Plan, clock: TuneClock, quiet: bool) -> dict:
    from slovo.sweep import run_sweep
    from slovo.train import train

    def probe_train(cfg, run_dir, resume=False, callbacks=()):
        clock.info = f"probe {Path(run_dir).name}"
        return train(cfg, run_dir, resume=resume, callbacks=[*callbacks, _Show(clock, clock.info)], quiet=True)

    left = max(plan.probe_s - clock.spent(), 0.001)  # none left: nothing starts, the finished probes still count
    return run_sweep(
        folder / "probes.yaml",
        sweeps_dir=folder,
        name="probes",
        time_limit=left,
        train_fn=probe_train,
        print_table=not quiet,
    )


def choose(plan: Plan, results: dict | None, final_s: float) -> tuple[dict, list[str], dict]:
    """The final run's shape, batch and lr from the chosen probe (lr carried to the final horizon), why, and the
    decision (`decide`: which probe, how sure; its `winner` is the chosen probe's folder)."""
    best = results.get("best") if results else None
    if best is None:  # no probe finished (too little time, or all failed): the rule's shape at the base lr
        shape = min((s for s in plan.shapes if s.speed), key=lambda s: s.predicted_loss)
        return (
            {
                "model.n_layer": shape.n_layer,
                "model.n_embd": shape.n_embd,
                "train.per_device_train_batch_size": plan.base_batch,
                plan.lr_key: plan.base_lr,
            },
            [
                (
                    f"no probe {'finished' if plan.trials else 'ran'}: the predicted best shape {shape.name} at the "
                    f"base lr {format_value(plan.base_lr)} and batch {plan.base_batch}"
                )
            ],
            {"basis": "none", "sure": False, "winner": None, "note": "no probe to compare: the rule alone"},
        )
    pick, decision = decide(plan, results)
    p = pick["params"]
    shape = plan.shape(p["model.n_layer"], p["model.n_embd"])
    speed = shape.speed if shape and shape.speed else 1.0
    probe_tokens, final_tokens = speed / plan.compile_speedup * plan.trial_s, speed * final_s  # probes run eager
    trained_lr = p[plan.lr_key] * (pick.get("lr_scale") or 1.0)  # what it trained at after any guard rollback
    lr = float(f"{horizon_lr(trained_lr, probe_tokens, final_tokens):.3g}")
    shown_lr = format_lr(p[plan.lr_key], pick.get("lr_scale"))
    winner = (
        f"probe {'winner' if pick is best else 'chosen'} {' '.join(pick['runs'])}: {p['model.n_layer']}x"
        f"{p['model.n_embd']}, batch {p['train.per_device_train_batch_size']}, {plan.lr_key} {shown_lr}, "
        f"eval/bpb {format_bpb(pick['eval/bpb'], pick.get('eval/bpb_se'))}"
    )
    horizon = (
        f"{plan.lr_key} {format_value(trained_lr)} x ({human_count(final_tokens)} final / "
        f"{human_count(probe_tokens)} probe tokens)^-0.3 = {format_value(lr)} (the best lr falls with the "
        f"training horizon)"
    )
    why = [winner, decision["note"], horizon]
    return {**p, plan.lr_key: lr}, why, decision


def _prior_distance(plan: Plan, row: dict) -> float:
    """How far a probe is from what the rule would train without probes (the base lr and batch): log2 steps of
    lr, and one for another batch."""
    p = row["params"]
    lr = p[plan.lr_key] * (row.get("lr_scale") or 1.0)
    far = abs(math.log2(lr / plan.base_lr)) if plan.base_lr > 0 and lr > 0 else 0.0
    return far + (p.get("train.per_device_train_batch_size") != plan.base_batch)


def decide(plan: Plan, results: dict) -> tuple[dict, dict]:
    """The probe the final run continues, and how sure the choice is.

    The leaderboard marks the probes that cannot be told from the best (slovo.stats: paired seeds, else paired
    window by window on the eval windows, Holm over every pair). Among those the rule decides, not the noise: the
    one nearest the prior (the base lr and batch) is taken, since picking the lowest of tied scores picks
    whichever probe drew the luckiest noise."""
    rows = [r for r in results["rows"] if r["seeds"] > 0]
    best = results["best"]
    tied = [r for r in rows if r.get("vs_best") in ("best", "within noise")] or [best]
    pick = min(tied, key=lambda r: (_prior_distance(plan, r), r["rank"]))
    basis = best.get("noise") or "none"
    others = [r for r in rows if r is not best]
    runner_up = others[0] if others else None
    margin = runner_up["eval/bpb"] - best["eval/bpb"] if runner_up else None
    if len(tied) > 1:
        names = ", ".join(" ".join(r["runs"]) for r in tied)
        note = (
            f"not sure: {len(tied)} probes are within noise of the best ({names}; by {basis}); the rule decides: "
            f"{' '.join(pick['runs'])}, the one nearest the base {plan.lr_key} {format_value(plan.base_lr)} and "
            f"batch {plan.base_batch}"
        )
    elif basis == "none":
        note = "how sure: unknown (the probes kept no per-window eval losses and ran one seed each)"
    elif runner_up is None:
        note = "how sure: one probe finished; nothing to compare it with"
    else:
        note = (
            f"sure beyond eval noise: the best probe leads the next by {margin:.4f} bpb, a difference found window "
            f"by window on the eval windows both scored (Holm over every pair of probes); seed noise is not "
            f"measured by single probes"
            if basis == "windows"
            else f"sure: the best probe leads the next by {margin:.4f} bpb, a difference the seeds find (p < 0.05)"
        )
    decision = {
        "winner": str(Path(results["sweep_dir"]) / "trials" / pick["runs"][0]) if pick.get("runs") else None,
        "basis": basis,
        "sure": len(tied) == 1 and basis != "none",
        "within_noise": [" ".join(r["runs"]) for r in tied],
        "chosen": " ".join(pick["runs"]),
        "best": " ".join(best["runs"]),
        "margin_bpb": margin,
        "note": note,
    }
    return pick, decision


def _start_final_run(folder: Path, final_dir: Path, cfg, is_file: bool, base: str, chosen: dict, clock, console):
    """The final run's config for the time left, written as choice.yaml; (config, whether it resumes): it does
    when it continues the winning probe from where that probe's lr began to decay."""
    from slovo.config import load_config

    if final_dir.exists():  # killed before its first checkpoint: start it again, for the time left now
        shutil.rmtree(final_dir)
    final_s = max(clock.left(), 0.05 * clock.total_s)
    every = min(cfg.checkpoint.every_seconds or math.inf, max(5.0, final_s / 10))  # a kill loses at most this
    overrides = {
        **chosen["choice"],
        "data.path": cfg.data.path,
        "train.seed": cfg.train.seed,
        "budget.time": f"{final_s:.1f}s",
        "checkpoint.every_seconds": every,
    }
    choice_cfg = _load_base(base, is_file, overrides)
    # the winner's probe trained this very shape and batch: the final run goes on from where its lr began to
    # decay rather than from scratch, so that stretch of the probe phase is not lost
    winner = Path(chosen["winner"]) if chosen.get("winner") else None
    start = continuation_start(winner) if winner else None
    continuing = (
        f"the final run continues probe {winner.name} from {start[0].name}, where its lr began to decay "
        f"({start[1]:.0f}s of the probe's training kept; its cooldown dropped)"
        if start
        else None
    )
    _write_choice(folder, final_dir, choice_cfg, chosen, continuing, clock.total_s)
    # tune writes the run's report itself (timed: it comes after the deadline, like the final eval)
    run_overrides: dict = {"tracking.report": False}
    if start:  # the budget counts the probe's seconds up to its checkpoint: the deadline stays tune's
        run_overrides["budget.time"] = f"{start[1] + final_s:.1f}s"
    run_cfg = load_config(config_file=folder / "choice.yaml", overrides=run_overrides)
    if start:
        chosen["why"] = [line for line in chosen.get("why", []) if line != continuing] + [continuing]
        atomic_write_json(folder / "tune.json", chosen)
        stage_continuation(final_dir, winner, start[0], run_cfg)
    _say_final_run(console, run_cfg, final_s, final_dir, continuing)
    return run_cfg, bool(start)


def _say_final_run(console, run_cfg, final_s: float, final_dir: Path, continuing: str | None) -> None:
    """The final run's shape, batch, lrs and time, and what it continues."""
    console.print(
        f"final run: {run_cfg.model.n_layer}x{run_cfg.model.n_embd}, batch "
        f"{run_cfg.train.per_device_train_batch_size}, lr {format_value(run_cfg.optim.lr)}"
        + (f", muon_lr {format_value(run_cfg.optim.muon_lr)}, " if run_cfg.optim.name == "muon" else ", ")
        + f"{format_duration(final_s)} to the deadline -> {final_dir}"
        + (f"\n  {continuing}" if continuing else ""),
        highlight=False,
    )


def _write_choice(folder: Path, final_dir: Path, choice_cfg, chosen: dict, continuing: str | None, total_s) -> None:
    """choice.yaml: the chosen config in full, its comments saying why."""
    from slovo.config import to_dict

    header = (
        f"# slovo tune's choice for {format_duration(total_s)} in all on this machine; its final run "
        f"is {final_dir}\n"
        + "".join(f"# {line}\n" for line in chosen.get("why", []) if line != continuing)
        + (f"# {continuing}; this file trains from scratch\n" if continuing else "")
        + f"# train it: slovo train --config {folder / 'choice.yaml'}\n"
    )
    atomic_write_text(
        folder / "choice.yaml", header + yaml.safe_dump(to_dict(choice_cfg), sort_keys=False, allow_unicode=True)
    )


def continuation_start(run_dir: Path) -> tuple[Path, float] | None:
    """A finished probe's checkpoint saved where its lr began to decay, and the seconds its clock had run
    there (as the final run's WallClock counts them); None when there is none that verifies."""
    from slovo.train.checkpoint import STATE_FILE, decay_start_checkpoint, load_state, verify_checkpoint

    if read_json_dict(run_dir / "summary.json").get("status") != "finished":
        return None
    ckpt = decay_start_checkpoint(run_dir)
    if ckpt is None or verify_checkpoint(ckpt) is not None:
        return None
    try:
        return ckpt, WallClock.spent_in(load_state(ckpt / STATE_FILE)["clock"])
    except (SlovoError, KeyError):
        return None


def resumed_budget_s(final_dir: Path, left_s: float, run_cfg) -> float | None:
    """The budget a resumed final run gets so that it still ends at tune's deadline: its checkpoint's seconds plus
    the time tune has left, when that is less than its config's.

    The seconds between that checkpoint and a kill, and the restart, are already spent on tune's clock; the
    config's whole budget would overrun the total. None: keep the config's budget (no checkpoint to read, or
    nothing was lost)."""
    from slovo.config import budget_seconds
    from slovo.train.checkpoint import STATE_FILE, checkpoint_to_resume, load_state

    try:
        ckpt, _ = checkpoint_to_resume(final_dir)
        spent = WallClock.spent_in(load_state(ckpt / STATE_FILE)["clock"])
    except (SlovoError, KeyError, OSError):
        return None
    budget = spent + max(left_s, 0.0)
    configured = budget_seconds(run_cfg)
    return budget if configured is None or budget < configured else None


def stage_continuation(final_dir: Path, probe_dir: Path, ckpt: Path, run_cfg) -> None:
    """final/ as a copy of the winning probe cut back to its decay-start checkpoint, with the final run's config:
    resuming it trains on from there (the probe's stable phase is kept, its cooldown dropped). Written in one
    rename, so a kill leaves either no final/ or a whole one."""
    from slovo.config import save_config
    from slovo.train.checkpoint import CKPT_DIR
    from slovo.utils import staged_dir

    for leftover in final_dir.parent.glob(f".{final_dir.name}.tmp-*"):  # a copy killed half-way
        shutil.rmtree(leftover, ignore_errors=True)
    with staged_dir(final_dir) as tmp:
        for item in probe_dir.iterdir():
            if item.name in (CKPT_DIR, "summary.json", "report.html"):
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        shutil.copytree(ckpt, tmp / CKPT_DIR / ckpt.name)
        save_config(run_cfg, tmp / "config.yaml")


# ---------------------------------------------------------------------------------------------
# the whole tune


def run_tune(
    data: str,
    total: str,
    base: str = "tiny",
    name: str | None = None,
    tune_dir: str | Path = "tune",
    probe_fraction: float = 0.25,
    dry_run: bool = False,
    quiet: bool = False,
    console=None,
    seed: int | None = None,
) -> dict:
    """Probe, choose, train the winner until the total time is spent; returns tune.json's figures.

    `seed`: train.seed of every probe and the final run (default: the base's), so repeated tunes (bench_tune)
    can draw other inits and data orders."""
    from rich.console import Console

    from slovo.config import parse_duration
    from slovo.data import load_dataset

    started = time.monotonic()  # the tune's clock starts here: measuring the shapes is on it
    console = console or Console(highlight=False, quiet=quiet)
    total_s = parse_duration(total, "--time")
    cfg, is_file = base_config(base, data)
    if seed is not None:
        cfg.train.seed = seed
    ds = load_dataset(cfg.data.path)
    cfg.model.vocab_size = cfg.model.vocab_size or ds.vocab_size
    check_inputs(cfg, ds, total_s, str(total), probe_fraction)
    folder = Path(tune_dir) / (name or default_name(data, str(total)))
    args = {
        "data": cfg.data.path,
        "total_s": total_s,
        "base": str(Path(base).resolve()) if is_file else base,
        "probe_fraction": probe_fraction,
        **({"seed": seed} if seed is not None else {}),  # absent by default: tunes from before --seed continue
    }
    plan, fresh = _load_or_make_plan(folder, args, cfg, len(ds.train), console)
    show_plan(console, plan)
    if dry_run:
        return {"plan": plan.to_dict(), "dry_run": True}
    folder.mkdir(parents=True, exist_ok=True)
    if fresh:
        atomic_write_json(folder / "plan.json", {"args": args, "plan": plan.to_dict()})
        if plan.trials:
            atomic_write_text(folder / "probes.yaml", probe_sweep_yaml(plan, base, is_file, cfg))
        atomic_write_json(folder / "clock.json", {"spent_s": time.monotonic() - started, "total_s": total_s})
    final_dir = folder / "final"
    with TuneClock(folder, total_s, console, show_bar=not quiet and console.is_terminal) as clock:
        chosen = _choice(folder, plan, clock, total_s, quiet)
        summary = _final_run(folder, final_dir, cfg, is_file, base, chosen, clock, console)
        spent = clock.spent()
    return _finish(folder, final_dir, plan, summary, chosen, spent, console, quiet)


def _load_or_make_plan(folder: Path, args: dict, cfg, train_tokens: int, console) -> tuple[Plan, bool]:
    """(the plan, whether it is new): plan.json's when this folder holds the same tune, else measured now."""
    from slovo.device import pick_device, set_threads

    saved = read_json_dict(folder / "plan.json")
    if saved and saved.get("args") != args:
        raise SlovoError(
            f"{folder}: holds a tune with other arguments ({_args_text(saved.get('args') or {})}); "
            f"give another --name, or delete the folder"
        )
    set_threads(cfg.train.num_threads)
    device = pick_device(cfg.train.device)
    total_s = args["total_s"]
    if saved:
        console.print(
            f"[bold]slovo tune[/] {folder}: continuing ({format_duration(_spent(folder))} of "
            f"{format_duration(total_s)} spent)"
        )
        return Plan.from_dict(saved["plan"]), False
    console.print(
        f"[bold]slovo tune[/] {args['base']} on {device}, {format_duration(total_s)} in all: measuring "
        f"this machine's speed for a few shapes ..."
    )
    return make_plan(cfg, args["base"], total_s, args["probe_fraction"], device, train_tokens), True


def _choice(folder: Path, plan: Plan, clock, total_s: float, quiet: bool) -> dict:
    """tune.json's choice: read when the probes are done, else run (or continue) the probe sweep and choose."""
    chosen = read_json_dict(folder / "tune.json")
    if "choice" in chosen:
        return chosen
    results = run_probes(folder, plan, clock, quiet) if plan.trials else None
    choice, why, decision = choose(plan, results, total_s - clock.spent())
    chosen = {
        "probe_s": round(clock.spent(), 2),
        "choice": choice,
        "why": why,
        "winner": decision.pop("winner"),
        "decision": decision,
    }
    atomic_write_json(folder / "tune.json", chosen)
    # plan.json says what was decided too: the plan, then the choice and how sure it is
    atomic_write_json(folder / "plan.json", {**read_json_dict(folder / "plan.json"), "decision": decision})
    return chosen


def _final_run(folder: Path, final_dir: Path, cfg, is_file: bool, base: str, chosen: dict, clock, console) -> dict:
    """Train the chosen config into final/ for the time left; a killed final run resumes from its checkpoint."""
    from slovo.config import load_config
    from slovo.train import train
    from slovo.train.checkpoint import checkpoint_to_resume

    summary = read_json_dict(final_dir / "summary.json")
    if summary.get("status") == "finished":
        return summary
    try:
        checkpoint_to_resume(final_dir)
        resume = True
    except (SlovoError, FileNotFoundError, OSError):
        resume = False
    if resume:
        run_cfg = load_config(config_file=final_dir / "config.yaml")
        budget_s = resumed_budget_s(final_dir, clock.left(), run_cfg)
        if budget_s is not None:
            run_cfg = load_config(config_file=final_dir / "config.yaml", overrides={"budget.time": f"{budget_s:.1f}s"})
        console.print(f"final run: resuming {final_dir}")
    else:
        run_cfg, resume = _start_final_run(folder, final_dir, cfg, is_file, base, chosen, clock, console)
    clock.info = "final run"
    return train(
        run_cfg, final_dir, resume=resume, callbacks=[_Show(clock, "final run", console)], clock=WallClock(), quiet=True
    )


def _finish(
    folder: Path, final_dir: Path, plan: Plan, summary: dict, chosen: dict, spent: float, console, quiet: bool
) -> dict:
    from slovo.report import write_report
    from slovo.terminal import TrainDisplay

    started = time.monotonic()
    report = folder / "report.html"
    try:
        write_report([final_dir], final_dir / "report.html")
        parts = [p for p in (folder / "probes", final_dir) if p.is_dir()]
        write_report(parts, report, title=f"slovo tune {folder.name}")
    except Exception as e:  # noqa: BLE001 - the runs are all written; a page that fails is said, not fatal
        console.print(f"[yellow]could not write the report: {e}[/]")
        report = None
    result = {
        **chosen,
        "name": folder.name,
        "total_s": plan.total_s,
        "spent_s": round(spent, 2),
        "final_budget_s": (summary.get("budget") or {}).get("time_s"),
        "final_eval_s": (summary.get("ledger") or {}).get("final_eval"),
        "report_s": round(time.monotonic() - started, 2),
        "status": summary.get("status"),
        "eval/bpb": summary.get("eval/bpb"),
        "choice_yaml": str(folder / "choice.yaml"),
        "final_dir": str(final_dir),
    }
    atomic_write_json(folder / "tune.json", result)
    if not quiet:
        for line in chosen.get("why", []):
            console.print(f"  chose: {line}", highlight=False)
        TrainDisplay(console=console).finish(final_dir, summary, report=report)
        console.print(f"tune folder: {folder}  (choice.yaml, probes/, final/, report.html)")
    return result


def _spent(folder: Path) -> float:
    return float(read_json_dict(folder / "clock.json").get("spent_s", 0.0))


def _args_text(args: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in args.items())


# ---------------------------------------------------------------------------------------------
# the table


def show_plan(console, plan: Plan) -> None:
    """What the probe phase measured and chose, and the time each phase gets."""
    from rich.table import Table

    table = Table(title="shapes: measured speed and the size rule", title_justify="left")
    for col, justify in (
        ("shape", "left"),
        ("params", "right"),
        ("tokens/s", "right"),
        ("final tokens", "right"),
        ("tokens/param", "right"),
        ("predicted loss", "right"),
        ("", "left"),
    ):
        table.add_column(col, justify=justify)
    probed = {(d, w) for d in plan.depths for w in plan.widths}
    unmeasured = [s.name for s in plan.shapes if not s.speed]
    for s in sorted((s for s in plan.shapes if s.speed), key=lambda s: s.predicted_loss):
        speed = f"{s.speed:,.0f}" + ("" if s.tokens_per_s else " (est.)")
        table.add_row(
            s.name,
            human_count(s.params),
            speed,
            human_count(s.final_tokens),
            f"{s.final_tokens / s.params:.2f}" if s.params else "-",
            f"{s.predicted_loss:.3f}" if math.isfinite(s.predicted_loss) else "-",
            "probed" if (s.n_layer, s.n_embd) in probed else "",
        )
    console.print(table)
    if unmeasured:
        console.print(f"  not measured (the measuring time ran out): {', '.join(unmeasured)}")
    for note in plan.notes:
        console.print(f"  {note}")
    console.print(f"  compile: {plan.compile_note}")
    sweep_s = plan.probe_s - plan.measure_s
    if not plan.trials:
        console.print(
            f"probe phase: speeds measured in {format_duration(plan.measure_s)}, no probes\n"
            f"final run: the rest, about {format_duration(plan.total_s - plan.measure_s)}",
            highlight=False,
        )
        return
    console.print(
        f"probe phase {format_duration(plan.probe_s)}: speeds measured in {format_duration(plan.measure_s)}, then "
        f"{plan.trials} probes (depth {plan.depths} x width {plan.widths} x batch {plan.batches} x lr "
        f"{[format_value(x) for x in plan.lrs]}) of {format_duration(plan.trial_s)} training each, successive "
        f"halving (eta {HYPERBAND['eta']}) in {format_duration(sweep_s)}\n"
        f"final run: the rest, about {format_duration(plan.final_s)} (the total less what the probes took)",
        highlight=False,
    )
