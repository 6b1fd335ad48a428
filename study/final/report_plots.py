"""The report's figures as PNG files: ROC curves, confusion matrix, invariant-feature orbits.

All plots use matplotlib's Agg backend (no display needed) and take plain numpy arrays, so the
same functions serve the rerun job (``best``) and ``evaluate``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_roc(probs: np.ndarray, labels: np.ndarray, class_names: list[str], path: Path,
             title: str = "ROC") -> Path:
    """One-vs-rest ROC curve per class and the micro-average (all (image, class) pairs pooled).

    ``probs`` [N, C] are probabilities (never logits); a class absent from ``labels`` is skipped.
    """
    from sklearn.metrics import auc, roc_curve

    plt = _pyplot()
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    onehot = np.eye(len(class_names))[labels]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    curves = [(f"{name}", onehot[:, k], probs[:, k]) for k, name in enumerate(class_names)]
    if len(class_names) > 2:
        curves.append(("micro-average", onehot.ravel(), probs.ravel()))
    for name, truth, score in curves:
        if truth.min() == truth.max():
            continue
        fpr, tpr, _ = roc_curve(truth, score)
        style = {"linestyle": "--", "color": "k"} if name == "micro-average" else {}
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.4f})", **style)
    ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title,
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: Path,
                   title: str = "confusion matrix") -> Path:
    """Counts with row-normalised colour (rows = true class, columns = predicted class)."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(class_names), 1.2 + 1.1 * len(class_names)))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=9)
    ticks = range(len(class_names))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=class_names, yticklabels=class_names,
           xlabel="predicted class", ylabel="true class", title=title)
    return _save(fig, path)


def plot_feature_orbits(angles_deg: np.ndarray, orbits: dict[str, np.ndarray], path: Path,
                        max_features: int = 6) -> Path:
    """The seeds' feature-space picture: invariant features of a few images rotated through 360 deg.

    ``orbits[label]`` is ``[images, angles, features]``: the features each model feeds its
    classifier head, for every image at every angle. Each panel shows one image and one model;
    every line is one feature divided by its mean over the angles, so a flat line at 1 is a
    rotation-invariant feature and wiggles are the feature's change under rotation.
    """
    plt = _pyplot()
    labels = list(orbits)
    n_images = next(iter(orbits.values())).shape[0]
    fig, axes = plt.subplots(n_images, len(labels), figsize=(4.2 * len(labels), 2.3 * n_images),
                             sharex=True, squeeze=False)
    for col, label in enumerate(labels):
        for row in range(n_images):
            feats = orbits[label][row][:, :max_features]
            scale = np.abs(feats).mean(axis=0, keepdims=True) + 1e-12
            ax = axes[row, col]
            ax.plot(angles_deg, feats / scale, linewidth=1)
            ax.axhline(1.0, color="0.6", linewidth=0.6)
            if row == 0:
                ax.set_title(label, fontsize=10)
            if col == 0:
                ax.set_ylabel(f"image {row + 1}\nfeature / mean")
    for ax in axes[-1]:
        ax.set_xlabel("rotation angle (deg)")
        ax.set_xticks(np.arange(0, 361, 90))
    return _save(fig, path)
