"""Tune's plan: measure this machine's speed for a few model shapes, pick candidate sizes, size the probe sweep.

The size rule. Chinchilla's ~20 tokens per parameter (Hoffmann et al. 2022) is what its loss law gives when
tokens/s falls as 1/params (every FLOP does useful work, as on a busy GPU at billions of parameters). A few
minutes on a CPU is far from that: a 1.5M-parameter model steps barely faster than a 4.5M one (fixed costs per
step, small matmuls, the vocabulary head), so a smaller model buys few extra tokens and the best ratio there is
much smaller. So tune does not fix a ratio; it takes the law itself,

    loss(N, D) = E + A / N^alpha + B / D'^beta     (Hoffmann et al. 2022, eq. 10; constants as refitted by
                                                    Besiroglu et al. 2024, "Chinchilla scaling: a replication")

with N the model's parameters (all of them, as Chinchilla counts), D = the tokens/s measured here for that shape
x the final run's seconds, and D' the data a repeated dataset is worth (Muennighoff et al. 2023: the k-th repeat
of the data is worth less, with R* = 15.4), and takes the shape it predicts best. Where speed does scale as
1/params this lands on Chinchilla's ratio (~20-30 at these sizes); where it does not, on whatever ratio this
machine's speeds imply (often 1-5 tokens/param on a CPU), and the plan prints that ratio.

The probes then pick the lr for that size (and the batch, where half of it keeps nearly the speed and so buys
steps, or double brings clearly more), by successive halving; they do not compare sizes (see _choose_axes).
Probes are far shorter than the final run, and the best lr falls as training gets longer (Bjorck et al. 2024,
"Scaling optimal LR across token horizons": lr* ~ D^-beta, beta about 0.3), so the final run takes the probe
winner's lr x (final tokens / probe tokens)^-0.3.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

# Chinchilla's parametric loss, Besiroglu et al. 2024's refit of Hoffmann et al. 2022's Approach 3
LAW_E, LAW_A, LAW_B, LAW_ALPHA, LAW_BETA = 1.82, 482.01, 2085.43, 0.3478, 0.3658
REPEAT_DECAY = 15.4  # Muennighoff et al. 2023, R*: how fast repeated epochs lose their worth
LR_HORIZON_EXPONENT = 0.3  # Bjorck et al. 2024: the best lr scales as (training tokens)^-0.3
# probed lrs, as multiples of the base preset's, in the order they run: the prior's lr first, then above, then
# below. The probe sweep's deadline cuts the last probe that would not finish; in ascending order that was always
# the largest lr (bug 7). Now it is a step away from the prior, and the lower one, which horizon_lr's carry to
# the longer final run moves towards anyway.
LR_FACTORS = (1.0, 2.0, 0.5)
# With Muon the probes vary the hidden matrices' lr (optim.muon_lr): they hold nearly all the parameters that
# train, and the tiny recipe sweep found the result far more sensitive to it than to the AdamW part's lr.
WIDTH_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)  # widths measured, as multiples of the base preset's
PROBE_EVALS = 9  # evals per probe; successive halving looks at eval 3 (min_iter 3, eta 3) and ranks at the end
# The first rung at a third of a probe, not a ninth: at 20 minutes on 2 cores a ninth was 9-14 optimizer steps,
# still in warm-up, where every trial scores 1.7 bpb give or take noise; the pruning then kept whichever trials
# happened to run first (bench_tune, 2026-11-28).
HYPERBAND = {"type": "hyperband", "min_iter": 3, "eta": 3}
# A probe trains at least this many optimizer steps, so that its first successive-halving rung (a third of it) is
# past ~40: before that every trial scores the same warm-up bpb give or take noise, and the pruning keeps whichever
# ran first. Where the time cannot give every probe that, the second batch goes rather than probe length
# (bench_tune, 2026-11-28: 24 probes of 16 s, pruned at 6 s, 20-40 steps in).
MIN_PROBE_STEPS = 120
MEASURE_FRACTION = 0.12  # at most this share of the probe phase measures speeds
BATCH_CHEAP = 0.9  # half the batch keeps this share of tokens/s or more: probe it (twice the steps, nearly free)
BATCH_GAIN = 1.15  # twice the batch brings this much more tokens/s or more: probe it


@dataclass
class Shape:
    n_layer: int
    n_embd: int
    params: int = 0
    tokens_per_s: float | None = None  # measured here; None when estimated from neighbours
    estimated_tokens_per_s: float | None = None
    final_tokens: float = 0.0
    predicted_loss: float = math.inf

    @property
    def name(self) -> str:
        return f"{self.n_layer}x{self.n_embd}"

    @property
    def speed(self) -> float | None:
        return self.tokens_per_s if self.tokens_per_s is not None else self.estimated_tokens_per_s


@dataclass
class Plan:
    """Everything tune decided before training; saved as tune/NAME/plan.json so a rerun continues the same plan."""

    total_s: float
    probe_s: float  # the probe phase: speed measurements + probe sweep
    final_s: float  # the final run's planned seconds (recomputed from the clock when it starts)
    base: str  # preset name or config file
    data: str
    device: str
    compile: bool  # whether the final run would compile (slovo.accel.choose_compile)
    compile_note: str
    shapes: list[Shape] = field(default_factory=list)
    depths: list[int] = field(default_factory=list)  # the probe sweep's axes
    widths: list[int] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    trial_s: float = 0.0  # each probe's training budget
    measure_s: float = 0.0  # seconds the speed measurements took
    base_lr: float = 0.0  # the base preset's lr and batch: the final run's when there is no time to probe
    lr_key: str = "optim.lr"  # the lr the probes vary: optim.muon_lr when the base trains with Muon
    dtype: str = "float32"  # the precision the speeds were measured in: train.dtype as the final run resolves it
    compile_speedup: float = 1.0  # the shapes' speeds are the compiled final run's; probes run eager, this much slower
    base_batch: int = 0
    notes: list[str] = field(default_factory=list)  # why each choice was made, for the table

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        d = dict(d)
        d["shapes"] = [Shape(**s) for s in d.get("shapes", [])]
        return cls(**d)

    def shape(self, n_layer: int, n_embd: int) -> Shape | None:
        return next((s for s in self.shapes if (s.n_layer, s.n_embd) == (n_layer, n_embd)), None)

    @property
    def trials(self) -> int:
        return len(self.depths) * len(self.widths) * len(self.lrs) * len(self.batches)


# ---------------------------------------------------------------------------------------------
# the size rule


def effective_tokens(tokens: float, unique: float) -> float:
    """What `tokens` drawn from a dataset of `unique` tokens are worth (Muennighoff et al. 2023, eq. 5)."""
    if unique <= 0 or tokens <= unique:
        return tokens
    repeats = tokens / unique - 1.0
    return unique + unique * REPEAT_DECAY * (1.0 - math.exp(-repeats / REPEAT_DECAY))


def predicted_loss(params: float, tokens: float, unique: float) -> float:
    """Chinchilla's loss law at `params` and `tokens` (nats/token on its data; only the ranking is used)."""
    if params <= 0 or tokens <= 0:
        return math.inf
    return LAW_E + LAW_A / params**LAW_ALPHA + LAW_B / effective_tokens(tokens, unique) ** LAW_BETA


def horizon_lr(probe_lr: float, probe_tokens: float, final_tokens: float) -> float:
    """The probe winner's lr carried to the final run's longer horizon (Bjorck et al. 2024)."""
    if probe_tokens <= 0 or final_tokens <= probe_tokens:
        return probe_lr
    return probe_lr * (final_tokens / probe_tokens) ** -LR_HORIZON_EXPONENT


def probe_cost(
    trials: int, evals: int = PROBE_EVALS, eta: int = HYPERBAND["eta"], min_iter: int = HYPERBAND["min_iter"]
) -> float:
    """Expected training time of a successive-halving probe sweep, in units of one probe's budget.

    Every trial reaches the first rung (eval min_iter of `evals`); about 1/eta of them, plus the first (always
    promoted when it runs alone), go on to the next rung (min_iter x eta), 1/eta^2 (plus one) past that, and so
    on to the end. Rough, on purpose: the sweep also has a deadline (run_sweep's --time), so a plan that was too
    hopeful skips its last trials."""
    rungs = [min_iter]
    while rungs[-1] * eta < evals:
        rungs.append(rungs[-1] * eta)
    cost = trials * rungs[0] / evals
    for k, rung in enumerate(rungs):
        following = rungs[k + 1] if k + 1 < len(rungs) else evals
        cost += (trials / eta ** (k + 1) + 1) * (following - rung) / evals
    return cost


# ---------------------------------------------------------------------------------------------
# shapes and their speed


def shape_ladder(base_layers: int, base_width: int, n_head: int) -> tuple[list[int], list[int]]:
    """Depths and widths around the base preset's shape; widths keep the preset's heads (even head size)."""
    step = 2 * n_head
    widths = sorted({max(step, step * round(base_width * f / step)) for f in WIDTH_FACTORS})
    depths = sorted({d for d in (base_layers - 1, base_layers, base_layers + 1, base_layers + 2) if d >= 1})
    return depths, widths


def count_params(cfg, n_layer: int, n_embd: int) -> int:
    """Parameters of the model at this shape, built on the meta device (no memory, no time)."""
    import torch

    from slovo.model import GPT

    model_cfg = _with_shape(cfg, n_layer, n_embd).model
    with torch.device("meta"):
        return GPT(model_cfg).num_params()


def _with_shape(cfg, n_layer: int, n_embd: int, batch: int | None = None, dtype: str | None = None):
    from slovo.config import from_dict, to_dict

    d = to_dict(cfg)
    d["model"].update(n_layer=n_layer, n_embd=n_embd)
    if batch:
        d["train"]["per_device_train_batch_size"] = batch
    if dtype:
        d["train"]["dtype"] = dtype
    return from_dict(d)


class _OneBatch:
    """A loader that serves the same batch every step: a step's speed does not depend on the text."""

    def __init__(self, x, y):
        self.x, self.y, self.device = x, y, x.device

    def next_batch(self):
        return self.x, self.y

    def prefetch(self) -> None:
        """Nothing to build ahead: the batch is always the same (train_step calls it)."""


def measure_speed(cfg, device: str, seconds: float, compile_model: bool = False, warm_up: bool = True) -> dict:
    """Tokens/s of full optimizer steps (`slovo.train.train_step`: forward, backward, clip, step) at `cfg`'s shape
    and batch on random tokens: a warm-up step (the compile, when compiling; the first measurement of a process),
    then timed steps for about `seconds`, at least one (two without a warm-up). The fastest step is the speed: on a
    shared machine a neighbour's job only ever slows a step down."""
    import torch

    from slovo.device import autocast_for
    from slovo.distributed import Dist
    from slovo.model import GPT
    from slovo.optim import make_optimizer
    from slovo.train import Clock, train_step

    batch, seq_len = cfg.train.per_device_train_batch_size, cfg.model.seq_len
    gen = torch.Generator().manual_seed(0)  # its own generator: nobody's RNG stream moves
    tokens = torch.randint(0, cfg.model.vocab_size, (batch, seq_len + 1), generator=gen).to(device)
    loader = _OneBatch(tokens[:, :-1], tokens[:, 1:])
    model = GPT(cfg.model).to(device)
    optimizer = make_optimizer(model, cfg.optim, device)
    stepper = torch.compile(model) if compile_model else model
    autocast, dist, clock = autocast_for(cfg.train.dtype, device), Dist(), Clock()

    def step() -> float:
        start = time.perf_counter()
        train_step(stepper, optimizer, loader, 1, cfg.optim.grad_clip, autocast, None, dist, clock)  # syncs
        return time.perf_counter() - start

    try:
        first = step() if warm_up or compile_model else None
        times: list[float] = []
        while len(times) < (1 if first is not None else 2) or (sum(times) < seconds and len(times) < 8):
            times.append(step())
    finally:
        model = optimizer = stepper = None  # the next shape gets the device's memory
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    step_s = min(times)
    return {"tokens_per_s": batch * seq_len / step_s, "first_step_s": first or times[0], "step_s": step_s}


def _fits(cfg, device: str, seconds: float, compile_model: bool = False, warm_up: bool = False) -> dict | None:
    """measure_speed, or None when the shape does not fit in the device's memory."""
    import torch

    try:
        return measure_speed(cfg, device, seconds, compile_model, warm_up)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


# ---------------------------------------------------------------------------------------------
# the plan


def make_plan(
    base_cfg, base_name: str, total_s: float, probe_fraction: float, device: str, train_tokens: int, say=print
) -> Plan:
    """Measure, choose candidates and size the probe sweep. `base_cfg` has the dataset's vocab_size set."""
    from slovo.accel import choose_compile, choose_run_dtype, shape_key
    from slovo.device import device_name

    probe_s = total_s * probe_fraction
    final_s = total_s - probe_s
    # speeds are measured in the precision the runs will train in (on a CPU with AMX, 'auto' may be bf16)
    dtype, dtype_note = choose_run_dtype(base_cfg, device)
    base_cfg = _with_shape(base_cfg, base_cfg.model.n_layer, base_cfg.model.n_embd, dtype=dtype)
    m, t = base_cfg.model, base_cfg.train
    compile_final, compile_note = choose_compile(
        t.compile, device, final_s, shape_key(base_cfg, device_name(device), dtype)
    )
    lr_key = "optim.muon_lr" if base_cfg.optim.name == "muon" else "optim.lr"
    plan = Plan(
        total_s=total_s,
        probe_s=probe_s,
        final_s=final_s,
        base=base_name,
        data=base_cfg.data.path,
        device=device,
        compile=compile_final,
        compile_note=compile_note,
        base_lr=base_cfg.optim.muon_lr if lr_key == "optim.muon_lr" else base_cfg.optim.lr,
        lr_key=lr_key,
        dtype=dtype,
        base_batch=t.per_device_train_batch_size,
    )
    plan.notes.append(f"precision: {dtype_note}")
    depths, widths = shape_ladder(m.n_layer, m.n_embd, m.n_head)
    # the base shape first, then widths at the base depth, then depths at the base width: the closest first,
    # so a slow machine that runs out of measuring time has measured the shapes most likely to be chosen
    order = [(m.n_layer, m.n_embd)]
    order += sorted(((m.n_layer, w) for w in widths if w != m.n_embd), key=lambda s: abs(math.log(s[1] / m.n_embd)))
    order += sorted(((d, m.n_embd) for d in depths if d != m.n_layer), key=lambda s: abs(s[0] - m.n_layer))
    measure_budget = probe_s * MEASURE_FRACTION
    per_shape = max(0.3, min(2.0, measure_budget / (len(order) + 2) / 2))
    started = time.perf_counter()
    for n_layer, n_embd in order:
        shape = Shape(n_layer, n_embd, params=count_params(base_cfg, n_layer, n_embd))
        if time.perf_counter() - started < measure_budget or not plan.shapes:
            speed = _fits(_with_shape(base_cfg, n_layer, n_embd), device, per_shape, warm_up=not plan.shapes)
            if speed is None:
                plan.notes.append(f"{shape.name} does not fit in {device} memory")
                continue
            shape.tokens_per_s = speed["tokens_per_s"]
        plan.shapes.append(shape)
    ref = plan.shapes[0]
    batches = [t.per_device_train_batch_size]
    if time.perf_counter() - started < measure_budget:
        batches += _batch_choices(base_cfg, device, per_shape, ref, plan)
    if compile_final:  # one compile, on the base shape: its time and speed-up stand for every shape
        from slovo.accel import compile_stand_in

        compile_s, speedup = compile_stand_in(device)
        fast = None
        if time.perf_counter() - started < measure_budget:
            fast = _fits(base_cfg, device, per_shape, compile_model=True)
        if fast is not None:
            compile_s, speedup = fast["first_step_s"], fast["tokens_per_s"] / ref.tokens_per_s
        plan.notes.append(
            f"compiling (the final run will): {compile_s:.0f}s to compile, {speedup:.2f}x the eager "
            f"speed ({'measured' if fast else 'defaults: no measuring time left'}), in every shape's "
            f"tokens"
        )
        for s in plan.shapes:
            s.tokens_per_s = s.tokens_per_s * speedup if s.tokens_per_s else None
        plan.compile_speedup = speedup
        final_s -= compile_s
    plan.measure_s = time.perf_counter() - started
    _fill_estimates(plan, depths, widths, base_cfg)
    for s in plan.shapes:
        s.final_tokens = (s.speed or 0.0) * final_s
        s.predicted_loss = predicted_loss(s.params, s.final_tokens, train_tokens)
    _choose_axes(plan, base_cfg, batches, probe_s - plan.measure_s)
    return plan


def _batch_choices(base_cfg, device: str, seconds: float, ref: Shape, plan: Plan) -> list[int]:
    """Batch sizes besides the preset's worth probing: half when it keeps nearly all the tokens/s (twice the
    optimizer steps for free, which a short budget needs), double when it brings clearly more tokens/s."""
    batch = base_cfg.train.per_device_train_batch_size
    if batch >= 2:
        half = _fits(_with_shape(base_cfg, ref.n_layer, ref.n_embd, batch // 2), device, seconds)
        if half and half["tokens_per_s"] >= BATCH_CHEAP * ref.tokens_per_s:
            plan.notes.append(
                f"batch {batch // 2} keeps {half['tokens_per_s'] / ref.tokens_per_s:.0%} of batch "
                f"{batch}'s tokens/s: probed too (twice the steps)"
            )
            return [batch // 2]
    double = _fits(_with_shape(base_cfg, ref.n_layer, ref.n_embd, batch * 2), device, seconds)
    if double and double["tokens_per_s"] >= BATCH_GAIN * ref.tokens_per_s:
        plan.notes.append(
            f"batch {batch * 2} gives {double['tokens_per_s'] / ref.tokens_per_s:.2f}x batch "
            f"{batch}'s tokens/s: probed too"
        )
        return [batch * 2]
    return []


def _fill_estimates(plan: Plan, depths: list[int], widths: list[int], base_cfg) -> None:
    """Shapes of the depth x width grid that were not measured get tokens/s from their row and column:
    speed(d, w) ~ speed(base depth, w) x speed(d, base width) / speed(base)."""
    ref = plan.shapes[0]
    by_key = {(s.n_layer, s.n_embd): s for s in plan.shapes}
    for d in depths:
        for w in widths:
            if (d, w) in by_key and by_key[(d, w)].speed:
                continue
            row, col = by_key.get((ref.n_layer, w)), by_key.get((d, ref.n_embd))
            if not (row and col and row.speed and col.speed):
                continue
            shape = by_key.get((d, w)) or Shape(d, w, params=count_params(base_cfg, d, w))
            shape.estimated_tokens_per_s = row.speed * col.speed / ref.speed
            if (d, w) not in by_key:
                plan.shapes.append(shape)
                by_key[(d, w)] = shape


def _choose_axes(plan: Plan, base_cfg, batches: list[int], sweep_s: float) -> None:
    """The probe sweep: three lrs (and the second batch) on the shape the size rule predicts best; without the
    second batch when the probe time cannot give each probe MIN_PROBE_STEPS steps.

    The probes do not compare sizes. A probe of a minute favours the smaller shape, which learns faster early
    on; the final run is 15 times longer, where the larger one catches up. At 20 minutes here the probes picked
    2x192 three times out of four (final eval 1.026, 1.027, 1.030 bpb) over the rule's 2x256 (1.020 the one
    time it was picked), and the tiny preset's 3x256 trained the whole 20 minutes scored 1.023-1.026
    (bench_tune, 2026-11-28). The rule looks at the final run's horizon; the probes answer what only a run can,
    the lr (and batch) for that shape."""
    known = [s for s in plan.shapes if s.speed]
    best = min(known, key=lambda s: s.predicted_loss)
    depths, widths = [best.n_layer], [best.n_embd]
    lrs = [float(f"{plan.base_lr * f:.3g}") for f in LR_FACTORS]
    tokens_per_step = base_cfg.model.seq_len * base_cfg.train.gradient_accumulation_steps
    # the probes train eager: their steps come at the measured speed, not the compiled final run's
    speed = best.speed / plan.compile_speedup
    for batches_o in (batches, batches[:1]):
        trials = len(lrs) * len(batches_o)
        min_trial = MIN_PROBE_STEPS * tokens_per_step * max(batches_o) / speed
        trial_s = (sweep_s - trials * _trial_overhead(base_cfg, speed)) / probe_cost(trials)
        if trial_s >= min_trial:
            break
    plan.depths, plan.widths, plan.lrs, plan.batches = depths, widths, lrs, batches_o
    plan.trial_s = trial_s
    ratio = best.final_tokens / best.params
    plan.notes.insert(
        0,
        f"size: {best.name} ({best.params / 1e6:.2f}M params) is predicted best: "
        f"{best.final_tokens / 1e6:.2f}M tokens in the final run = {ratio:.1f} tokens/param "
        f"at the tokens/s measured here (Chinchilla's law; 20 assumes speed ~ 1/params)",
    )
    if trial_s < min_trial:
        steps = trial_s * speed / (tokens_per_step * max(batches_o))
        if steps < MIN_PROBE_STEPS / 4:  # nothing worth learning from: the rule's shape at the base lr and batch
            plan.depths, plan.widths, plan.lrs, plan.batches, plan.trial_s = [], [], [], [], 0.0
            plan.notes.append(
                f"no time to probe on this machine (a probe would train {max(steps, 0):.0f} steps, "
                f"{MIN_PROBE_STEPS} wanted): the final run takes the predicted best shape at the base "
                f"lr and batch; more --time or --probe-fraction gives probes"
            )
        else:
            plan.notes.append(
                f"probes are short on this machine: {steps:.0f} optimizer steps each ({MIN_PROBE_STEPS} wanted)"
            )


def _trial_overhead(base_cfg, tokens_per_s: float) -> float:
    """Seconds a probe costs beyond its training budget: start-up, evals on a quarter of the eval tokens
    (forward only, about a third of a training step's time per token), the final checkpoint."""
    eval_tokens = probe_eval_tokens(base_cfg)
    return 1.0 + 2 * eval_tokens / (3 * tokens_per_s) + 0.1 * (PROBE_EVALS + 1)


def probe_eval_tokens(base_cfg) -> int:
    """Probes score a quarter of the base's eval tokens (at least 8 windows): a cheap ranking, the same for all."""
    return max(8 * (base_cfg.model.seq_len + 1), base_cfg.eval.tokens // 4)
