"""benchmarks/transfer.py: the lenstronomy Model I test set and the command's bad-input exit."""
import importlib.util
import json

import lenstronomy  # noqa: F401 - a test dependency (pyproject `test` extra), imported plainly
import numpy as np
import pytest

from tests.support.tiny_studies import ROOT
from data_io import cosmology, open_dataset, simulator
from data_io.domain import compare, dataset_domain
from data_io.presets import PRESETS

_spec = importlib.util.spec_from_file_location("transfer", ROOT / "benchmarks" / "transfer.py")
transfer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(transfer)


@pytest.fixture(scope="module")
def lens_set(tmp_path_factory):
    return transfer.make_lenstronomy_set(tmp_path_factory.mktemp("ls") / "set", per_class=3, seed=4)


def test_lenstronomy_set_is_a_valid_dataset_in_model_i_geometry(lens_set):
    ds = open_dataset(lens_set)
    assert ds.class_names == ["no_sub", "cdm", "vortex"]
    assert ds.image_shape == (150, 150)
    meta = json.loads((lens_set / "dataset.json").read_text())
    assert meta["preset"] is None and meta["source"] == "lenstronomy:model_i"
    assert meta["counts"]["test"] == {"no_sub": 3, "cdm": 3, "vortex": 3}
    assert sum(meta["counts"]["train"].values()) == sum(meta["counts"]["val"].values()) == 0
    images, labels = ds.arrays("test")
    assert images.shape == (9, 150, 150) and images.dtype == np.float32
    assert sorted(np.bincount(labels)) == [3, 3, 3]
    assert np.all(images >= 0) and np.all(images == np.round(images))   # Poisson counts
    # the domain check sees the same sky as a model_i model's training data; only the source differs
    ours = dataset_domain({"image_shape": [150, 150], "preset": "model_i", "source": "simulate:model_i"})
    mismatches, unknown = compare(ours, dataset_domain(meta))
    assert [m.what for m in mismatches] == ["source"] and unknown == []
    table = ds.table("test")
    n_sub = table.column("n_subhalos").to_numpy()
    assert list(n_sub[labels == 1]) == [25] * 3 and not n_sub[labels != 1].any()


def test_lenstronomy_set_is_seeded(lens_set, tmp_path):
    again = transfer.make_lenstronomy_set(tmp_path / "again", per_class=3, seed=4)
    other = transfer.make_lenstronomy_set(tmp_path / "other", per_class=1, seed=5)
    a, b = open_dataset(lens_set).arrays("test")[0], open_dataset(again).arrays("test")[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:3], open_dataset(other).arrays("test")[0])


def test_einstein_radius_matches_the_project_cosmology():
    assert transfer.einstein_radius(1e12, 0.5, 1.0) == pytest.approx(
        cosmology.einstein_radius(1e12, 0.5, 1.0), rel=1e-6)


@pytest.mark.parametrize("physics", ["none", "cdm", "vortex"])
def test_noiseless_images_match_our_simulator_on_the_same_parameters(physics):
    """The benchmark's own Model I set-up (lenstronomy) and data_io's, on one parameter draw."""
    rng = np.random.default_rng(11)
    sim = transfer.LenstronomyModelI()
    q = transfer.draw_params(rng, physics)
    mine = sim.noiseless(q)
    pre, p = PRESETS["model_i"], transfer.MODEL_I
    ours = simulator.render_noiseless(pre, [dict(
        z_lens=p["z_lens"], z_source=p["z_source"], source_r=p["source_r"], source_e1=p["source_e1"],
        source_e2=p["source_e2"], source_x=q["source_x"], source_y=q["source_y"],
        cx=q["cx"], cy=q["cy"], mass=q["mass"])])[0]
    assert mine.shape == ours.shape == (150, 150)
    assert np.max(np.abs(mine - ours)) <= 1e-4 * np.max(np.abs(ours))


def test_noiseless_ring_is_positive_and_substructure_changes_it():
    rng = np.random.default_rng(2)
    sim = transfer.LenstronomyModelI()
    base = transfer.draw_params(rng, "none")
    smooth = sim.noiseless(base)
    assert smooth.min() > 0
    x, y = simulator.pixel_grid(150, 0.05)
    r_peak = np.hypot(x, y)[np.argmax(smooth)]
    assert 0.6 < r_peak < 2.0           # brightest pixel on the arcs, near theta_E = 1.28"
    vortex = transfer.draw_params(rng, "vortex")
    lensed = sim.noiseless({**base, "cx": vortex["cx"], "cy": vortex["cy"], "mass": vortex["mass"]})
    assert np.max(np.abs(lensed - smooth)) > 0.01 * smooth.max()
    counts = sim.noisy(smooth, base["exposure"])
    bright = smooth > 0.5 * smooth.max()
    assert counts[bright].mean() == pytest.approx(base["exposure"] * smooth[bright].mean(), rel=0.05)


def test_missing_model_file_is_one_line_and_exit_2(tmp_path, capsys):
    code = transfer.main(["--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "nope.pt" in err and "does not exist" in err
    assert not (tmp_path / "o").exists()
