"""What one training run is: its :class:`RunSpec` (hyperparameters and fixed settings), the
:class:`Split` of data it trains or scores on, and the device it runs on."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from lensnets.config import GROUPS
from study.config import DataConfig, StudyConfig, TrainConfig

# A run's fixed settings come from the study configuration (study.search.space.run_spec); where a
# run is built without one, it takes the configuration's own defaults: one default per setting,
# in study/config.py (tests/study/engine/test_spec.py checks that none is restated here).
_STUDY, _DATA, _TRAIN = StudyConfig(), DataConfig(), TrainConfig()


@dataclass
class RunSpec:
    """Everything that defines one training run: the sampled hyperparameters and fixed settings."""

    model: str
    width: float
    lr: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    seed: int = _STUDY.seed
    optimizer: str = _TRAIN.optimizer
    head: str = _TRAIN.head
    width_mode: str = _TRAIN.width_mode
    image_size: int = _DATA.image_size
    crop_fraction: float = _DATA.crop_fraction
    rotate: bool = _DATA.rotate
    flip: bool = _DATA.flip
    amp: bool = _TRAIN.amp
    memory: str = _TRAIN.memory                          # plain | lean | auto (lean on CUDA)
    memory_budget_gb: float | None = _TRAIN.memory_budget_gb   # None: the GPU's free memory
    channels_last: bool | None = _TRAIN.channels_last    # None: on CUDA only
    compile: bool = _TRAIN.compile                       # torch.compile the training forward
    gpu_share: float = 1.0   # the trial's fraction of its GPU (from tune.gpus_per_trial; not a config key)

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
