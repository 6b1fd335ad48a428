"""A whole study on the real stack: local Ray, SQLite MLflow, Optuna, e2cnn models, tiny data.

The study runs as a real `run_study.py tune` process (the command's canary for the console
script) that joins the session's Ray with ``--address``. Driver loss and resume:
tests/study/search/test_faults_resume.py; node loss and spread over nodes:
tests/study/search/test_faults_nodes.py and test_cluster_netns.py."""
from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.support.tiny_studies import as_sets as _sets, run_cli, tiny_overrides
from study.tracking.mlflow_store import child_runs

pytestmark = pytest.mark.slow


def _study_runs(db: Path, name: str):
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name(name)
    parents = client.search_runs([exp.experiment_id], "tags.role = 'study'")
    assert len(parents) == 1, "one parent run per study"
    return client, parents[0], child_runs(client, exp.experiment_id, parents[0].info.run_id)


def _epoch_steps(client, run_id):
    return [m.step for m in client.get_metric_history(run_id, "val_auc_micro")]


def test_study_logs_every_trial_prunes_weak_ones_and_writes_results(tiny_dataset, tmp_path, shared_ray):
    overrides = tiny_overrides(tiny_dataset, tmp_path, trials=6, epochs=3) + ["tune.max_concurrent=1"]
    done = run_cli("tune", "--address", shared_ray, *_sets(overrides), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Rerun the best:       python run_study.py best --study t" in done.stdout
    assert "/#/experiments/" in done.stdout and "runs?viewStateShareKey=study-t\n" in done.stdout

    client, parent, runs = _study_runs(tmp_path / "mlflow.db", "t")
    assert "mlflow.sharedViewState.study-t" in client.get_experiment(parent.info.experiment_id).tags
    assert len(runs) == 6
    assert len({r.data.tags["trial_id"] for r in runs}) == 6
    statuses = [r.data.tags["status"] for r in runs]
    assert set(statuses) <= {"completed", "pruned"} and "pruned" in statuses and "completed" in statuses
    for run in runs:
        steps = _epoch_steps(client, run.info.run_id)
        assert steps == list(range(1, len(steps) + 1)), "one point per epoch, no gaps or repeats"
        expected = 3 if run.data.tags["status"] == "completed" else len(steps)
        assert len(steps) == expected and run.data.params["model"] in {"trivial", "C4", "D4"}
        assert run.info.run_name.startswith(run.data.params["model"])   # "C4 w0.10 lr3e-03 ..."
        assert 0.0 <= run.data.metrics["val_auc_micro"] <= 1.0
    console = done.stdout + done.stderr
    (tmp_path / "console.txt").write_text(console)
    assert "Checkpoint successfully created" not in console          # Ray Train's INFO line per epoch
    assert "Optuna TPE (seed 0)" in console and "ASHA: rungs at epochs 1, 2 of 3, keeps the top 1/2" in console
    assert "SearchGenerator" not in console and "tensorboard" not in console.lower()
    for run in runs:                                                   # Tune names trials as MLflow does
        assert f"Trial {run.info.run_name} " in console, run.info.run_name
    shown_wd = [float(v) for v in re.findall(r"weight_decay\s+([0-9.e+-]+)", console)]
    logged_wd = [float(r.data.params["weight_decay"]) for r in runs]
    assert shown_wd and all(any(abs(v - w) <= 1e-3 * w for w in logged_wd) for v in shown_wd), (
        f"trial blocks print weight decay {shown_wd}, trials have {logged_wd}")   # not 0.00001 or 0.
    assert sorted(d.name for d in (tmp_path / "runs" / "t").glob("train_trial_*")) == sorted(
        f"train_trial_{r.data.tags['trial_id']}" for r in runs)

    study = optuna.load_study(study_name="t", storage=f"sqlite:///{tmp_path / 'runs' / 't.state' / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == statuses.count("pruned")
    for t in study.trials:
        if t.state == optuna.trial.TrialState.PRUNED:
            assert len(t.intermediate_values) >= 1 and max(t.intermediate_values) < 3

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "results")}
    for name in ("leaderboard.csv", "leaderboard.md", "groups.csv", "best_config.json", "best_config.yaml",
                 "optimization_history.png", "parallel_coordinate.png"):
        assert f"results/{name}" in artifacts
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "study")} >= {
        "study/config.yaml", "study/dataset.json", "study/search_space.json"}
