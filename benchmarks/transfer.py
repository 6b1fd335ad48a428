#!/usr/bin/env python
"""Transfer gap: a model tuned on our simulator, scored on Model I images made by lenstronomy.

    python benchmarks/transfer.py [--model model_weights.pt] [--per-class 200] [--seed 12]
                                  [--out runs/transfer] [--bootstrap 2000]

Makes two test sets of ``--per-class`` images per class (no_sub, cdm, vortex), all in the
``test`` split, under ``--out``:

- ``ours/``: our simulator (``data_io``), preset ``model_i``;
- ``lenstronomy/``: DeepLense Model I (github.com/ML4SCI/DeepLense; docs/physics-and-references.md)
  rendered with lenstronomy's own classes (Birrer & Amara 2018, arXiv:1803.09746), as DeepLense's
  public code does: ``LensModel(["SIE", "SHEAR", "POINT_MASS", ...])``,
  ``LightModel(["SERSIC_ELLIPSE"])``, ``ImageData``, a Gaussian ``PSF``, ``ImageModel``, and its
  noise functions (``image_util.add_poisson`` / ``add_background``, then Poisson counts). The
  parameters are drawn here, independently of ``data_io.simulator``; only the dataset format
  (``DatasetWriter``) is shared. Its metadata has ``preset: null``, ``source: lenstronomy:model_i``,
  the 150x150 shape and 0.05"/px, so ``study.final.evaluate``'s domain check compares geometry
  (it matches) and source (it differs: one warning line, by design).

Then scores ``--model`` on both with ``study.final.evaluate.evaluate_dataset`` (metrics.json, ROC and
confusion plots in ``OUT/eval_ours``, ``OUT/eval_lenstronomy``) and prints AUC (micro and per
class), accuracy and the gap ours - lenstronomy, with a percentile bootstrap 95% interval of
the micro-AUC and accuracy gaps (the two sets resampled independently, stratified by class).

Use a ``--seed`` other than the study's ``seed``: our simulator with the same seed would redraw
the model's own training images. Exit status 2 and one line on stderr for bad input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__":   # one thread per process as a script; importing it (its test) changes nothing
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from common.errors import UsageError  # noqa: E402

CLASS_NAMES = ("no_sub", "cdm", "vortex")
SOURCE = "lenstronomy:model_i"
ARCSEC_PER_RAD = 206264.80624709636

# DeepLense Model I (github.com/ML4SCI/DeepLense's simulation code; docs/physics-and-references.md),
# written out here rather than read from
# data_io.presets so that this set shares no code with the simulator it checks.
MODEL_I = dict(
    num_pix=150, pixel_scale=0.05, psf_fwhm=0.087, psf_truncation=3.0, background_rms=0.01,
    log10_exposure=(3.0, 3.5), z_lens=0.5, z_source=1.0, main_mass=1e12, lens_e1=0.1,
    lens_e2=0.0, shear_g1=0.05, shear_g2=0.0, source_amp=20.0, source_r=0.25, source_n=1.0,
    source_e1=-0.1, source_e2=0.1, source_centre=0.35, n_sub=25, sub_mass=(1e6, 1e10),
    sub_beta=-0.9, sub_r=(0.25, 2.0), vortex_points=100, vortex_mass=3e10,
    log10_axion_mass=(-24.0, -22.0),
)
PARAM_FIELDS = [pa.field(n, pa.float64()) for n in (
    "theta_e", "source_x", "source_y", "exposure", "sub_mass_total", "axion_mass",
    "vortex_half_length", "vortex_angle")] + [pa.field("n_subhalos", pa.int64())]


def einstein_radius(mass: float, z_lens: float, z_source: float) -> float:
    """Point-mass Einstein radius (arcsec), DeepLense's way: luminosity distances and
    ``D_LS = D_S - D_L`` (flat LCDM, H0 = 70, Om0 = 0.3, Ob0 = 0.05):
    ``theta_E = sqrt(4 G M / c^2 * D_LS / (D_L D_S))``."""
    from astropy import constants as const
    from astropy import units as u
    from astropy.cosmology import FlatLambdaCDM

    cosmo = FlatLambdaCDM(H0=70, Om0=0.3, Ob0=0.05)
    d_l, d_s = cosmo.luminosity_distance(z_lens), cosmo.luminosity_distance(z_source)
    theta2 = 4 * const.G * mass * const.M_sun / const.c**2 * (d_s - d_l) / (d_l * d_s)
    return float(np.sqrt(theta2.to(u.one).value) * ARCSEC_PER_RAD)


def draw_params(rng: np.random.Generator, physics: str, p: dict = MODEL_I) -> dict:
    """One image's parameters: source centre, exposure, and the substructure point masses
    (``cx, cy`` in arcsec, ``mass`` in Msun) for ``physics`` in ``none | cdm | vortex``."""
    c = p["source_centre"]
    out = dict(source_x=rng.uniform(-c, c), source_y=rng.uniform(-c, c),
               exposure=10.0 ** rng.uniform(*p["log10_exposure"]),
               axion_mass=np.nan, vortex_half_length=np.nan, vortex_angle=np.nan)
    cx = cy = mass = np.zeros(0)
    if physics == "cdm":
        # inverse CDF of dN/dm ~ m^beta on [lo, hi]
        lo, hi, b = p["sub_mass"][0] ** (p["sub_beta"] + 1), p["sub_mass"][1] ** (p["sub_beta"] + 1), p["sub_beta"] + 1
        mass = (lo + (hi - lo) * rng.uniform(size=p["n_sub"])) ** (1 / b)
        r, ang = rng.uniform(*p["sub_r"], p["n_sub"]), rng.uniform(0, 2 * np.pi, p["n_sub"])
        cx, cy = r * np.sin(ang), r * np.cos(ang)          # DeepLense's (sin, cos) convention
    elif physics == "vortex":
        m_axion = 10.0 ** rng.uniform(*p["log10_axion_mass"])   # eV
        half = 0.06 / (2 * m_axion) * 1e-22                     # arcsec
        ang = rng.uniform(0, 2 * np.pi)
        s = np.linspace(-half, half, p["vortex_points"])
        cx, cy = s * np.cos(ang), s * np.sin(ang)
        mass = np.full(p["vortex_points"], p["vortex_mass"] / p["vortex_points"])
        out.update(axion_mass=m_axion, vortex_half_length=half, vortex_angle=ang)
    out.update(cx=cx, cy=cy, mass=mass, n_subhalos=int(len(mass)) if physics == "cdm" else 0,
               sub_mass_total=float(mass.sum()) if physics == "cdm" else 0.0)
    return out


class LenstronomyModelI:
    """Model I images from lenstronomy's classes: SIE + SHEAR + POINT_MASS lenses, elliptical
    Sersic source, truncated Gaussian PSF, ``ImageModel``; noise as DeepLense adds it."""

    def __init__(self, p: dict = MODEL_I):
        from lenstronomy.Data.imaging_data import ImageData
        from lenstronomy.Data.psf import PSF
        from lenstronomy.LightModel.light_model import LightModel
        from lenstronomy.Util import util

        self.p = p
        n, scale = p["num_pix"], p["pixel_scale"]
        _, _, ra0, dec0, _, _, pix2angle, _ = util.make_grid_with_coordtransform(
            n, scale, center_ra=0, center_dec=0, subgrid_res=1, inverse=False)
        self.data_kwargs = dict(background_rms=p["background_rms"], ra_at_xy_0=ra0,
                                dec_at_xy_0=dec0, transform_pix2angle=pix2angle,
                                image_data=np.zeros((n, n)))
        self.ImageData = ImageData
        self.psf = PSF(psf_type="GAUSSIAN", fwhm=p["psf_fwhm"], pixel_size=scale,
                       truncation=p["psf_truncation"])
        self.source = LightModel(["SERSIC_ELLIPSE"])
        self.theta_e = einstein_radius(p["main_mass"], p["z_lens"], p["z_source"])

    def noiseless(self, q: dict) -> np.ndarray:
        """Flux per pixel per unit time ``[150, 150]`` for parameters from :func:`draw_params`."""
        from lenstronomy.ImSim.image_model import ImageModel
        from lenstronomy.LensModel.lens_model import LensModel

        p = self.p
        # a point mass of mass m has theta_E proportional to sqrt(m) at fixed redshifts
        sub_theta = self.theta_e * np.sqrt(np.asarray(q["mass"]) / p["main_mass"])
        kwargs_lens = [dict(theta_E=self.theta_e, e1=p["lens_e1"], e2=p["lens_e2"], center_x=0.0,
                            center_y=0.0), dict(gamma1=p["shear_g1"], gamma2=p["shear_g2"])]
        kwargs_lens += [dict(theta_E=t, center_x=x, center_y=y)
                        for t, x, y in zip(sub_theta, q["cx"], q["cy"])]
        lens = LensModel(["SIE", "SHEAR"] + ["POINT_MASS"] * len(sub_theta))
        data = self.ImageData(exposure_time=q["exposure"], **self.data_kwargs)
        model = ImageModel(data, self.psf, lens_model_class=lens, source_model_class=self.source,
                           kwargs_numerics={"supersampling_factor": 1,
                                            "supersampling_convolution": False})
        kwargs_source = [dict(amp=p["source_amp"], R_sersic=p["source_r"], n_sersic=p["source_n"],
                              e1=p["source_e1"], e2=p["source_e2"], center_x=q["source_x"],
                              center_y=q["source_y"])]
        return model.image(kwargs_lens, kwargs_source)

    def noisy(self, image: np.ndarray, exposure: float) -> np.ndarray:
        """DeepLense's noise: ``Poisson(clip(t (m + add_poisson(m, t) + add_background), 0))``.
        lenstronomy's noise functions draw from numpy's global RNG (seeded by the caller)."""
        from lenstronomy.Util import image_util

        noise = image_util.add_poisson(image, exp_time=exposure) \
            + image_util.add_background(image, sigma_bkd=self.p["background_rms"])
        return np.random.poisson(np.clip(exposure * (image + noise), 0, None)).astype(np.float32)


def make_lenstronomy_set(out, per_class: int, seed: int = 0, noise: bool = True,
                         progress: bool = False) -> Path:
    """Write ``per_class`` lenstronomy Model I images per class into a dataset at ``out``
    (all in the ``test`` split; ``train``/``val`` are empty). Image ``i`` has class ``i % 3``.
    ``noise=False`` stores the noiseless model (flux per pixel per unit time)."""
    from common.atomic import atomic_dir
    from data_io.dataset import DatasetWriter, check_output

    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise UsageError(f"--per-class {per_class!r} must be a whole number >= 1")
    out = check_output(Path(out), overwrite=False)
    sim = LenstronomyModelI()
    p = sim.p
    meta = {"preset": None, "seed": int(seed), "source": SOURCE, "class_names": list(CLASS_NAMES),
            "image_shape": [p["num_pix"], p["num_pix"]], "pixel_scale": p["pixel_scale"],
            "per_class": int(per_class), "split_fractions": [0.0, 0.0, 1.0], "noise": bool(noise),
            "description": "DeepLense Model I rendered by lenstronomy (benchmarks/transfer.py)",
            "model_i_params": {k: list(v) if isinstance(v, tuple) else v for k, v in p.items()}}
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919]))
    np.random.seed(int(np.random.SeedSequence([int(seed), 104729]).generate_state(1)[0]))
    physics = ("none", "cdm", "vortex")
    labels = np.arange(per_class * 3) % 3
    with atomic_dir(out) as tmp:
        writer = DatasetWriter(tmp, meta, PARAM_FIELDS)
        for lo in range(0, len(labels), 64):
            lab = labels[lo:lo + 64]
            params = [draw_params(rng, physics[k]) for k in lab]
            images = [sim.noiseless(q) for q in params]
            if noise:
                images = [sim.noisy(im, q["exposure"]) for im, q in zip(images, params)]
            cols = {f.name: np.array([{**q, "theta_e": sim.theta_e}[f.name] for q in params])
                    for f in PARAM_FIELDS}
            writer.write("test", np.stack(images), lab, cols)
            if progress:
                print(f"\r  lenstronomy: {lo + len(lab)}/{len(labels)} images", end="", file=sys.stderr)
        if progress:
            print(file=sys.stderr)
        writer.close()
    return out


def make_our_set(out, per_class: int, seed: int) -> Path:
    """``per_class`` test images per class from our simulator (preset model_i).

    ``simulate_dataset`` needs a non-empty train split: it simulates ``per_class + 1`` per
    class and puts one of each class in ``train``, the other ``per_class`` in ``test``."""
    from data_io.generate import simulate_dataset

    test = per_class / (per_class + 1)
    return simulate_dataset("model_i", per_class + 1, out, seed=seed, progress=False,
                            split_fractions=(1.0 - test, 0.0, test))


def bootstrap_gap(a: tuple, b: tuple, n_classes: int, reps: int, seed: int) -> dict:
    """Percentile 95% intervals of ``metric(a) - metric(b)`` for micro AUC and accuracy;
    ``a``, ``b`` = ``(probs, labels)``, each resampled with replacement within each class."""
    from study.engine.metrics import micro_auc

    rng = np.random.default_rng(seed)

    def resample(labels):
        return np.concatenate([rng.choice(np.flatnonzero(labels == c), (labels == c).sum())
                               for c in range(n_classes)])

    gaps = {"auc_micro": [], "acc": []}
    for _ in range(reps):
        vals = []
        for probs, labels in (a, b):
            i = resample(labels)
            vals.append((micro_auc(probs[i], labels[i], n_classes),
                         float(np.mean(probs[i].argmax(1) == labels[i]))))
        gaps["auc_micro"].append(vals[0][0] - vals[1][0])
        gaps["acc"].append(vals[0][1] - vals[1][1])
    return {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in gaps.items()}


def report(ours: dict, ref: dict, interval: dict | None, class_names) -> str:
    keys = ["auc_micro", "auc_macro", *(f"auc_{c}" for c in class_names), "acc", "rot_auc_micro"]
    lines = ["| metric | our simulator | lenstronomy | gap (ours - lenstronomy) | 95% bootstrap |",
             "|---|---|---|---|---|"]
    for k in keys:
        if k in ours and k in ref:
            ci = interval.get(k) if interval else None
            ci_s = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "-"
            lines.append(f"| {k} | {ours[k]:.4f} | {ref[k]:.4f} | {ours[k] - ref[k]:+.4f} | {ci_s} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="model_weights.pt",
                    help="model to score: a model_weights.pt from `run_study.py best` (default), "
                         "runs:/..., or models:/...")
    ap.add_argument("--per-class", type=int, default=200,
                    help="test images per class in each set (default 200: ~2 min on one core)")
    ap.add_argument("--seed", type=int, default=12,
                    help="seed of both test sets (default 12; use one other than the study's seed)")
    ap.add_argument("--out", default="runs/transfer", help="output folder (default runs/transfer)")
    ap.add_argument("--bootstrap", type=int, default=2000,
                    help="bootstrap resamples for the gap interval (0: none; default 2000)")
    ap.add_argument("--tracking-uri", default=None, help="MLflow URI for runs:/ or models:/ refs")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args) -> int:
    if args.per_class < 2:
        raise UsageError(f"--per-class {args.per_class} must be >= 2")
    if args.seed < 0:
        raise UsageError(f"--seed {args.seed} must be >= 0")
    if "://" not in args.model and not Path(args.model).is_file():
        raise UsageError(f"model file {args.model} does not exist; pass --model PATH (a "
                         "model_weights.pt written by `run_study.py best --study NAME`)")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"output folder {out} is not empty; choose a new --out")
    import torch

    from study.final.evaluate import evaluate_dataset
    from study.final.weights import load_model

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    predictor = load_model(args.model, tracking_uri=args.tracking_uri)
    t0 = time.perf_counter()
    ours_data = make_our_set(out / "ours", args.per_class, args.seed)
    t1 = time.perf_counter()
    ref_data = make_lenstronomy_set(out / "lenstronomy", args.per_class, args.seed, progress=True)
    t2 = time.perf_counter()
    print(f"made {args.per_class} images/class: our simulator {t1 - t0:.1f} s, "
          f"lenstronomy {t2 - t1:.1f} s", flush=True)
    from data_io import open_dataset

    results, scored = {}, {}
    for name, data in (("ours", ours_data), ("lenstronomy", ref_data)):
        results[name] = evaluate_dataset(predictor, data, "test", out / f"eval_{name}", seed=args.seed)
        images, labels = open_dataset(data).arrays("test")
        scored[name] = (predictor.predict(images), np.asarray(labels))
    interval = None
    if args.bootstrap > 0:
        interval = bootstrap_gap(scored["ours"], scored["lenstronomy"], len(predictor.class_names),
                                 args.bootstrap, args.seed)
    table = report(results["ours"], results["lenstronomy"], interval, predictor.class_names)
    summary = {"model": args.model, "per_class": args.per_class, "seed": args.seed,
               "n_images": {k: v["n_images"] for k, v in results.items()},
               "ours": {k: v for k, v in results["ours"].items() if isinstance(v, float)},
               "lenstronomy": {k: v for k, v in results["lenstronomy"].items() if isinstance(v, float)},
               "gap": {k: results["ours"][k] - results["lenstronomy"][k]
                       for k in results["ours"] if isinstance(results["ours"][k], float)
                       and isinstance(results["lenstronomy"].get(k), float)},
               "gap_95ci": interval, "bootstrap": args.bootstrap}
    (out / "transfer.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "transfer.md").write_text(table + "\n")
    print(f"\nmodel {args.model} on {results['ours']['n_images']} (ours) / "
          f"{results['lenstronomy']['n_images']} (lenstronomy) Model I test images\n")
    print(table)
    print(f"\nReport: {out}/transfer.json, transfer.md; plots in {out}/eval_ours, {out}/eval_lenstronomy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
