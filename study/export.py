"""A self-contained classifier file: raw image in, class probabilities out, plain PyTorch only.

:class:`RawImageClassifier` puts the training preprocessing (``data_io.Preprocess``: central
crop, antialiased bilinear resize to S-1, per-image normalisation, one zero row/column to the
odd size S) in front of the exported plain-PyTorch network and turns its logits into
probabilities. :func:`export_classifier` saves it with ``torch.export`` (a graph and tensors, no
pickled Python objects), so loading it needs only torch::

    model = torch.export.load("lens_classifier.pt2").module()
    probs = model(torch.from_numpy(np.load("lens.npy")).float()[None])   # [1, H, W] -> [1, C]
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from study.metrics import probabilities


class RawImageClassifier(torch.nn.Module):
    """Images ``[B, H, W]`` (the dataset's raw pixels) -> class probabilities ``[B, C]``."""

    def __init__(self, network: torch.nn.Module, image_shape: tuple[int, int], image_size: int,
                 crop_fraction: float):
        super().__init__()
        self.network = network
        h, w = image_shape
        self.ch, self.cw = max(1, round(h * crop_fraction)), max(1, round(w * crop_fraction))
        self.top, self.left = (h - self.ch) // 2, (w - self.cw) // 2
        self.inner = image_size - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None, self.top:self.top + self.ch, self.left:self.left + self.cw]
        if (self.ch, self.cw) != (self.inner, self.inner):
            x = F.interpolate(x, size=(self.inner, self.inner), mode="bilinear", align_corners=False,
                              antialias=True)
        mean = x.mean(dim=(2, 3), keepdim=True)
        x = (x - mean) / (x.std(dim=(2, 3), keepdim=True) + 1e-6)
        return probabilities(self.network(F.pad(x, (0, 1, 0, 1))))


def export_classifier(predictor, image_shape: tuple[int, int], path: Path) -> Path:
    """Save ``predictor``'s model as a :class:`RawImageClassifier` ``.pt2`` (batch size free)."""
    from lensnets import export_model

    from common.atomic import atomic_file

    network = export_model(predictor.model).cpu().eval()
    module = RawImageClassifier(network, tuple(image_shape), predictor.image_size,
                                predictor.crop_fraction).eval()
    example = torch.randn(2, *image_shape)
    program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    with atomic_file(Path(path)) as fh:
        torch.export.save(program, fh)
    return Path(path)
