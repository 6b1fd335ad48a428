"""Simulate a whole dataset: seeded chunks, a process pool, streamed Parquet output."""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from common.atomic import atomic_dir
from common.errors import UsageError
from data_io.dataset import SPLITS, DatasetWriter, check_fractions, check_output, stratified_split
from data_io.presets import PRESETS, Preset
from data_io.simulator import PARAM_COLUMNS, simulate_chunk

CHUNK_IMAGES = 64            # images per seeded chunk: fixes the random streams
POOL_MIN_IMAGES = 4096       # below this, simulate in-process (spawning workers costs ~2 s)


def resolve_preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def _check_count(per_class) -> int:
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise UsageError(f"--per-class {per_class!r} must be a whole number >= 1")
    return int(per_class)


def _chunk_job(args):
    preset, labels, seed, chunk = args
    return simulate_chunk(preset, labels, seed, chunk)


def _worker_init():
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def iter_chunks(preset: Preset, labels: np.ndarray, seed: int, workers: int):
    """Yield ``(start, images, params)`` per chunk, in order, from ``workers`` processes."""
    jobs = [(preset, labels[s:s + CHUNK_IMAGES], seed, i)
            for i, s in enumerate(range(0, len(labels), CHUNK_IMAGES))]
    starts = range(0, len(labels), CHUNK_IMAGES)
    if workers <= 1:
        for start, job in zip(starts, jobs):
            yield (start, *_chunk_job(job))
        return
    ctx = multiprocessing.get_context("spawn")  # safe even if the caller holds threads
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
        for start, result in zip(starts, pool.map(_chunk_job, jobs)):
            yield (start, *result)


def simulate_dataset(preset: str, per_class: int, out, seed: int = 0, *, overwrite: bool = False,
                     workers: int | None = None, progress: bool = True,
                     split_fractions=(0.8, 0.1, 0.1)) -> Path:
    """Simulate ``per_class`` images of each class of ``preset`` into a dataset at ``out``.

    Image ``i`` has class ``i % n_classes``; splits are stratified and seeded. The result is a
    pure function of ``(preset, per_class, seed, split_fractions)``: the same bytes for any
    ``workers`` (default: all cores for runs of at least 4096 images).
    """
    p = resolve_preset(preset)
    per_class, fractions = _check_count(per_class), check_fractions(split_fractions)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"--seed {seed!r} must be a whole number >= 0")
    out = check_output(Path(out), overwrite)
    labels = np.arange(per_class * len(p.class_names)) % len(p.class_names)
    split = stratified_split(labels, fractions, seed)
    if workers is None:
        workers = os.cpu_count() or 1 if len(labels) >= POOL_MIN_IMAGES else 1
    workers = max(1, min(int(workers), -(-len(labels) // CHUNK_IMAGES)))
    meta = {"preset": p.name, "seed": int(seed), "source": f"simulate:{p.name}",
            "class_names": list(p.class_names), "image_shape": list(p.image_shape),
            "pixel_scale": p.pixel_scale, "per_class": per_class, "split_fractions": list(fractions),
            "preset_params": dataclasses.asdict(p), "description": p.description}
    fields = [pa.field(c, pa.int64() if c == "n_subhalos" else pa.float64()) for c in PARAM_COLUMNS]
    from tqdm import tqdm

    with atomic_dir(out, overwrite=overwrite) as tmp:
        writer = DatasetWriter(tmp, meta, fields)
        with tqdm(total=len(labels), unit="img", desc=f"simulate {p.name}",
                  disable=not progress, delay=1.0) as bar:
            for start, images, params in iter_chunks(p, labels, int(seed), workers):
                rows = split[start:start + len(images)]
                lab = labels[start:start + len(images)]
                for k, name in enumerate(SPLITS):
                    m = rows == k
                    writer.write(name, images[m], lab[m], {c: v[m] for c, v in params.items()})
                bar.update(len(images))
        writer.close()
    return out
