"""The compiled simulator kernels against the numpy/scipy references they replace."""
import numpy as np
import pytest
from scipy import ndimage, stats

from data_io import kernels, profiles, simulator
from data_io.presets import PRESETS


def test_lensed_sersic_exponent_matches_numpy_profiles():
    x, y = simulator.pixel_grid(40, 0.1)
    rng = np.random.default_rng(0)
    cx, cy, theta = rng.uniform(-2, 2, 9), rng.uniform(-2, 2, 9), rng.uniform(0.01, 0.1, 9)
    ux, uy = profiles.sie_deflection(x, y, 1.0, 0.1, -0.05)
    sx, sy = profiles.shear_deflection(x, y, 0.05, 0.01)
    px, py = profiles.point_mass_deflection(x, y, cx, cy, theta)
    ax, ay = 1.3 * ux + sx + px, 1.3 * uy + sy + py
    for n in (1.0, 2.5):
        ref = profiles.sersic_elliptic(x - ax, y - ay, 20.0, 0.3, n, -0.1, 0.1, 0.05, -0.1)
        out, sa, sb = np.empty_like(x), np.empty_like(x), np.empty_like(x)
        kernels.lensed_sersic_exponent(x, y, ux, uy, sx, sy, 1.3, cx, cy, theta**2, 0.3, n,
                                       -0.1, 0.1, 0.05, -0.1, sa, sb, out)
        np.testing.assert_allclose(20.0 * np.exp(out), ref, rtol=1e-9)


def test_psf_matches_scipy_nearest_correlation():
    img = np.random.default_rng(1).uniform(size=(2, 23, 31))
    k = profiles.gaussian_psf_1d(0.087, 0.05, 3.0)
    ref = ndimage.correlate1d(ndimage.correlate1d(img, k, axis=1, mode="nearest"), k, axis=2,
                              mode="nearest")
    out = np.empty_like(img)
    kernels.psf_nearest(img, k, out)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-15)


def test_poisson_tables_are_poisson_cdfs():
    cdf, start = kernels.poisson_tables()
    j = np.arange(cdf.shape[1])
    for k in (0, 1, 7, 50, cdf.shape[0] - 1):
        np.testing.assert_allclose(cdf[k], stats.poisson.cdf(j, k), rtol=1e-12, atol=1e-15)
        levels = np.arange(start.shape[1]) / start.shape[1]
        assert np.all(cdf[k][start[k]] > levels)
        assert np.all((start[k] == 0) | (cdf[k][np.maximum(start[k] - 1, 0)] <= levels))


@pytest.mark.parametrize("lam", [0.0, 1e-9, 0.3, 0.999999, 1.0, 3.7, 42.5, 99.9999, 100.0,
                                 180.0])
def test_poisson_counts_follow_the_poisson_law(lam):
    """Chi-square goodness of fit of 100k draws against scipy's pmf, on every sampling branch:
    zero, fractional only, table + fraction, the table edge, and PTRS above it."""
    n = 100_000
    rng = np.random.default_rng(int(lam * 1000) + 1)
    means = np.full((2, n // 2), lam)
    out = np.empty(means.shape, np.float32)
    kernels.poisson_counts(rng, means, np.exp(np.floor(means) - means), *kernels.poisson_tables(),
                           out)
    x = out.ravel()
    assert np.all(x == np.round(x)) and x.min() >= 0
    if lam == 0.0:
        assert np.all(x == 0)
        return
    lo, hi = int(stats.poisson.ppf(1e-4, lam)), int(stats.poisson.isf(1e-4, lam))
    edges = np.arange(lo, hi + 1)
    observed = np.array([np.sum(x <= lo)] + [np.sum(x == k) for k in edges[1:-1]]
                        + [np.sum(x >= hi)])
    expected = n * np.concatenate([[stats.poisson.cdf(lo, lam)],
                                   stats.poisson.pmf(edges[1:-1], lam),
                                   [stats.poisson.sf(hi - 1, lam)]])
    keep = expected > 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    assert stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue > 1e-3


def test_add_noise_is_seeded():
    pre = PRESETS["small64"]
    params = [simulator.draw_image_params(np.random.default_rng(0), pre, "cdm")]
    model = simulator.render_noiseless(pre, params)
    a = simulator.add_noise(np.random.default_rng(9), pre, model, [dict(params[0])])
    b = simulator.add_noise(np.random.default_rng(9), pre, model, [dict(params[0])])
    c = simulator.add_noise(np.random.default_rng(10), pre, model, [dict(params[0])])
    assert a.dtype == np.float32 and a.shape == (1, 64, 64)
    assert a.tobytes() == b.tobytes() and not np.array_equal(a, c)
