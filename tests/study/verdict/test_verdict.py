"""`verdict`: each group's best configuration retrained with K seeds, compared with trivial.

End to end on a tiny study (one searched group, C4, so the verdict adds the trivial control:
2 groups x 2 seeds x 2 epochs), plus unit tests of the statistics and of which configurations
are retrained.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.support.tiny_studies import run_cli
from study.tracking.mlflow_store import PARENT_TAG, child_runs

CLASSES = ["no_sub", "cdm", "vortex"]


@pytest.fixture(scope="module")
def verdict(finished_c4_study, tmp_path_factory):
    """(tmp, uri, finished `verdict` process, report folder) after the session's 2-trial C4 study
    (its grace period is its epoch budget, so both trials completed). `verdict` runs as a real
    subprocess here: the command's canary for the console script."""
    tmp = Path(shutil.copytree(finished_c4_study, tmp_path_factory.mktemp("verdict") / "study"))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    done = run_cli("verdict", "--study", "t", "--seeds", "2", "--tracking-uri", uri,
                   "--out", str(tmp / "verdict"), cwd=tmp)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, uri, done, tmp / "verdict"


@pytest.mark.slow
def test_verdict_writes_table_plot_and_one_run_per_retrain(verdict):
    tmp, uri, done, report = verdict
    for name in ("verdict.md", "verdict.png", "retrains.csv", "groups.csv", "comparison.csv", "verdict.json"):
        assert (report / name).stat().st_size > 0, name
    retrains = pd.read_csv(report / "retrains.csv")
    assert sorted(zip(retrains.group, retrains.seed)) == [("C4", 0), ("C4", 1), ("trivial", 0), ("trivial", 1)]
    summary = json.loads((report / "verdict.json").read_text())
    (row,) = summary["comparison"]
    assert row["group"] == "C4" and row["ci_low"] <= row["delta"] <= row["ci_high"]
    assert row["verdict"] in ("ahead", "behind", "within noise")
    assert "| C4 |" in done.stdout and "(control)" in done.stdout and "95% interval" in done.stdout
    # the control was never tuned (the study searched C4 only): the verdict says so
    warning = ("unequal tuning budgets (C4 2 trials / 4 trial-epochs, trivial 0 trials / 0 trial-epochs)")
    assert f"warning: {warning}" in done.stdout and f"**Warning:** {warning}" in (report / "verdict.md").read_text()
    assert summary["budget_warning"].startswith(warning)

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("t")
    (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'study'")
    (run,) = client.search_runs([exp.experiment_id], "tags.role = 'verdict'")
    assert run.info.status == "FINISHED" and run.data.tags["study_run_id"] == parent.info.run_id
    assert "C4_minus_trivial_auc" in run.data.metrics and run.data.tags["winner"] in ("C4", "trivial")
    assert {a.path for a in client.list_artifacts(run.info.run_id, "verdict")} >= {"verdict/verdict.md",
                                                                                     "verdict/verdict.png"}
    children = child_runs(client, exp.experiment_id, run.info.run_id)
    assert len(children) == 4 and all(c.data.tags[PARENT_TAG] == run.info.run_id for c in children)
    for child in children:
        assert {f"test_auc_{c}" for c in CLASSES} | {"test_auc_micro", "test_rot_auc_micro"} <= set(child.data.metrics)
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_auc_micro")] == [1, 2]
    assert len(child_runs(client, exp.experiment_id, parent.info.run_id)) == 2, "retrains are not trials"


@pytest.mark.slow
def test_seed_zero_retrain_repeats_its_trial(verdict):
    """The verdict reuses the trials' engine: seed 0 of a completed trial's configuration on one
    CPU thread repeats the trial's validation curve."""
    tmp, uri, done, report = verdict
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("t")
    (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'study'")
    (verdict_run,) = client.search_runs([exp.experiment_id], "tags.role = 'verdict'")
    trials = {c.info.run_name: c for c in child_runs(client, exp.experiment_id, parent.info.run_id)}
    (retrain,) = [c for c in child_runs(client, exp.experiment_id, verdict_run.info.run_id)
                  if c.data.tags["group"] == "C4" and c.data.tags["seed"] == "0"]
    trial = trials[retrain.data.tags["source_trial"]]
    assert trial.data.tags["status"] == "completed"    # grace period = epoch budget: none stopped
    history = lambda run: [m.value for m in sorted(client.get_metric_history(run.info.run_id, "val_auc_micro"),
                                                    key=lambda m: m.step)]
    np.testing.assert_allclose(history(retrain), history(trial), atol=1e-6)


@pytest.mark.parametrize("args, needle", [
    (["--study", "nope"], "no study named 'nope'"),
    (["--study", "t", "--seeds", "0"], "--seeds 0 must be >= 1"),
    (["--study", "t", "--epochs", "-1"], "--epochs -1 must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, run_main, args, needle):
    code, _, err = run_main("verdict", *args, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err


# ----------------------------------------------------------------------------- statistics


def _probs(labels: np.ndarray, skill: float, rng) -> np.ndarray:
    """Probabilities that put ``skill`` extra mass on the true class, plus noise."""
    p = rng.random((len(labels), 3)) + skill * np.eye(3)[labels]
    return p / p.sum(axis=1, keepdims=True)


def test_identical_models_are_within_noise_and_a_better_one_is_ahead():
    from study.verdict.stats import paired_difference

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=150)
    weak = np.stack([_probs(labels, 0.3, rng) for _ in range(3)])
    same = paired_difference(weak, weak.copy(), labels, n_boot=200)
    assert same["delta"] == 0 and same["ci_low"] == same["ci_high"] == 0
    assert same["verdict"] == "within noise"
    strong = np.stack([_probs(labels, 3.0, rng) for _ in range(3)])
    better = paired_difference(strong, weak, labels, n_boot=200)
    assert better["verdict"] == "ahead" and better["ci_low"] > 0 and better["p_t"] < 0.05
    assert paired_difference(weak, strong, labels, n_boot=200)["verdict"] == "behind"


def test_small_differences_between_noisy_models_are_called_noise():
    from study.verdict.stats import paired_difference

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=60)
    a = np.stack([_probs(labels, 0.5, rng) for _ in range(2)])
    b = np.stack([_probs(labels, 0.5, rng) for _ in range(2)])   # same skill, other noise
    diff = paired_difference(a, b, labels, n_boot=300)
    assert diff["ci_low"] < 0 < diff["ci_high"] and diff["verdict"] == "within noise"


def test_groups_are_paired_on_the_seeds_both_have():
    from study.verdict.stats import compare_with_control

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, size=90)
    result = lambda model, seed, skill: {"spec": {"model": model, "seed": seed}, "probs": _probs(labels, skill, rng)}
    results = [result("trivial", 0, 0.5), result("trivial", 1, 0.5), result("C8", 0, 2.0), result("C8", 1, 2.0),
               result("C8", 2, 2.0), result("D4", 5, 2.0)]
    table = compare_with_control(results, labels, n_boot=100)
    assert list(table.group) == ["C8"] and int(table.seeds[0]) == 2   # D4 shares no seed with trivial


def _record(groups: list[str]):
    from study.final.best import StudyRecord
    from study.config import load_config

    config = load_config(None, [f"search.groups=[{', '.join(groups)}]"])
    return StudyRecord(None, "", "0", "p", "s", config, {})


def _trial(name, model, status, at2, at4=math.nan, at8=math.nan, lr=1e-3):
    return {"trial": name, "model": model, "width": 0.125 if model != "resnet18" else math.nan, "lr": lr,
            "weight_decay": 1e-5, "batch_size": 32, "status": status, "epochs": 8 if at8 == at8 else 2,
            "best": max(v for v in (at2, at4, at8) if v == v),
            "auc_micro_at_2": at2, "auc_micro_at_4": at4, "auc_micro_at_8": at8}


def test_each_group_contends_with_its_deepest_trial_and_trivial_is_added_when_missing():
    from study.verdict.run import contenders

    trials = pd.DataFrame([
        _trial("C4 early", "C4", "pruned", 0.99, lr=1e-2),          # high, but only 2 epochs
        _trial("C4 full", "C4", "completed", 0.90, 0.92, 0.95, lr=2e-3),
        _trial("D8 only", "D8", "pruned", 0.80, lr=3e-3),
        _trial("D8 failed", "D8", "failed", 0.99, 0.99, 0.99),       # failed trials never contend
    ])
    picks = contenders(trials, _record(["C4", "D8"]), epochs=8)
    assert [(c.group, c.source) for c in picks] == [("C4", "C4 full"), ("D8", "D8 only"), ("trivial", "C4 full")]
    assert picks[0].spec.lr == 2e-3 and picks[0].spec.max_epochs == 8 and picks[1].reached == "pruned at epoch 2"
    assert picks[2].spec.lr == 2e-3 and picks[2].spec.width == picks[0].spec.width   # the control copies C4
    searched = contenders(pd.concat([trials, pd.DataFrame([_trial("T", "trivial", "completed", .8, .8, .8)])]),
                          _record(["C4", "D8", "trivial"]), epochs=8)
    assert [(c.group, c.source) for c in searched] == [("C4", "C4 full"), ("trivial", "T"), ("D8", "D8 only")]


def test_bootstrap_auc_equals_sklearn_with_sample_weights():
    from sklearn.metrics import roc_auc_score

    from study.verdict.stats import bootstrap_micro_auc

    rng = np.random.default_rng(3)
    for n_classes in (2, 3):
        labels = rng.integers(0, n_classes, size=40)
        probs = rng.random((40, n_classes)).round(1)            # rounded: many tied scores
        probs /= probs.sum(axis=1, keepdims=True)
        counts = rng.multinomial(40, np.full(40, 1 / 40), size=5)
        onehot = np.eye(n_classes)[labels]
        for b, got in enumerate(bootstrap_micro_auc(probs, labels, counts)):
            if n_classes == 2:
                want = roc_auc_score(onehot[:, 1], probs[:, 1], sample_weight=counts[b])
            else:
                want = roc_auc_score(onehot.ravel(), probs.ravel(), sample_weight=np.repeat(counts[b], n_classes))
            assert got == pytest.approx(want, abs=1e-12)
