"""The sweep file: wandb's sweep YAML, read and checked before anything trains.

A sweep file is what wandb users already write:

    method: grid                      # grid | random | bayes
    metric: {name: eval/bpb, goal: minimize}
    parameters:
      optim.lr: {values: [1e-3, 3e-3]}                      # categorical (a grid axis)
      schedule.name: {value: wsd}                           # fixed for every run
      optim.weight_decay: {distribution: log_uniform_values, min: 0.01, max: 0.3}
    early_terminate: {type: hyperband, min_iter: 1, eta: 3}
    run_cap: 20

plus slovo's own keys: `preset` (or `config`, a YAML file), `data` (the dataset folder), `budget`
(per-run, `60s` or a mapping of budget.* keys), `seeds` (runs per configuration) and `variants` (named
configurations, each a mapping of dotted keys and optionally its own `preset` or `config`: a categorical
parameter `variant` runs each one, which is how `slovo compare` runs as a sweep). Parameter names are
dotted config keys (`optim.lr`); wandb's nested `parameters:` blocks are flattened to them. Every key,
every listed value and both ends of every range are built into a real `Config` here, so a typo or an
impossible value fails before the first run rather than an hour into the sweep.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slovo import config as slovo_config
from slovo.errors import SlovoError
from slovo.format import budget_text, format_value

METHODS = ("grid", "random", "bayes")
METRICS = ("eval/bpb", "eval/loss", "eval/perplexity")
# wandb keys that only make sense with wandb's agent launching a script; slovo trains its own model.
_WANDB_ONLY = {"program", "command", "project", "entity"}
_TOP_KEYS = {
    "method",
    "metric",
    "parameters",
    "early_terminate",
    "run_cap",
    "name",
    "description",
    "preset",
    "config",
    "data",
    "budget",
    "seeds",
    "variants",
}
_PARAM_KEYS = {"value", "values", "distribution", "min", "max", "q", "parameters"}
# wandb distribution name -> what it becomes here; the rest (normal, inv_log_uniform, ...) are refused.
DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values")
GRID_LIMIT = 4096  # grids up to this many points are checked point by point before the sweep starts
VARIANT = "variant"  # the parameter that picks one of the sweep's `variants`


@dataclass
class ParamSpec:
    """One swept parameter: a dotted config key and the set it is drawn from."""

    name: str
    kind: str  # "categorical" | "int" | "float"
    values: list = field(default_factory=list)  # categorical choices, as written in the YAML
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | int | None = None

    def choices(self) -> list:
        """Categorical choices as Optuna stores them (lists and mappings become JSON text)."""
        return [_encode(v) for v in self.values]

    def decode(self, stored: Any) -> Any:
        """The config value for a stored Optuna parameter value."""
        if self.kind != "categorical":
            return stored
        for v in self.values:
            if _encode(v) == stored:
                return v
        return stored

    def distribution(self):
        """The Optuna distribution this parameter is sampled from."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution(self.choices())
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def grid_values(self) -> list:
        """The points of a grid axis (stored form): the choices, or every step of a quantized range."""
        if self.kind == "categorical":
            return self.choices()
        if self.step is None:
            raise SlovoError(
                f"parameters.{self.name}: a grid needs a list of values (or int_uniform / q_uniform); "
                f"use `values: [...]` or method random/bayes"
            )
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        points = [self.low + i * self.step for i in range(n)]
        return [int(p) for p in points] if self.kind == "int" else [round(p, 12) for p in points]

    def ends(self) -> list:
        """Values to check against the config schema: every choice, or both ends of a range."""
        return list(self.values) if self.kind == "categorical" else [self.low, self.high]


@dataclass
class SweepSpec:
    """A parsed, checked sweep file."""

    path: Path
    name: str
    method: str
    metric: str
    goal: str  # "minimize" | "maximize"
    params: list[ParamSpec]
    fixed: dict[str, Any]  # `value:` parameters and the budget, applied to every run
    preset: str | None
    config_file: Path | None
    data: str
    seeds: int
    run_cap: int | None
    early_terminate: dict | None  # {"min_iter": int, "eta": int}
    target: float | None = None  # wandb's metric.target: no new configuration starts once a run reaches it
    base_seed: int | None = None  # the base config's train.seed: seed i of every config trains base_seed + i
    budget_s: float | None = None  # per-run time budget in seconds, when the runs have one
    budget_text: str = ""  # the runs' budget (`format.budget_text`), e.g. "1m00s" or "200 steps"
    eval_every: int = 10
    grid_size: int = 0  # configurations in the grid (grid method only)
    raw: dict = field(default_factory=dict)
    # name -> {"preset" | "config": ..., "overrides": {dotted: value}}; the parameter `variant` picks one
    variants: dict[str, dict] = field(default_factory=dict)

    def param(self, name: str) -> ParamSpec:
        return next(p for p in self.params if p.name == name)

    def overrides(self, params: dict[str, Any], seed_index: int = 0) -> dict[str, Any]:
        """Dotted overrides for one run: fixed values, the trial's parameters, data and seed."""
        out = dict(self.fixed)
        for name, stored in params.items():
            if name == VARIANT:
                out.update(self.variants[self.param(name).decode(stored)]["overrides"])
            else:
                out[name] = self.param(name).decode(stored)
        out["data.path"] = self.data
        # base_seed is None only while load_sweep reads the base config's own train.seed
        if self.base_seed is not None and (self.seeds > 1 or seed_index):
            out["train.seed"] = self.base_seed + seed_index
        return out

    def build_config(self, params: dict[str, Any], seed_index: int = 0, extra: dict[str, Any] | None = None):
        """The full run config of one trial (raises SlovoError naming the sweep file on a bad value)."""
        overrides = {**self.overrides(params, seed_index), **(extra or {})}
        preset, config_file = self.preset, self.config_file
        if VARIANT in params:
            variant = self.variants[self.param(VARIANT).decode(params[VARIANT])]
            if variant.get("preset") or variant.get("config"):  # its own base replaces the sweep's
                preset, config_file = variant.get("preset"), variant.get("config")
        try:
            cfg = slovo_config.load_config(preset=preset, config_file=config_file, overrides=overrides)
            slovo_config.require_budget(cfg)
        except SlovoError as e:
            shown = ", ".join(f"{k}={format_value(v)}" for k, v in params.items())
            raise SlovoError(f"{self.path}: {e}" + (f" (with {shown})" if shown else "")) from None
        return cfg

    def fingerprint(self) -> str:
        """Hash of what decides the runs; a rerun with a different search space is a different sweep."""
        keys = ("method", "metric", "parameters", "preset", "config", "budget", "seeds", "variants")
        keep = {k: self.raw.get(k) for k in keys}
        text = json.dumps(keep, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, sort_keys=True)


def _field_type(dotted: str) -> Any:
    """The annotated type of a dotted config key (for checking a range against int/float fields)."""
    entry = slovo_config.schema_entry(dotted)
    return entry.type if entry is not None else None


def _number(value: Any, where: str) -> float | int:
    if isinstance(value, str):
        try:
            value = float(value)  # YAML reads 1e-3 (no dot) as a string
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SlovoError(f"{where}: expected a number, got {value!r}")
    return value


def _parse_param(name: str, spec: Any, where: str) -> tuple[ParamSpec | None, Any]:
    """One wandb parameter block -> (ParamSpec, None) when swept or (None, value) when fixed."""
    if not isinstance(spec, dict):
        raise SlovoError(f"{where}: expected a mapping like {{values: [...]}} or {{value: x}}, got {spec!r}")
    unknown = set(spec) - _PARAM_KEYS
    if unknown:
        raise SlovoError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(_PARAM_KEYS))})")
    dist = spec.get("distribution")
    if dist is not None and dist not in DISTRIBUTIONS:
        raise SlovoError(f"{where}.distribution: {dist!r} is not supported; use one of {', '.join(DISTRIBUTIONS)}")
    if "value" in spec or dist == "constant":
        if "value" not in spec:
            raise SlovoError(f"{where}: distribution constant needs `value`")
        return None, spec["value"]
    if "values" in spec or dist == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SlovoError(f"{where}.values: expected a non-empty list, got {values!r}")
        if len({json.dumps(_encode(v)) for v in values}) != len(values):
            raise SlovoError(f"{where}.values: lists a value twice: {values!r}")
        return ParamSpec(name, "categorical", values=list(values)), None
    if "min" not in spec or "max" not in spec:
        raise SlovoError(f"{where}: needs `values: [...]`, `value: x`, or `min` and `max` with a distribution")
    lo, hi = _number(spec["min"], f"{where}.min"), _number(spec["max"], f"{where}.max")
    if dist is None:  # wandb infers it from the bounds' types
        dist = "int_uniform" if isinstance(lo, int) and isinstance(hi, int) else "uniform"
    q = _number(spec["q"], f"{where}.q") if "q" in spec else None
    if q is not None and q <= 0:
        raise SlovoError(f"{where}.q: must be positive, got {q}")
    if dist == "log_uniform":  # wandb: bounds are natural logs of the values
        lo, hi = math.exp(lo), math.exp(hi)
    if lo >= hi:
        raise SlovoError(f"{where}: min ({spec['min']}) must be less than max ({spec['max']})")
    if dist in ("log_uniform", "log_uniform_values") and lo <= 0:
        raise SlovoError(f"{where}: {dist} needs positive values, got min {spec['min']}")
    if dist == "int_uniform":
        if int(lo) != lo or int(hi) != hi or (q is not None and int(q) != q):
            raise SlovoError(f"{where}: int_uniform needs integer min, max and q")
        p = ParamSpec(name, "int", low=int(lo), high=int(hi), step=int(q or 1))
    elif dist == "q_uniform":
        q = q or 1.0
        hi = lo + math.floor((hi - lo) / q + 1e-9) * q  # Optuna wants max - min to be a multiple of q
        p = ParamSpec(name, "float", low=float(lo), high=float(hi), step=float(q))
    else:
        if q is not None:
            raise SlovoError(f"{where}.q: only int_uniform and q_uniform take q")
        p = ParamSpec(name, "float", low=float(lo), high=float(hi), log=dist != "uniform")
    tp = _field_type(name)
    if p.kind == "float" and tp is int:
        raise SlovoError(f"{where}: {name} is an integer; use distribution int_uniform or a list of values")
    if tp not in (int, float):
        raise SlovoError(f"{where}: {name} is not a number; use `values: [...]`")
    return p, None


def _flatten(parameters: Any, prefix: str, where: str) -> dict[str, Any]:
    """wandb allows nested `parameters:` blocks; flatten them to dotted keys."""
    if not isinstance(parameters, dict) or not parameters:
        raise SlovoError(f"{where}: expected a mapping of dotted config keys to value specs")
    out: dict[str, Any] = {}
    for key, spec in parameters.items():
        dotted = f"{prefix}{key}"
        if isinstance(spec, dict) and "parameters" in spec:
            extra = set(spec) - {"parameters"}
            if extra:
                raise SlovoError(f"{where}.{key}: a nested block holds only `parameters`, found {sorted(extra)}")
            out.update(_flatten(spec["parameters"], f"{dotted}.", f"{where}.{key}.parameters"))
        else:
            out[dotted] = spec
    return out


def _budget_overrides(budget: Any, where: str) -> dict[str, Any]:
    if budget is None:
        return {}
    if isinstance(budget, (str, int, float)) and not isinstance(budget, bool):
        slovo_config.parse_duration(budget, where)
        return {"budget.time": str(budget) if isinstance(budget, str) else f"{budget}s"}
    if isinstance(budget, dict):
        known = {"time", "max_steps", "max_tokens"}
        for k in budget:
            if k not in known:
                raise SlovoError(f"{where}.{k}: unknown budget key (known: time, max_steps, max_tokens)")
        return {f"budget.{k}": v for k, v in budget.items()}
    raise SlovoError(f"{where}: expected a duration like 60s or a mapping of time / max_steps / max_tokens")


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SlovoError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _resolve(path_text: str, base: Path) -> Path:
    """A path from the sweep file: as given (relative to the working folder), else next to the sweep file."""
    p = Path(path_text).expanduser()
    if p.is_absolute() or p.exists() or not (base / p).exists():
        return p.resolve()
    return (base / p).resolve()


def load_sweep(path: str | Path, data: str | None = None, name: str | None = None) -> SweepSpec:
    """Read and check a sweep YAML. `data` (the --data flag) replaces the file's `data`."""
    path = Path(path)
    raw = slovo_config.read_yaml(path)
    where = str(path)
    _check_top_keys(raw, where)
    method = raw.get("method", "grid")
    if method not in METHODS:
        raise SlovoError(f"{where}: method: must be one of {', '.join(METHODS)}, got {method!r}")
    metric_name, goal, target = _parse_metric(raw.get("metric") or {}, where)
    preset, config_file, data_dir = _parse_base(raw, data, path)
    fixed = _budget_overrides(raw.get("budget"), f"{where}: budget")
    params, variants = _parse_parameters(raw, fixed, path)
    seeds, run_cap = _parse_counts(raw, params, where)
    spec = SweepSpec(
        path=path,
        name=name or str(raw.get("name") or path.stem),
        method=method,
        metric=metric_name,
        goal=goal,
        params=params,
        fixed=fixed,
        preset=preset,
        config_file=config_file,
        data=str(data_dir),
        seeds=seeds,
        run_cap=run_cap,
        early_terminate=None,
        target=target,
        raw=raw,
        variants=variants,
    )
    base = spec.build_config({VARIANT: next(iter(variants))} if variants else {})
    spec.base_seed, spec.eval_every = base.train.seed, base.eval.every
    spec.budget_s = slovo_config.budget_seconds(base)
    b = base.budget
    limits = {"time_s": spec.budget_s, "max_steps": b.max_steps, "max_tokens": b.max_tokens}
    spec.budget_text = budget_text(limits)
    spec.early_terminate = _parse_early_terminate(raw.get("early_terminate"), base.eval.every, where)
    _fix_eval_subset(spec, base)
    _check_values(spec)
    return spec


def _check_top_keys(raw: dict, where: str) -> None:
    for key in raw:
        if key in _WANDB_ONLY:
            raise SlovoError(f"{where}: `{key}` is for wandb's agent; slovo trains its own model, remove it")
        if key not in _TOP_KEYS:
            raise SlovoError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(_TOP_KEYS))})")


def _parse_metric(metric: Any, where: str) -> tuple[str, str, float | None]:
    """`metric:` -> (name, goal, target)."""
    if isinstance(metric, str):
        metric = {"name": metric}
    if not isinstance(metric, dict):
        raise SlovoError(f"{where}: metric: expected {{name: eval/bpb, goal: minimize}}")
    metric_name, goal = metric.get("name", "eval/bpb"), metric.get("goal", "minimize")
    if metric_name not in METRICS:
        raise SlovoError(f"{where}: metric.name: must be one of {', '.join(METRICS)}, got {metric_name!r}")
    if goal not in ("minimize", "maximize"):
        raise SlovoError(f"{where}: metric.goal: must be minimize or maximize, got {goal!r}")
    if set(metric) - {"name", "goal", "target"}:
        raise SlovoError(f"{where}: metric: unknown key {sorted(set(metric) - {'name', 'goal', 'target'})[0]!r}")
    target = _number(metric["target"], f"{where}: metric.target") if metric.get("target") is not None else None
    return metric_name, goal, target


def _parse_base(raw: dict, data: str | None, path: Path) -> tuple[str | None, Path | None, Path]:
    """The base config every trial starts from (`preset` or `config`, tiny by default) and the dataset folder."""
    where = str(path)
    preset, config_file = raw.get("preset"), raw.get("config")
    if preset and config_file:
        raise SlovoError(f"{where}: give either preset or config, not both")
    if config_file:
        config_file = _resolve(str(config_file), path.parent)
    if not preset and not config_file:
        preset = "tiny"
    data_text = data or raw.get("data")
    if not data_text:
        raise SlovoError(f"{where}: data: missing; give the dataset folder (from `slovo prepare`) or --data DIR")
    data_dir = _resolve(str(data_text), path.parent)
    if not (data_dir / "meta.json").exists():
        raise SlovoError(f"{where}: data: {data_dir} is not a dataset folder (no meta.json); run `slovo prepare`")
    return preset, config_file, data_dir


def _parse_parameters(raw: dict, fixed: dict, path: Path) -> tuple[list[ParamSpec], dict]:
    """The swept parameters (a single `value` joins `fixed`) and the variants; any dotted config key, all levels
    deep (`debug.lr_spike.at`)."""
    where = str(path)
    params: list[ParamSpec] = []
    known = set(slovo_config.known_keys())
    variants = _parse_variants(raw.get("variants"), path.parent, known, f"{where}: variants")
    if variants:
        params.append(ParamSpec(VARIANT, "categorical", values=list(variants)))
    flat = _flatten(raw.get("parameters"), "", f"{where}: parameters") if raw.get("parameters") or not variants else {}
    for dotted, spec in flat.items():
        pwhere = f"{where}: parameters.{dotted}"
        if dotted not in known:
            close = difflib.get_close_matches(dotted, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "parameter names are dotted config keys like optim.lr"
            raise SlovoError(f"{pwhere}: unknown config key ({hint})")
        if dotted in ("data.path", "preset"):
            raise SlovoError(f"{pwhere}: set it with the sweep's top-level `data` / `preset` keys")
        p, value = _parse_param(dotted, spec, pwhere)
        if p is None:
            fixed[dotted] = value
        else:
            params.append(p)
    if not params:
        raise SlovoError(f"{where}: parameters: nothing is swept; give at least one parameter with values or a range")
    return params, variants


def _parse_counts(raw: dict, params: list[ParamSpec], where: str) -> tuple[int, int | None]:
    """`seeds` (runs per configuration) and `run_cap`."""
    seeds = _positive_int(raw.get("seeds", 1), f"{where}: seeds")
    if seeds > 1 and any(p.name == "train.seed" for p in params):
        raise SlovoError(f"{where}: seeds: sweep train.seed or set seeds, not both")
    run_cap = raw.get("run_cap")
    run_cap = None if run_cap is None else _positive_int(run_cap, f"{where}: run_cap")
    if run_cap is not None and run_cap < seeds:
        raise SlovoError(f"{where}: run_cap ({run_cap}) is smaller than seeds ({seeds}): no configuration fits")
    return seeds, run_cap


def _fix_eval_subset(spec: SweepSpec, base) -> None:
    """Every trial's evals during training score the same windows: a size each run would size from its own speed
    (eval.subset_windows 0) is fixed once for the sweep, a quarter of the base config's eval windows as a power of
    two (its standard error about twice the full eval's), so trials of other batch sizes or speeds are pruned and
    compared on the same subset. The sweep file (or a variant) can set eval.subset_windows itself."""
    if base.eval.subset_windows or not base.eval.max_fraction or "eval.subset_windows" in spec.fixed:
        return
    windows = max(1, base.eval.tokens // base.model.seq_len)
    spec.fixed["eval.subset_windows"] = 1 << max(0, (windows // 4).bit_length() - 1)


def _parse_variants(raw: Any, base: Path, known: set[str], where: str) -> dict[str, dict]:
    """`variants: {NAME: {preset: tiny, optim.lr: 0.002}, ...}` -> {NAME: {"preset", "config", "overrides"}}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) < 2:
        raise SlovoError(f"{where}: expected a mapping of two or more names to config overrides")
    out: dict[str, dict] = {}
    for name, body in raw.items():
        body = body or {}
        if not isinstance(body, dict):
            raise SlovoError(f"{where}.{name}: expected a mapping of dotted config keys to values")
        if body.get("preset") and body.get("config"):
            raise SlovoError(f"{where}.{name}: give either preset or config, not both")
        overrides = {k: v for k, v in body.items() if k not in ("preset", "config")}
        for key in overrides:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "keys are dotted config keys like optim.lr"
                raise SlovoError(f"{where}.{name}.{key}: unknown config key ({hint})")
        config = _resolve(str(body["config"]), base) if body.get("config") else None
        out[str(name)] = {"preset": body.get("preset"), "config": config, "overrides": overrides}
    return out


def _parse_early_terminate(et: Any, eval_every: int, where: str) -> dict | None:
    """wandb's hyperband block -> ASHA settings in eval-index units (eval k of `eval.every` per run)."""
    if et is None:
        return None
    if not isinstance(et, dict) or et.get("type") != "hyperband":
        raise SlovoError(f"{where}: early_terminate: only {{type: hyperband, min_iter: N, eta: M}} is supported")
    unknown = set(et) - {"type", "min_iter", "max_iter", "s", "eta", "strict"}
    if unknown:
        raise SlovoError(f"{where}: early_terminate: unknown key {sorted(unknown)[0]!r}")
    if eval_every < 2:
        raise SlovoError(f"{where}: early_terminate needs eval.every of 2 or more (evals per run), got {eval_every}")
    eta = _positive_int(et.get("eta", 3), f"{where}: early_terminate.eta")
    if eta < 2:
        raise SlovoError(f"{where}: early_terminate.eta: must be 2 or more, got {eta}")
    if "min_iter" in et:
        min_iter = _positive_int(et["min_iter"], f"{where}: early_terminate.min_iter")
    elif "max_iter" in et:  # wandb's other spelling: brackets s below max_iter
        max_iter = _positive_int(et["max_iter"], f"{where}: early_terminate.max_iter")
        s = _positive_int(et.get("s", 1), f"{where}: early_terminate.s")
        min_iter = max(1, int(max_iter / eta**s))
    else:
        min_iter = 1
    if min_iter >= eval_every:
        raise SlovoError(
            f"{where}: early_terminate.min_iter ({min_iter}) must be below eval.every ({eval_every}): "
            f"iterations are the {eval_every} evals of each run"
        )
    return {"min_iter": min_iter, "eta": eta}


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every configuration of a grid (stored parameter values), in the order the YAML lists them."""
    axes = [p.grid_values() for p in spec.params]
    return [dict(zip([p.name for p in spec.params], combo)) for combo in itertools.product(*axes)]


def _check_values(spec: SweepSpec) -> None:
    """Build every value into a config so impossible ones fail now, naming the parameter."""
    if spec.method == "grid":
        size = math.prod(len(p.grid_values()) for p in spec.params)
        spec.grid_size = size
        if size <= GRID_LIMIT:
            for point in grid_points(spec):
                spec.build_config(point)
            return
    for p in spec.params:
        for v in p.ends():
            spec.build_config({p.name: _encode(v) if p.kind == "categorical" else v})


def describe(spec: SweepSpec) -> str:
    """One line about the sweep's size, for the terminal."""
    per_run = spec.budget_text
    size = f"{spec.grid_size} configurations" if spec.method == "grid" else f"run_cap {spec.run_cap or '-'}"
    seeds = f" x {spec.seeds} seeds" if spec.seeds > 1 else ""
    pruning = ", hyperband pruning" if spec.early_terminate else ""
    return (
        f"sweep {spec.name}: {spec.method}, {size}{seeds}, {spec.metric} ({spec.goal})"
        f"{', ' + per_run + ' per run' if per_run else ''}{pruning}"
    )


def config_key(params: dict[str, Any]) -> str:
    """A stable text key for a configuration (its parameters), used to group seeds."""
    return json.dumps(params, sort_keys=True, default=str)
