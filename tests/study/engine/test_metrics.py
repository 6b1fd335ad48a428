"""The metrics every score is computed with: AUCs and accuracy against scikit-learn, one loss."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from study.engine.metrics import classification_metrics


def test_three_class_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    logits = rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(probs, labels, ["no_sub", "cdm", "vortex"])
    onehot = np.eye(3)[labels]
    assert m["auc_micro"] == pytest.approx(roc_auc_score(onehot, probs, average="micro"))
    assert m["auc_macro"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    assert m["auc_cdm"] == pytest.approx(roc_auc_score(labels == 1, probs[:, 1]))
    assert m["acc"] == pytest.approx(np.mean(probs.argmax(1) == labels))


def test_binary_micro_auc_is_the_positive_class_auc():
    labels = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    m = classification_metrics(np.stack([1 - p, p], 1), labels, ["no_sub", "sub"])
    assert m["auc_micro"] == pytest.approx(roc_auc_score(labels, p))
    assert m["auc_sub"] == pytest.approx(m["auc_micro"])
