"""Pieces of `best`/`evaluate` without Ray or MLflow: export, safe loading, robustness maths."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.errors import UsageError
from study.engine.predict import Predictor
from study.final.weights import load_model, save_weights


@pytest.fixture(scope="module")
def predictor():
    from lensnets import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="C4", width=0.1, num_classes=3, input_size=33)).eval()
    return Predictor(model, ["no_sub", "cdm", "vortex"], image_size=33, crop_fraction=0.8)


def test_exported_classifier_matches_preprocess_then_model(predictor, tmp_path):
    from study.final.export import export_classifier

    images = np.random.default_rng(0).normal(size=(5, 64, 64)).astype(np.float32)
    path = export_classifier(predictor, (64, 64), tmp_path / "m.pt2")   # crop 51 px, resize to 32, pad to 33
    probs = torch.export.load(str(path)).module()(torch.from_numpy(images))
    assert np.allclose(probs.detach().numpy(), predictor.predict(images), atol=1e-5)
    assert np.allclose(probs.sum(1).detach().numpy(), 1.0, atol=1e-6)


def test_exported_classifier_refuses_another_image_shape_in_one_line(predictor, tmp_path):
    from study.final.export import export_classifier, wrong_shape_message

    model = torch.export.load(str(export_classifier(predictor, (64, 64), tmp_path / "m.pt2"))).module()
    for shape in ((1, 150, 150), (2, 48, 48), (1, 64, 80)):
        with pytest.raises(RuntimeError) as err:
            model(torch.zeros(shape))
        message = str(err.value)
        assert message == wrong_shape_message((64, 64)) and "\n" not in message
        assert "64x64" in message and "[B, 64, 64]" in message and "--match-field" in message


def test_weights_file_round_trips(predictor, tmp_path):
    images = np.random.default_rng(1).normal(size=(3, 40, 40)).astype(np.float32)
    loaded = load_model(str(save_weights(predictor, tmp_path / "w.pt")))
    assert loaded.class_names == predictor.class_names and loaded.crop_fraction == 0.8
    assert np.allclose(loaded.predict(images), predictor.predict(images), atol=1e-6)


def test_files_that_are_not_what_they_claim_are_usage_errors(predictor, tmp_path):
    (tmp_path / "text.pt").write_text("not a model")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    state = torch.load(save_weights(predictor, tmp_path / "w.pt"), weights_only=True)
    state["state_dict"].pop(next(iter(state["state_dict"])))
    torch.save(state, tmp_path / "damaged.pt")
    for name, needle in [("missing.pt", "does not exist"), ("text.pt", "not a readable"),
                         ("other.pt", "not a model of this project"), ("damaged.pt", "do not fit")]:
        with pytest.raises(UsageError, match=needle):
            load_model(str(tmp_path / name))


def test_rotation_robustness_of_an_invariant_model_is_zero_shift(predictor):
    from study.final.robustness import feature_orbits, orbit_variation, rotation_robustness

    yy, xx = torch.meshgrid(torch.arange(33.0) - 16, torch.arange(33.0) - 16, indexing="ij")
    radius = (xx ** 2 + yy ** 2).sqrt()
    annuli = torch.stack([(radius < 5), (radius >= 5) & (radius < 10), (radius >= 10) & (radius < 15)])
    quadrants = torch.stack([(xx < 0) & (yy < 0), (xx >= 0) & (yy < 0), (xx < 0) & (yy >= 0)])
    weights = torch.randn(3, 3, generator=torch.Generator().manual_seed(1)) * 3

    class MeansOver(torch.nn.Module):   # logits = weights x mean brightness over three pixel masks
        def __init__(self, masks):
            super().__init__()
            self.masks = masks.float()

        def forward(self, x):
            means = (x[:, :1] * self.masks).sum((2, 3)) / self.masks.sum((1, 2))
            return means @ weights.T

    # smooth off-centre sources, which a rotation carries from quadrant to quadrant
    rng = np.random.default_rng(2)
    images = np.stack([np.exp(-((xx.numpy() - cx) ** 2 + (yy.numpy() - cy) ** 2) / 8.0)
                       for cx, cy in rng.uniform(-9, 9, size=(12, 2))]).astype(np.float32)
    labels = np.arange(12) % 3
    shifts = {}
    for name, masks in (("annuli", annuli), ("quadrants", quadrants)):
        model = Predictor(MeansOver(masks), predictor.class_names, image_size=33, crop_fraction=1.0)
        shifts[name] = rotation_robustness(model, images, labels)
    # annular means cannot see a rotation (up to the resampling); quadrant means can
    assert shifts["annuli"]["rot_prob_shift_max"] < 0.05
    assert shifts["quadrants"]["rot_prob_shift_mean"] > 10 * shifts["annuli"]["rot_prob_shift_mean"]
    assert shifts["quadrants"]["rot_pred_change"] > 0
    assert {"rot_auc_micro", "rot_acc", "rot_confusion"} <= set(shifts["annuli"])
    angles, orbits = feature_orbits(predictor, images[:2], step_deg=90)
    assert orbits.shape[:2] == (2, 5) and orbit_variation(np.ones((2, 5, 4))) == 0.0
    # C4: rotations by multiples of 90 degrees leave the invariant features unchanged (up to resampling)
    assert np.allclose(orbits[:, 0], orbits[:, 1], rtol=1e-3, atol=1e-4)
