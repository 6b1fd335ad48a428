"""Fixture folders in the public DeepLense layouts, written by the tests themselves."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_model_i(root: Path, n: int = 4, shape=(20, 20), seed: int = 0) -> Path:
    """Model I-III: ``no_sub/ cdm/`` plain 2-D .npy; ``axion/`` object arrays [image, mass]."""
    rng = np.random.default_rng(seed)
    for cls in ("no_sub", "cdm", "axion"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.poisson(50, shape).astype(np.int64)
            if cls == "axion":
                arr = np.empty(2, dtype=object)
                arr[0], arr[1] = img, 10.0 ** rng.uniform(-24, -22)
                np.save(root / cls / f"{i:04x}.npy", arr, allow_pickle=True)
            else:
                np.save(root / cls / f"{i:04x}.npy", img)
    return root


def write_model_fj(root: Path, n: int = 3, shape=(20, 20), seed: int = 0) -> Path:
    """Seeds' Model F/J: ``train|val/{no,sphere,vort}`` with (1, H, W) float64 in [0, 1]."""
    rng = np.random.default_rng(seed)
    for part, count in (("train", 3 * n), ("val", n)):
        for cls in ("no", "sphere", "vort"):
            (root / part / cls).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                np.save(root / part / cls / f"img_{i}.npy", rng.uniform(0, 1, (1, *shape)))
    return root


def write_binary_jpg(root: Path, n: int = 4, shape=(24, 24), seed: int = 0) -> Path:
    """Binary set: ``sub/ no_sub/`` grayscale .jpg."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls in ("sub", "no_sub"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(root / cls / f"{i}.jpg")
    return root
