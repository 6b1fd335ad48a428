"""Einstein radii from the cosmology, as DeepLense computes them.

Flat LCDM with H0 = 70 km/s/Mpc, Om0 = 0.3, Ob0 = 0.05 (astropy ``FlatLambdaCDM``).
"""
from __future__ import annotations

import functools

import numpy as np

#: DeepLense converts radians to arcseconds with this rounded factor; kept for parity.
RAD_TO_ARCSEC = 206265.0
G_SI = 6.67430e-11          # m^3 kg^-1 s^-2 (CODATA 2018, astropy.constants.G)
C_SI = 299792458.0          # m / s
M_SUN_KG = 1.988409870698051e30  # IAU 2015 nominal solar mass (astropy.constants.M_sun)


@functools.lru_cache(maxsize=1)
def _cosmology():
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=70.0, Om0=0.3, Ob0=0.05)


def luminosity_distance_m(z) -> np.ndarray:
    """Luminosity distance in metres (astropy, vectorised over ``z``)."""
    import astropy.units as u

    return np.asarray(_cosmology().luminosity_distance(np.asarray(z, float)).to(u.m).value)


def einstein_radius_per_sqrt_msun(z_lens, z_source) -> np.ndarray:
    """``theta_E(M) / sqrt(M / Msun)`` in arcsec, so ``theta_E = this * sqrt(M)``.

    Point-mass formula ``theta_E = sqrt(4 G M / c^2 * D_LS / (D_L D_S))`` (radians) with
    DeepLense's choice of *luminosity* distances and ``D_LS = D_S - D_L``.
    """
    d_l, d_s = luminosity_distance_m(z_lens), luminosity_distance_m(z_source)
    if np.any(d_s <= d_l):
        raise ValueError("source must lie behind the lens (z_source > z_lens)")
    return np.sqrt(4.0 * G_SI * M_SUN_KG / C_SI**2 * (d_s - d_l) / (d_l * d_s)) * RAD_TO_ARCSEC


def einstein_radius(mass_msun, z_lens: float = 0.5, z_source: float = 1.0) -> np.ndarray:
    """Einstein radius (arcsec) of a mass in solar masses (see ``einstein_radius_per_sqrt_msun``)."""
    return einstein_radius_per_sqrt_msun(z_lens, z_source) * np.sqrt(np.asarray(mass_msun, float))


def axion_mass_to_half_length(axion_mass_ev):
    """Half-length L (arcsec) of a vortex line, DeepLense's rule ``L = 0.06 / (2 m) * 1e-22``
    for an axion mass ``m`` in eV (valid for a halo at z = 0.5)."""
    return 0.06 / (2.0 * np.asarray(axion_mass_ev, float)) * 1e-22
