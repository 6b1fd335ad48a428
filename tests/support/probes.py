"""Analytic probe images for invariance checks (tests and ``benchmarks/invariance.py``).

Each image is a sum of 6 Gaussian blobs (sigma 1.5-3.5 px, seeded by its index), sampled at
coordinates rotated about the centre pixel, so a rotated image is the exact rotation of the
continuous one, with no interpolation error.
"""
from __future__ import annotations

import math

import torch


def blob_images(size: int, angle: float, count: int = 8, *, flip: bool = False,
                disc: bool = False) -> torch.Tensor:
    """``[count, 1, size, size]`` float32: pixel p (from the centre) gets f(R(-angle) p), with x
    mirrored first if ``flip``; ``disc`` multiplies by the mask 1[r <= (size - 1) / 2].
    ``angle`` in radians."""
    axis = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    xr = math.cos(angle) * x + math.sin(angle) * y
    yr = -math.sin(angle) * x + math.cos(angle) * y
    xr = -xr if flip else xr
    mask = (x ** 2 + y ** 2 <= ((size - 1) / 2) ** 2).double() if disc else 1.0
    images = []
    for seed in range(count):
        g = torch.Generator().manual_seed(seed)
        centres = (torch.rand(6, 2, generator=g, dtype=torch.float64) - 0.5) * size * 0.5
        sigmas = 1.5 + 2 * torch.rand(6, generator=g, dtype=torch.float64)
        amplitudes = 0.5 + torch.rand(6, generator=g, dtype=torch.float64)
        image = sum(a * torch.exp(-((xr - cx) ** 2 + (yr - cy) ** 2) / (2 * s ** 2))
                    for (cx, cy), s, a in zip(centres.tolist(), sigmas.tolist(), amplitudes.tolist()))
        images.append(image * mask)
    return torch.stack(images)[:, None].float()
