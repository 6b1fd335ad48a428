"""The same images rendered by lenstronomy, DeepLense's way: the independent check.

lenstronomy is a test/benchmark dependency only; it is imported inside the function.
"""
from __future__ import annotations

import numpy as np

from data_io.presets import Preset


def lenstronomy_image(preset: Preset, p: dict) -> np.ndarray:
    """Noiseless image of one parameter set from ``simulator.draw_image_params`` (after
    ``render_noiseless`` filled ``theta_e``), built as DeepLense builds it: ``SIE`` + ``SHEAR``
    + one ``POINT_MASS`` per mass, ``SERSIC_ELLIPSE`` source, Gaussian PSF, ``ImageModel``."""
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel
    from lenstronomy.Util import util

    n, scale = preset.num_pix, preset.pixel_scale
    _, _, ra0, dec0, _, _, m, _ = util.make_grid_with_coordtransform(
        n, scale, center_ra=0, center_dec=0, subgrid_res=1, inverse=False)
    per_sqrt = p["theta_e"] / np.sqrt(preset.main_mass)
    lens = [dict(theta_E=p["theta_e"], e1=preset.lens_e1, e2=preset.lens_e2, center_x=0,
                 center_y=0), dict(gamma1=preset.shear_g1, gamma2=preset.shear_g2)]
    lens += [dict(theta_E=per_sqrt * np.sqrt(mass), center_x=a, center_y=b)
             for mass, a, b in zip(p["mass"], p["cx"], p["cy"])]
    data = ImageData(background_rms=preset.background_rms, exposure_time=p["exposure"],
                     ra_at_xy_0=ra0, dec_at_xy_0=dec0, transform_pix2angle=m,
                     image_data=np.zeros((n, n)))
    psf = PSF(psf_type="GAUSSIAN", fwhm=preset.psf_fwhm, pixel_size=scale,
              truncation=preset.psf_truncation)
    lens_model = LensModel(["SIE", "SHEAR"] + ["POINT_MASS"] * len(p["mass"]))
    model = ImageModel(data, psf, lens_model_class=lens_model,
                       source_model_class=LightModel(["SERSIC_ELLIPSE"]),
                       kwargs_numerics={"supersampling_factor": 1,
                                        "supersampling_convolution": False})
    amp = p.get("source_amp", np.nan)
    src = dict(amp=amp if np.isfinite(amp) else preset.source_amp, R_sersic=p["source_r"],
               n_sersic=preset.source_n, e1=p["source_e1"], e2=p["source_e2"],
               center_x=p["source_x"], center_y=p["source_y"])
    return model.image(lens, [src])


def deeplense_noise(image: np.ndarray, exposure: float, background_rms: float) -> np.ndarray:
    """DeepLense's noise step verbatim in structure (global numpy RNG, two Gaussians, Poisson)."""
    poisson = np.random.randn(*image.shape) * np.sqrt(np.abs(image) / exposure)
    bkg = np.random.randn(*image.shape) * background_rms
    return np.random.poisson(np.clip(exposure * (image + poisson + bkg), 0, None))
