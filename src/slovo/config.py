"""One typed config tree for a training run.

The schema lives here and nowhere else: each section is a dataclass whose fields carry a comment
saying what they mean. A run config is a preset YAML (``configs/<name>.yaml``) or a user YAML,
plus dotted overrides (``--set optim.lr=1e-3``), validated field by field with errors that name
the offending key, and saved resolved into the run folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from slovo.errors import SlovoError, need, one_of
from slovo.optim import OptimConfig
from slovo.schedules import ScheduleConfig

PRESETS_DIR = Path(__file__).parent / "configs"
DEFAULT_PROMPT = "В начале было слово"


@dataclass
class ModelConfig:
    """Shape of the decoder-only transformer (maps one-to-one onto transformers' Llama)."""

    vocab_size: int = 0  # 0 = take it from the dataset's tokenizer
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads (query heads)
    n_kv_head: int = 0  # key/value heads for grouped-query attention; 0 = same as n_head
    n_embd: int = 256  # residual stream width
    intermediate_size: int = 0  # SwiGLU hidden width; 0 = 8/3 * n_embd rounded up to a multiple of 64
    seq_len: int = 256  # context length in tokens
    rope_theta: float = 10000.0  # rotary embedding base
    norm_eps: float = 1e-5  # RMSNorm epsilon
    tie_embeddings: bool = True  # share input embedding and output head weights
    init_std: float = 0.02  # std of the normal init; residual projections get init_std / sqrt(2 * n_layer)
    zero_init_residual: bool = False  # start the residual projections (o_proj, down_proj) at zero, as modded-nanogpt

    def __post_init__(self):
        for name in ("n_layer", "n_head", "n_embd", "seq_len"):
            need(getattr(self, name) > 0, f"model.{name}: must be positive, got {getattr(self, name)}")
        need(
            self.vocab_size >= 0, f"model.vocab_size: must be positive (or 0 = from the dataset), got {self.vocab_size}"
        )
        need(
            self.n_embd % self.n_head == 0,
            f"model.n_embd ({self.n_embd}) must be divisible by model.n_head ({self.n_head})",
        )
        head = self.n_embd // self.n_head
        need(head % 2 == 0, f"model: head size n_embd/n_head = {head} must be even")
        kv = self.n_kv_head or self.n_head
        need(kv > 0 and self.n_head % kv == 0, f"model.n_kv_head ({kv}) must divide model.n_head ({self.n_head})")
        need(
            self.intermediate_size >= 0, f"model.intermediate_size: must be positive or 0, got {self.intermediate_size}"
        )
        need(self.init_std > 0, f"model.init_std: must be positive, got {self.init_std}")


@dataclass
class TrainConfig:
    """Batching, device and reproducibility."""

    per_device_train_batch_size: int = 8  # sequences per micro-batch (HF Trainer's name)
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    seed: int = 1337  # seeds the weights, the data order and sampling
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # auto: bf16 autocast on CUDA; on a CPU, bf16 only where it has the hardware and measured faster (accel.py)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    compile: Literal["auto", "true", "false"] = "auto"  # torch.compile; auto: when the budget wins back its time
    num_threads: int = 0  # CPU threads for torch; 0 = leave torch's default
    log_every: int = 10  # optimizer steps between train/loss records in metrics.jsonl
    log_every_seconds: float = 10.0  # ... or training seconds, whichever comes first (slow machines); 0 = steps only

    def __post_init__(self):
        need(
            self.per_device_train_batch_size > 0,
            f"train.per_device_train_batch_size: must be positive, got {self.per_device_train_batch_size}",
        )
        need(
            self.gradient_accumulation_steps > 0,
            f"train.gradient_accumulation_steps: must be positive, got {self.gradient_accumulation_steps}",
        )
        need(self.num_threads >= 0, f"train.num_threads: must be 0 or more, got {self.num_threads}")
        need(self.log_every > 0, f"train.log_every: must be positive, got {self.log_every}")
        need(self.log_every_seconds >= 0, f"train.log_every_seconds: must be 0 or more, got {self.log_every_seconds}")


@dataclass
class BudgetConfig:
    """When to stop. The first limit reached stops the run; at least one must be set."""

    time: str | None = None  # training time, e.g. "300s", "30m", "1h30m"; eval/checkpoint time is not counted
    max_steps: int = 0  # optimizer steps; 0 = no limit
    max_tokens: int = 0  # training tokens; 0 = no limit

    def __post_init__(self):
        if self.time is not None:
            parse_duration(self.time, "budget.time")
        need(self.max_steps >= 0, f"budget.max_steps: must not be negative, got {self.max_steps}")
        need(self.max_tokens >= 0, f"budget.max_tokens: must not be negative, got {self.max_tokens}")


@dataclass
class EvalConfig:
    """Held-out evaluation."""

    every: int = 10  # evaluations per run, spread evenly over progress (plus one at the end)
    every_seconds: float = 0.0  # if set: evaluate every this many training seconds instead of `every` per run
    # validation tokens scored: windows spread evenly over the whole val split, the same for every run of a
    # dataset and context length; more than the split holds = all of it. 65536 (256 windows of 256 tokens) puts
    # ruslit's tiny-model bpb within ~0.002 (other strided sets) to 0.008 (random windows) of the whole split's,
    # and two runs' difference within ~0.0015 (bench/eval_spread.py)
    tokens: int = 65536
    batch_size: int = 0  # sequences per eval batch; 0 = per_device_train_batch_size
    # evals during training score a fixed, evenly spread subset of the windows, sized at the first eval from its
    # measured speed so that all evals (the final full one included) take about this fraction of training time;
    # the final eval scores every window. 0 = every eval scores every window
    max_fraction: float = 0.1
    # windows each eval during training scores, fixed: runs (a sweep's trials) compared on their in-training evals
    # score the same subset whatever their speed; 0 = sized from the measured speed by max_fraction as above
    subset_windows: int = 0
    # minimal-pair suites scored at every eval (slovo.suites.SUITES: rublimp, rublimp:FOLDER), recorded as
    # eval/<suite>_acc (total log-prob criterion, mean over phenomena) and eval/<suite>_acc_se
    suites: list[str] = field(default_factory=list)
    # pairs per phenomenon the evals during training score: a fixed stratified subset, the same for every run
    # (20 x 45 RuBLiMP phenomena = 900 pairs, about 36k tokens)
    suite_pairs: int = 20
    # pairs per phenomenon the final eval scores; 0 = the whole suite (45,000 pairs, 1.8M tokens: minutes of a CPU,
    # more than a 5-minute run's eval share). 100 = 4,500 pairs, a 95% interval of about +-1.4 points
    suite_final_pairs: int = 100
    # more eval sets {NAME: SOURCE}: any text source `slovo prepare` reads, tokenised with the run's tokenizer,
    # eval.tokens of it scored at every eval as eval/NAME/bpb and eval/NAME/loss
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        from slovo.suites import split_suite_spec

        for i, spec in enumerate(self.suites):
            split_suite_spec(spec, where=f"eval.suites[{i}]")
        need(self.suite_pairs > 0, f"eval.suite_pairs: must be positive, got {self.suite_pairs}")
        need(
            self.suite_final_pairs >= 0,
            f"eval.suite_final_pairs: must be 0 (all) or more, got {self.suite_final_pairs}",
        )
        for name, source in self.extra.items():
            need(
                re.fullmatch(r"[A-Za-z0-9_.-]+", name) is not None,
                f"eval.extra: name {name!r} must be letters, digits, '_', '-' or '.' (it becomes eval/NAME/bpb)",
            )
            need(bool(source.strip()), f"eval.extra.{name}: needs a text source (a file, folder or hf:// name)")
        need(self.every >= 0, f"eval.every: must be 0 or more, got {self.every}")
        need(self.every_seconds >= 0, f"eval.every_seconds: must be 0 or more, got {self.every_seconds}")
        need(self.tokens > 0, f"eval.tokens: must be positive, got {self.tokens}")
        need(self.batch_size >= 0, f"eval.batch_size: must be 0 or more, got {self.batch_size}")
        need(0 <= self.max_fraction < 1, f"eval.max_fraction: must be at least 0 and below 1, got {self.max_fraction}")
        need(self.subset_windows >= 0, f"eval.subset_windows: must be 0 or more, got {self.subset_windows}")


@dataclass
class CheckpointConfig:
    """Checkpoints: periodic ones for resume, and always one at the end."""

    every_seconds: float = 600.0  # training seconds between periodic checkpoints; 0 = only at the end
    every_steps: int = 0  # optimizer steps between periodic checkpoints; 0 = by time only
    keep_last: int = 1  # periodic checkpoints to keep besides the newest

    def __post_init__(self):
        need(self.every_seconds >= 0, "checkpoint.every_seconds: must be 0 or more")
        need(self.keep_last >= 0, "checkpoint.keep_last: must be 0 or more")
        need(self.every_steps >= 0, "checkpoint.every_steps: must be 0 or more")


@dataclass
class GuardConfig:
    """The divergence guard: on a non-finite loss or grad norm, or a loss spike, go back to the last good state
    (an in-memory snapshot), lower the peak lr, skip the batches that broke it and go on (`slovo/train/guard.py`)."""

    enabled: bool = True  # false: a divergence ends the run `failed` at once (a spike too)
    lr_factor: float = 0.5  # each rollback multiplies the peak lr (every optimizer group's) by this
    max_rollbacks: int = 3  # the divergence after this many rollbacks ends the run `failed`
    # a step's loss above spike_factor x the median of the last spike_window losses is a spike; 0 = no spike check
    spike_factor: float = 2.0
    spike_window: int = 20  # steps of loss history the median is taken over; the check starts at the 5th step
    # steps between in-memory snapshots (model, optimizer, scaler, RNG; a copy on the same device). Two are kept and
    # a rollback takes the older, at least snapshot_every + 1 steps back: damage that took a few steps to show as a
    # spike is not restored
    snapshot_every: int = 5

    def __post_init__(self):
        need(0 < self.lr_factor <= 1, f"guard.lr_factor: must be in (0, 1], got {self.lr_factor}")
        need(self.max_rollbacks >= 0, f"guard.max_rollbacks: must be 0 or more, got {self.max_rollbacks}")
        need(
            self.spike_factor == 0 or self.spike_factor > 1,
            f"guard.spike_factor: must be above 1 (or 0 = no spike check), got {self.spike_factor}",
        )
        need(self.spike_window >= 2, f"guard.spike_window: must be 2 or more, got {self.spike_window}")
        need(self.snapshot_every > 0, f"guard.snapshot_every: must be positive, got {self.snapshot_every}")


@dataclass
class LrSpikeConfig:
    """A deliberate lr spike, to see the divergence guard work: fires once."""

    at: float | None = None  # progress (0..1) at which it fires; null = never
    factor: float = 100.0  # the lr is multiplied by this ...
    steps: int = 3  # ... for this many optimizer steps

    def __post_init__(self):
        need(self.at is None or 0 <= self.at < 1, f"debug.lr_spike.at: must be in [0, 1) or null, got {self.at}")
        need(self.factor > 0, f"debug.lr_spike.factor: must be positive, got {self.factor}")
        need(self.steps > 0, f"debug.lr_spike.steps: must be positive, got {self.steps}")


@dataclass
class DebugConfig:
    """Test hooks that break a run on purpose, so its fault handling can be shown from the command line."""

    lr_spike: LrSpikeConfig = field(default_factory=LrSpikeConfig)


@dataclass
class SampleConfig:
    """Samples written at every eval: runs are judged by their text as well as by their loss."""

    prompts: list[str] = field(default_factory=lambda: [DEFAULT_PROMPT])  # texts each sample continues
    max_new_tokens: int = 64  # tokens per sample
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 50  # sample among the k likeliest tokens; 0 = all
    top_p: float = 1.0  # nucleus sampling: the likeliest tokens covering this probability; 1 = all
    repetition_penalty: float = 1.0  # >1 makes tokens already in the text less likely
    num_samples: int = 1  # continuations per prompt
    seed: int = 42  # fixed so samples of different evals and runs are comparable
    enabled: bool = True  # false: no samples at evals

    def __post_init__(self):
        check_sampling(
            self.temperature,
            self.top_k,
            self.top_p,
            self.repetition_penalty,
            self.max_new_tokens,
            self.num_samples,
            prefix="sample.",
        )


def check_sampling(
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    max_new_tokens: int = 64,
    num_samples: int = 1,
    prefix: str = "",
    names: dict[str, str] | None = None,
) -> None:
    """The bounds of the sampling settings, for the `sample` section and `slovo generate` alike: a SlovoError
    naming the first one out of range (`names[setting]` when given, e.g. a command-line flag; else `prefix` + its
    name)."""

    def n(setting: str) -> str:
        return (names or {}).get(setting, prefix + setting)

    need(temperature >= 0, f"{n('temperature')}: must be 0 (greedy) or more, got {temperature}")
    need(top_k >= 0, f"{n('top_k')}: must be 0 (off) or more, got {top_k}")
    need(0 < top_p <= 1, f"{n('top_p')}: must be in (0, 1], got {top_p}")
    need(repetition_penalty > 0, f"{n('repetition_penalty')}: must be positive (1 = off), got {repetition_penalty}")
    need(max_new_tokens > 0, f"{n('max_new_tokens')}: must be positive, got {max_new_tokens}")
    need(num_samples > 0, f"{n('num_samples')}: must be positive, got {num_samples}")


@dataclass
class TrackingConfig:
    """Where metrics go besides the run folder's own metrics.jsonl."""

    report_to: list[str] = field(default_factory=list)  # any of slovo.tracking.SINKS: wandb, tensorboard, trackio
    wandb_mode: Literal["offline", "online"] = "offline"  # offline: `wandb sync` uploads it later
    project: str = "slovo"  # wandb / trackio project name
    report: bool = True  # write RUN_DIR/report.html (curves, samples) when the run ends

    def __post_init__(self):
        from slovo.tracking import NO_SINK, SINKS

        for sink in self.report_to:
            need(
                sink in SINKS or sink in NO_SINK,
                f"tracking.report_to: unknown tracker {sink!r}; choose from {', '.join(SINKS)}",
            )


@dataclass
class DistributedConfig:
    """Several processes under torchrun (`torchrun --nproc_per_node N -m slovo train ...`); ignored in one process."""

    # ddp: every rank holds the whole model and optimizer, gradients are averaged (fastest while it fits);
    # fsdp: FSDP2 shards weights, gradients and optimizer state over the ranks (for a model whose optimizer state
    # does not fit one device); checkpoints then hold the shards too, and resume on any number of ranks
    strategy: Literal["ddp", "fsdp"] = "ddp"

    def __post_init__(self):
        one_of("distributed.strategy", self.strategy, ("ddp", "fsdp"))  # slovo.distributed.STRATEGIES (no torch here)


@dataclass
class DataConfig:
    """The dataset folder written by `slovo prepare`."""

    path: str = ""  # the folder (train --data sets it)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    data: DataConfig = field(default_factory=DataConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    preset: str = ""  # the preset this config started from, for tables and reports


# ---------------------------------------------------------------------------------------------
# durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s|ms)?")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}


def parse_duration(text: str | float | int, what: str = "duration") -> float:
    """'30m' -> 1800.0, '1h30m' -> 5400.0, '300s' / '300' / 300 -> 300.0. Negative or empty is an error."""
    if isinstance(text, bool):
        raise SlovoError(f"{what}: expected a duration like 300s, 30m or 1h, got {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        s = str(text).strip().lower().replace(" ", "")
        if s.startswith("-"):
            raise SlovoError(f"{what}: must not be negative, got {text!r}")
        pos, seconds = 0, 0.0
        while pos < len(s):
            m = _DURATION_PART.match(s, pos)
            if not m or m.end() == pos:
                raise SlovoError(f"{what}: expected a duration like 300s, 30m or 1h30m, got {text!r}")
            seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            pos = m.end()
        if not s:
            raise SlovoError(f"{what}: expected a duration like 300s, 30m or 1h, got an empty value")
    if seconds < 0:
        raise SlovoError(f"{what}: must not be negative, got {text!r}")
    if seconds == 0:
        raise SlovoError(f"{what}: must be more than zero, got {text!r}")
    return seconds


# ---------------------------------------------------------------------------------------------
# building and validating a config from plain data


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(typing.get_args(tp)[1])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}.get(
        tp, str(tp)
    )


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotated type `tp`, converting only where lossless."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, bool) and "true" in choices:  # yaml turns `true` into a bool
            value = "true" if value else "false"
        if value not in choices:
            raise SlovoError(f"{key}: must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except SlovoError as e:
                errors.append(e)
        raise SlovoError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # a single value where a list is expected: `--set sample.prompts=hi`
        if not isinstance(value, list):
            raise SlovoError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise SlovoError(f"{key}: expected {_type_name(tp)}, e.g. {{wiki: /data/wiki.jsonl}}; got {value!r}")
        return {_coerce(k, key_tp, key): _coerce(v, value_tp, f"{key}.{k}") for k, v in value.items()}
    return _coerce_scalar(value, tp, key)


def _coerce_scalar(value: Any, tp: Any, key: str) -> Any:
    """`_coerce` for bool, int, float and str."""
    if tp is bool:
        if not isinstance(value, bool):
            raise SlovoError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):
            try:
                value = int(float(value)) if float(value).is_integer() else value
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int):
            raise SlovoError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)  # yaml reads "1e-3" as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SlovoError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
            raise SlovoError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {tp} for {key}")


def _unknown_key(key: str, choices: list[str]) -> SlovoError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(choices))})"
    return SlovoError(f"unknown config key {key!r}{hint}")


def _build(cls: type, data: dict, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise SlovoError(f"{prefix or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in fields:
            raise _unknown_key(path, list(fields))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{path}.")
        else:
            kwargs[key] = _coerce(value, tp, path)
    return cls(**kwargs)


def from_dict(data: dict) -> Config:
    """Build a Config from nested plain data (YAML), rejecting unknown keys, wrong types and bad values
    (each section checks its own values in `__post_init__`, beside the fields)."""
    return _build(Config, data or {}, "")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """'optim.lr=1e-3' -> ('optim.lr', 0.001). Values are read as YAML scalars/lists."""
    if "=" not in text:
        raise SlovoError(f"--set {text!r}: expected section.key=value, e.g. optim.lr=1e-3")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def apply_overrides(data: dict, overrides: dict[str, Any] | list[str]) -> dict:
    """Apply dotted overrides to nested plain data; unknown paths are rejected here, by name."""
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    out = _merge({}, data)
    entries = _schema_map()
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for i, part in enumerate(parts):
            key = ".".join(parts[: i + 1])
            entry = entries.get(key)
            if entry is None:
                raise _unknown_key(key, _children(".".join(parts[:i])))
            if i == len(parts) - 1:
                if entry.section:
                    raise SlovoError(f"{dotted}: is a section; set one of its keys, e.g. {dotted}.<key>=...")
                node[part] = value
            elif typing.get_origin(entry.type) is dict and i == len(parts) - 2:  # eval.extra.wiki=PATH: one entry
                entries_here = node.setdefault(part, {})
                if not isinstance(entries_here, dict):
                    raise SlovoError(f"{key}: expected a mapping")
                node[part] = {**entries_here, parts[-1]: value}
                break
            else:
                if not entry.section:
                    raise SlovoError(f"{key}: is a value, not a section")
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise SlovoError(f"{key}: expected a mapping")
    return out


@dataclass(frozen=True)
class SchemaEntry:
    """One key of the config tree: `optim.lr` (a value) or `debug.lr_spike` (a section, with keys below it)."""

    key: str
    type: Any
    section: bool
    owner: type  # the dataclass it is a field of


def schema(cls: type | None = None, prefix: str = "") -> Iterator[SchemaEntry]:
    """Every key of the config tree, all levels deep, sections before their keys: the one walk over the schema
    (overrides, `known_keys`, `slovo config keys`, sweeps and tune use it)."""
    cls = cls or Config
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], prefix + f.name
        section = dataclasses.is_dataclass(tp)
        yield SchemaEntry(key, tp, section, cls)
        if section:
            yield from schema(tp, f"{key}.")


@functools.cache
def _schema_map() -> dict[str, SchemaEntry]:
    return {e.key: e for e in schema()}


def schema_entry(key: str) -> SchemaEntry | None:
    """The schema's entry for a dotted key, or None when there is no such key."""
    return _schema_map().get(key)


def _children(section: str) -> list[str]:
    """The names directly under `section` ('' for the top level)."""
    prefix = f"{section}." if section else ""
    return [k[len(prefix) :] for k in _schema_map() if k.startswith(prefix) and "." not in k[len(prefix) :]]


def known_keys() -> list[str]:
    """Every settable dotted key of the schema, all levels deep, e.g. 'optim.lr', 'debug.lr_spike.at'."""
    return [e.key for e in schema() if not e.section]


def default_of(key: str) -> Any:
    """The default value of a dotted key (`Config()`'s)."""
    value: Any = Config()
    for part in key.split("."):
        value = getattr(value, part)
    return value


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise SlovoError(f"{p}: config file not found")
    if p.is_dir():
        raise SlovoError(f"{p}: is a folder, expected a YAML file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SlovoError(f"{p}: not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise SlovoError(f"{p}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SlovoError(f"{p}: expected a mapping of config sections at the top level")
    return data


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.exists():
        raise SlovoError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    return path


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Preset or YAML file, then dotted overrides, then validation."""
    if preset and config_file:
        raise SlovoError("give either --preset or --config, not both")
    data: dict = {}
    if config_file:
        data = read_yaml(config_file)
    elif preset:
        data = read_yaml(preset_path(preset))
        data.setdefault("preset", preset)
    data = apply_overrides(data, overrides or {})
    return from_dict(data)


def save_config(cfg: Config, path: str | Path) -> None:
    from slovo.utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))


def budget_seconds(cfg: Config) -> float | None:
    return parse_duration(cfg.budget.time, "budget.time") if cfg.budget.time is not None else None


def require_budget(cfg: Config) -> None:
    if cfg.budget.time is None and not cfg.budget.max_steps and not cfg.budget.max_tokens:
        raise SlovoError("no budget: give --time (e.g. 30m), --max-steps or --max-tokens")
