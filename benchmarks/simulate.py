#!/usr/bin/env python
"""Simulator images/s against lenstronomy on the same model_i parameters, in one run.

    python benchmarks/simulate.py [--images 60] [--repeats 7] [--clock cpu|wall] [--full 3000]

Both run single-threaded in this process on identical parameter sets (one third per class).
"noiseless" is the rendering lenstronomy does (ray shooting, Sersic, PSF); "with noise" adds
the noise step (ours: one Gaussian + exact Poisson, batched; DeepLense's: two Gaussians +
numpy Poisson per image). The repeats of every variant are interleaved, so a machine whose
load drifts slows all of them alike; ``--clock cpu`` (default) times this process's CPU
seconds (one thread: the time on one core), ``wall`` wall-clock seconds. Medians are
printed. ``--full`` also times ``simulate_dataset`` with 1 and all workers (wall clock).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":   # one thread per process, set before numpy loads (as a script only)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from data_io import simulator  # noqa: E402
from data_io.generate import simulate_dataset  # noqa: E402
from data_io.presets import PRESETS  # noqa: E402
from tests.support.lenstronomy_reference import deeplense_noise, lenstronomy_image  # noqa: E402


def timed(fns: dict, repeats: int, clock) -> dict:
    """Median seconds of each callable in ``fns``, their repeats interleaved."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = clock()
            fn()
            times[k].append(clock() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    ap.add_argument("--full", type=int, default=3000, help="images for the all-core run (0: skip)")
    a = ap.parse_args()
    pre = PRESETS["model_i"]
    rng = np.random.default_rng(0)
    physics = ("none", "cdm", "vortex")
    params = [simulator.draw_image_params(rng, pre, physics[i % 3]) for i in range(a.images)]
    model = simulator.render_noiseless(pre, params)  # also compiles / warms up
    simulator.add_noise(rng, pre, model, params)
    lenstronomy_image(pre, params[0])
    med = timed({
        "ours_clean": lambda: simulator.render_noiseless(pre, params),
        "ref_clean": lambda: [lenstronomy_image(pre, p) for p in params],
        "ours_full": lambda: simulator.add_noise(rng, pre, simulator.render_noiseless(pre, params),
                                                 params),
        "ref_full": lambda: [deeplense_noise(lenstronomy_image(pre, p), p["exposure"],
                                             pre.background_rms) for p in params],
        "ours_noise": lambda: simulator.add_noise(rng, pre, model, params),
    }, a.repeats, time.process_time if a.clock == "cpu" else time.perf_counter)
    ours_clean, ref_clean, ours_full, ref_full, ours_noise = (
        med[k] for k in ("ours_clean", "ref_clean", "ours_full", "ref_full", "ours_noise"))
    n = a.images
    print(f"model_i, {n} images (1/3 per class), median of {a.repeats} interleaved repeats, "
          f"one process, {a.clock} time")
    print(f"  noiseless : ours {n / ours_clean:8.1f} img/s   lenstronomy {n / ref_clean:8.1f} img/s"
          f"   ratio {ref_clean / ours_clean:5.1f}x")
    print(f"  with noise: ours {n / ours_full:8.1f} img/s   lenstronomy {n / ref_full:8.1f} img/s"
          f"   ratio {ref_full / ours_full:5.1f}x")
    print(f"  ours per stage: render {1e3 * ours_clean / n:.3f} ms/img, noise "
          f"{1e3 * ours_noise / n:.3f} ms/img; lenstronomy {1e3 * ref_full / n:.2f} ms/img")
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
