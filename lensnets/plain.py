"""Plain-PyTorch networks with the steerable CNN's layer shapes, the ResNet-18 baseline, and costs.

``plain_twin(config)`` is an ordinary ``Conv2d`` network with exactly the steerable model's
layer shapes (channels = fields x |G|, same kernels, strides, pools and head) but unconstrained
filters: the hardware bound for the architecture (``benchmarks/models.py``) and, built on the
``meta`` device, the MAC counter.
"""
from __future__ import annotations

import torch
import torchvision

from .config import (POOL_AFTER, POOL_KERNEL, SEED_KERNELS, SEED_PADDINGS, ModelConfig,
                     feature_sizes)
from .band import IrrepNorms
from .layers import DiscMask, FieldMaxPool

HIDDEN = 64


def resnet18(config: ModelConfig) -> torch.nn.Module:
    """torchvision's ResNet-18, untrained, with an ``in_channels`` 7x7/2 stem and ``num_outputs``."""
    model = torchvision.models.resnet18(weights=None, num_classes=config.num_outputs)
    model.conv1 = torch.nn.Conv2d(config.in_channels, 64, kernel_size=7, stride=2, padding=3,
                                  bias=False)
    torch.nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.config = config
    return model


def build_head(config: ModelConfig) -> torch.nn.Sequential:
    """The head on the group-pooled map [B, F6, s, s] (plain PyTorch; see ``steerable``); for
    SO2/O2 on the norm-pooled map [B, F6 x irreps per field, s, s]."""
    features, out = config.invariant_features(), config.num_outputs
    if config.head == "invariant":
        return torch.nn.Sequential(
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            torch.nn.Linear(features, HIDDEN), torch.nn.ELU(inplace=True),
            torch.nn.Linear(HIDDEN, out))
    side = feature_sizes(config.input_size)[-1]
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(features * side * side, HIDDEN),
        torch.nn.BatchNorm1d(HIDDEN), torch.nn.ELU(inplace=True), torch.nn.Linear(HIDDEN, out))


def plain_twin(config: ModelConfig, mask: bool = True) -> torch.nn.Sequential:
    """A ``Conv2d``/``BatchNorm2d``/``ReLU`` network with the steerable model's layer shapes."""
    layers: list[torch.nn.Module] = []
    if mask:
        size = config.input_size
        layers.append(DiscMask(torch.ones(1, 1, size, size)))
    in_ch = config.in_channels
    for index, (out_ch, kernel, pad) in enumerate(zip(config.channels(), SEED_KERNELS, SEED_PADDINGS)):
        layers += [torch.nn.Conv2d(in_ch, out_ch, kernel, padding=pad, bias=False),
                   torch.nn.BatchNorm2d(out_ch), torch.nn.ReLU(inplace=True)]
        if index in POOL_AFTER:
            stride = POOL_AFTER[index]
            layers.append(torch.nn.Conv2d(out_ch, out_ch, POOL_KERNEL, stride=stride,
                                          padding=2 if stride == 2 else 0, groups=out_ch,
                                          bias=False))
            layers[-1].weight.requires_grad_(False)
        in_ch = out_ch
    pool = (IrrepNorms(config.name, config.fields()[-1]) if config.is_continuous
            else FieldMaxPool(config.group_order))
    layers += [pool, build_head(config)]
    model = torch.nn.Sequential(*layers)
    model.config = config
    return model


def count_module_macs(model: torch.nn.Module, input_size: int, in_channels: int) -> int:
    """Multiply-accumulates of every Conv2d and Linear for one image (other ops not counted).

    Conv2d: H_out W_out C_out (C_in / groups) k_h k_w; Linear: in x out. Runs ``model`` on a
    ``meta`` tensor where possible, so nothing is computed or allocated.
    """
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output[0].numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, input_size, input_size, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def count_macs(config: ModelConfig | dict, input_size: int | None = None) -> int:
    """Multiply-accumulates per image forward of the model ``config`` describes.

    Counts convolutions (including the fixed Gaussian pools) and linear layers, computed from
    layer shapes on the ``meta`` device (no weights allocated). ``input_size`` overrides
    ``config.input_size``. Steerable and plain twin have identical MACs: the steerable
    constraint changes the free parameters, not the expanded ``Conv2d`` filters.
    """
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config)
    if input_size is not None:
        config = ModelConfig.from_dict({**config.to_dict(), "input_size": input_size})
    with torch.device("meta"):
        model = plain_twin(config) if config.is_steerable else resnet18(config)
    return count_module_macs(model, config.input_size, config.in_channels)

