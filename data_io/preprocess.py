"""Preprocessing, rotation/flip augmentation and the PyTorch dataset over memory-mapped arrays.

Pipeline (seeds' recipe): central crop (150 -> 128 at the defaults), antialiased bilinear
resize to ``target_size - 1`` if the crop has another size, per-image normalisation
``(x - mean) / (std + 1e-6)``, then one row/column of zeros on the bottom/right to reach the
odd ``target_size`` (128 -> 129, 64 -> 65), so stride-2 odd filters downsample cleanly.
Zero is the image mean after normalisation, so the padding adds no edge.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from common.errors import UsageError


class Preprocess:
    """numpy [H, W] -> torch.float32 [1, S, S]; ``batch`` does [N, H, W] -> [N, 1, S, S]."""

    def __init__(self, target_size: int = 129, crop_fraction: float = 128 / 150,
                 normalise: bool = True):
        if int(target_size) < 3 or int(target_size) % 2 == 0:
            raise UsageError(f"target_size {target_size} must be an odd number >= 3 (e.g. 129, 65)")
        if not 0.0 < float(crop_fraction) <= 1.0:
            raise UsageError(f"crop_fraction {crop_fraction} must be in (0, 1]")
        self.target_size, self.crop_fraction = int(target_size), float(crop_fraction)
        self.normalise = bool(normalise)

    def batch(self, images_np) -> torch.Tensor:
        images = np.asarray(images_np)
        if images.ndim != 3:
            raise ValueError(f"expected images [N, H, W], got shape {images.shape}")
        top, left, ch, cw = crop_box(images.shape[-2:], self.crop_fraction)
        # one copy of the crop: the source may be a read-only memory-mapped view
        crop = np.array(images[:, top:top + ch, left:left + cw], dtype=np.float32, copy=True)
        return resize_normalise_pad(torch.from_numpy(crop)[:, None], self.target_size,
                                    self.normalise).contiguous()

    def module(self, image_shape: tuple[int, int]) -> "PreprocessModule":
        """The same preprocessing as an ``nn.Module`` on raw images ``[B, H, W]`` of one shape
        (what the exported raw-image classifier runs in front of the network)."""
        return PreprocessModule(tuple(image_shape), self.target_size, self.crop_fraction, self.normalise)

    def __call__(self, image_np) -> torch.Tensor:
        return self.batch(np.asarray(image_np)[None])[0]


def crop_box(shape: tuple[int, int], crop_fraction: float) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the central crop of an ``[H, W]`` image."""
    h, w = shape
    ch, cw = max(1, round(h * crop_fraction)), max(1, round(w * crop_fraction))
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def resize_normalise_pad(x: torch.Tensor, target_size: int, normalise: bool = True) -> torch.Tensor:
    """Cropped images ``[N, 1, h, w]`` -> ``[N, 1, S, S]``: resize to S-1, normalise, pad to S."""
    inner = target_size - 1
    if tuple(x.shape[-2:]) != (inner, inner):
        x = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False, antialias=True)
    if normalise:
        mean = x.mean(dim=(2, 3), keepdim=True)
        x = (x - mean) / (x.std(dim=(2, 3), keepdim=True) + 1e-6)
    return F.pad(x, (0, 1, 0, 1))


class PreprocessModule(torch.nn.Module):
    """:class:`Preprocess` as a module: raw images ``[B, H, W]`` -> ``[B, 1, S, S]`` (exportable)."""

    def __init__(self, image_shape: tuple[int, int], target_size: int, crop_fraction: float,
                 normalise: bool = True):
        super().__init__()
        self.image_shape = tuple(int(n) for n in image_shape)
        self.box = crop_box(self.image_shape, crop_fraction)
        self.target_size, self.normalise = int(target_size), bool(normalise)
        top, left, ch, cw = self.box
        # the crop as index lists, not slices: its output shape is fixed whatever the input's, so
        # torch.export puts no guard on the input's height and width, and a caller's own shape
        # check (study.final.export) runs first and says what is wrong
        self.register_buffer("rows", torch.arange(top, top + ch), persistent=False)
        self.register_buffer("cols", torch.arange(left, left + cw), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        crop = x.index_select(1, self.rows).index_select(2, self.cols)[:, None]
        return resize_normalise_pad(crop, self.target_size, self.normalise)


class LensImageDataset(torch.utils.data.Dataset):
    """``(images [N, H, W], labels [N], preprocess)`` -> ``(tensor [1, S, S], int64 label)``.

    ``images`` may be the read-only, memory-mapped array from ``LensDataset.arrays``; only the
    indexed image is copied.
    """

    def __init__(self, images, labels, preprocess: Preprocess | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.preprocess = preprocess or Preprocess()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.preprocess(self.images[i]), torch.tensor(self.labels[i], dtype=torch.int64)

    def __getitems__(self, indices):  # batched fetch used by DataLoader (torch >= 2.1)
        x = self.preprocess.batch(self.images[np.asarray(indices)])
        y = torch.as_tensor(self.labels[np.asarray(indices)])
        return list(zip(x, y))


def disc_mask(size: int, device=None) -> torch.Tensor:
    """[size, size] bool: pixel centres within radius size/2 of the centre."""
    c = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    return (c[None, :] ** 2 + c[:, None] ** 2) <= (size / 2) ** 2


def rotate_batch(x: torch.Tensor, angles_deg: torch.Tensor, *,
                 compiled: bool = True) -> torch.Tensor:
    """Rotate each image of ``x`` [B, C, S, S] counter-clockwise by ``angles_deg`` [B].

    The seeds' method: bilinear upsample x3, rotate by ``grid_sample`` (bilinear, zeros
    outside), average-pool x3 back; finally zero everything outside the inscribed disc so
    every angle sees the same support. Works on any device; on the CPU (without autograd)
    the whole chain runs as one compiled loop per image (``kernels.rotate_pool3``: the same
    samples and weights, no batch-sized intermediates; ~5x faster at 129 px);
    ``compiled=False`` forces the torch path (benchmarks and tests compare the two).
    """
    b, c, h, w = x.shape
    a = torch.deg2rad(angles_deg.to(device=x.device, dtype=x.dtype))
    cos, sin = torch.cos(a), torch.sin(a)
    mask = disc_mask(h, x.device)
    if compiled and x.device.type == "cpu" and not x.requires_grad \
            and x.dtype in (torch.float32, torch.float64):
        return _rotate_pool_cpu(x, cos, sin, mask)
    up = F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False)
    return _rotate_pool_torch(up, cos, sin, mask)


def _rotate_pool_torch(up, cos, sin, mask):
    zero = torch.zeros_like(cos)
    # output pixel (u, v) samples input at R(-a) (u, v): counter-clockwise rotation of content
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(up.shape), align_corners=False)
    rot = F.grid_sample(up, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return F.avg_pool2d(rot, 3) * mask.to(up.dtype)


def _rotate_pool_cpu(x, cos, sin, mask):
    from data_io.kernels import rotate_pool3

    b, c, h, w = x.shape
    out = torch.empty(b * c, h, w, dtype=x.dtype)
    rotate_pool3(x.detach().contiguous().reshape(b * c, h, w).numpy(),
                 cos.double().repeat_interleave(c).numpy(),
                 sin.double().repeat_interleave(c).numpy(), mask.numpy(), out.numpy())
    return out.reshape(b, c, h, w)


def random_augment(x: torch.Tensor, generator: torch.Generator, rotate: bool = True,
                   flip: bool = False, *, compiled: bool = True) -> torch.Tensor:
    """Random rotation angles ~ U(0, 360) deg per image and (optionally) random horizontal
    flips, batched; random numbers come from ``generator`` (on its own device) and the work
    runs on ``x.device`` (``compiled``: see ``rotate_batch``)."""
    b = x.shape[0]
    if flip:
        mask = torch.rand(b, generator=generator, device=generator.device) < 0.5
        mask = mask.to(x.device)
        x = torch.where(mask[:, None, None, None], torch.flip(x, dims=(-1,)), x)
    if rotate:
        angles = torch.rand(b, generator=generator, device=generator.device) * 360.0
        x = rotate_batch(x, angles.to(x.device), compiled=compiled)
    return x
