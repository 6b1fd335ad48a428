"""Export to plain PyTorch, the exportable replacements of e2cnn modules, init and MAC counts."""
from __future__ import annotations

import pytest
import torch
from e2cnn import nn as enn
from e2cnn.nn.init import _generalized_he_init_variances

from lensnets import GROUPS, ModelConfig, build_model, count_macs, export_model
from lensnets.e2cnn_compat import he_init_uniform_fields
from lensnets.layers import (ExportableMaskModule, ExportablePointwiseAvgPoolAntialiased,
                             FastInnerBatchNorm, FieldMaxPool)
from lensnets.plain import count_module_macs
from lensnets.steerable import make_gspace

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def regular_type(group: str, fields: int) -> enn.FieldType:
    gspace = make_gspace(group)
    return enn.FieldType(gspace, fields * [gspace.regular_repr])


def trained_like(config: ModelConfig) -> torch.nn.Module:
    """A model with non-trivial weights and batch-norm statistics (two SGD steps)."""
    torch.manual_seed(0)
    model = build_model(config)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        optimiser.zero_grad()
        model(torch.randn(4, 1, config.input_size, config.input_size)).square().mean().backward()
        optimiser.step()
    return model


@pytest.mark.parametrize("group", GROUPS)
def test_export_matches_e2cnn_model(group):
    head = "flatten" if group in ("C4", "D2", "O2") else "invariant"
    config = ModelConfig(name=group, width=0.125, width_mode="channels", input_size=33, head=head)
    model = trained_like(config)
    exported = export_model(model)
    assert model.training, "export must not change the model's mode"
    names = {type(m).__module__.split(".")[0] for m in exported.modules()}
    assert "e2cnn" not in names, names
    assert exported.config == config
    x = torch.randn(5, 1, 33, 33)
    model.eval()
    with torch.no_grad():
        assert (exported(x) - model(x)).abs().max().item() <= 1e-5
    # own storage: further training of the e2cnn model leaves the export unchanged
    before = exported(x).detach()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()
    model(x)
    assert torch.equal(exported(x).detach(), before)


def test_export_of_resnet_is_an_eval_copy():
    model = build_model({"name": "resnet18", "input_size": 33})
    exported = export_model(model)
    assert model.training and not exported.training and exported is not model
    x = torch.randn(2, 1, 33, 33)
    model.eval()
    with torch.no_grad():
        assert torch.equal(exported(x), model(x))


@pytest.mark.parametrize("stride,padding", [(2, None), (1, 0)])
def test_gaussian_pool_replacement_equals_e2cnn(stride, padding):
    field_type = regular_type("C4", 3)
    original = enn.PointwiseAvgPoolAntialiased(field_type, sigma=0.66, stride=stride, padding=padding)
    ours = ExportablePointwiseAvgPoolAntialiased(field_type, sigma=0.66, stride=stride,
                                                 padding=padding)
    x = enn.GeometricTensor(torch.randn(2, 12, 31, 31), field_type)
    expected = original(x).tensor
    assert torch.equal(ours(x).tensor, expected)
    conv = ours.export()
    assert type(conv) is torch.nn.Conv2d and conv.groups == 12 and conv.kernel_size == (5, 5)
    assert not conv.weight.requires_grad
    torch.testing.assert_close(conv(x.tensor), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(conv.weight[0, 0].sum(), torch.tensor(1.0))


def test_mask_replacement_equals_e2cnn_and_is_a_buffer():
    field_type = enn.FieldType(make_gspace("C8"), [make_gspace("C8").trivial_repr])
    original, ours = enn.MaskModule(field_type, 33, margin=1), ExportableMaskModule(field_type, 33, 1)
    x = enn.GeometricTensor(torch.rand(2, 1, 33, 33), field_type)
    assert torch.equal(ours(x).tensor, original(x).tensor)
    assert torch.equal(ours.export()(x.tensor), original(x).tensor)
    assert not list(ours.parameters()) and "mask" in dict(ours.named_buffers())


def test_field_max_pool_equals_group_pooling():
    field_type = regular_type("D4", 5)
    x = torch.randn(2, 40, 7, 7)
    expected = enn.GroupPooling(field_type)(enn.GeometricTensor(x, field_type)).tensor
    assert torch.equal(FieldMaxPool(8)(x), expected)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_batch_norm_equals_inner_batch_norm(channels_last):
    field_type = regular_type("C8", 6)
    reference, fast = enn.InnerBatchNorm(field_type), FastInnerBatchNorm(field_type)
    fast.load_state_dict(reference.state_dict())
    with torch.no_grad():
        for p, q in zip(reference.parameters(), fast.parameters()):
            p.normal_()
            q.copy_(p)
    x = torch.randn(4, 48, 9, 9) * 3 + 1
    x_fast = x.to(memory_format=torch.channels_last) if channels_last else x.clone()
    x, x_fast = x.requires_grad_(), x_fast.requires_grad_()
    weights = torch.randn(4, 48, 9, 9)
    for mode in (True, False):   # train (batch statistics), then eval (running statistics)
        reference.train(mode)
        fast.train(mode)
        y_ref = reference(enn.GeometricTensor(x, field_type)).tensor
        y_fast = fast(enn.GeometricTensor(x_fast, field_type)).tensor
        torch.testing.assert_close(y_fast, y_ref, rtol=1e-5, atol=1e-5)
        (g_ref,) = torch.autograd.grad((y_ref * weights).sum(), x)
        (g_fast,) = torch.autograd.grad((y_fast * weights).sum(), x_fast)
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.state_dict(), reference.state_dict())


@pytest.mark.parametrize("group,lifting", [("C8", False), ("D2", False), ("C4", True)])
def test_fast_he_init_has_e2cnn_variances(group, lifting):
    out_type = regular_type(group, 4)
    in_type = (enn.FieldType(out_type.gspace, 3 * [out_type.gspace.trivial_repr]) if lifting
               else regular_type(group, 3))
    conv = enn.R2Conv(in_type, out_type, kernel_size=5, bias=False, initialize=False)
    expected = _generalized_he_init_variances(conv.basisexpansion)
    torch.manual_seed(0)
    he_init_uniform_fields(conv)
    torch.manual_seed(0)
    assert torch.allclose(conv.weights.data, expected * torch.randn_like(conv.weights), atol=1e-7)


@pytest.mark.parametrize("name,head", [("C8", "flatten"), ("D1", "invariant"),
                                       ("trivial", "invariant"), ("resnet18", "invariant"),
                                       ("SO2", "invariant"), ("O2", "flatten")])
def test_count_macs_equals_counting_the_exported_model(name, head):
    config = ModelConfig(name=name, width=0.25, input_size=37, head=head)
    exported = export_model(build_model(config))
    assert count_macs(config) == count_module_macs(exported, 37, 1)


def test_seed_c8_costs_about_97_gmac():
    assert round(count_macs(ModelConfig(name="C8", head="flatten")) / 1e9) == 97
