"""Classification metrics on predicted probabilities (never on raw logits).

For C classes with probabilities ``P[n, k]``:

- ``auc_micro``: ROC AUC of all (image, class) pairs pooled, one-hot truth against ``P``
  (for two classes this equals the plain binary AUC of the positive class);
- ``auc_<class>``: one-vs-rest ROC AUC of class k against the rest, on ``P[:, k]``;
- ``auc_macro``: the unweighted mean of the one-vs-rest AUCs;
- ``acc``: fraction with ``argmax_k P[n, k]`` equal to the label;
- ``loss`` (:func:`cross_entropy`, validation and test alike): mean ``-log P[n, label]``, with
  ``P`` clipped to ``[1e-7, 1]``.

A class absent from ``labels`` has an undefined AUC (NaN) and is left out of the macro mean.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, log_loss, roc_auc_score


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Logits ``[N, 1]`` (binary, sigmoid) or ``[N, C]`` (softmax) -> probabilities ``[N, C]``."""
    logits = logits.float()
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def classification_metrics(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """Metrics of probabilities ``[N, C]`` against integer labels ``[N]``, keyed without prefix."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    n_classes = len(class_names)
    onehot = np.eye(n_classes)[labels]
    metrics = {"acc": float(np.mean(probs.argmax(axis=1) == labels))}
    per_class = [_auc(onehot[:, k], probs[:, k]) for k in range(n_classes)]
    metrics["auc_micro"] = micro_auc(probs, labels, n_classes)
    for name, value in zip(class_names, per_class):
        metrics[f"auc_{name}"] = value
    defined = [v for v in per_class if not np.isnan(v)]
    metrics["auc_macro"] = float(np.mean(defined)) if defined else float("nan")
    return metrics


def micro_auc(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """``auc_micro`` of the module docstring (the binary AUC of class 1 for two classes)."""
    onehot = np.eye(n_classes)[np.asarray(labels)]
    if n_classes == 2:
        return _auc(onehot[:, 1], np.asarray(probs)[:, 1])
    return _auc(onehot.ravel(), np.asarray(probs).ravel())


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of probabilities ``[N, C]`` against integer labels (the ``loss``)."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1)
    probs /= probs.sum(axis=1, keepdims=True)   # float32 softmax rows sum to 1 only within ~1e-7
    return float(log_loss(labels, probs, labels=range(probs.shape[1])))


def confusion(probs: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class."""
    return confusion_matrix(labels, np.asarray(probs).argmax(axis=1), labels=list(range(n_classes)))


def _auc(truth: np.ndarray, score: np.ndarray) -> float:
    if truth.min() == truth.max():
        return float("nan")
    return float(roc_auc_score(truth, score))
