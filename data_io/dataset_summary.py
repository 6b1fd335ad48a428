"""Summarise a dataset: schema, class counts per split, value ranges, PNG grid of examples."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.atomic import atomic_file
from data_io.dataset import SPLITS, open_dataset
from data_io.domain import dataset_domain


def example_grid(ds, png: Path, per_class: int = 4) -> Path:
    """Write a [classes x per_class] grid of train images (asinh-stretched) to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = next((s for s in SPLITS if len(ds.arrays(s)[1])), "train")
    images, labels = ds.arrays(split)
    n_cls = len(ds.class_names)
    fig, axes = plt.subplots(n_cls, per_class, figsize=(2 * per_class, 2 * n_cls), squeeze=False)
    for c, name in enumerate(ds.class_names):
        idx = np.flatnonzero(labels == c)[:per_class]
        for k, ax in enumerate(axes[c]):
            ax.axis("off")
            if k < len(idx):
                ax.imshow(np.arcsinh(np.maximum(images[idx[k]], 0)), cmap="magma", origin="lower")
            if k == 0:
                ax.set_title(name, fontsize=9, loc="left")
    fig.tight_layout()
    with atomic_file(png, "wb") as fh:
        fig.savefig(fh, format="png", dpi=80)
    plt.close(fig)
    return png


def inspect_dataset(path, png=None, per_class: int = 4) -> str:
    """Return the text summary and write the example grid (default ``DIR/examples.png``)."""
    ds = open_dataset(path)
    lines = [f"dataset {ds.path}", f"  source: {ds.metadata.get('source')}  "
             f"preset: {ds.metadata.get('preset')}  seed: {ds.metadata.get('seed')}  "
             f"format: {ds.metadata.get('format_version')}",
             f"  classes: {ds.class_names}  image shape: {ds.image_shape}",
             f"  sky: {dataset_domain(ds.metadata).describe()}", "  schema:"]
    lines += [f"    {f.name}: {f.type}" for f in ds.table("train").schema]
    lines.append("  split   " + "".join(f"{c:>10}" for c in ds.class_names) + "     total   min      max       mean")
    for s in SPLITS:
        images, labels = ds.arrays(s)
        counts = np.bincount(labels, minlength=len(ds.class_names))
        rng = (f"{images.min():8.3g} {images.max():8.3g} {images.mean():10.4g}"
               if len(images) else "       -        -          -")
        lines.append(f"  {s:<6}" + "".join(f"{n:>10}" for n in counts) + f"{len(labels):>10}  {rng}")
    png = Path(png) if png else ds.path / "examples.png"
    lines.append(f"  examples: {example_grid(ds, png, per_class)}")
    return "\n".join(lines)
