"""One factory for every model in ``MODEL_NAMES``, export to plain PyTorch, parameter counts."""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

import torch

from common.errors import UsageError

from .config import GROUPS, ModelConfig
from .plain import resnet18


def _steerable(config: ModelConfig) -> torch.nn.Module:
    from .steerable import SteerableCNN  # e2cnn only when a steerable model is asked for
    return SteerableCNN(config)


#: model name -> builder(config) -> module; each module has ``.config``.
REGISTRY: dict[str, Callable[[ModelConfig], torch.nn.Module]] = {
    **{group: _steerable for group in GROUPS}, "resnet18": resnet18,
}


def as_config(config: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    """A ``ModelConfig`` from itself or from a mapping of its fields (unset fields keep defaults)."""
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, Mapping):
        return ModelConfig.from_dict(config)
    raise UsageError(f"model config must be a ModelConfig or a mapping, got {type(config).__name__}")


def build_model(config: ModelConfig | Mapping[str, Any]) -> torch.nn.Module:
    """Build an untrained model: float32 [B, in_channels, S, S] -> logits [B, num_outputs].

    Raises ``UsageError`` for an unknown name/head/width_mode, a non-positive width or an input
    size the architecture cannot take. The module carries ``.config`` (self-describing checkpoints:
    save ``model.config.to_dict()`` with the state dict).
    """
    config = as_config(config)
    return REGISTRY[config.name](config)


def export_model(model: torch.nn.Module) -> torch.nn.Module:
    """A plain-PyTorch module (eval mode, own tensors, same device) giving the same logits.

    Steerable models: every e2cnn module becomes its torch counterpart (R2Conv -> Conv2d with the
    expanded filter, InnerBatchNorm -> BatchNorm2d, Gaussian pool -> depthwise Conv2d, group pool
    -> channel max; SO2/O2: their band-limited batch norm, norm-ReLU and norm pooling, which are
    plain PyTorch already). Other models are copied as they are. ``model`` keeps its train/eval mode.
    """
    if hasattr(model, "export") and callable(model.export):
        exported = model.export()
    else:
        exported = copy.deepcopy(model).eval()
    if hasattr(model, "config"):
        exported.config = model.config
    return exported


def set_memory_mode(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """Switch a model between ``"plain"`` and ``"lean"`` training memory (same results).

    Steerable models checkpoint each block in lean mode (see ``lensnets.steerable``); ResNet-18
    (about 8 MiB of activations per 129-px image) trains the same way in both modes.
    """
    from .config import MEMORY_MODES

    if mode not in MEMORY_MODES:
        raise UsageError(f"memory mode {mode!r} is unknown; use one of {', '.join(MEMORY_MODES)}")
    if hasattr(model, "set_memory_mode"):
        model.set_memory_mode(mode)
    return model


def count_params(model: torch.nn.Module) -> int:
    """Trainable parameters (fixed filters, masks and batch-norm statistics excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
