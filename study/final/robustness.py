"""Rotation robustness and the invariant-feature orbits of a trained classifier.

Rotations use the seeds' method (``data_io.rotate_batch``: upsample x3, rotate, average-pool
back, zero outside the inscribed disc) on preprocessed images, exactly as in training
augmentation. A model that is invariant to a rotation gives the same probabilities for an image
and its rotated copy; we measure how far each model is from that.

Probability shift of one image under rotation by angle a (total-variation distance, in [0, 1]):

    shift = 1/2 sum_k | P_k(rot_a x) - P_k(rot_0 x) |

``rot_0`` (rotation by 0 degrees through the same resample-and-mask path) is the reference, so
the shift measures the rotation alone, not the disc mask or the resampling.
"""
from __future__ import annotations

import numpy as np
import torch

from study.engine.metrics import classification_metrics


def random_angles(n: int, seed: int) -> torch.Tensor:
    """``n`` angles ~ U(0, 360) degrees from a seeded generator (the same for every model)."""
    gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    return torch.rand(n, generator=gen, dtype=torch.float64).float() * 360.0


def rotated(x: torch.Tensor, angles_deg: torch.Tensor) -> torch.Tensor:
    """Preprocessed images ``[N, 1, S, S]`` rotated counter-clockwise by ``angles_deg`` ``[N]``."""
    from data_io import rotate_batch

    out = []
    for lo in range(0, len(x), 256):
        out.append(rotate_batch(x[lo:lo + 256], angles_deg[lo:lo + 256]))
    return torch.cat(out) if out else x


def rotation_robustness(predictor, images: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Metrics on the test set rotated by random angles, and the probability shift they cause.

    Returns ``rot_<metric>`` (the :func:`study.engine.metrics.classification_metrics` keys, on the
    rotated set), ``rot_prob_shift_mean`` / ``rot_prob_shift_max`` (over images, see the module
    docstring), ``rot_pred_change`` (fraction of images whose predicted class changes) and
    ``rot_confusion`` (list of lists).
    """
    from study.engine.metrics import confusion

    x = predictor.tensors(images)
    angles = random_angles(len(x), seed)
    reference = predictor.probs_of(rotated(x, torch.zeros(len(x))))
    probs = predictor.probs_of(rotated(x, angles))
    shift = 0.5 * np.abs(probs - reference).sum(axis=1)
    metrics = {f"rot_{k}": v for k, v in classification_metrics(probs, labels, predictor.class_names).items()}
    metrics.update({
        "rot_prob_shift_mean": float(shift.mean()),
        "rot_prob_shift_max": float(shift.max()),
        "rot_pred_change": float(np.mean(probs.argmax(1) != reference.argmax(1))),
        "rot_confusion": confusion(probs, labels, len(predictor.class_names)).tolist(),
    })
    return metrics


def feature_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose input is the model's invariant feature vector (the classifier head).

    Steerable CNNs (and their plain exports, a ``Sequential`` ending in the head): ``head``,
    fed the group-pooled map ``[B, F, s, s]``; ResNet-18: ``fc``, fed ``[B, 512]``.
    """
    for name in ("head", "fc"):
        if isinstance(getattr(model, name, None), torch.nn.Module):
            return getattr(model, name)
    if isinstance(model, torch.nn.Sequential):
        return model[-1]
    raise ValueError(f"cannot find the classifier head of {type(model).__name__}")


@torch.no_grad()
def invariant_features(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """Features ``[B, F]`` the head receives for ``x``, averaged over space if still a map."""
    seen: list[torch.Tensor] = []
    handle = feature_module(model).register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    try:
        model.eval()
        model(x)
    finally:
        handle.remove()
    feats = seen[0].float()
    return (feats.mean(dim=(2, 3)) if feats.dim() == 4 else feats).cpu().numpy()


def feature_orbits(predictor, images: np.ndarray, step_deg: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """``(angles [A], features [images, A, F])``: each image rotated through 0..360 degrees."""
    angles = torch.arange(0.0, 360.0 + 1e-6, step_deg)
    x = predictor.tensors(images).to(predictor.device)
    orbits = []
    for image in x:
        batch = rotated(image[None].expand(len(angles), -1, -1, -1).contiguous(), angles)
        orbits.append(invariant_features(predictor.model, batch.to(predictor.device)))
    return angles.numpy(), np.stack(orbits)


def orbit_variation(orbits: np.ndarray) -> float:
    """Mean over images of sum_f std_angle(f) / sum_f mean_angle(|f|): 0 for invariant features.

    ``orbits`` is ``[images, angles, features]`` from :func:`feature_orbits`.
    """
    spread = orbits.std(axis=1).sum(axis=1)
    scale = np.abs(orbits).mean(axis=1).sum(axis=1) + 1e-12
    return float(np.mean(spread / scale))
