"""Lens and light profiles on flattened pixel grids, in lenstronomy's conventions.

All angles are in arcseconds. Each function is vectorised over the coordinate arrays and
matches the lenstronomy profile named in its docstring (checked in ``tests/data_io/test_data_physics.py``).

Ellipticity convention (lenstronomy's ``param_util``): ``phi = arctan2(e2, e1) / 2``,
``|e| = sqrt(e1^2 + e2^2)``, axis ratio ``q = (1 - |e|) / (1 + |e|)``.
"""
from __future__ import annotations

import numba
import numpy as np

#: Below this radius (arcsec) a point mass deflects as if at this radius (lenstronomy's r_min).
POINT_MASS_R_MIN = 1e-25


def ellipticity_to_phi_q(e1: float, e2: float) -> tuple[float, float]:
    """Orientation angle ``phi`` (rad) and axis ratio ``q`` (minor/major) of ``(e1, e2)``."""
    c = min(float(np.hypot(e1, e2)), 0.9999)
    return float(np.arctan2(e2, e1) / 2.0), (1.0 - c) / (1.0 + c)


def sie_deflection(x, y, theta_e: float, e1: float, e2: float, cx: float = 0.0, cy: float = 0.0):
    """Deflection (arcsec) of a singular isothermal ellipsoid, lenstronomy ``SIE``.

    Convergence ``kappa = theta_E / (2 sqrt(q x'^2 + y'^2 / q))`` in the frame of the major
    axis, so ``theta_E`` is the product-averaged (circularised) Einstein radius. With
    ``b = theta_E sqrt(q)`` (Keeton & Kochanek 1998, s = 0) and ``psi = sqrt(q^2 x'^2 + y'^2)``:
    ``alpha_x' = b / sqrt(1-q^2) * arctan(sqrt(1-q^2) x' / psi)``,
    ``alpha_y' = b / sqrt(1-q^2) * arctanh(sqrt(1-q^2) y' / psi)``, rotated back by ``phi``.
    """
    phi, q = ellipticity_to_phi_q(e1, e2)
    q = min(q, 0.99999999)
    b = theta_e * np.sqrt(q)  # = theta_E / sqrt((1+q^2)/(2q)) * sqrt((1+q^2)/2)
    cos, sin = np.cos(phi), np.sin(phi)
    dx, dy = np.asarray(x) - cx, np.asarray(y) - cy
    xr, yr = cos * dx + sin * dy, -sin * dx + cos * dy
    psi = np.maximum(np.sqrt(q * q * xr * xr + yr * yr), 1e-30)
    f = np.sqrt(1.0 - q * q)
    ax_r = b / f * np.arctan(f * xr / psi)
    ay_r = b / f * np.arctanh(f * yr / psi)
    return cos * ax_r - sin * ay_r, sin * ax_r + cos * ay_r


def shear_deflection(x, y, gamma1: float, gamma2: float):
    """External shear deflection (arcsec), lenstronomy ``SHEAR`` with zero point at the origin:
    ``alpha = (g1 x + g2 y, g2 x - g1 y)``."""
    x, y = np.asarray(x), np.asarray(y)
    return gamma1 * x + gamma2 * y, gamma2 * x - gamma1 * y


@numba.njit(cache=True)
def _point_mass_sum(x, y, cx, cy, theta2, ax, ay):  # pragma: no cover - compiled
    r2_min = POINT_MASS_R_MIN * POINT_MASS_R_MIN
    for k in range(cx.shape[0]):
        for p in range(x.shape[0]):
            dx = x[p] - cx[k]
            dy = y[p] - cy[k]
            r2 = dx * dx + dy * dy
            if r2 < r2_min:
                r2 = r2_min
            f = theta2[k] / r2
            ax[p] += f * dx
            ay[p] += f * dy


def point_mass_deflection(x, y, cx, cy, theta_e):
    """Summed deflection (arcsec) of point masses, lenstronomy ``POINT_MASS`` each:
    ``alpha = sum_k theta_E,k^2 (x - x_k) / |x - x_k|^2``. ``x, y`` flat; ``cx, cy, theta_e``
    one entry per mass. Compiled loop (numba): no [pixels x masses] temporaries."""
    x = np.ascontiguousarray(x, dtype=np.float64).ravel()
    y = np.ascontiguousarray(y, dtype=np.float64).ravel()
    ax, ay = np.zeros_like(x), np.zeros_like(y)
    theta2 = np.square(np.asarray(theta_e, dtype=np.float64)).ravel()
    _point_mass_sum(x, y, np.asarray(cx, np.float64).ravel(), np.asarray(cy, np.float64).ravel(),
                    theta2, ax, ay)
    return ax, ay


def sersic_bn(n: float) -> float:
    """lenstronomy's approximation ``b_n = 1.9992 n - 0.3271`` (half-light radius R_sersic)."""
    return max(1.9992 * n - 0.3271, 1e-5)


def sersic_elliptic(x, y, amp, r_sersic, n, e1, e2, cx, cy):
    """Surface brightness of lenstronomy's ``SERSIC_ELLIPSE`` (product-average radius):
    ``I = amp exp(-b_n ((R / R_sersic)^(1/n) - 1))`` with
    ``R^2 = x'^2 + y'^2``, ``x' = ((1-e1) dx - e2 dy) / N``, ``y' = (-e2 dx + (1+e1) dy) / N``,
    ``N = sqrt(1 - e1^2 - e2^2)``. Parameters broadcast against ``x, y``."""
    dx, dy = np.asarray(x) - cx, np.asarray(y) - cy
    norm = np.sqrt(np.maximum(np.abs(1.0 - e1 * e1 - e2 * e2), 1e-6))
    xs = ((1.0 - e1) * dx - e2 * dy) / norm
    ys = (-e2 * dx + (1.0 + e1) * dy) / norm
    r = np.maximum(np.sqrt(xs * xs + ys * ys), 1e-4)
    ratio = r / np.maximum(r_sersic, 1e-4)
    if not (np.ndim(n) == 0 and n == 1):  # the power is the costliest step; skip it for n = 1
        ratio = ratio ** (1.0 / np.asarray(n))
    return amp * np.exp(-(1.9992 * np.asarray(n) - 0.3271) * (ratio - 1.0))


def gaussian_psf_1d(fwhm: float, pixel_scale: float, truncation: float = 3.0) -> np.ndarray:
    """1-D factor of lenstronomy's truncated Gaussian PSF kernel (``psf_type='GAUSSIAN'``).

    The 2-D kernel ``exp(-r^2 / 2 sigma^2)`` normalised over a ``(2R+1)^2`` grid, with
    ``R = max(round(truncation sigma / pixel), 1)``, is the outer product of this vector with
    itself, so the convolution is separable. ``sigma = fwhm / (2 sqrt(2 ln 2))``.
    """
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    radius = max(int(round(truncation * sigma / pixel_scale)), 1)
    t = np.arange(-radius, radius + 1) * pixel_scale
    k = np.exp(-t * t / (2.0 * sigma * sigma))
    return k / k.sum()
