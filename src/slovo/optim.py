"""Optimizers by name, with their parameter groups and a learning-rate multiplier.

Each optimizer is a builder registered under `optim.name`. A builder splits the model's parameters into
groups (weight decay on matrices only, never on norms; embeddings only when asked) and gives every group
its own peak learning rate in `group["initial_lr"]`. The schedule is then a multiplier for all groups:
`set_lr_factor(optimizer, f)` sets `group["lr"] = group["initial_lr"] * f`, so an optimizer that wants
different peaks per group (Muon for matrices, AdamW for embeddings) needs no change to the loop.

Adding an optimizer: write `build_x(model, cfg, device) -> torch.optim.Optimizer`, decorate it with
`@register_optimizer("x")`, add its settings to `OptimConfig` with a comment, and a test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

    from slovo.config import OptimConfig

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


def split_for_decay(model: torch.nn.Module, decay_embeddings: bool) -> tuple[list, list]:
    """(decayed, not decayed): matrices are decayed; vectors (norm gains) never; the embedding table on request."""
    embed = model.embed_tokens.weight
    decay, no_decay = [], []
    for p in model.parameters():  # parameters() yields a tied weight once
        if p.dim() < 2 or (p is embed and not decay_embeddings):
            no_decay.append(p)
        else:
            decay.append(p)
    return decay, no_decay


@register_optimizer("adamw")
def build_adamw(model: torch.nn.Module, cfg: OptimConfig, device: str) -> torch.optim.Optimizer:
    """AdamW with decoupled weight decay; the fused kernel on CUDA."""
    import torch

    decay, no_decay = split_for_decay(model, cfg.decay_embeddings)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.startswith("cuda") else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **extra)
