"""Lean memory mode: same results as plain mode, less memory, and invariance kept.

Memory figures are bytes of live tensor storages (``lensnets.memory``), deterministic for a
given model and batch; they are behaviour (what a GPU must hold), not timing.
"""
from __future__ import annotations

import copy

import pytest
import torch

from lensnets import GROUPS, ModelConfig, build_model, set_memory_mode
from lensnets.memory import estimate_train_memory, measure_train_step

from test_lensnets_invariance import SIZE, exact_transforms, small_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _grads_and_stats(model, x, y):
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    stats = [b.clone() for b in model.buffers() if b.is_floating_point()]
    return grads, stats


@pytest.mark.parametrize("group", ["trivial", "C4", "C8", "D1", "D4", "C16", "SO2", "O2"])
def test_lean_mode_gives_the_plain_gradients_and_running_statistics(group):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=group, width=0.25, input_size=SIZE)).train()
    lean = set_memory_mode(copy.deepcopy(model), "lean")
    x, y = torch.randn(6, 1, SIZE, SIZE), torch.randint(0, 3, (6,))
    plain_grads, plain_stats = _grads_and_stats(model, x, y)
    lean_grads, lean_stats = _grads_and_stats(lean, x, y)
    for a, b in zip(plain_grads, lean_grads):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max().clamp_min(1e-12), group
    for a, b in zip(plain_stats, lean_stats):   # running mean/var updated once per step, not twice
        assert torch.equal(a, b), group


def test_lean_mode_with_momentum_none_keeps_a_cumulative_average():
    torch.manual_seed(1)
    model = build_model(ModelConfig(name="C4", width=0.25, input_size=SIZE)).train()
    lean = set_memory_mode(copy.deepcopy(model), "lean")
    for m in (model, lean):
        for norm in m.modules():
            if isinstance(norm, torch.nn.modules.batchnorm._BatchNorm):
                norm.momentum = None
    for step in range(3):
        x, y = torch.randn(4, 1, SIZE, SIZE), torch.randint(0, 3, (4,))
        _, plain_stats = _grads_and_stats(model, x, y)
        _, lean_stats = _grads_and_stats(lean, x, y)
    for a, b in zip(plain_stats, lean_stats):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("group", [g for g in GROUPS if g != "trivial"])
def test_lean_training_forward_keeps_exact_invariance(group):
    model = set_memory_mode(small_model(group), "lean").train()   # train mode, gradients on:
    x = torch.randn(4, 1, SIZE, SIZE)                              # the checkpointed path
    reference = model(x)
    assert reference.requires_grad
    for name, transform in exact_transforms(group).items():
        diff = (model(transform(x)) - reference).abs().max().item()
        assert diff <= 1e-4, (group, name, diff)


@pytest.mark.parametrize("mode", ["plain", "lean"])
def test_fake_tensor_step_counts_the_bytes_of_a_real_step(mode):
    model = build_model(ModelConfig(name="D4", width=0.25, input_size=SIZE))
    fake = measure_train_step(model, 3, memory_mode=mode, fake=True)
    real = measure_train_step(model, 3, memory_mode=mode, fake=False)
    assert fake == real
    assert fake.grads == fake.params                 # AdamW: two moments and a step count per tensor
    assert 2 * fake.params <= fake.optimizer <= 2 * fake.params + 8 * len(list(model.parameters()))


def test_estimate_is_close_to_linear_in_the_batch():
    model = build_model(ModelConfig(name="C4", width=0.25, input_size=SIZE))
    estimate = estimate_train_memory(model, memory_mode="lean", batches=(1, 16))
    for batch in (4, 7, 12):
        measured = measure_train_step(model, batch, memory_mode="lean").peak
        assert abs(estimate.peak(batch) - measured) <= 0.15 * measured, batch   # plans check it
    assert estimate.largest_batch(estimate.peak(5)) == 5
    assert estimate.largest_batch(estimate.fixed) == 0


@pytest.mark.slow
@pytest.mark.parametrize("precision", [None, torch.bfloat16])
def test_lean_mode_halves_the_seed_networks_activation_memory(precision):
    """The seed's C8 network (width 1) at 129 px: lean activations <= 1/2 of plain."""
    model = build_model(ModelConfig(name="C8", width=1.0, input_size=129))
    plain = measure_train_step(model, 4, memory_mode="plain", autocast_dtype=precision)
    lean = measure_train_step(model, 4, memory_mode="lean", autocast_dtype=precision)
    assert lean.activations <= 0.5 * plain.activations, (lean.activations, plain.activations)
    assert (lean.params, lean.grads, lean.optimizer) == (plain.params, plain.grads, plain.optimizer)


def test_lean_mode_in_channels_last_gives_the_plain_gradients():
    torch.manual_seed(2)
    model = build_model(ModelConfig(name="D4", width=0.25, input_size=SIZE)).train()
    lean = set_memory_mode(copy.deepcopy(model), "lean").to(memory_format=torch.channels_last)
    x, y = torch.randn(3, 1, SIZE, SIZE), torch.randint(0, 3, (3,))
    plain_grads, _ = _grads_and_stats(model, x, y)
    lean_grads, _ = _grads_and_stats(lean, x.contiguous(memory_format=torch.channels_last), y)
    for a, b in zip(plain_grads, lean_grads):
        assert (a - b).abs().max() <= 1e-5 * a.abs().max().clamp_min(1e-12)
