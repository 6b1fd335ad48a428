"""A tiny study, then `best`, then `evaluate` on another preset: the real stack end to end."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.support.tiny_studies import run_cli
from study.tracking.mlflow_store import child_runs

pytestmark = pytest.mark.slow

CLASSES = ("no_sub", "cdm", "vortex")


@pytest.fixture(scope="module")
def rerun(finished_c4_study, tmp_path_factory):
    """(tmp, tracking uri, `best` process, its report folder) after the session's 2-trial C4 study
    (29 px: the smallest input the steerable CNN takes, lensnets.config.MIN_INPUT_SIZE).

    `best` runs as a real subprocess here: the command's canary for the console script."""
    tmp = Path(shutil.copytree(finished_c4_study, tmp_path_factory.mktemp("best") / "study"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    best = run_cli("best", "--study", "t", "--tracking-uri", uri, "--threads", "1", "--out", str(tmp / "report"),
                   cwd=tmp)
    assert best.returncode == 0, best.stderr[-3000:]
    return tmp, uri, best, tmp / "report"


@pytest.fixture(scope="module")
def other_preset(tmp_path_factory) -> Path:
    from data_io import simulate_dataset

    return simulate_dataset("model_j", 6, tmp_path_factory.mktemp("mj") / "mj", seed=5, progress=False, workers=1)


def _rerun_run(uri: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("t")
    (run,) = client.search_runs([exp.experiment_id], "tags.role = 'rerun'")
    (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'study'")
    return client, exp, run, parent


def test_best_logs_metrics_plots_robustness_and_links_the_study(rerun):
    tmp, uri, best, report = rerun
    client, exp, run, parent = _rerun_run(uri)
    assert run.data.tags["study"] == "t" and run.data.tags["study_run_id"] == parent.info.run_id
    assert run.data.tags["source_run_id"] == parent.data.tags["best_run_id"]
    assert len(child_runs(client, exp.experiment_id, parent.info.run_id)) == 2, "the rerun is not a trial"
    m = run.data.metrics
    for prefix in ("test_", "control_test_"):
        for key in ("auc_micro", "auc_macro", "acc", "loss", *(f"auc_{c}" for c in CLASSES),
                    "rot_auc_micro", "rot_acc", "rot_prob_shift_mean", "rot_prob_shift_max", "rot_pred_change"):
            assert f"{prefix}{key}" in m, f"{prefix}{key} missing"
        assert 0 <= m[f"{prefix}rot_prob_shift_mean"] <= m[f"{prefix}rot_prob_shift_max"] <= 1
    assert {"feature_variation_C4", "feature_variation_trivial"} <= set(m)
    assert [p.step for p in client.get_metric_history(run.info.run_id, "val_auc_micro")] == [1, 2]
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    for name in ("roc.png", "confusion.png", "control_roc.png", "control_confusion.png", "feature_orbits.png",
                 "metrics.json", "history.csv", "model_weights.pt", "lens_classifier.pt2", "model_card.json"):
        assert f"report/{name}" in logged and (report / name).stat().st_size > 0
    summary = json.loads((report / "metrics.json").read_text())
    assert np.array(summary["test"]["confusion"]).sum() == summary["test"]["n_images"]
    assert summary["control"]["spec"]["model"] == "trivial" and summary["control"]["spec"]["lr"] == summary["spec"]["lr"]


def test_rerun_repeats_the_trial_and_says_so(rerun):
    _, _, best, report = rerun
    repro = json.loads((report / "metrics.json").read_text())["reproducibility"]
    assert repro["epoch"] == 2 and abs(repro["difference"]) < 1e-9, repro   # CPU, 1 thread, same seed
    assert f"rerun {repro['rerun']:.6f}, trial {repro['trial']:.6f}" in best.stdout
    assert "| auc_micro |" in best.stdout and "models:/t@best" in best.stdout


def test_registered_model_and_exported_file_load_and_agree(rerun):
    import mlflow

    from data_io import open_dataset
    from study.final.weights import load_model

    tmp, uri, _, report = rerun
    mlflow.set_tracking_uri(uri)
    registered = mlflow.pytorch.load_model("models:/t@best")
    weights = load_model(str(report / "model_weights.pt"))
    images = open_dataset(json.loads((report / "metrics.json").read_text())["data"]).arrays("test")[0]
    expected = weights.predict(images)
    x = weights.tensors(images)
    from study.engine.metrics import probabilities
    assert np.allclose(probabilities(registered(x)).detach().numpy(), expected, atol=1e-5)
    # docs/best-and-evaluate.md's three-line snippet, on a .npy image
    np.save(tmp / "lens.npy", images[0])
    model = torch.export.load(str(report / "lens_classifier.pt2")).module()
    probs = model(torch.from_numpy(np.load(tmp / "lens.npy")).float()[None])
    assert probs.shape == (1, 3) and np.allclose(probs.detach().numpy(), expected[:1], atol=1e-5)


def test_evaluate_scores_the_registered_model_on_another_preset(rerun, other_preset):
    tmp, uri, _, _ = rerun
    done = run_cli("evaluate", "--model", "models:/t@best", "--data", str(other_preset), "--json",
                   "--tracking-uri", uri, "--out", str(tmp / "ev"), cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)          # exactly one JSON object on stdout
    from data_io import open_dataset

    n_test = len(open_dataset(other_preset).arrays("test")[1])
    assert result["n_images"] == n_test and result["class_names"] == list(CLASSES)
    for key in ("auc_micro", "auc_macro", "acc", "loss", "confusion", "rot_auc_micro", "rot_prob_shift_mean"):
        assert key in result
    assert all(Path(p).stat().st_size > 0 for p in result["plots"]) and (tmp / "ev" / "metrics.json").exists()


@pytest.mark.parametrize("args, needle", [
    (["best", "--study", "nope"], "no study named 'nope'"),
    (["best", "--run-id", "0123456789abcdef"], "does not exist"),
    (["evaluate", "--model", "models:/nope@best", "--data", "{data}"], "cannot be loaded"),
    (["evaluate", "--model", "{report}/lens_classifier.pt2", "--data", "{data}"], "not a readable weights file"),
    (["evaluate", "--model", "{report}/model_weights.pt", "--data", "{tmp}/missing"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(rerun, tiny_dataset, run_main, args, needle):
    tmp, uri, _, report = rerun
    args = [a.format(data=tiny_dataset, report=report, tmp=tmp) for a in args]
    code, out, err = run_main(*args, "--tracking-uri", uri, cwd=tmp)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err, err


def test_best_on_other_data_names_each_domain_difference(c4_study, other_preset, run_main):
    copy = c4_study                           # a copy of the store: the rerun above stays the only one
    code, _, err = run_main("best", "--study", "t", "--tracking-uri", f"sqlite:///{copy / 'mlflow.db'}",
                            "--epochs", "1", "--no-control", "--threads", "1", "--data", str(other_preset),
                            "--out", str(copy / "report"), cwd=copy)
    assert code == 0, err[-3000:]
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert [w.split(" differs")[0] for w in warnings] == [
        "warning: raw image shape", "warning: pixel scale", "warning: field of view", "warning: preset"]
    assert all("study 't' tuned on" in w and "drop --data" in w for w in warnings)
    domain = json.loads((copy / "report" / "metrics.json").read_text())["domain"]
    assert domain["data"]["preset"] == "model_j" and domain["study_data"]["preset"] == "small64"
    card = json.loads((copy / "report" / "model_card.json").read_text())
    assert card["domain"]["raw_image_shape"] == [150, 150] and card["domain"]["pixel_scale"] == 0.05
