"""Compiled (numba) per-pixel kernels: the simulator's lens + source, PSF and noise, and
the CPU path of the rotation augmentation.

Each kernel is one pass over the pixels with no array temporaries; the maths is that of the
numpy reference functions in ``data_io.profiles`` (which the tests check against lenstronomy),
and ``tests/data_io/test_data_kernels.py`` checks the kernels against those references.

Randomness comes only from the ``numpy.random.Generator`` passed in (numba draws from its bit
generator, advancing the caller's stream), so results are a pure function of the seed.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np

from data_io.profiles import _point_mass_sum

#: Poisson means below this are sampled from inversion tables; at and above it by numpy's
#: PTRS (Hoermann 1993) via ``gen.poisson``.
POISSON_TABLE_MAX = 100


@numba.njit(cache=True)
def lensed_sersic_exponent(x, y, ux, uy, sx, sy, theta_e, cx, cy, theta2, r_sersic, n_sersic,
                           e1, e2, x0, y0, ax, ay, out):  # pragma: no cover - compiled
    """One image's Sersic exponent at the ray-shot source positions, flat, into ``out``.

    ``alpha = theta_E * alpha_SIE(theta_E=1) + alpha_shear + sum_k alpha_PM,k`` (arcsec; the
    SIE deflection is linear in theta_E), ``beta = theta - alpha``, and
    ``out = -b_n ((R(beta) / R_sersic)^(1/n) - 1)``, so that ``amp * exp(out)`` is
    ``profiles.sersic_elliptic`` at ``beta``. The exp is left to numpy, which vectorises it
    (numba's scalar exp costs ~10x more). ``ax, ay`` are scratch arrays of the pixel count.
    """
    npix = x.shape[0]
    for p in range(npix):
        ax[p] = theta_e * ux[p] + sx[p]
        ay[p] = theta_e * uy[p] + sy[p]
    if cx.shape[0] > 0:
        _point_mass_sum(x, y, cx, cy, theta2, ax, ay)
    inv_norm = 1.0 / math.sqrt(max(abs(1.0 - e1 * e1 - e2 * e2), 1e-6))
    inv_r = 1.0 / max(r_sersic, 1e-4)
    bn = 1.9992 * n_sersic - 0.3271
    inv_n = 1.0 / n_sersic
    for p in range(npix):
        dx = x[p] - ax[p] - x0
        dy = y[p] - ay[p] - y0
        xs = ((1.0 - e1) * dx - e2 * dy) * inv_norm
        ys = (-e2 * dx + (1.0 + e1) * dy) * inv_norm
        ratio = max(math.sqrt(xs * xs + ys * ys), 1e-4) * inv_r
        if n_sersic != 1.0:
            ratio = ratio ** inv_n
        out[p] = -bn * (ratio - 1.0)


@numba.njit(cache=True)
def psf_nearest(img, k, out):  # pragma: no cover - compiled
    """Separable correlation of ``img`` [B, H, W] with the odd 1-D kernel ``k`` along both
    axes, edge pixels repeated (``scipy.ndimage.correlate1d(mode="nearest")`` twice)."""
    b, h, w = img.shape
    nk = k.shape[0]
    r = nk // 2
    tmp = np.empty((h, w))
    row = np.empty(w + 2 * r)
    for i in range(b):
        tmp[:] = 0.0
        for yy in range(h):           # along axis 1: tmp[y] = sum_j k[j] img[clip(y + j - r)]
            for j in range(nk):
                src = min(max(yy + j - r, 0), h - 1)
                kj = k[j]
                for xx in range(w):
                    tmp[yy, xx] += kj * img[i, src, xx]
        for yy in range(h):           # along axis 2, on a row padded with its edge values
            for xx in range(w):
                row[xx + r] = tmp[yy, xx]
            for j in range(r):
                row[j] = tmp[yy, 0]
                row[w + r + j] = tmp[yy, w - 1]
            for xx in range(w):
                out[i, yy, xx] = 0.0
            for j in range(nk):
                kj = k[j]
                for xx in range(w):
                    out[i, yy, xx] += kj * row[xx + j]


@functools.lru_cache(maxsize=2)
def poisson_tables(k_max: int = POISSON_TABLE_MAX, length: int = 256, guide: int = 256):
    """Inversion tables for Poisson(K), K = 0 .. k_max - 1 (``poisson`` below).

    ``cdf[K, j] = P(Poisson(K) <= j)`` (float64, summed from the pmf
    ``exp(j ln K - K - ln j!)``; the last entry is set to 1, dropping < 1e-36 of tail mass for
    K < 100), and the guide table ``start[K, i] = min{j : cdf[K, j] > i / guide}`` (Chen &
    Asau 1974) so that inversion of ``u`` starts within a step or two of its answer.
    """
    j = np.arange(length, dtype=np.float64)
    log_fact = np.array([math.lgamma(v + 1.0) for v in j])
    cdf = np.ones((k_max, length))
    for k in range(1, k_max):
        cdf[k] = np.cumsum(np.exp(j * math.log(k) - k - log_fact))
    cdf[:, -1] = 1.0
    cdf = np.minimum(cdf, 1.0)
    levels = np.arange(guide) / guide
    start = np.stack([np.searchsorted(c, levels, side="right") for c in cdf]).astype(np.int32)
    return cdf, start


@numba.njit(cache=True)
def _invert(cdf, start, k, u):  # pragma: no cover - compiled
    """``min{j : cdf[k, j] > u}`` for ``u`` in [0, 1), from the guide table."""
    j = start[k, int(u * start.shape[1])]
    while cdf[k, j] <= u:
        j += 1
    return j


@numba.njit(cache=True)
def _poisson_below_one(u, f, exp_neg_f):  # pragma: no cover - compiled
    """Inversion of ``u`` in [0, 1) for Poisson(``f``), ``0 <= f < 1``, given ``exp(-f)``:
    the CDF ``exp(-f) sum_{j<=k} f^j / j!`` is compared branch-free for k = 0..3
    (P(X > 3) < 0.019), then summed on sequentially in the rare tail."""
    p = exp_neg_f
    c0 = p
    p *= f
    c1 = c0 + p
    p *= f * 0.5
    c2 = c1 + p
    p *= f * (1.0 / 3.0)
    c3 = c2 + p
    n = int(u >= c0) + int(u >= c1) + int(u >= c2) + int(u >= c3)
    if u >= c3:
        c, n = c3, 3
        while u >= c and p > 0.0:  # p underflowing to 0 ends the (float-rounding) tail
            n += 1
            p *= f / n
            c += p
    return n


@numba.njit(cache=True)
def gaussian_means(gen, model, exposure, background, out):  # pragma: no cover - compiled
    """``out[i, p] = max(t m + sqrt(t |m| + b^2) N(0, 1), 0)`` (counts) with ``m = model[i, p]``,
    ``t = exposure[i]``, ``b = background[i]``: the Poisson means of DeepLense's noise."""
    for i in range(model.shape[0]):
        t = exposure[i]
        b2 = background[i] * background[i]
        for p in range(model.shape[1]):
            m = model[i, p]
            out[i, p] = max(t * m + math.sqrt(t * abs(m) + b2) * gen.standard_normal(), 0.0)


@numba.njit(cache=True)
def poisson_counts(gen, lam, exp_neg_frac, cdf, start, out):  # pragma: no cover - compiled
    """``out[i, p] ~ Poisson(lam[i, p])`` exactly; ``exp_neg_frac = exp(floor(lam) - lam)``
    (numpy vectorises that exp); ``cdf, start`` from ``poisson_tables``.

    For ``lam < K_max``: ``Poisson(lam) = Poisson(K) + Poisson(f)``, ``K = floor(lam)``,
    ``f = lam - K`` (independent Poisson variables add), ``Poisson(K)`` by guide-table
    inversion of one uniform and ``Poisson(f)`` by inversion of a second
    (``_poisson_below_one``): no transcendental functions and almost no unpredictable
    branches, which cost more than the arithmetic here. Zero means (clipped sky) give 0 and
    draw nothing. The few ``lam >= K_max`` (bright arcs) are drawn afterwards, per row, by
    numpy's PTRS (Hoermann 1993, ``gen.poisson``); keeping PTRS out of the first loop keeps
    that loop about 4x faster.
    """
    k_max = cdf.shape[0]
    npix = lam.shape[1]
    todo = np.empty(npix, np.int64)
    for i in range(lam.shape[0]):
        n_todo = 0
        for p in range(npix):  # zero means (clipped sky, ~40%) give 0: skip them, branch-free
            out[i, p] = 0.0
            todo[n_todo] = p
            n_todo += lam[i, p] > 0.0
        n_big = 0
        for q in range(n_todo):
            p = todo[q]
            v = lam[i, p]
            if v < k_max:
                k = int(v)
                out[i, p] = (_invert(cdf, start, k, gen.random())
                             + _poisson_below_one(gen.random(), v - k, exp_neg_frac[i, p]))
            else:
                out[i, p] = -1.0
                n_big += 1
        for p in range(npix):
            if n_big > 0 and out[i, p] < 0.0:
                out[i, p] = gen.poisson(lam[i, p])
                n_big -= 1


@numba.njit(cache=True)
def _upsample3_index(n):  # pragma: no cover - compiled
    """torch's bilinear x3 upsampling (``align_corners=False``) along one axis of length n:
    output I reads ``(1 - f) in[i0] + f in[i1]`` with ``s = max((I + 0.5) / 3 - 0.5, 0)``,
    ``i0 = floor(s)``, ``i1 = min(i0 + 1, n - 1)``, ``f = s - i0``."""
    i0, i1, f = np.empty(3 * n, np.int64), np.empty(3 * n, np.int64), np.empty(3 * n)
    for k in range(3 * n):
        s = max((k + 0.5) / 3.0 - 0.5, 0.0)
        i0[k] = int(s)
        i1[k] = min(i0[k] + 1, n - 1)
        f[k] = s - i0[k]
    return i0, i1, f


@numba.njit(cache=True)
def rotate_pool3(x, cos, sin, mask, out):  # pragma: no cover - compiled
    """The seeds' rotation ``avg_pool2d(grid_sample(upsample3(x), R), 3) * mask`` per image,
    without the batch-sized upsampled image, the grid or the rotated image.

    ``x`` [N, H, W] (images x channels). Per image, the bilinear x3 upsampling
    (``_upsample3_index``) goes into a scratch image with a border of 2 zeros; output pixel
    (u, v) of ``out`` [N, H, W] averages 9 bilinear, zero-padded samples of it
    (``grid_sample``, ``align_corners=False``) at the rotated centres of its 3x3 sub-pixels:
    normalised sub-pixel centre ``(x, y) = ((2J + 1) / 3W - 1, (2I + 1) / 3H - 1)`` maps to
    ``(cos x - sin y, sin x + cos y)`` and then to index ``((g + 1) size - 1) / 2``. Indices
    are clamped into the zero border, which is what zero padding gives. ``cos, sin`` [N];
    pixels where ``mask`` [H, W] is False are 0 and are not computed.
    """
    n, h, w = out.shape
    hn, wn = 3 * h, 3 * w
    xs = (2.0 * np.arange(wn) + 1.0) / wn - 1.0
    ys = (2.0 * np.arange(hn) + 1.0) / hn - 1.0
    r0, r1, rf = _upsample3_index(h)
    c0, c1, cf = _upsample3_index(w)
    rows = np.empty((hn, w), x.dtype)
    up = np.zeros((hn + 4, wn + 4), x.dtype)
    for b in range(n):
        for i in range(hn):
            for j in range(w):
                rows[i, j] = (1.0 - rf[i]) * x[b, r0[i], j] + rf[i] * x[b, r1[i], j]
        for i in range(hn):
            for j in range(wn):
                up[i + 2, j + 2] = (1.0 - cf[j]) * rows[i, c0[j]] + cf[j] * rows[i, c1[j]]
        cb, sb = cos[b], sin[b]
        for u in range(h):
            for v in range(w):
                acc = 0.0
                if mask[u, v]:
                    for a in range(3):
                        y = ys[3 * u + a]
                        for c in range(3):
                            xx = xs[3 * v + c]
                            ix = ((cb * xx - sb * y + 1.0) * wn - 1.0) * 0.5 + 2.0
                            iy = ((sb * xx + cb * y + 1.0) * hn - 1.0) * 0.5 + 2.0
                            ix = min(max(ix, 0.0), wn + 2.0)
                            iy = min(max(iy, 0.0), hn + 2.0)
                            j, i = int(ix), int(iy)
                            fx, fy = ix - j, iy - i
                            acc += ((1.0 - fy) * ((1.0 - fx) * up[i, j] + fx * up[i, j + 1])
                                    + fy * ((1.0 - fx) * up[i + 1, j] + fx * up[i + 1, j + 1]))
                out[b, u, v] = acc / 9.0


__all__ = ["lensed_sersic_exponent", "psf_nearest", "poisson_tables", "gaussian_means", "poisson_counts", "rotate_pool3"]
