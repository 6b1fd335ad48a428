"""Lensing data: simulator, Parquet datasets, ingestion, preprocessing and the PyTorch loader.

torch is imported only when the preprocessing names are first used, so the simulator and
the dataset readers stay light (``run_study.py --help`` stays fast).
"""
from __future__ import annotations

from data_io.dataset import LensDataset, open_dataset
from data_io.generate import simulate_dataset
from data_io.ingest import ingest_folder
from data_io.presets import PRESETS, Preset

_TORCH_NAMES = ("Preprocess", "LensImageDataset", "rotate_batch", "random_augment")

__all__ = ["PRESETS", "Preset", "simulate_dataset", "ingest_folder", "open_dataset",
           "LensDataset", *_TORCH_NAMES]


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        from data_io import preprocess

        return getattr(preprocess, name)
    raise AttributeError(f"module 'data_io' has no attribute {name!r}")
