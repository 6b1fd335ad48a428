"""The domain check: a 64x64 model scored on a 150x150 set warns, and `--match-field` resamples.

Real parts: simulated datasets (small64 and model_i presets), a real C4 model saved in the
project's weights format, `run_study.py evaluate` and `ingest` called in process.
"""
from __future__ import annotations

import json
import typing

import numpy as np
import pytest
import torch

from common.errors import UsageError
from data_io.domain import Domain, compare, dataset_domain, resample_to_field
from study.engine.predict import Predictor
from study.final.weights import load_model, save_weights

SMALL64 = Domain((64, 64), 0.08, "small64", "simulate:small64")


def gaussian(n: int, scale: float, sigma: float = 0.3, centre=(0.4, -0.2)) -> np.ndarray:
    """A round Gaussian in surface brightness, sampled at the pixel centres of an n x n grid."""
    axis = (np.arange(n) - (n - 1) / 2) * scale
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def test_resampling_keeps_a_source_where_it_is_in_arcsec():
    fine = gaussian(150, 0.05)[None]                       # Model I grid: 7.5" field
    onto_small = resample_to_field(fine, 0.05, (64, 64), 0.08)[0]
    assert np.abs(onto_small - gaussian(64, 0.08)).max() < 0.02      # peak 1: within 2% everywhere
    back = resample_to_field(gaussian(64, 0.08)[None], 0.08, (150, 150), 0.05)[0]
    assert np.abs(back[30:120, 30:120] - fine[0, 30:120, 30:120]).max() < 0.02
    assert np.all(back[:10] == 0) and np.all(back[:, -10:] == 0)    # outside the 5.12" field: no flux


def test_compare_names_each_difference_and_what_it_cannot_compare():
    model_i = Domain((150, 150), 0.05, "model_i", "simulate:model_i")
    found, unknown = compare(SMALL64, model_i)
    assert [m.what for m in found] == ["raw image shape", "pixel scale", "field of view", "preset"]
    assert (found[1].reference, found[1].data) == ('0.08"/px', '0.05"/px')
    assert (found[2].reference, found[2].data) == ('5.12"', '7.5"') and unknown == []
    ingested = Domain((64, 64), None, None, "ingest:/somewhere")
    found, unknown = compare(SMALL64, ingested)
    assert [m.what for m in found] == ["source"] and unknown == ["pixel scale", "field of view"]
    assert compare(SMALL64, SMALL64) == ([], [])


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """(64x64 model weights file, the same model without a domain record, a 150x150 model_i set)."""
    from data_io import simulate_dataset
    from lensnets import ModelConfig, build_model

    tmp = tmp_path_factory.mktemp("domain")
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="C4", width=0.1, num_classes=3, input_size=33)).eval()
    names = ["no_sub", "cdm", "vortex"]
    weights = save_weights(Predictor(model, names, 33, 1.0, domain=SMALL64), tmp / "m64.pt")
    older = save_weights(Predictor(model, names, 33, 1.0), tmp / "older.pt")
    model_i = simulate_dataset("model_i", 10, tmp / "mi150", seed=1, progress=False, workers=1)
    return tmp, weights, older, model_i


def test_weights_files_carry_the_training_domain(sets):
    _, weights, older, model_i = sets
    assert load_model(str(weights)).domain == SMALL64 and load_model(str(older)).domain is None
    from data_io import open_dataset

    assert dataset_domain(open_dataset(model_i).metadata) == Domain((150, 150), 0.05, "model_i",
                                                                    "simulate:model_i")


@pytest.fixture
def evaluate(run_main):
    """``evaluate --json`` in this process: (exit status, stdout, stderr, the JSON result or None)."""
    def run(tmp, model, data, *extra):
        out = tmp / f"ev-{len(list(tmp.iterdir()))}"
        code, stdout, stderr = run_main("evaluate", "--model", str(model), "--data", str(data), "--json",
                                        "--out", str(out), *extra, cwd=tmp)
        return Done(code, stdout, stderr), (json.loads(stdout) if code == 0 else None)
    return run


class Done(typing.NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def test_a_64px_model_on_a_150px_set_warns_and_match_field_changes_the_result(sets, evaluate):
    tmp, weights, _, model_i = sets
    plain, scored = evaluate(tmp, weights, model_i)
    assert plain.returncode == 0, plain.stderr[-2000:]
    warnings = [line for line in plain.stderr.splitlines() if line.startswith("warning:")]
    assert [w.split(" differs")[0] for w in warnings] == [
        "warning: raw image shape", "warning: pixel scale", "warning: field of view", "warning: preset"]
    assert "has 150x150" in warnings[0] and "trained on 64x64" in warnings[0]
    assert '0.05"/px' in warnings[1] and '0.08"/px' in warnings[1] and "--match-field" in warnings[1]
    assert scored["domain"]["status"] == "mismatch" and not scored["domain"]["match_field"]["applied"]

    matched, resampled = evaluate(tmp, weights, model_i, "--match-field")
    assert matched.returncode == 0, matched.stderr[-2000:]
    lines = matched.stderr.splitlines()
    assert any(line.startswith("note: --match-field: resampled") for line in lines)
    assert [line.split(" differs")[0] for line in lines if line.startswith("warning:")] == ["warning: preset"]
    assert resampled["domain"]["match_field"]["applied"]
    assert resampled["domain"]["match_field"]["to"]["raw_image_shape"] == [64, 64]
    assert resampled["n_images"] == scored["n_images"]
    assert resampled["loss"] != pytest.approx(scored["loss"], abs=1e-6), "resampling changed nothing"


def test_an_in_domain_set_gives_no_warning(sets, tiny_dataset, evaluate):
    tmp, weights, _, _ = sets
    done, scored = evaluate(tmp, weights, tiny_dataset)
    assert done.returncode == 0 and "warning:" not in done.stderr, done.stderr[-2000:]
    assert scored["domain"]["status"] == "match"


def test_ingested_pixel_scale_is_recorded_and_used(sets, tmp_path, evaluate, run_main):
    from data_io import open_dataset

    tmp, weights, _, model_i = sets
    src = tmp_path / "src"
    splits = [open_dataset(model_i).arrays(split) for split in ("train", "val", "test")] * 2
    images, labels = (np.concatenate(parts) for parts in zip(*splits))     # 20 per class
    for i, (image, label) in enumerate(zip(images, labels)):
        (src / ["no_sub", "cdm", "vortex"][label]).mkdir(parents=True, exist_ok=True)
        np.save(src / ["no_sub", "cdm", "vortex"][label] / f"{i}.npy", image)
    unknown, known = tmp_path / "unknown", tmp_path / "known"
    for out, extra in ((unknown, []), (known, ["--pixel-scale", "0.05"])):
        code, _, err = run_main("ingest", str(src), "--out", str(out), "--quiet", *extra)
        assert code == 0, err[-2000:]
    assert dataset_domain(open_dataset(known).metadata).field_of_view == pytest.approx((7.5, 7.5))
    done, _ = evaluate(tmp, weights, unknown, "--match-field")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "--pixel-scale" in done.stderr, done.stderr
    done, scored = evaluate(tmp, weights, known, "--match-field")
    assert done.returncode == 0 and scored["domain"]["match_field"]["applied"], done.stderr[-2000:]


@pytest.mark.parametrize("case, needle", [
    ("older", "records no pixel scale for its training data"),
    ("pixel-scale", "must be a positive number"),
])
def test_bad_input_is_one_line_and_exit_2(sets, tiny_dataset, tmp_path, case, needle, evaluate, run_main):
    tmp, _, older, model_i = sets
    if case == "older":
        done, _ = evaluate(tmp, older, model_i, "--match-field")
    else:
        done = Done(*run_main("ingest", str(tiny_dataset), "--out", str(tmp_path / "x"), "--pixel-scale", "-1"))
        assert not (tmp_path / "x").exists()
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and needle in done.stderr, done.stderr


def test_a_model_without_a_record_says_what_it_could_not_check(sets, evaluate):
    tmp, _, older, model_i = sets
    done, scored = evaluate(tmp, older, model_i)
    assert done.returncode == 0 and "warning:" not in done.stderr
    assert "note: model" in done.stderr and "records no training-data domain" in done.stderr
    assert scored["domain"]["status"] == "unknown"


def test_check_pixel_scale_refuses_nonsense():
    from data_io.domain import check_pixel_scale

    assert check_pixel_scale("0.05") == 0.05
    for bad in ("0", "-0.1", "nan", "inf", "x", True):
        with pytest.raises(UsageError, match="positive number of arcsec per pixel"):
            check_pixel_scale(bad)
