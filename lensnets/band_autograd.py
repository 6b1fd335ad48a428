"""Band batch norm and norm-ReLU in training, with hand-written backward passes.

``lensnets.band`` defines the maths with plain tensor ops (what evaluation and ``export()`` run).
Autograd through those ops costs SO2/O2 a dozen passes over each map per block: every slice of a
field (trivial channel, 2-vectors) gets a full-size zero-filled gradient in backward,
and every intermediate (squares, norms, gains) is kept. The two functions below compute the same
outputs and gradients in a few passes and keep only their input:

:class:`BandBatchNormFn` (batch statistics; N = B H W s values per block of s channels)::

    trivial:   y = w0 (t - mu) r0 + beta            r0 = 1 / sqrt(var(t) + eps)
    2-vector:  y = wk v rk                           rk = 1 / sqrt(sum |v|^2 / N + eps)
    backward:  dt = w0 r0 g - w0 r0^3 (t - mu) sum(g (t - mu)) / N - w0 r0 sum(g) / N
               dv = wk rk g - wk rk^3 v sum(g . v) / N

:class:`NormReLUFn` (per block v with norm n = |v| and bias b > 0)::

    y = v relu(n - b) / n
    backward (n > b):  dv = (1 - b / n) g + b v (v . g) / n^3,   db = -sum (v . g) / n

(0 where n <= b; the trivial channel is a plain ReLU.)
``tests/lensnets/test_lensnets_continuous.py`` checks both against autograd of ``lensnets.band``.
"""
from __future__ import annotations

import torch

NORM_EPS = 1e-10   # e2cnn's NormNonLinearity: blocks with |v| <= this get multiplier 0


def pair_norms(pairs: torch.Tensor) -> torch.Tensor:
    """|v| of every 2-vector along dim 3: [B, F, P, 2, H, W] -> [B, F, P, H, W], in two elementwise
    passes (``torch.linalg.vector_norm`` over a size-2 strided dim took 3/4 of SO2's CPU time).
    Norms below NORM_EPS read as NORM_EPS, so the square root has a finite gradient everywhere;
    every use treats such a block as zero (norm-ReLU's gain is 0 there: its bias is > NORM_EPS)."""
    a, b = pairs.unbind(3)
    return torch.addcmul(a * a, b, b).clamp_min(NORM_EPS * NORM_EPS).sqrt()


def pair_gain(pairs: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Norm-ReLU on 2-vectors [B, F, P, 2, H, W] with bias [., F, P, 1, 1]: (1/|v|, the gain
    relu(|v| - b) / |v| = relu(1 - b / |v|)), each [B, F, P, H, W], in a few elementwise passes.
    |v| below NORM_EPS reads as NORM_EPS: the gain is 0 there (b > NORM_EPS)."""
    a, b = pairs.unbind(3)
    inv_norm = torch.addcmul(a * a, b, b).clamp_min_(NORM_EPS * NORM_EPS).rsqrt_()
    return inv_norm, torch.addcmul(torch.ones((), dtype=inv_norm.dtype), inv_norm, -bias).clamp_min_(0)


def parts(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of a field map [B, F, d, H, W]: trivial [B, F, 1, H, W], 2-vectors [B, F, P, 2, H, W]."""
    return z[:, :, :1], z[:, :, 1:].unflatten(2, (-1, 2))


def per_channel(per_irrep: torch.Tensor) -> torch.Tensor:
    """[F, irreps] -> [F, d]: each irrep's value on each of its channels (2-vectors: twice)."""
    return torch.cat([per_irrep[:, :1], per_irrep[:, 1:].repeat_interleave(2, 1)], 1)


def _sum(x: torch.Tensor, dims) -> torch.Tensor:
    return x.sum(dims, dtype=torch.float32)


class BandBatchNormFn(torch.autograd.Function):
    """``(z, weight [F, irreps], bias [F], eps) -> (y, mean [F], var [F, irreps])`` on a field map
    z [B, F, d, H, W]; mean and var are the batch statistics (for the running ones)."""

    @staticmethod
    def forward(ctx, z, weight, bias, eps):
        t, p = parts(z)
        var0, mean = torch.var_mean(t.float(), dim=(0, 2, 3, 4), correction=0)
        count = z.numel() // (z.shape[1] * z.shape[2])                     # B H W
        ms = _sum(p * p, (0, 3, 4, 5)) / (2 * count)                       # E|v|^2 / 2 per 2-vector
        var = torch.cat([var0[:, None], ms], 1)                             # [F, irreps]
        r = torch.rsqrt(var + eps)
        scale = per_channel(weight * r)                                     # [F, d]
        shift = torch.zeros_like(scale)
        shift[:, 0] = bias - mean * scale[:, 0]
        y = torch.addcmul(shift[..., None, None].to(z.dtype), z, scale[..., None, None].to(z.dtype))
        ctx.save_for_backward(z, weight, r, mean)
        ctx.count = count
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad, _mean, _var):
        z, weight, r, mean = ctx.saved_tensors
        count = ctx.count
        dot = _sum(grad * z, (0, 3, 4))                                     # sum g z per channel [F, d]
        g0 = _sum(grad[:, :, 0], (0, 2, 3))                                 # sum g, trivial channel [F]
        spread = torch.cat([(dot[:, 0] - mean * g0)[:, None],               # sum g (t - mu)
                            dot[:, 1:].unflatten(1, (-1, 2)).sum(2)], 1)    # sum g . v    [F, irreps]
        sizes = torch.ones_like(r)
        sizes[:, 1:] = 2                                                    # channels per irrep
        a = weight * r                                                      # multiplies g
        c = -weight * r ** 3 * spread / (count * sizes)                     # multiplies z
        shift = torch.zeros(z.shape[1], z.shape[2], device=z.device, dtype=r.dtype)
        shift[:, 0] = -c[:, 0] * mean - a[:, 0] * g0 / count                # the trivial channel's constant
        grad_z = torch.addcmul(shift[..., None, None].to(z.dtype), grad, per_channel(a)[..., None, None].to(z.dtype))
        grad_z.addcmul_(z, per_channel(c)[..., None, None].to(z.dtype))
        return grad_z, (r * spread).to(weight.dtype), g0.to(weight.dtype), None


class NormReLUFn(torch.autograd.Function):
    """``(z [B, F, d, H, W], bias [F, irreps - 1] > 0) -> y``: ReLU on the trivial channel,
    norm-ReLU on every 2-vector. Keeps z and, per 2-vector, 1/|v| and the gain."""

    @staticmethod
    def forward(ctx, z, bias):
        t, p = parts(z)
        y = torch.empty_like(z)
        yt, yp = parts(y)
        torch.clamp_min(t, 0, out=yt)
        inv_norm, gain = pair_gain(p, bias[None, :, :, None, None])
        torch.mul(p, gain.unsqueeze(3), out=yp)
        ctx.save_for_backward(z, bias, inv_norm, gain)
        return y

    @staticmethod
    def backward(ctx, grad):
        z, bias, inv_norm, gain = ctx.saved_tensors
        (t, p), (gt, gp) = parts(z), parts(grad)
        grad_z = torch.empty_like(z)
        dt, dp = parts(grad_z)
        dt.copy_(torch.ops.aten.threshold_backward(gt, t, 0))
        (a0, a1), (g0, g1) = p.unbind(3), gp.unbind(3)
        along = torch.addcmul(a0 * g0, a1, g1).mul_(inv_norm).mul_(gain > 0)   # (v . g) / n where n > b
        grad_bias = -_sum(along, (0, 3, 4))
        along.mul_(inv_norm.square().mul_(bias[None, :, :, None, None]))       # b (v . g) / n^3
        torch.mul(gp, gain.unsqueeze(3), out=dp)
        dp.addcmul_(p, along.unsqueeze(3))
        return grad_z, grad_bias.to(bias.dtype)
