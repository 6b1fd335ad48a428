#!/usr/bin/env python
"""Loader images/s: memory-mapped Parquet -> Preprocess -> random rotation/flip, batched.

    python benchmarks/loader.py [--batches 20] [--batch-size 64]

Times a DataLoader over ``LensImageDataset`` (main process, as a Tune trial with one CPU would
run it) plus ``random_augment`` on each batch, for the laptop size (small64 -> 65 px) and the
seeds' size (model_i 150 -> 129 px). Compared with ~20 images/s, what one C8 trial at quarter
width trains on this machine (REFERENCE.md section 5).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from data_io import LensImageDataset, Preprocess, open_dataset, random_augment, simulate_dataset  # noqa: E402

TRIAL_IMAGES_PER_S = 20.0


def measure(ds_path, preprocess, batches, batch_size, repeats=3):
    images, labels = open_dataset(ds_path).arrays("train")
    loader = torch.utils.data.DataLoader(LensImageDataset(images, labels, preprocess),
                                         batch_size=batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(repeats):
        n, t = 0, time.perf_counter()
        for i, (x, _) in enumerate(loader):
            random_augment(x, gen, rotate=True, flip=True)
            n += len(x)
            if i + 1 == batches:
                break
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for preset, per_class, pre in (("small64", 600, Preprocess(65, crop_fraction=1.0)),
                                       ("model_i", 200, Preprocess(129))):
            path = simulate_dataset(preset, per_class, Path(tmp) / preset, progress=False)
            rate = measure(path, pre, a.batches, a.batch_size)
            print(f"{preset:8s} -> {pre.target_size} px, batch {a.batch_size}, 1 thread: "
                  f"{rate:8.1f} img/s = {rate / TRIAL_IMAGES_PER_S:5.1f}x a trial's "
                  f"{TRIAL_IMAGES_PER_S:.0f} img/s")


if __name__ == "__main__":
    main()
