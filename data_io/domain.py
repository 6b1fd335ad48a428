"""The sky domain of a dataset: raw image shape, pixel scale, field of view, preset or source.

A classifier sees its training images through fixed preprocessing (central crop, resize to
``S - 1`` pixels). Scored on images of another shape or pixel scale, the same preprocessing
shows it another patch of sky at another resolution: a model trained on ``small64`` (64x64 at
0.08"/px, a 5.12" field) looks at 7.5" of a 150x150 ``model_i`` image (0.05"/px), and an
Einstein ring of 1.3" then fills a third less of its input. :func:`compare` lists such
differences; :func:`resample_to_field` puts images on the model's grid (``evaluate --match-field``).

A domain as plain data (JSON, MLflow model metadata and ``weights_only`` torch files)::

    {"raw_image_shape": [64, 64], "pixel_scale": 0.08, "field_of_view": [5.12, 5.12],
     "preset": "small64", "source": "simulate:small64"}

``pixel_scale`` is in arcsec per pixel and ``field_of_view`` (= shape x pixel scale) in arcsec;
both are ``None`` where unknown (an ingested set without ``ingest --pixel-scale``).
torch is imported only by :func:`resample_to_field`.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np

from common.errors import UsageError

GEOMETRY = ("raw image shape", "pixel scale", "field of view")
RESAMPLE_BATCH_PIXELS = 1 << 24      # supersampled output pixels per resampling batch


@dataclass(frozen=True)
class Domain:
    """Where a set of images comes from and how much sky each one covers."""

    raw_image_shape: tuple[int, int] | None
    pixel_scale: float | None = None     # arcsec / pixel
    preset: str | None = None
    source: str | None = None

    @property
    def field_of_view(self) -> tuple[float, float] | None:
        """``(height, width)`` in arcsec, or ``None`` if the shape or pixel scale is unknown."""
        if self.raw_image_shape is None or self.pixel_scale is None:
            return None
        return tuple(n * self.pixel_scale for n in self.raw_image_shape)

    def to_dict(self) -> dict:
        fov = self.field_of_view
        return {"raw_image_shape": list(self.raw_image_shape) if self.raw_image_shape else None,
                "pixel_scale": self.pixel_scale, "field_of_view": list(fov) if fov else None,
                "preset": self.preset, "source": self.source}

    @classmethod
    def from_dict(cls, record: dict | None) -> "Domain | None":
        """The domain of a stored record; ``None`` if there is none (files written before it)."""
        if not record:
            return None
        shape = record.get("raw_image_shape")
        scale = record.get("pixel_scale")
        return cls(tuple(int(n) for n in shape) if shape else None,
                   float(scale) if scale is not None else None,
                   record.get("preset"), record.get("source"))

    def describe(self) -> str:
        """E.g. ``64x64 at 0.08"/px (5.12" field, preset small64)``."""
        shape = format_shape(self.raw_image_shape) if self.raw_image_shape else "unknown shape"
        scale = f" at {format_scale(self.pixel_scale)}" if self.pixel_scale is not None else ", pixel scale unknown"
        fov = f"{format_field(self.field_of_view)} field, " if self.field_of_view else ""
        origin = f"preset {self.preset}" if self.preset else (self.source or "source unknown")
        return f"{shape}{scale} ({fov}{origin})"


def check_pixel_scale(value, name: str = "--pixel-scale") -> float:
    """A pixel scale in arcsec per pixel: a finite number > 0, else ``UsageError``."""
    try:
        scale = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        scale = math.nan
    if not math.isfinite(scale) or scale <= 0:
        raise UsageError(f"{name} {value!r}".strip() + " must be a positive number of arcsec "
                         "per pixel (e.g. 0.05 for DeepLense Model I)")
    return scale


def pixel_scale_of(metadata: dict) -> float | None:
    """The dataset's pixel scale: its ``pixel_scale`` key, else its preset's (older sets)."""
    from data_io.presets import PRESETS

    scale = metadata.get("pixel_scale")
    if scale is None:
        scale = (metadata.get("preset_params") or {}).get("pixel_scale")
    if scale is None and metadata.get("preset") in PRESETS:
        scale = PRESETS[metadata["preset"]].pixel_scale
    return float(scale) if scale is not None else None


def dataset_domain(metadata: dict) -> Domain:
    """The :class:`Domain` of a dataset from its metadata (``LensDataset.metadata``)."""
    shape = metadata.get("image_shape")
    return Domain(tuple(int(n) for n in shape) if shape else None, pixel_scale_of(metadata),
                  metadata.get("preset"), metadata.get("source"))


# ----------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Mismatch:
    """One difference between a reference domain (the model's training data) and a dataset's."""

    what: str            # one of GEOMETRY, "preset" or "source"
    reference: str       # the reference's value, formatted (e.g. '0.08"/px')
    data: str

    @property
    def geometric(self) -> bool:
        """Fixed by resampling the images (``--match-field``); preset and source are not."""
        return self.what in GEOMETRY

    def to_dict(self) -> dict:
        return {"what": self.what, "model": self.reference, "data": self.data}


def compare(reference: Domain, data: Domain) -> tuple[list[Mismatch], list[str]]:
    """``(mismatches, not compared)``: what differs, and what is unknown on either side.

    Shapes are compared exactly, pixel scales and fields of view to a relative 1e-6; the
    preset when both sets are simulated, otherwise the source.
    """
    found, unknown = [], []

    def check(what, ref, dat, same, fmt):
        if ref is None or dat is None:
            unknown.append(what)
        elif not same(ref, dat):
            found.append(Mismatch(what, fmt(ref), fmt(dat)))

    check("raw image shape", reference.raw_image_shape, data.raw_image_shape,
          operator.eq, format_shape)
    check("pixel scale", reference.pixel_scale, data.pixel_scale, _close, format_scale)
    check("field of view", reference.field_of_view, data.field_of_view, _close, format_field)
    if reference.preset and data.preset:
        check("preset", reference.preset, data.preset, operator.eq, str)
    else:
        check("source", reference.source, data.source, operator.eq, str)
    return found, unknown


def _close(a, b) -> bool:
    """Equal to a relative 1e-6, number by number (pixel scales, fields of view)."""
    return all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(np.atleast_1d(a), np.atleast_1d(b)))


def format_shape(shape) -> str:
    return "x".join(str(int(n)) for n in shape)


def format_scale(scale: float) -> str:
    return f'{scale:.4g}"/px'


def format_field(fov) -> str:
    h, w = (f'{v:.4g}"' for v in fov)
    return h if h == w else f"{h}x{w}"


# ----------------------------------------------------------------------------- resampling


def resample_to_field(images: np.ndarray, pixel_scale: float, shape: tuple[int, int],
                      target_scale: float) -> np.ndarray:
    """Images ``[N, H, W]`` at ``pixel_scale`` -> ``[N, *shape]`` at ``target_scale`` (float32).

    The output covers the centred sky region ``shape x target_scale`` arcsec: the input is
    cropped where it is larger and zero-padded (no flux) where it is smaller; image centres
    stay centres and a source keeps its size in arcsec. Each output pixel is the mean of
    ``k x k`` bilinear samples over its footprint (``torch.nn.functional.grid_sample``, then
    ``avg_pool2d``), ``k`` chosen so the samples are at most half an input pixel apart, so a
    coarser target grid averages its area instead of aliasing. Values stay in the input's
    units per pixel (surface brightness); flux per output pixel would be
    ``(target_scale / pixel_scale)**2`` times more, a constant that ``Preprocess``'s per-image
    normalisation removes anyway.
    """
    import torch
    import torch.nn.functional as F

    images = np.asarray(images)
    n, h, w = images.shape
    out_h, out_w = (int(v) for v in shape)
    zoom = float(target_scale) / float(pixel_scale)       # input pixels per output pixel
    k = max(1, min(16, math.ceil(2 * zoom)))
    # output normalised coordinate u in (-1, 1) spans the target field; the input's spans its own
    theta = torch.tensor([[out_w * target_scale / (w * pixel_scale), 0.0, 0.0],
                          [0.0, out_h * target_scale / (h * pixel_scale), 0.0]], dtype=torch.float32)
    batch = max(1, RESAMPLE_BATCH_PIXELS // (out_h * out_w * k * k))
    result = np.empty((n, out_h, out_w), np.float32)
    for lo in range(0, n, batch):
        x = torch.from_numpy(np.array(images[lo:lo + batch], dtype=np.float32))[:, None]
        grid = F.affine_grid(theta.expand(len(x), 2, 3), [len(x), 1, out_h * k, out_w * k],
                             align_corners=False)
        fine = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        result[lo:lo + len(x)] = F.avg_pool2d(fine, k)[:, 0].numpy()
    return result


def warning_line(mismatch: Mismatch, data_label: str, reference_label: str, fix: str) -> str:
    """``warning: pixel scale differs: data D has 0.05"/px, model M was trained on 0.08"/px; FIX``."""
    return (f"warning: {mismatch.what} differs: {data_label} has {mismatch.data}, "
            f"{reference_label} {mismatch.reference}; {fix}")
