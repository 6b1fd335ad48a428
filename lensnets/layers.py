"""e2cnn modules that lack ``export()``, given one, plus their plain-PyTorch counterparts.

e2cnn exports ``R2Conv`` -> ``Conv2d``, ``InnerBatchNorm`` -> ``BatchNorm2d``, ``ReLU`` -> ``ReLU``
and ``GroupPooling`` -> ``MaxPoolChannels``; ``MaskModule`` and ``PointwiseAvgPoolAntialiased`` have
no ``export()``. The subclasses below compute exactly what the parents compute and export to the
plain modules ``DiscMask`` and a depthwise ``torch.nn.Conv2d``.
"""
from __future__ import annotations

import torch
from e2cnn import nn as enn

from .lean_ops import batch_norm_relu, fixed_filter_conv


class DiscMask(torch.nn.Module):
    """Multiply every channel by a fixed ``[1, 1, S, S]`` mask (1 inside the inscribed disc).

    e2cnn's mask (margin m %): 1 where r^2 <= t = ((S-1)/2 (1 - m/100))^2, else exp((t - r^2)/sig^2)
    with sig = 2; r is the distance from the centre pixel in pixels.
    """

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


class ExportableMaskModule(enn.MaskModule):
    """``e2cnn.nn.MaskModule`` with ``export()`` to :class:`DiscMask`.

    The mask is kept as a buffer (the parent makes it a frozen Parameter, which would show up in
    ``parameters()`` and in optimisers).
    """

    def __init__(self, in_type: enn.FieldType, size: int, margin: float = 0.0):
        super().__init__(in_type, size, margin=margin)
        mask = self.mask.data
        del self.mask
        self.register_buffer("mask", mask)

    def export(self) -> DiscMask:
        self.eval()
        return DiscMask(self.mask)


def gaussian_pool_conv(pool: enn.PointwiseAvgPoolAntialiased) -> torch.nn.Conv2d:
    """A depthwise ``Conv2d`` (no bias, frozen weight) with the pool's Gaussian filter.

    The filter is g(x, y) = exp(-((x - c)^2 + (y - c)^2) / (2 sigma^2)) / Z on a k x k grid,
    k = 2 round(3 sigma) + 1, c = (k - 1)/2 (pixels), Z making it sum to 1; each channel is
    convolved with it alone (``groups = channels``), at the pool's stride and zero padding.
    """
    weight = pool.filter
    channels, _, k, _ = weight.shape
    conv = torch.nn.Conv2d(channels, channels, k, stride=pool.stride, padding=pool.padding,
                           groups=channels, bias=False, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
    conv.weight.requires_grad_(False)
    return conv


class ExportablePointwiseAvgPoolAntialiased(enn.PointwiseAvgPoolAntialiased):
    """``e2cnn.nn.PointwiseAvgPoolAntialiased`` with ``export()`` to :func:`gaussian_pool_conv`."""

    def export(self) -> torch.nn.Conv2d:
        self.eval()
        return gaussian_pool_conv(self)

    def forward_lean(self, input: enn.GeometricTensor) -> enn.GeometricTensor:
        """The same pool, keeping nothing of the map for backward (the filter is fixed)."""
        assert input.type == self.in_type
        out = fixed_filter_conv(input.tensor, self.filter, self.stride, self.padding, input.shape[1])
        return enn.GeometricTensor(out, self.out_type)


class FieldMaxPool(torch.nn.Module):
    """Group pooling in plain PyTorch: [B, F*|G|, H, W] -> [B, F, H, W], max over each field.

    Same as e2cnn's ``GroupPooling`` for regular fields (channels of field f are f|G| .. f|G|+|G|-1).
    """

    def __init__(self, group_order: int):
        super().__init__()
        self.group_order = group_order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return x.view(b, c // self.group_order, self.group_order, h, w).amax(dim=2)

    def extra_repr(self) -> str:
        return f"group_order={self.group_order}"


class FastInnerBatchNorm(enn.InnerBatchNorm):
    """``e2cnn.nn.InnerBatchNorm`` for fields of one size ``s``, without its copies.

    Same maths: for each field f, mean and variance over (batch, its s channels, H, W), then
    ``y = (x - mu_f) / sqrt(var_f + eps) * gamma_f + beta_f``, running statistics as BatchNorm3d.
    e2cnn writes the result into a fresh tensor slice by slice; here its ``BatchNorm3d`` runs on a
    zero-copy view: [B, F, s, H, W] for NCHW, or [B*H*W, F, s, 1, 1] for channels_last.
    ``export()`` is the parent's (the same ``BatchNorm3d`` parameters).
    """

    def __init__(self, in_type: enn.FieldType, **kwargs):
        super().__init__(in_type, **kwargs)
        if len(self._contiguous) != 1 or not all(self._contiguous.values()):
            raise ValueError("FastInnerBatchNorm needs fields of a single size")
        (self._field_size,) = self._contiguous
        self._norm_name = f"batch_norm_[{self._field_size}]"   # the parent's BatchNorm3d

    def forward(self, input: enn.GeometricTensor) -> enn.GeometricTensor:
        return enn.GeometricTensor(self._on_fields(input, getattr(self, self._norm_name)),
                                   self.out_type)

    def forward_relu(self, input: enn.GeometricTensor) -> enn.GeometricTensor:
        """``ReLU(self(input))``; in training it keeps only the input for backward
        (:func:`lensnets.lean_ops.batch_norm_relu`)."""
        norm = getattr(self, self._norm_name)
        if not (norm.training and torch.is_grad_enabled()):
            return enn.GeometricTensor(torch.relu(self._on_fields(input, norm)), self.out_type)
        fn = lambda view: batch_norm_relu(view, norm)  # noqa: E731
        return enn.GeometricTensor(self._on_fields(input, fn), self.out_type)

    def _on_fields(self, input: enn.GeometricTensor, fn) -> torch.Tensor:
        """``fn`` on a zero-copy per-field view of the input, returned in the input's layout."""
        assert input.type == self.in_type
        x, s = input.tensor, self._field_size
        b, c, h, w = x.shape
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            y = fn(x.permute(0, 2, 3, 1).view(b * h * w, c // s, s, 1, 1))
            return y.view(b, h, w, c).permute(0, 3, 1, 2)
        return fn(x.contiguous().view(b, c // s, s, h, w)).view(b, c, h, w)


class LeanR2Conv(enn.R2Conv):
    """``e2cnn.nn.R2Conv`` whose ``state_dict`` holds only what training changes.

    e2cnn keeps derived tensors as persistent buffers: the sampled basis and, in eval mode only,
    the expanded filter. Checkpoints then weigh ~25x the parameters, and their keys depend on the
    mode the model was saved in; worse, loading weights into a model already in eval mode leaves
    the old filter in place. Here those buffers are not saved, and loading in eval mode rebuilds
    the filter from the loaded weights.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for module in self._basisexpansion.modules():
            module._non_persistent_buffers_set.update(module._buffers)
        self._non_persistent_buffers_set.add("filter")

    def train(self, mode: bool = True):
        result = super().train(mode)
        self._non_persistent_buffers_set.add("filter")   # e2cnn re-registers it on eval()
        return result

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if not self.training:
            with torch.no_grad():
                self._buffers["filter"] = self.expand_parameters()[0]


class FastGroupPooling(enn.GroupPooling):
    """``e2cnn.nn.GroupPooling`` for regular fields of one size, as a max over a zero-copy view.

    Same maths and the same backward (``torch.max`` over each field's |G| channels, gradient to
    the arg-max); e2cnn slices with index tensors read back by ``.item()`` and writes into a fresh
    float32 tensor, which breaks fake-tensor memory estimates and bfloat16 autocast.
    ``export()`` is the parent's.
    """

    def __init__(self, in_type: enn.FieldType, **kwargs):
        super().__init__(in_type, **kwargs)
        if len(self._contiguous) != 1 or not all(self._contiguous.values()):
            raise ValueError("FastGroupPooling needs fields of a single size")
        (self._field_size,) = self._contiguous

    def forward(self, input: enn.GeometricTensor) -> enn.GeometricTensor:
        assert input.type == self.in_type
        x, s = input.tensor, self._field_size
        b, c, h, w = x.shape
        return enn.GeometricTensor(x.view(b, c // s, s, h, w).max(dim=2).values, self.out_type)
