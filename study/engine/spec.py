"""What one training run is: its :class:`RunSpec` (hyperparameters and fixed settings), the
:class:`Split` of data it trains or scores on, and the device it runs on."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from lensnets.config import GROUPS


@dataclass
class RunSpec:
    """Everything that defines one training run: the sampled hyperparameters and fixed settings."""

    model: str
    width: float
    lr: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    seed: int = 0
    optimizer: str = "adamw"
    head: str = "invariant"
    width_mode: str = "fields"
    image_size: int = 33
    crop_fraction: float = 1.0
    rotate: bool = True
    flip: bool = False
    amp: bool = True
    memory: str = "auto"                  # plain | lean | auto (lean on CUDA)
    memory_budget_gb: float | None = None # None: the GPU's free memory (no limit on CPU)
    channels_last: bool | None = None     # None: on CUDA only
    gpu_share: float = 1.0                # tune.gpus_per_trial: the trial's fraction of its GPU

    def label(self) -> str:
        """A short human name that says what distinguishes this run, e.g. ``C8 w0.50 lr3e-04 wd1e-05``."""
        width = f" w{self.width:.2f}" if self.model in GROUPS else ""
        return f"{self.model}{width} lr{self.lr:.0e} wd{self.weight_decay:.0e} bs{self.batch_size}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Split:
    """One split of a dataset: images ``[N, H, W]`` float32 and integer labels ``[N]``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
