"""Optimizers by name, with their parameter groups and a learning-rate multiplier.

Each optimizer is a builder registered under `optim.name`. A builder splits the model's parameters into
groups (weight decay on matrices only, never on norms; embeddings only when asked) and gives every group
its own peak learning rate in `group["initial_lr"]`. The schedule is then a multiplier for all groups:
`set_lr_factor(optimizer, f)` sets `group["lr"] = group["initial_lr"] * f`, so an optimizer that wants
different peaks per group (Muon for matrices, AdamW for embeddings) needs no change to the loop.

Adding an optimizer: write `build_x(model, cfg, device) -> torch.optim.Optimizer`, decorate it with
`@register_optimizer("x")`, add its settings to `OptimConfig` (below) with a comment, and a test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from slovo.errors import need, one_of

if TYPE_CHECKING:
    import torch


@dataclass
class OptimConfig:
    """The optimizer (registered by name below) and its settings."""

    name: str = "adamw"  # one of OPTIMIZERS: adamw, muon
    lr: float = 1e-3  # peak learning rate (with muon: of the AdamW part, i.e. embeddings, output head, norms)
    weight_decay: float = 0.1  # applied to matrices only, never to norms
    decay_embeddings: bool = False  # also decay the embedding table
    beta1: float = 0.9  # AdamW's first-moment (momentum) decay
    beta2: float = 0.95  # AdamW's second-moment decay
    eps: float = 1e-8  # AdamW's denominator term, against division by zero
    grad_clip: float = 1.0  # max global grad norm; 0 = no clipping
    fused: Literal["auto", "true", "false"] = "auto"  # AdamW's fused kernel; auto = on CUDA only
    # muon: orthogonalised momentum for the 2-D weights inside the blocks (the rest uses AdamW above)
    muon_lr: float = 0.02  # peak lr of the hidden matrices (before torch's per-shape adjustment)
    muon_momentum: float = 0.95  # Nesterov momentum
    muon_ns_steps: int = 5  # Newton-Schulz iterations that orthogonalise the update
    # the iteration's coefficients: quintic (torch.optim.Muon's, the same each iteration) or polar_express
    muon_ns_coefficients: Literal["quintic", "polar_express"] = "quintic"
    muon_momentum_start: float = 0.85  # momentum at step 1 when warming up, rising linearly to muon_momentum
    muon_momentum_warmup: int = 0  # optimizer steps of that rise; 0 = no warm-up (modded-nanogpt: 300)
    muon_weight_decay: float = 0.0  # decoupled weight decay of the matrices (lr x wd per step)
    muon_adjust_lr: Literal["original", "match_rms_adamw"] = "original"  # torch.optim.Muon's adjust_lr_fn
    # the Newton-Schulz iteration's dtype; auto: bf16 on CUDA, on a CPU whichever measured faster (slovo/accel.py)
    muon_ns_dtype: Literal["auto", "float32", "bfloat16"] = "auto"

    def __post_init__(self):
        one_of("optim.name", self.name, OPTIMIZERS)
        need(self.lr > 0, f"optim.lr: must be positive, got {self.lr}")
        need(self.weight_decay >= 0, f"optim.weight_decay: must be 0 or more, got {self.weight_decay}")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "optim.beta1 and optim.beta2 must be in [0, 1)")
        need(self.eps > 0, f"optim.eps: must be positive, got {self.eps}")
        need(self.grad_clip >= 0, f"optim.grad_clip: must be 0 (off) or positive, got {self.grad_clip}")
        need(self.muon_lr > 0, f"optim.muon_lr: must be positive, got {self.muon_lr}")
        need(0 <= self.muon_momentum < 1, f"optim.muon_momentum: must be in [0, 1), got {self.muon_momentum}")
        one_of("optim.muon_ns_coefficients", self.muon_ns_coefficients, ("quintic", "polar_express"))
        start = self.muon_momentum_start
        need(0 <= start < 1, f"optim.muon_momentum_start: must be in [0, 1), got {start}")
        warmup = self.muon_momentum_warmup
        need(warmup >= 0, f"optim.muon_momentum_warmup: must be 0 or more, got {warmup}")
        need(1 <= self.muon_ns_steps <= 20, f"optim.muon_ns_steps: must be 1 to 20, got {self.muon_ns_steps}")
        need(self.muon_weight_decay >= 0, f"optim.muon_weight_decay: must be 0 or more, got {self.muon_weight_decay}")


OptimizerBuilder = Callable[["torch.nn.Module", "OptimConfig", str], "torch.optim.Optimizer"]
OPTIMIZERS: dict[str, OptimizerBuilder] = {}


def register_optimizer(name: str) -> Callable[[OptimizerBuilder], OptimizerBuilder]:
    def add(builder: OptimizerBuilder) -> OptimizerBuilder:
        OPTIMIZERS[name] = builder
        return builder

    return add


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig, device: str) -> torch.optim.Optimizer:
    """The optimizer `cfg.name` over `model`'s parameters; every group carries its peak lr as `initial_lr`."""
    optimizer = OPTIMIZERS[cfg.name](model, cfg, device)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return optimizer


def set_lr_factor(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Scale every group's peak lr by the schedule's factor."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor


def split_for_decay(model: torch.nn.Module, decay_embeddings: bool, params: list | None = None) -> tuple[list, list]:
    """(decayed, not decayed) among `params` (default: all the model's): matrices are decayed; vectors (norm gains)
    never; the embedding table on request."""
    embed = model.embed_tokens.weight
    decay, no_decay = [], []
    for p in model.parameters() if params is None else params:  # parameters() yields a tied weight once
        if p.dim() < 2 or (p is embed and not decay_embeddings):
            no_decay.append(p)
        else:
            decay.append(p)
    return decay, no_decay


def _fused(cfg: OptimConfig, device: str) -> bool:
    return cfg.fused == "true" or (cfg.fused == "auto" and device.startswith("cuda"))


@register_optimizer("adamw")
def build_adamw(model: torch.nn.Module, cfg: OptimConfig, device: str) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay; the fused kernel on CUDA."""
    return _adamw(model, None, cfg, device)


def _adamw(model: torch.nn.Module, params: list | None, cfg: OptimConfig, device: str) -> torch.optim.Optimizer:
    """AdamW over `params` (default: all the model's), weight decay on the matrices `split_for_decay` picks."""
    import torch

    decay, no_decay = split_for_decay(model, cfg.decay_embeddings, params)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=_fused(cfg, device))


class OptimizerGroup:
    """Several optimizers stepped as one (Muon for the hidden matrices, AdamW for the rest).

    `param_groups` is the concatenation of the members' groups (the same dicts), so `set_lr_factor`, gradient
    clipping and GradScaler's unscaling see every parameter; the state dict keeps each member's own."""

    def __init__(self, **members: torch.optim.Optimizer):
        self.members = members

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.members.values() for g in opt.param_groups]

    @property
    def state(self) -> dict:
        return {p: s for opt in self.members.values() for p, s in opt.state.items()}

    def step(self, closure=None) -> None:
        for opt in self.members.values():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.members.values():
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.members.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, opt in self.members.items():
            opt.load_state_dict(state[name])


def hidden_matrices(model: torch.nn.Module) -> tuple[list, list]:
    """(the 2-D weights inside the transformer blocks, everything else: embeddings, output head, norms)."""
    inside = {id(p) for p in model.layers.parameters() if p.dim() == 2}
    matrices = [p for p in model.parameters() if id(p) in inside]
    rest = [p for p in model.parameters() if id(p) not in inside]
    return matrices, rest


@register_optimizer("muon")
def build_muon(model: torch.nn.Module, cfg: OptimConfig, device: str) -> OptimizerGroup:
    """Muon (slovo/muon.py: torch.optim.Muon's algorithm with a choice of Newton-Schulz dtype) for the hidden
    matrices at `optim.muon_lr`, AdamW at `optim.lr` for embeddings, the output head and norms, as in
    modded-nanogpt and nanochat. Muon's lr is per-shape adjusted as torch does (`optim.muon_adjust_lr`).
    `optim.muon_ns_dtype=auto` arrives here resolved by training's measurement; unresolved it is bf16 on CUDA
    and float32 elsewhere."""
    import torch

    from slovo.device import resolve_dtype
    from slovo.muon import Muon

    matrices, rest = hidden_matrices(model)
    adamw = _adamw(model, rest, cfg, device)
    muon = Muon(
        matrices,
        lr=cfg.muon_lr,
        weight_decay=cfg.muon_weight_decay,
        momentum=cfg.muon_momentum,
        nesterov=True,
        ns_steps=cfg.muon_ns_steps,
        adjust_lr_fn=cfg.muon_adjust_lr,
        ns_coefficients=cfg.muon_ns_coefficients,
        momentum_start=cfg.muon_momentum_start,
        momentum_warmup=cfg.muon_momentum_warmup,
        ns_dtype=getattr(torch, resolve_dtype(cfg.muon_ns_dtype, device, no_bf16="float32")),
    )
    return OptimizerGroup(muon=muon, adamw=adamw)
