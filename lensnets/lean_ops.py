"""Autograd functions that keep less for backward than their stock torch counterparts.

Used by the steerable CNN's lean memory mode (``lensnets.steerable``); each computes exactly what
the stock operations compute in forward, and the same gradients.

- :class:`BatchNormReLU`: ``relu(batch_norm(z))`` in training. Stock autograd keeps ``z`` for batch
  norm's backward and the ReLU output for ReLU's: two tensors of the map's size. This keeps ``z``
  (and the per-channel batch mean and inverse std) only; the ReLU mask is recomputed from ``z`` in
  backward, and the gradient is computed in the incoming gradient's buffer. Forward and backward call ATen's own batch-norm kernels, so running statistics and
  gradients are those of ``torch.nn.BatchNorm3d`` followed by ``ReLU``.
- :class:`FixedFilterConv`: a convolution with a frozen filter (the Gaussian anti-aliasing pools).
  Stock autograd keeps the input for the filter's gradient even when the filter needs none; its
  input gradient needs only the filter, so nothing of the map is kept.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
import torch.nn.functional as F

_STATE = threading.local()


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


@contextmanager
def recomputing():
    """Marks a checkpoint's recomputation: :class:`BatchNormReLU` then keeps what backward needs
    but returns a stand-in output (nothing downstream in the segment keeps it) instead of
    computing the map again."""
    previous = getattr(_STATE, "recomputing", False)
    _STATE.recomputing = True
    try:
        yield
    finally:
        _STATE.recomputing = previous


class BatchNormReLU(torch.autograd.Function):
    """y = max(0, (z - mu) / sqrt(var + eps) * gamma + beta), batch statistics over all dims but 1."""

    @staticmethod
    def forward(ctx, z, weight, bias, running_mean, running_var, momentum, eps, memo):
        ctx.eps = eps
        if getattr(_STATE, "recomputing", False):
            mean, var = _channel_moments(z)
            dtype = memo.get("stat_dtype", torch.float32)   # what ATen saved in the first forward
            ctx.save_for_backward(z, weight, bias, mean.to(dtype), torch.rsqrt(var + eps).to(dtype))
            return z.new_zeros(()).expand_as(z)
        out, mean, invstd = torch.ops.aten.native_batch_norm(
            z, weight, bias, running_mean, running_var, True, momentum, eps)
        memo["stat_dtype"] = mean.dtype
        out.relu_()
        ctx.save_for_backward(z, weight, bias, mean, invstd)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        """With g the gradient masked by the ReLU, xhat = (z - mu) invstd and means over a channel:

            dz = gamma invstd (g - mean(g) - xhat mean(g xhat)),   dgamma = sum(g xhat),   dbeta = sum(g)

        computed into g's own buffer when it is a fresh dense tensor (no map-sized temporary)."""
        z, weight, bias, mean, invstd = ctx.saved_tensors
        shape = [1, -1] + [1] * (z.dim() - 2)
        mean, invstd = mean.float(), invstd.float()
        scale, shift = invstd * weight, bias - mean * invstd * weight
        in_place = grad_out.is_contiguous() and grad_out.shape == z.shape
        g = grad_out if in_place else grad_out.contiguous().clone()
        sum_g, sum_gz = _mask_and_sum(g, z, scale.view(shape), shift.view(shape))
        count = z.numel() // z.shape[1]
        mean_gxhat = invstd * (sum_gz - mean * sum_g) / count          # mean(g xhat)
        grad_w, grad_b = mean_gxhat * count, sum_g
        a = scale
        b = -scale * invstd * mean_gxhat
        c = -scale * sum_g / count - b * mean
        grad_z = g.mul_(a.view(shape).to(g.dtype)).addcmul_(z, b.view(shape).to(g.dtype))
        grad_z.add_(c.view(shape).to(g.dtype))
        return grad_z, grad_w.to(weight.dtype), grad_b.to(weight.dtype), None, None, None, None, None


CHUNKS = 16   # temporaries of the backward are 1/CHUNKS of a map (and at most one image's rows)


def _row_chunks(n: int) -> list[slice]:
    """Dim-0 slices of about n / CHUNKS rows: images (NCHW view) or pixels (channels_last view)."""
    step = max(1, -(-n // CHUNKS))
    return [slice(i, i + step) for i in range(0, n, step)]


def _channel_moments(z: torch.Tensor):
    """Per-channel (dim 1) float32 mean and biased variance of z, a chunk of rows at a time."""
    dims = [d for d in range(z.dim()) if d != 1]
    count = z.numel() // z.shape[1]
    chunks = _row_chunks(z.shape[0])
    mean = sum(z[c].sum(dims, dtype=torch.float32) for c in chunks) / count
    centre = mean.view([1, -1] + [1] * (z.dim() - 2))
    var = sum((z[c].float() - centre).square_().sum(dims) for c in chunks) / count
    return mean, var


def _mask_and_sum(g, z, scale, shift):
    """Zero g where the ReLU was off (z scale + shift <= 0), in place, a chunk of rows at a time
    (so temporaries stay small); return the per-channel (dim 1) float32 sums of g and g z."""
    dims = [d for d in range(g.dim()) if d != 1]
    sum_g = torch.zeros(z.shape[1], dtype=torch.float32, device=z.device)
    sum_gz = torch.zeros_like(sum_g)
    for rows in _row_chunks(g.shape[0]):
        gi, zi = g[rows], z[rows]
        gi.mul_(torch.addcmul(shift, zi, scale) > 0)
        sum_g += gi.sum(dims, dtype=torch.float32)
        sum_gz += (gi * zi).sum(dims, dtype=torch.float32)
    return sum_g, sum_gz


def batch_norm_relu(z: torch.Tensor, norm: torch.nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """``relu(norm(z))`` for a batch norm in training mode, keeping only ``z`` for backward.

    Running statistics are updated as ``norm`` updates them (momentum, or a cumulative average
    when its momentum is None).
    """
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:
            momentum = 1.0 / float(norm.num_batches_tracked)
    memo = norm.__dict__.setdefault("_lean_memo", {})
    return BatchNormReLU.apply(z, norm.weight, norm.bias, norm.running_mean, norm.running_var,
                               momentum, norm.eps, memo)


class FixedFilterConv(torch.autograd.Function):
    """``conv2d(x, filter)`` with a filter that takes no gradient; keeps no map for backward."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, groups):
        ctx.save_for_backward(weight)
        ctx.conf = (x.shape, stride, padding, groups)
        if getattr(_STATE, "recomputing", False):   # backward needs only the filter
            b, c, h, w = x.shape
            k, (s0, s1), (p0, p1) = weight.shape[-1], _pair(stride), _pair(padding)
            shape = (b, c, (h + 2 * p0 - k) // s0 + 1, (w + 2 * p1 - k) // s1 + 1)
            return x.new_zeros(()).expand(shape)
        return F.conv2d(x, weight, stride=stride, padding=padding, groups=groups)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        shape, stride, padding, groups = ctx.conf
        grad_x = torch.nn.grad.conv2d_input(shape, weight.to(grad_out.dtype), grad_out,
                                            stride=stride, padding=padding, groups=groups)
        return grad_x, None, None, None, None


def fixed_filter_conv(x: torch.Tensor, weight: torch.Tensor, stride, padding, groups: int) -> torch.Tensor:
    return FixedFilterConv.apply(x, weight, stride, padding, groups)
