#!/usr/bin/env python
"""Simulator images/s against lenstronomy on the same model_i parameters, in one run.

    python benchmarks/simulate.py [--images 60] [--repeats 3] [--full 3000]

Both run single-threaded in this process on identical parameter sets (one third per class).
"noiseless" is the rendering lenstronomy does (ray shooting, Sersic, PSF); "with noise" adds
the noise step (ours: one Gaussian + Poisson, batched; DeepLense's: two Gaussians + Poisson
per image). ``--full`` also times ``simulate_dataset`` on all cores.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from data_io import simulator  # noqa: E402
from data_io.generate import simulate_dataset  # noqa: E402
from data_io.presets import PRESETS  # noqa: E402
from data_io.reference import deeplense_noise, lenstronomy_image  # noqa: E402


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full", type=int, default=3000, help="images for the all-core run (0: skip)")
    a = ap.parse_args()
    pre = PRESETS["model_i"]
    rng = np.random.default_rng(0)
    physics = ("none", "cdm", "vortex")
    params = [simulator.draw_image_params(rng, pre, physics[i % 3]) for i in range(a.images)]
    simulator.render_noiseless(pre, params[:3])  # compile/warm up
    ours_clean = timed(lambda: simulator.render_noiseless(pre, params), a.repeats)
    ours_full = timed(lambda: simulator.add_noise(rng, pre, simulator.render_noiseless(pre, params),
                                                  params), a.repeats)
    lenstronomy_image(pre, params[0])
    ref_clean = timed(lambda: [lenstronomy_image(pre, p) for p in params], a.repeats)
    ref_full = timed(lambda: [deeplense_noise(lenstronomy_image(pre, p), p["exposure"],
                                              pre.background_rms) for p in params], a.repeats)
    n = a.images
    print(f"model_i, {n} images (1/3 per class), median of {a.repeats}, one process")
    print(f"  noiseless : ours {n / ours_clean:8.1f} img/s   lenstronomy {n / ref_clean:8.1f} img/s"
          f"   ratio {ref_clean / ours_clean:5.1f}x")
    print(f"  with noise: ours {n / ours_full:8.1f} img/s   lenstronomy {n / ref_full:8.1f} img/s"
          f"   ratio {ref_full / ours_full:5.1f}x")
    if a.full:
        per_class = a.full // 3
        with tempfile.TemporaryDirectory() as tmp:
            for workers in (1, os.cpu_count() or 1):
                t = time.perf_counter()
                simulate_dataset("model_i", per_class, Path(tmp) / f"w{workers}", seed=0,
                                 workers=workers, progress=False)
                dt = time.perf_counter() - t
                print(f"  simulate_dataset model_i {3 * per_class} images, {workers} worker(s): "
                      f"{3 * per_class / dt:8.1f} img/s (incl. Parquet writing)")


if __name__ == "__main__":
    main()
