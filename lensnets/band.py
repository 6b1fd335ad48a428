"""Band-limited fields of the continuous groups SO(2) and O(2): representation and modules.

A field (``lensnets.config.field_irreps``) is the direct sum of irreps, in channel order: the
trivial irrep psi_0 (1 channel), then psi_1 .. psi_F (2 channels each; a rotation by theta
rotates psi_k's 2-vector by k theta, a flip of O(2) mirrors it). A map of F such fields has
F x d channels, field f on channels f d .. f d + d - 1.

The modules below are plain PyTorch (so ``export()`` is a copy) and each commutes with that
action, because it treats every irrep of every field as one block and only ever multiplies a
non-trivial block by an invariant scalar (a function of its norm, or a per-block constant):

- :class:`BandBatchNorm`: the trivial channel is batch-normalised as usual (mean, variance,
  affine scale and shift); a non-trivial block v is scaled, v -> w v / sqrt(E|v|^2 / s + eps)
  (s its channels; the mean square over batch and pixels, no mean is subtracted, no shift: both
  would break equivariance). Training uses the batch statistics (gradients flow through them,
  as in ``torch.nn.BatchNorm2d``); eval the running ones.
- :class:`BandNormReLU`: ReLU on the trivial channel; norm-ReLU on every other block,
  v -> relu(|v| - b) v / |v| with b = exp(log b) > 0 learnt per block (e2cnn's
  ``NormNonLinearity(function="n_relu")``, equal to it in ``tests/lensnets/test_lensnets_continuous.py``).
- :class:`IrrepNorms`: the invariant map: per block its norm |v| (e2cnn's ``NormPool`` on the
  irreps), the trivial channel as it is (a ReLU output, so equal to its norm).

Each module's ``forward_ops`` is its definition in tensor ops, what evaluation and the exported
copy run. With gradients on, batch norm (in training) and norm-ReLU run the same maths through
``lensnets.band_autograd``, whose hand-written backward takes a few passes over the map where
autograd through the tensor ops took a dozen.
"""
from __future__ import annotations

import copy

import torch
from e2cnn import gspaces
from e2cnn import group as egroup
from e2cnn import nn as enn

from .band_autograd import BandBatchNormFn, NormReLUFn, pair_gain, pair_norms, parts, per_channel
from .config import GROUP_SPECS, field_irreps


def band_limited_repr(gspace: gspaces.GSpace, name: str) -> egroup.Representation:
    """The field representation of ``name`` ("SO2"/"O2"): its irreps 0..F summed, each once."""
    family, freq = GROUP_SPECS[name]
    if family == "SO":
        irreps = [gspace.irrep(k) for k in range(freq + 1)]
    else:
        irreps = [gspace.irrep(0, 0)] + [gspace.irrep(1, k) for k in range(1, freq + 1)]
    rep = egroup.directsum(irreps, name=f"{name}_band{freq}")
    assert tuple(r.size for r in irreps) == field_irreps(name)
    return rep


class _Fields(torch.nn.Module):
    """Common shape handling: [B, F d, H, W] <-> [B, F, d, H, W] (a view where strides allow,
    including channels_last)."""

    def __init__(self, name: str, fields: int):
        super().__init__()
        sizes = field_irreps(name)
        self.name, self.fields, self.size = name, fields, sum(sizes)
        self.pairs = sizes.count(2)                # 2-channel irreps psi_1 .. psi_F
        self.irreps = len(sizes)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.fields * self.size:
            raise ValueError(f"expected [B, {self.fields * self.size}, H, W], got {list(x.shape)}")
        return x.unflatten(1, (self.fields, self.size))

    def block_norms(self, z: torch.Tensor) -> torch.Tensor:
        """Norms of the 2-vectors of a split map: [B, F, irreps - 1, H, W]."""
        return pair_norms(parts(z)[1])

    def extra_repr(self) -> str:
        return f"{self.name}, fields={self.fields}, channels_per_field={self.size}"


class BandBatchNorm(_Fields):
    """Batch norm of band-limited fields (module docstring); running statistics and ``momentum``
    (None: cumulative average) as ``torch.nn.BatchNorm2d``'s, the trivial variance unbiased."""

    def __init__(self, name: str, fields: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__(name, fields)
        self.eps, self.momentum, self.track_running_stats = eps, momentum, True
        self.weight = torch.nn.Parameter(torch.ones(fields, self.irreps))
        self.bias = torch.nn.Parameter(torch.zeros(fields))
        self.register_buffer("running_mean", torch.zeros(fields))
        self.register_buffer("running_var", torch.ones(fields, self.irreps))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self.forward_ops(x)
        z = self.split(x)                                  # the same maths, a hand-written backward
        y, mean, var = BandBatchNormFn.apply(z, self.weight, self.bias, self.eps)
        self._update_running(mean, var, z.numel() // (z.shape[1] * z.shape[2]))
        return y.flatten(1, 2)

    def forward_ops(self, x: torch.Tensor) -> torch.Tensor:
        """The definition in tensor ops (what evaluation and the exported copy run)."""
        z = self.split(x)
        if self.training:
            trivial, rest = z[:, :, 0], z[:, :, 1:]
            mean = trivial.mean((0, 2, 3), dtype=torch.float32)
            var0 = (trivial - mean.to(z.dtype)[:, None, None]).square().mean((0, 2, 3), dtype=torch.float32)
            square = rest.square().mean((0, 3, 4), dtype=torch.float32)          # [F, d - 1]
            ms = square.unflatten(1, (self.pairs, 2)).mean(2)
            var = torch.cat([var0[:, None], ms], 1)
            self._update_running(mean, var, z.numel() // (z.shape[1] * z.shape[2]))
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight * torch.rsqrt(var + self.eps)                          # [F, irreps]
        scale_ch = per_channel(scale)                                              # [F, d]
        shift = torch.zeros_like(scale_ch)
        shift[:, 0] = self.bias - mean * scale[:, 0]
        return torch.addcmul(shift[..., None, None].to(z.dtype), z,
                             scale_ch[..., None, None].to(z.dtype)).flatten(1, 2)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        var = var.clone()
        var[:, 0] *= count / max(count - 1, 1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(var.to(self.running_var.dtype), factor)


class BandNormReLU(_Fields):
    """ReLU on the trivial channel, norm-ReLU relu(|v| - exp(log_bias)) v / |v| on each other block."""

    def __init__(self, name: str, fields: int):
        super().__init__(name, fields)
        self.log_bias = torch.nn.Parameter(torch.zeros(fields, self.irreps - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return self.forward_ops(x)
        bias = torch.exp(self.log_bias).to(x.dtype)        # the same maths, a hand-written backward
        return NormReLUFn.apply(self.split(x), bias).flatten(1, 2)

    def forward_ops(self, x: torch.Tensor) -> torch.Tensor:
        """The definition in tensor ops (what evaluation and the exported copy run)."""
        trivial, pairs = parts(self.split(x))
        bias = torch.exp(self.log_bias)[None, :, :, None, None].to(x.dtype)   # [1, F, irreps - 1, 1, 1]
        _, gain = pair_gain(pairs, bias)
        return torch.cat([torch.relu(trivial), (pairs * gain.unsqueeze(3)).flatten(2, 3)], 2).flatten(1, 2)


class IrrepNorms(_Fields):
    """[B, F d, H, W] -> [B, F irreps, H, W]: per field the trivial channel and each block's norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.split(x)
        return torch.cat([z[:, :, :1], self.block_norms(z)], 2).flatten(1, 2)


class OnFields(enn.EquivariantModule):
    """An e2cnn module around one of the plain modules above; ``export()`` is a copy of it."""

    def __init__(self, in_type: enn.FieldType, module: torch.nn.Module,
                 out_type: enn.FieldType | None = None):
        super().__init__()
        self.in_type, self.out_type = in_type, out_type or in_type
        self.module = module

    def forward(self, input: enn.GeometricTensor) -> enn.GeometricTensor:
        assert input.type == self.in_type
        return enn.GeometricTensor(self.module(input.tensor), self.out_type)

    def evaluate_output_shape(self, input_shape):
        b, _, h, w = input_shape
        return b, self.out_type.size, h, w

    def export(self) -> torch.nn.Module:
        return copy.deepcopy(self.module).eval()


def invariant_type(in_type: enn.FieldType, name: str) -> enn.FieldType:
    """The trivial field type :class:`IrrepNorms` maps ``in_type`` (band-limited fields) to."""
    return enn.FieldType(in_type.gspace, len(in_type) * len(field_irreps(name)) * [in_type.gspace.trivial_repr])
