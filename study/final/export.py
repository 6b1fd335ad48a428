"""A self-contained classifier file: raw image in, class probabilities out, plain PyTorch only.

:class:`RawImageClassifier` puts the training preprocessing (``data_io.Preprocess.module``, the
code the trainer runs: central crop, antialiased bilinear resize to S-1, per-image
normalisation, one zero row/column to the odd size S) in front of the exported plain-PyTorch network and turns its logits into
probabilities. :func:`export_classifier` saves it with ``torch.export`` (a graph and tensors, no
pickled Python objects), so loading it needs only torch::

    model = torch.export.load("lens_classifier.pt2").module()
    probs = model(torch.from_numpy(np.load("lens.npy")).float()[None])   # [1, H, W] -> [1, C]

Images of another shape fail with one line that names the shape it takes (RuntimeError).
"""
from __future__ import annotations

from pathlib import Path

import torch

from study.engine.metrics import probabilities


class RawImageClassifier(torch.nn.Module):
    """Images ``[B, H, W]`` (the dataset's raw pixels) -> class probabilities ``[B, C]``."""

    def __init__(self, network: torch.nn.Module, image_shape: tuple[int, int], image_size: int,
                 crop_fraction: float):
        from data_io import Preprocess

        super().__init__()
        self.preprocess = Preprocess(image_size, crop_fraction).module(image_shape)
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.preprocess.image_shape
        right_shape = (torch.full((), x.shape[-2]) == h) & (torch.full((), x.shape[-1]) == w)
        torch._assert_async(right_shape, wrong_shape_message((h, w)))
        return probabilities(self.network(self.preprocess(x)))


def wrong_shape_message(shape: tuple[int, int]) -> str:
    """The one line a wrong-sized input gets from the exported classifier."""
    h, w = shape
    return (f"this classifier takes raw images of {h}x{w} pixels, a tensor [B, {h}, {w}] (the shape of "
            f"its training data); resample other images to {h}x{w} at the training pixel scale first "
            f"(`run_study.py evaluate --match-field` does that for a dataset)")


def export_classifier(predictor, image_shape: tuple[int, int], path: Path) -> Path:
    """Save ``predictor``'s model as a :class:`RawImageClassifier` ``.pt2`` (batch size free; another
    image shape is refused with :func:`wrong_shape_message`)."""
    from lensnets import export_model

    from common.atomic import atomic_file

    network = export_model(predictor.model).cpu().eval()
    module = RawImageClassifier(network, tuple(image_shape), predictor.image_size,
                                predictor.crop_fraction).eval()
    example = torch.randn(2, *image_shape)
    auto = torch.export.Dim.AUTO   # height and width too: the shape check above names the right one
    program = torch.export.export(module, (example,), dynamic_shapes=({0: auto, 1: auto, 2: auto},))
    with atomic_file(Path(path)) as fh:
        torch.export.save(program, fh)
    return Path(path)
