"""Training checkpoints: self-describing files (run spec, class names, model config, weights,
optimiser state, epoch, history), and the one safe reader every torch file of the project goes
through (``torch.load(weights_only=True)``: tensors and plain containers, never arbitrary objects).
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import torch

from common.errors import UsageError

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_KEYS = frozenset({"spec", "class_names", "model_config", "model", "optimizer", "epoch", "history"})


def read_safely(source: Path | BinaryIO) -> object:
    """A torch file's content, loaded onto the CPU as tensors and plain containers only."""
    return torch.load(source, map_location="cpu", weights_only=True)


def is_checkpoint(state: object) -> bool:
    """Whether ``state`` (from :func:`read_safely`) is a training checkpoint of this project."""
    return isinstance(state, dict) and CHECKPOINT_KEYS <= set(state)


def load_checkpoint(path: Path) -> dict:
    """Load a training checkpoint; a missing, unreadable or foreign file is a :class:`UsageError`."""
    try:
        state = read_safely(Path(path))
    except FileNotFoundError:
        raise UsageError(f"checkpoint {path} does not exist")
    except Exception as err:  # truncated file, not a torch file, unsafe pickle
        raise UsageError(f"checkpoint {path} is not a readable training checkpoint ({type(err).__name__})")
    if not is_checkpoint(state):
        raise UsageError(f"checkpoint {path} is not a training checkpoint of this project")
    return state
