"""The simulator against lenstronomy (the field's reference) and astropy, on the same parameters."""
import numpy as np
import pytest

from data_io import cosmology, profiles, simulator
from tests.support.lenstronomy_reference import lenstronomy_image
from data_io.presets import PRESETS

# lenstronomy is in the test extras (pyproject.toml): a missing one is a broken install, so the
# import fails the module instead of skipping the reference checks.
import lenstronomy  # noqa: E402,F401
from lenstronomy.Data.psf import PSF  # noqa: E402
from lenstronomy.LensModel.lens_model import LensModel  # noqa: E402
from lenstronomy.LightModel.light_model import LightModel  # noqa: E402

RTOL = 1e-4


def grid(n=60, scale=0.07):
    return simulator.pixel_grid(n, scale)


def assert_close(mine, ref, rtol=RTOL):
    mine, ref = np.asarray(mine), np.asarray(ref)
    assert np.max(np.abs(mine - ref)) <= rtol * np.max(np.abs(ref))


@pytest.mark.parametrize("e1,e2", [(0.1, 0.0), (-0.2, 0.15), (0.0, 0.3)])
def test_sie_deflection_matches_lenstronomy(e1, e2):
    x, y = grid()
    mine = profiles.sie_deflection(x, y, 1.3, e1, e2, 0.05, -0.1)
    ref = LensModel(["SIE"]).alpha(x, y, [dict(theta_E=1.3, e1=e1, e2=e2, center_x=0.05,
                                                center_y=-0.1)])
    assert_close(mine[0], ref[0])
    assert_close(mine[1], ref[1])


def test_shear_and_point_masses_match_lenstronomy():
    x, y = grid()
    ref = LensModel(["SHEAR"]).alpha(x, y, [dict(gamma1=0.05, gamma2=-0.02)])
    mine = profiles.shear_deflection(x, y, 0.05, -0.02)
    assert_close(mine[0], ref[0]) and assert_close(mine[1], ref[1])
    rng = np.random.default_rng(0)
    cx, cy, th = rng.uniform(-2, 2, 7), rng.uniform(-2, 2, 7), rng.uniform(0.001, 0.2, 7)
    ref = LensModel(["POINT_MASS"] * 7).alpha(
        x, y, [dict(theta_E=t, center_x=a, center_y=b) for t, a, b in zip(th, cx, cy)])
    mine = profiles.point_mass_deflection(x, y, cx, cy, th)
    assert_close(mine[0], ref[0])
    assert_close(mine[1], ref[1])


def test_point_mass_deflection_is_gradient_of_potential():
    """alpha = grad(theta_E^2 ln r): central finite differences of the potential."""
    x, y, h = np.array([0.3, -1.1]), np.array([0.7, 0.2]), 1e-6
    pot = lambda a, b: 0.04 * np.log(np.hypot(a - 0.1, b + 0.2))  # noqa: E731
    ax, ay = profiles.point_mass_deflection(x, y, [0.1], [-0.2], [0.2])
    np.testing.assert_allclose(ax, (pot(x + h, y) - pot(x - h, y)) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(ay, (pot(x, y + h) - pot(x, y - h)) / (2 * h), rtol=1e-6)


def test_sersic_and_psf_match_lenstronomy():
    x, y = grid()
    kw = dict(amp=20, R_sersic=0.4, n_sersic=2.5, e1=-0.1, e2=0.1, center_x=0.1, center_y=0.2)
    ref = LightModel(["SERSIC_ELLIPSE"]).surface_brightness(x, y, [kw])
    assert_close(profiles.sersic_elliptic(x, y, 20, 0.4, 2.5, -0.1, 0.1, 0.1, 0.2), ref)
    k1 = profiles.gaussian_psf_1d(0.087, 0.05, 3)
    kernel = PSF(psf_type="GAUSSIAN", fwhm=0.087, pixel_size=0.05, truncation=3).kernel_point_source
    np.testing.assert_allclose(np.outer(k1, k1), kernel, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("preset", ["model_i", "model_j", "small64"])
def test_noiseless_images_match_lenstronomy(preset):
    pre = PRESETS[preset]
    rng = np.random.default_rng(3)
    params = [simulator.draw_image_params(rng, pre, phys) for phys in ("none", "cdm", "vortex")]
    mine = simulator.render_noiseless(pre, params)
    for img, p in zip(mine, params):
        assert_close(img, lenstronomy_image(pre, p))


def test_einstein_radius_uses_luminosity_distances():
    from astropy import constants as const
    from astropy import units as u
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=70, Om0=0.3, Ob0=0.05)
    dl, ds = cosmo.luminosity_distance(0.5), cosmo.luminosity_distance(1.0)
    ref = np.sqrt(4 * const.G * 1e12 * const.M_sun / const.c**2 * (ds - dl) / (dl * ds)).to(u.one)
    theta = cosmology.einstein_radius(1e12, 0.5, 1.0)
    assert theta == pytest.approx(float(ref) * 206265, rel=1e-6)
    assert 1.2 < theta < 1.4  # ~1.28" for Model I
    assert cosmology.axion_mass_to_half_length(1e-23) == pytest.approx(0.3)


def test_power_law_masses_follow_the_inverse_cdf():
    u = np.random.default_rng(0).uniform(size=200_000)
    m = simulator.power_law_masses(u, 1e6, 1e10, -0.9)
    assert m.min() >= 1e6 and m.max() <= 1e10
    # P(m < x) = (x^0.1 - lo^0.1) / (hi^0.1 - lo^0.1)
    x = 1e8
    expected = (x**0.1 - 1e6**0.1) / (1e10**0.1 - 1e6**0.1)
    assert np.mean(m < x) == pytest.approx(expected, abs=0.005)


def test_noisy_pixel_statistics_match_deeplense_noise_model():
    """Mean and variance of counts against t*m and t*m + (t sigma)^2 + t*m (Gaussian + Poisson)."""
    pre = PRESETS["model_i"]
    rng = np.random.default_rng(5)
    p = simulator.draw_image_params(rng, pre, "none")
    model = simulator.render_noiseless(pre, [p])
    reps = [dict(p) for _ in range(300)]
    counts = simulator.add_noise(rng, pre, np.repeat(model, 300, axis=0), reps)
    t, m = p["exposure"], model[0]
    bright = m > 0.5 * m.max()  # arcs: clipping at zero is negligible there
    mean, var = counts.mean(0)[bright], counts.var(0)[bright]
    np.testing.assert_allclose(mean.mean(), (t * m[bright]).mean(), rtol=0.01)
    expected_var = 2 * t * m[bright] + (pre.background_rms * t) ** 2
    np.testing.assert_allclose(var.mean(), expected_var.mean(), rtol=0.05)
    assert np.all(counts == np.round(counts)) and counts.min() >= 0
    # empty sky: Poisson of the clipped Gaussian background
    sky = (t * m) < 1e-3
    bkg = pre.background_rms * t
    assert counts[:, sky].mean() == pytest.approx(bkg / np.sqrt(2 * np.pi), rel=0.05)
