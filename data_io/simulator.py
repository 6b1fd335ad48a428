"""Batch strong-lensing simulator: SIE + shear + point-mass substructure, Sersic source, PSF, noise.

One image is rendered as DeepLense's lenstronomy pipeline renders it (the Model I simulation code
of github.com/ML4SCI/DeepLense; lenstronomy: Birrer & Amara 2018, arXiv:1803.09746; sources in
docs/physics-and-references.md):
ray-shoot every pixel centre, ``beta = theta - alpha(theta)``; evaluate the Sersic source at
``beta`` (surface brightness per arcsec^2) times the pixel area; convolve with the truncated
Gaussian PSF (separable, edge pixels repeated: ``ImageModel``'s Gaussian PSF path is
``scipy.ndimage.gaussian_filter(mode="nearest")``); then noise.

Randomness: a chunk of images draws everything from ``default_rng(SeedSequence([seed, chunk]))``
in a fixed order, so a dataset is a pure function of ``(preset, per_class, seed)``, whatever
the number of worker processes.
"""
from __future__ import annotations

import numpy as np

from data_io.cosmology import axion_mass_to_half_length, einstein_radius_per_sqrt_msun
from data_io.kernels import (
    gaussian_means,
    lensed_sersic_exponent,
    poisson_counts,
    poisson_tables,
    psf_nearest,
)
from data_io.presets import Preset
from data_io.profiles import gaussian_psf_1d, shear_deflection, sie_deflection

#: Physical-parameter columns stored next to every simulated image (NaN where not applicable).
PARAM_COLUMNS = (
    "z_lens", "z_source", "theta_e", "source_x", "source_y", "source_r", "source_e1",
    "source_e2", "source_amp", "exposure", "snr_peak", "n_subhalos", "sub_mass_total",
    "sub_mass_max", "axion_mass", "vortex_half_length", "vortex_angle", "vortex_mass",
)


def pixel_grid(num_pix: int, pixel_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel-centre coordinates (arcsec) in lenstronomy's layout: ``image[i, j]`` sits at
    ``x = (j - (n-1)/2) * scale``, ``y = (i - (n-1)/2) * scale``."""
    c = (np.arange(num_pix) - (num_pix - 1) / 2.0) * pixel_scale
    xx, yy = np.meshgrid(c, c)
    return xx.ravel(), yy.ravel()


def power_law_masses(u: np.ndarray, lo: float, hi: float, beta: float) -> np.ndarray:
    """Inverse CDF of ``dN/dm ~ m^beta`` on [lo, hi]: ``(lo^(b+1) + (hi^(b+1) - lo^(b+1)) u)^(1/(b+1))``."""
    a, b = lo ** (beta + 1.0), hi ** (beta + 1.0)
    return (a + (b - a) * u) ** (1.0 / (beta + 1.0))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def draw_image_params(rng: np.random.Generator, preset: Preset, physics: str) -> dict:
    """Draw one image's parameters; returns scalars (see PARAM_COLUMNS) plus the lists
    ``cx, cy, mass`` of its point masses."""
    p = {k: np.nan for k in PARAM_COLUMNS}
    p.update(z_lens=_uniform(rng, preset.z_lens), z_source=_uniform(rng, preset.z_source))
    p["source_x"], p["source_y"] = rng.uniform(-preset.source_centre, preset.source_centre, 2)
    p["source_r"] = _uniform(rng, preset.source_r)
    if preset.source_e is None:
        q, phi = _uniform(rng, preset.source_q), rng.uniform(0.0, np.pi)
        e = (1.0 - q) / (1.0 + q)
        p["source_e1"], p["source_e2"] = e * np.cos(2 * phi), e * np.sin(2 * phi)
    else:
        p["source_e1"], p["source_e2"] = preset.source_e
    p["exposure"] = 10.0 ** _uniform(rng, preset.log10_exposure)
    p["snr_target"] = _uniform(rng, preset.snr) if preset.snr else np.nan
    cx = cy = mass = np.zeros(0)
    p["n_subhalos"], p["sub_mass_total"], p["sub_mass_max"] = 0, 0.0, 0.0
    if physics == "cdm":
        mass = power_law_masses(rng.uniform(0, 1, preset.n_sub), *preset.sub_mass, preset.sub_beta)
        r = rng.uniform(*preset.sub_r, preset.n_sub)
        th = rng.uniform(0, 2 * np.pi, preset.n_sub)
        cx, cy = r * np.sin(th), r * np.cos(th)  # DeepLense's (sin, cos) convention
        p.update(n_subhalos=preset.n_sub, sub_mass_total=mass.sum(), sub_mass_max=mass.max())
    elif physics == "vortex":
        p["axion_mass"] = 10.0 ** _uniform(rng, preset.log10_axion_mass)
        if preset.vortex_length is None:
            p["vortex_half_length"] = float(axion_mass_to_half_length(p["axion_mass"]))
        else:
            p["vortex_half_length"] = _uniform(rng, preset.vortex_length) / 2.0
        p["vortex_angle"] = rng.uniform(0, 2 * np.pi)
        frac = preset.vortex_mass_fraction
        p["vortex_mass"] = preset.main_mass * _uniform(rng, frac) if frac else preset.vortex_mass
        s = np.linspace(-p["vortex_half_length"], p["vortex_half_length"], preset.vortex_points)
        cx, cy = s * np.cos(p["vortex_angle"]), s * np.sin(p["vortex_angle"])
        mass = np.full(preset.vortex_points, p["vortex_mass"] / preset.vortex_points)
    p.update(cx=cx, cy=cy, mass=mass)
    return p


def render_noiseless(preset: Preset, params: list[dict]) -> np.ndarray:
    """Noiseless images [B, H, W] (float64, flux per pixel per unit time) for drawn params.

    The SIE deflection is linear in theta_E at fixed ellipticity, so one unit-theta_E field
    is computed once; each image is then one compiled pass (``kernels.lensed_sersic_exponent``:
    scaled SIE + shear + point masses, Sersic exponent at the source-plane position), one
    vectorised exp over the batch, and the separable PSF (``kernels.psf_nearest``).
    """
    x, y = pixel_grid(preset.num_pix, preset.pixel_scale)
    ux, uy = sie_deflection(x, y, 1.0, preset.lens_e1, preset.lens_e2)
    sx, sy = shear_deflection(x, y, preset.shear_g1, preset.shear_g2)
    scale = einstein_radius_per_sqrt_msun([p["z_lens"] for p in params],
                                          [p["z_source"] for p in params])
    img = np.empty((len(params), x.size))
    ax, ay = np.empty_like(x), np.empty_like(x)
    for i, p in enumerate(params):
        p["theta_e"] = float(scale[i] * np.sqrt(preset.main_mass))
        theta2 = scale[i] ** 2 * np.asarray(p["mass"], dtype=np.float64)
        lensed_sersic_exponent(
            x, y, ux, uy, sx, sy, p["theta_e"], np.asarray(p["cx"], np.float64),
            np.asarray(p["cy"], np.float64), theta2, float(p["source_r"]),
            float(preset.source_n), float(p["source_e1"]), float(p["source_e2"]),
            float(p["source_x"]), float(p["source_y"]), ax, ay, img[i])
    np.exp(img, out=img)
    img *= preset.source_amp * preset.pixel_scale**2  # surface brightness -> flux per pixel
    img = img.reshape(len(params), preset.num_pix, preset.num_pix)
    out = np.empty_like(img)
    psf_nearest(img, gaussian_psf_1d(preset.psf_fwhm, preset.pixel_scale, preset.psf_truncation),
                out)
    return out


def add_noise(rng: np.random.Generator, preset: Preset, model: np.ndarray, params: list[dict]):
    """Integer counts ``Poisson(clip(t m + sqrt(t |m| + (sigma_bkg t)^2) N(0,1), 0))``.

    DeepLense adds two independent Gaussians ``t (sqrt(|m|/t) N1 + sigma_bkg N2)``; their sum
    is one Gaussian with the summed variance, drawn here once. With ``preset.snr`` the model
    is first rescaled so that its brightest pixel has that signal-to-noise ratio. Sampling is
    two compiled passes (``kernels.gaussian_means``, then the exact
    ``kernels.poisson_counts``).
    """
    t = np.array([p["exposure"] for p in params])[:, None, None]
    bkg = preset.background_rms * t
    peak = model.reshape(len(params), -1).max(axis=1)[:, None, None]
    if preset.snr:
        s = np.array([p["snr_target"] for p in params])[:, None, None]
        counts = (s**2 + np.sqrt(s**4 + 4 * s**2 * bkg**2)) / 2  # solves c / sqrt(c + b^2) = s
        gain = counts / (t * np.maximum(peak, 1e-30))
        model, peak = model * gain, peak * gain
        for p, g in zip(params, gain.ravel()):
            p["source_amp"] = preset.source_amp * float(g)
    else:
        for p in params:
            p["source_amp"] = preset.source_amp
    c = t * peak
    for p, snr in zip(params, (c / np.sqrt(c + bkg**2)).ravel()):
        p["snr_peak"] = float(snr)
    model = np.ascontiguousarray(model, dtype=np.float64).reshape(len(params), -1)
    lam = np.empty_like(model)
    gaussian_means(rng, model, t.ravel(), bkg.ravel(), lam)
    exp_neg_frac = np.floor(lam)
    np.subtract(exp_neg_frac, lam, out=exp_neg_frac)
    np.exp(exp_neg_frac, out=exp_neg_frac)
    out = np.empty(lam.shape, dtype=np.float32)
    poisson_counts(rng, lam, exp_neg_frac, *poisson_tables(), out)
    return out.reshape((len(params), *preset.image_shape))


def simulate_chunk(preset: Preset, labels: np.ndarray, seed: int, chunk: int):
    """Simulate images for ``labels`` (indices into ``preset.class_names``).

    Returns ``(images float32 [B, H, W] integer counts, params dict column -> array)``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(chunk)]))
    params = [draw_image_params(rng, preset, preset.physics_of(preset.class_names[k]))
              for k in labels]
    images = add_noise(rng, preset, render_noiseless(preset, params), params)
    columns = {k: np.array([p[k] for p in params], dtype=np.float64) for k in PARAM_COLUMNS}
    columns["n_subhalos"] = columns["n_subhalos"].astype(np.int64)
    return images, columns
