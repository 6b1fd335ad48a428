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


def test_one_loss_for_validation_and_test_without_warnings():
    import warnings

    import torch

    from study.engine.metrics import cross_entropy
    from study.engine.spec import RunSpec, Split
    from study.engine.trainer import Trainer
    from study.final.evaluate import score

    probs = torch.softmax(torch.randn(50, 3, generator=torch.Generator().manual_seed(0)), 1).numpy()
    labels = np.arange(50) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # sklearn warns when float32 rows miss 1 by 1e-7
        loss = cross_entropy(probs, labels)
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(50), labels])), rel=1e-5)
    trainer = Trainer(RunSpec("trivial", 0.1, 1e-3, 1e-5, 8, 1, image_size=29), ["a", "b", "c"])
    images = np.random.default_rng(0).normal(size=(12, 29, 29)).astype(np.float32)
    split = Split(images, np.arange(12) % 3)
    assert trainer.evaluate(split)["val_loss"] == pytest.approx(
        score(trainer.predict(images), split.labels, ["a", "b", "c"])["loss"], rel=1e-9)
