"""One optimizer step (`train_step`): forward/backward over the accumulated micro-batches, clip, step. A free
function with keyword-only arguments, so tune's speed probes call it too."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch


@dataclass
class StepResult:
    loss: float  # mean loss over the accumulated micro-batches (this rank)
    grad_norm: float  # global grad norm before clipping
    data_time: float  # seconds spent fetching batches


def train_step(
    *, model, optimizer, loader, accumulation: int, grad_clip: float, autocast, scaler, dist, clock
) -> StepResult:
    """One optimizer step: forward/backward over `accumulation` micro-batches, clip, step, zero the grads."""
    data_time = 0.0
    loss_sum = torch.zeros((), device=loader.device)
    for micro in range(accumulation):
        t = clock.now()
        x, y = loader.next_batch()
        data_time += clock.now() - t
        with dist.no_sync(model, micro == accumulation - 1), autocast or nullcontext():
            _, loss = model(x, y)
            loss = loss / accumulation
        loss_sum += loss.detach()
        (scaler.scale(loss) if scaler else loss).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else float("inf"))
    if scaler is not None:
        scaler.step(optimizer)  # skips the step when the grads overflowed
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(float(loss_sum), float(grad_norm), data_time)  # float() syncs: the step's time is real
