"""Autograd functions that keep less for backward than their stock torch counterparts.

Used by the steerable CNN's lean memory mode (``lensnets.steerable``); each computes exactly what
the stock operations compute in forward, and the same gradients.

- :class:`BatchNormReLU`: ``relu(batch_norm(z))`` in training. Stock autograd keeps ``z`` for batch
  norm's backward and the ReLU output for ReLU's: two tensors of the map's size. This keeps ``z``
  (and the per-channel batch mean and inverse std) only; the ReLU mask is recomputed from ``z`` in
  backward and applied to the incoming gradient in place. Forward and backward call ATen's own batch-norm kernels, so running statistics and
  gradients are those of ``torch.nn.BatchNorm3d`` followed by ``ReLU``.
- :class:`FixedFilterConv`: a convolution with a frozen filter (the Gaussian anti-aliasing pools).
  Stock autograd keeps the input for the filter's gradient even when the filter needs none; its
  input gradient needs only the filter, so nothing of the map is kept.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class BatchNormReLU(torch.autograd.Function):
    """y = max(0, (z - mu) / sqrt(var + eps) * gamma + beta), batch statistics over all dims but 1."""

    @staticmethod
    def forward(ctx, z, weight, bias, running_mean, running_var, momentum, eps):
        out, mean, invstd = torch.ops.aten.native_batch_norm(
            z, weight, bias, running_mean, running_var, True, momentum, eps)
        out.relu_()
        ctx.save_for_backward(z, weight, bias, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad_out):
        z, weight, bias, mean, invstd = ctx.saved_tensors
        shape = [1, -1] + [1] * (z.dim() - 2)
        scale = (invstd * weight).view(shape)
        shift = (bias - mean * invstd * weight).view(shape)
        active = torch.addcmul(shift, z, scale) > 0
        if grad_out.is_contiguous() and grad_out.shape == z.shape:
            grad = grad_out.mul_(active)     # a fresh gradient no one else reads: mask it in place
        else:
            grad = torch.where(active, grad_out, 0)
        del active
        grad_z, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad, z, weight, None, None, mean, invstd, True, ctx.eps, [True, True, True])
        return grad_z, grad_w, grad_b, None, None, None, None


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
    return BatchNormReLU.apply(z, norm.weight, norm.bias, norm.running_mean, norm.running_var,
                               momentum, norm.eps)


class FixedFilterConv(torch.autograd.Function):
    """``conv2d(x, filter)`` with a filter that takes no gradient; keeps no map for backward."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, groups):
        ctx.save_for_backward(weight)
        ctx.conf = (x.shape, stride, padding, groups)
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
