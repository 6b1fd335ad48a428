"""Model family for the lens study: E(2)-steerable CNNs over a chosen group, ResNet-18, export.

``GROUPS``, ``MODEL_NAMES`` and ``ModelConfig`` are plain Python; the torch/e2cnn functions are
imported on first use so ``run_study.py --help`` stays fast.
"""
from __future__ import annotations

from .config import GROUPS, HEADS, MEMORY_MODES, MODEL_NAMES, WIDTH_MODES, ModelConfig

_LAZY = {
    "build_model": "factory", "export_model": "factory", "count_params": "factory",
    "set_memory_mode": "factory", "estimate_train_memory": "memory",
    "count_macs": "plain", "plain_twin": "plain",
}

__all__ = ["GROUPS", "HEADS", "MEMORY_MODES", "MODEL_NAMES", "WIDTH_MODES", "ModelConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
