#!/usr/bin/env python
"""Loader images/s: memory-mapped Parquet -> Preprocess -> random rotation/flip, batched.

    python benchmarks/loader.py [--batches 20] [--batch-size 64] [--train-threads 2]

Times a DataLoader over ``LensImageDataset`` (main process, one thread, as a Tune trial with
one CPU would run it) plus ``random_augment`` on each batch, for the laptop size (small64 ->
65 px) and the seeds' size (model_i 150 -> 129 px), with the compiled CPU rotation and with
the seeds' torch path (upsample, affine_grid, grid_sample, pool). In the same run it measures
what one trial consumes: train steps of the C8 steerable CNN at quarter width on the same image
size, timed by ``benchmarks/models.py``'s own ``bench`` (batch 32 at 65 px, 8 at 129 px), with
``--train-threads`` threads (all cores by default, the most a trial could use), and prints
loader / trial.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import torch  # noqa: E402

from data_io import LensImageDataset, Preprocess, open_dataset, random_augment, simulate_dataset  # noqa: E402


def measure(ds_path, preprocess, batches, batch_size, compiled=True, repeats=3):
    images, labels = open_dataset(ds_path).arrays("train")
    loader = torch.utils.data.DataLoader(LensImageDataset(images, labels, preprocess),
                                         batch_size=batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(repeats):
        n, t = 0, time.perf_counter()
        for i, (x, _) in enumerate(loader):
            random_augment(x, gen, rotate=True, flip=True, compiled=compiled)
            n += len(x)
            if i + 1 == batches:
                break
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def trial_rate(size: int, threads: int, steps: int = 5) -> float:
    """Images/s of a C8 width-0.25 train step, measured exactly as ``benchmarks/models.py``
    measures it (its ``bench``: same batch per size, same step, median of ``steps``)."""
    from models import bench

    torch.set_num_threads(threads)
    try:
        return bench("C8", 0.25, size, steps, channels_last=False, device=torch.device("cpu"))["steer"]
    finally:
        torch.set_num_threads(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--train-threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for preset, per_class, pre in (("small64", 600, Preprocess(65, crop_fraction=1.0)),
                                       ("model_i", 200, Preprocess(129))):
            path = simulate_dataset(preset, per_class, Path(tmp) / preset, progress=False)
            fast = measure(path, pre, a.batches, a.batch_size, compiled=True)
            seeds = measure(path, pre, a.batches, a.batch_size, compiled=False)
            trial = trial_rate(pre.target_size, a.train_threads)
            print(f"{preset:8s} -> {pre.target_size} px, batch {a.batch_size}, 1 thread: loader "
                  f"{fast:7.1f} img/s (torch rotation path {seeds:6.1f}, {fast / seeds:4.1f}x); "
                  f"C8 w0.25 train step ({a.train_threads} threads) {trial:6.1f} img/s; "
                  f"loader / trial = {fast / trial:6.1f}x")


if __name__ == "__main__":
    main()
