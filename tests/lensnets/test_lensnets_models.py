"""Every registered model: shapes, backward, no NaN, binary/3-class, both heads, parameter counts."""
from __future__ import annotations

import pytest
import torch
from e2cnn import nn as enn
from e2cnn.nn import GeometricTensor

from common.errors import UsageError
from lensnets import GROUPS, MODEL_NAMES, ModelConfig, build_model, count_params
from lensnets.steerable import steerable_param_count

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

SMALL = dict(width=0.125, width_mode="channels", input_size=33)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("num_classes", [2, 3])
def test_forward_backward_shapes(name, num_classes):
    torch.manual_seed(0)
    model = build_model({"name": name, "num_classes": num_classes, **SMALL})
    assert model.config.name == name and model.config.num_classes == num_classes
    x = torch.randn(3, 1, 33, 33)
    model.train()
    logits = model(x)
    assert logits.shape == (3, 1 if num_classes == 2 else num_classes)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    if num_classes == 2:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], torch.ones(3))
    else:
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, logits.shape[1])


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("head", ["invariant", "flatten"])
def test_param_count_matches_formula_and_heads(group, head):
    config = ModelConfig(name=group, head=head, in_channels=2, **SMALL)
    model = build_model(config)
    assert count_params(model) == steerable_param_count(config)
    f6 = config.invariant_features()   # fields()[-1], or x 3 (SO2) / 4 (O2) irreps per field
    assert f6 == config.fields()[-1] * {"SO2": 3, "O2": 3}.get(group, 1)
    head_params = sum(p.numel() for p in model.head.parameters())
    side = 2   # 33 -> 29 -> 15 -> 8 -> 6 -> 2 pixels (config.feature_sizes)
    expected = (f6 * 64 + 64 + 64 * 3 + 3 if head == "invariant"
                else f6 * side * side * 64 + 64 + 2 * 64 + 64 * 3 + 3)
    assert head_params == expected
    x = torch.randn(2, 2, 33, 33)
    assert model(x).shape == (2, 3)


@pytest.mark.slow
def test_seed_architecture_at_129_px():
    """C8, width 1: the seed's 24-48-48-96-96-64 regular fields and its 64 x 26 x 26 flatten."""
    config = ModelConfig(name="C8", head="flatten", input_size=129)
    model = build_model(config).eval()
    assert config.channels() == (192, 384, 384, 768, 768, 512)
    linear = model.head[1]
    assert (linear.in_features, linear.out_features) == (64 * 26 * 26, 64)
    with torch.no_grad():
        image = GeometricTensor(torch.zeros(1, 1, 129, 129), model.input_type)
        features = model.gpool(model.body(image))
        assert features.tensor.shape == (1, 64, 26, 26)
        assert model(torch.randn(1, 1, 129, 129)).shape == (1, 3)
    assert count_params(model) == steerable_param_count(config)


def test_resnet18_is_torchvision_with_one_channel_stem():
    model = build_model({"name": "resnet18", "num_classes": 3, "input_size": 65})
    assert model.conv1.in_channels == 1 and model.fc.out_features == 3
    # torchvision's 11,689,512 with a 1-channel stem (-2 x 64 x 49) and a 3-way fc (-997 x 513)
    assert count_params(model) == 11_689_512 - 2 * 64 * 49 - 997 * 513


@pytest.mark.parametrize("bad", [
    {"name": "C3"}, {"head": "mlp"}, {"width_mode": "flops"}, {"width": 0}, {"width": -1.0},
    {"input_size": 64}, {"input_size": 63}, {"input_size": 25}, {"num_classes": 1},
    {"in_channels": 0}, {"colour": True},
])
def test_bad_configs_raise_usage_error(bad):
    with pytest.raises(UsageError):
        build_model(bad)


def test_wrong_input_shape_is_a_clear_error():
    model = build_model({"name": "C4", **SMALL})
    with pytest.raises(ValueError, match=r"expected input \[B, 1, 33, 33\]"):
        model(torch.zeros(1, 1, 37, 37))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["D4", "resnet18"])
def test_cuda_forward_backward_and_export(name):
    from lensnets import export_model
    model = build_model({"name": name, **SMALL}).cuda()
    x = torch.randn(2, 1, 33, 33, device="cuda")
    model(x).sum().backward()
    model.eval()
    exported = export_model(model)
    with torch.no_grad():
        assert (exported(x) - model(x)).abs().max() <= 1e-5


def test_checkpoint_round_trip_in_any_mode():
    """State dicts hold weights, not e2cnn's derived filters, and load right in train or eval."""
    config = ModelConfig(name="D4", **SMALL)
    torch.manual_seed(0)
    model = build_model(config)
    x = torch.randn(2, 1, 33, 33)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).square().mean().backward()
    optimiser.step()
    keys_train = set(model.state_dict())
    model.eval()
    reference = model(x)
    assert set(model.state_dict()) == keys_train
    convs = [name for name, m in model.named_modules() if isinstance(m, enn.R2Conv)]
    assert len(convs) == 6 and not any(f"{name}.filter" in keys_train for name in convs)
    assert not any("sampled_basis" in k for k in keys_train)
    for load_in_train_mode in (True, False):
        clone = build_model(ModelConfig.from_dict(model.config.to_dict()))
        clone.train(load_in_train_mode)
        if not load_in_train_mode:
            clone(x)   # an eval-mode model already holds (now stale) expanded filters
        clone.load_state_dict(model.state_dict())
        clone.eval()
        assert torch.equal(clone(x), reference)
