"""Simulation presets: named, frozen sets of physical and instrument parameters.

``model_i`` reproduces DeepLense's public "Model I" simulation (the simulation code in
github.com/ML4SCI/DeepLense; the classes follow Alexander et al. 2020, ApJ 893:15,
arXiv:1909.07346, and Alexander et al., arXiv:2008.12731; see docs/physics-and-references.md).
Ranges are ``(low, high)`` for uniform draws; equal ends mean a fixed value.
"""
from __future__ import annotations

import dataclasses

THREE_CLASSES = ("no_sub", "cdm", "vortex")
BINARY_CLASSES = ("no_sub", "sub")


@dataclasses.dataclass(frozen=True)
class Preset:
    """Everything the simulator needs for one kind of dataset (angles in arcsec, masses in Msun)."""

    name: str
    description: str
    class_names: tuple[str, ...] = THREE_CLASSES
    # instrument
    num_pix: int = 150
    pixel_scale: float = 0.05            # arcsec / pixel
    psf_fwhm: float = 0.087              # arcsec
    psf_truncation: float = 3.0          # in units of the PSF sigma
    background_rms: float = 0.01         # flux / pixel / unit time
    log10_exposure: tuple[float, float] = (3.0, 3.5)
    snr: tuple[float, float] | None = None   # if set: rescale the source to this peak SNR
    # cosmology / main lens
    z_lens: tuple[float, float] = (0.5, 0.5)
    z_source: tuple[float, float] = (1.0, 1.0)
    main_mass: float = 1e12
    lens_e1: float = 0.1
    lens_e2: float = 0.0
    shear_g1: float = 0.05
    shear_g2: float = 0.0
    # source (elliptical Sersic)
    source_amp: float = 20.0
    source_r: tuple[float, float] = (0.25, 0.25)   # R_sersic, arcsec
    source_n: float = 1.0
    source_e: tuple[float, float] | None = (-0.1, 0.1)  # fixed (e1, e2); None -> random
    source_q: tuple[float, float] = (0.4, 1.0)     # axis-ratio range when source_e is None
    source_centre: float = 0.35                    # centre ~ U(-c, c)^2
    # CDM subhalos (point masses, power-law mass function)
    n_sub: int = 25
    sub_mass: tuple[float, float] = (1e6, 1e10)
    sub_beta: float = -0.9
    sub_r: tuple[float, float] = (0.25, 2.0)
    # vortex (line of equal point masses)
    vortex_points: int = 100
    vortex_mass: float = 3e10
    vortex_mass_fraction: tuple[float, float] | None = None  # of main_mass; overrides vortex_mass
    vortex_length: tuple[float, float] | None = None  # full length; None -> from the axion mass
    log10_axion_mass: tuple[float, float] = (-24.0, -22.0)   # eV

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.num_pix, self.num_pix)

    def physics_of(self, class_name: str) -> str:
        """Which substructure a class carries: ``none``, ``cdm`` or ``vortex``."""
        return {"no_sub": "none", "cdm": "cdm", "sub": "cdm", "vortex": "vortex"}[class_name]


PRESETS: dict[str, Preset] = {
    "model_i": Preset(
        name="model_i",
        description="DeepLense Model I: 150x150 at 0.05\"/px, fixed redshifts and source shape",
    ),
    "model_j": Preset(
        name="model_j",
        description="Model J-like: redshifts, source shape/size and peak SNR U(10, 30) floated, "
        "vortex length U(0.5, 2)\" and mass fraction U(3, 5.5)%",
        z_lens=(0.4, 0.6),
        z_source=(0.8, 1.2),
        source_r=(0.25, 1.0),
        source_e=None,
        snr=(10.0, 30.0),
        vortex_mass_fraction=(0.03, 0.055),
        vortex_length=(0.5, 2.0),
    ),
    # 64x64 for the laptop study. 0.08"/px gives a 5.1" field, so the Einstein ring
    # (radius ~1.3", 16 px) and every subhalo (r <= 2") stay in view; a 4x longer exposure
    # (10^U(3.6, 4.1)) doubles the SNR to make up for the coarser sampling of the arcs.
    "small64": Preset(
        name="small64",
        description="64x64 at 0.08\"/px (5.1\" field), Model I physics, ~2x Model I's SNR",
        num_pix=64,
        pixel_scale=0.08,
        log10_exposure=(3.6, 4.1),
    ),
    "binary": Preset(
        name="binary",
        description="Model I physics, two classes: no_sub vs sub (CDM subhalos)",
        class_names=BINARY_CLASSES,
    ),
}
