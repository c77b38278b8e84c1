"""Muon's optional variants (Polar Express coefficients, momentum warm-up) and the zero-initialised residual
projections: each does what its setting says, and off (the default) changes nothing."""

from __future__ import annotations

import pytest
import torch

from slovo.config import ModelConfig
from slovo.errors import SlovoError
from slovo.model import GPT
from slovo.muon import Muon, ns_schedule, orthogonalise, orthogonalise_batched
from slovo.optim import OptimConfig


def _matrix(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("coefficients", ["quintic", "polar_express"])
def test_both_coefficient_sets_bring_every_singular_value_near_one(coefficients):
    update = _matrix(64, 256) * torch.logspace(-2, 0, 64)[:, None]  # singular values spread over 100x
    singular = torch.linalg.svdvals(orthogonalise(update, 5, torch.float32, coefficients))
    assert singular.min() > 0.6 and singular.max() < 1.25


def test_polar_express_uses_a_different_polynomial_at_each_iteration():
    quintic, _ = ns_schedule(5, "quintic")
    polar, margin = ns_schedule(5, "polar_express")
    assert len(set(quintic)) == 1 and len(set(polar)) == 5 and margin > 1
    assert ns_schedule(7, "polar_express")[0][5:] == [polar[-1]] * 2  # past five, the last one repeats


def test_polar_express_batched_matches_one_by_one():
    stack = torch.stack([_matrix(32, 96, seed) for seed in range(3)])
    batched = orthogonalise_batched(stack, 5, torch.float32, "polar_express")
    single = torch.stack([orthogonalise(m, 5, torch.float32, "polar_express") for m in stack])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)


def _first_buffer(**settings) -> torch.Tensor:
    p = torch.nn.Parameter(_matrix(16, 32))
    p.grad = torch.ones_like(p)
    optimizer = Muon([p], lr=0.01, ns_dtype=torch.float32, **settings)
    optimizer.step()
    return optimizer.state[p]["momentum_buffer"]


def test_momentum_warmup_starts_at_its_start_value_and_reaches_the_momentum():
    # the buffer after one step is (1 - momentum) x grad: the momentum in use at step 1
    assert _first_buffer(momentum=0.95).mean().item() == pytest.approx(0.05)
    assert _first_buffer(momentum=0.95, momentum_start=0.85, momentum_warmup=10).mean().item() == pytest.approx(0.15)
    p = torch.nn.Parameter(_matrix(16, 32))
    optimizer = Muon([p], lr=0.01, momentum=0.95, momentum_start=0.85, momentum_warmup=4, ns_dtype=torch.float32)
    used = []  # the momentum of each step, read once it is taken
    for _ in range(6):
        p.grad = torch.ones_like(p)
        optimizer.step()
        used.append(optimizer._momentum(optimizer.param_groups[0], p))
    assert used == pytest.approx([0.85, 0.875, 0.9, 0.925, 0.95, 0.95])


def test_a_checkpointed_muon_resumes_its_warmup_where_it_was():
    def make():
        p = torch.nn.Parameter(_matrix(16, 32))
        return p, Muon([p], lr=0.01, momentum=0.95, momentum_start=0.85, momentum_warmup=10, ns_dtype=torch.float32)

    p, optimizer = make()
    for _ in range(3):
        p.grad = torch.ones_like(p)
        optimizer.step()
    q, resumed = make()
    resumed.load_state_dict(optimizer.state_dict())
    assert resumed._momentum(resumed.param_groups[0], q) == pytest.approx(0.87)  # step 3 of 10


def test_zero_init_residual_starts_the_residual_projections_at_zero_and_nothing_else():
    cfg = dict(vocab_size=64, n_layer=2, n_head=2, n_embd=32, seq_len=16)
    zero, normal = GPT(ModelConfig(**cfg, zero_init_residual=True)), GPT(ModelConfig(**cfg))
    for name, p in zero.named_parameters():
        residual = name.endswith(("o_proj.weight", "down_proj.weight"))
        assert (p.abs().sum() == 0) == residual, name
    assert all(p.abs().sum() > 0 for p in normal.parameters())


@pytest.mark.parametrize(
    "setting, says",
    [
        (dict(muon_ns_coefficients="cubic"), "optim.muon_ns_coefficients"),
        (dict(muon_momentum_start=1.5), "optim.muon_momentum_start"),
        (dict(muon_momentum_warmup=-1), "optim.muon_momentum_warmup"),
    ],
)
def test_bad_muon_variant_settings_are_refused_by_name(setting, says):
    with pytest.raises(SlovoError, match=says):
        OptimConfig(name="muon", **setting)
