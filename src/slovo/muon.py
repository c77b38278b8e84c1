"""Muon: momentum orthogonalised by a Newton-Schulz iteration, for the 2-D weights inside the blocks.

The same algorithm as `torch.optim.Muon` (Keller Jordan's quintic iteration, Nesterov momentum, decoupled
weight decay, torch's per-shape lr adjustment), with one thing torch fixes and slovo must choose: the dtype the
iteration runs in. torch always runs it in bfloat16, which is fast on GPUs and on CPUs with bf16 matrix
instructions, and several times slower than float32 on a CPU without them (bench/results/muon_ns_cpu.md).
`ns_dtype` picks it; `slovo.accel.choose_muon_ns_dtype` measures which is faster on the machine.

On CUDA the step is batched: the matrices of one shape go through the Newton-Schulz iteration together, one
`baddbmm` chain per shape (a model has a handful of shapes, each repeated once per block), and the momentum and
the update are `torch._foreach_*` calls over the shape's matrices; one-by-one, each matrix costs ~25 small kernel
launches, which left the card idle for much of a small model's step. On the CPU the one-by-one loop stays the
default (its bf16 steps are bitwise torch.optim.Muon's); `batched=True` takes the batched path anywhere, the same
update within float rounding.
"""

from __future__ import annotations

import math

import torch

# the quintic's coefficients and the norm floor, as torch.optim.Muon (from Keller Jordan's Muon post)
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_EPS = 1e-7
# Polar Express (Amsel et al. 2025): a different quintic per iteration, optimal for singular values in
# [0.001, 1] after normalising by 1.02 x the Frobenius norm (a margin for bf16 rounding); as modded-nanogpt uses it
POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
POLAR_EXPRESS_MARGIN = 1.02


def ns_schedule(steps: int, coefficients: str) -> tuple[list[tuple[float, float, float]], float]:
    """(the (a, b, c) of each iteration, the margin on the norm) for `coefficients`: quintic or polar_express
    (whose last pair repeats past its five iterations)."""
    if coefficients == "polar_express":
        return [POLAR_EXPRESS[min(i, len(POLAR_EXPRESS) - 1)] for i in range(steps)], POLAR_EXPRESS_MARGIN
    return [NS_COEFFICIENTS] * steps, 1.0


def orthogonalise(update: torch.Tensor, steps: int, dtype: torch.dtype, coefficients: str = "quintic") -> torch.Tensor:
    """Newton-Schulz: something close to U V^T of `update` = U S V^T, computed in `dtype`."""
    schedule, margin = ns_schedule(steps, coefficients)
    x = update.to(dtype)
    tall = update.size(0) > update.size(1)
    if tall:  # iterate on the wide orientation: the Gram matrix is the smaller one
        x = x.T
    x = x / (x.norm() * margin).clamp(min=NS_EPS)  # spectral norm at most 1
    for a, b, c in schedule:
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def orthogonalise_batched(
    updates: torch.Tensor, steps: int, dtype: torch.dtype, coefficients: str = "quintic"
) -> torch.Tensor:
    """`orthogonalise` of every matrix of a (batch, rows, cols) stack at once: the same iteration as batched
    matrix products, each matrix normalised by its own norm."""
    schedule, margin = ns_schedule(steps, coefficients)
    x = updates.to(dtype)
    tall = updates.size(-2) > updates.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) * margin).clamp(min=NS_EPS)
    for a, b, c in schedule:
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


def adjusted_lr(lr: float, adjust_lr_fn: str, shape: torch.Size) -> float:
    """torch.optim.Muon's per-shape lr: 'original' scales by sqrt(max(1, rows/cols)), 'match_rms_adamw' by
    0.2 sqrt(max(rows, cols))."""
    rows, cols = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr * math.sqrt(max(1, rows / cols))


class Muon(torch.optim.Optimizer):
    """Muon over 2-D parameters; `ns_dtype` is the Newton-Schulz iteration's dtype (torch's is bfloat16)."""

    def __init__(
        self,
        params,
        lr: float = 0.02,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr_fn: str = "original",
        ns_dtype: torch.dtype = torch.bfloat16,
        batched: bool | None = None,
        ns_coefficients: str = "quintic",
        momentum_start: float = 0.85,
        momentum_warmup: int = 0,
    ):
        defaults = dict(
            lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn, ns_coefficients=ns_coefficients,
            momentum_start=momentum_start, momentum_warmup=momentum_warmup,
        )  # fmt: skip
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype  # not in the groups: a machine's choice, not part of the saved state
        self.batched = batched  # None: batched on CUDA, one by one elsewhere
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon takes 2-D parameters only, got one of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p.grad)
                self.state[p]["step"] = self.state[p].get("step", 0) + 1  # absent in checkpoints before the warm-up
            if self.batched or (self.batched is None and params[0].is_cuda):
                for same_shape in _by_shape(params):
                    self._step_batched(group, same_shape)
            else:
                for p in params:
                    self._step_one(group, p)

    def _momentum(self, group: dict, p: torch.Tensor) -> float:
        """The group's momentum at this parameter's step: from momentum_start to momentum, linearly over the
        first momentum_warmup steps (modded-nanogpt's 0.85 -> 0.95)."""
        end, warmup = group["momentum"], group.get("momentum_warmup", 0)  # absent in older checkpoints' groups
        if warmup <= 0:
            return end
        start = group["momentum_start"]
        return start + (end - start) * min(1.0, (self.state[p]["step"] - 1) / warmup)

    def _step_one(self, group: dict, p: torch.Tensor) -> None:
        lr, momentum = group["lr"], self._momentum(group, p)
        buf = self.state[p]["momentum_buffer"]
        buf.lerp_(p.grad, 1 - momentum)
        update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
        update = orthogonalise(update, group["ns_steps"], self.ns_dtype, group.get("ns_coefficients", "quintic"))
        p.mul_(1 - lr * group["weight_decay"])
        p.add_(update, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], p.shape))

    def _step_batched(self, group: dict, params: list[torch.Tensor]) -> None:
        """`_step_one` for matrices of one shape, dtype and device, together."""
        lr, momentum = group["lr"], self._momentum(group, params[0])
        grads = [p.grad for p in params]
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_lerp_(bufs, grads, 1 - momentum)
        updates = torch._foreach_lerp(grads, bufs, momentum) if group["nesterov"] else bufs
        ortho = orthogonalise_batched(
            torch.stack(updates), group["ns_steps"], self.ns_dtype, group.get("ns_coefficients", "quintic")
        )
        torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        # in the parameters' dtype first, as add_ promotes a one-by-one update before scaling it
        steps = list(ortho.to(params[0].dtype).unbind(0))
        torch._foreach_add_(params, steps, alpha=-adjusted_lr(lr, group["adjust_lr_fn"], params[0].shape))


def _by_shape(params: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """The parameters grouped by shape, dtype and device (what one stacked Newton-Schulz can take), in order."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        groups.setdefault((tuple(p.shape), p.dtype, p.device), []).append(p)
    return list(groups.values())
