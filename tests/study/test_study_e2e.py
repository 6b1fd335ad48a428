"""Whole studies on the real stack: local Ray, SQLite MLflow, Optuna, e2cnn models, tiny data."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from common.tiny_studies import (ROOT, TRIALS_WITH_AN_EPOCH_SQL, as_sets as _sets, finished_trials,
                      count_in_mlflow_db, run_cli, tiny_overrides)
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


def test_study_logs_every_trial_prunes_weak_ones_and_writes_results(tiny_dataset, tmp_path):
    overrides = tiny_overrides(tiny_dataset, tmp_path, trials=6, epochs=3) + ["tune.max_concurrent=1"]
    done = run_cli("tune", *_sets(overrides), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Rerun the best:       python run_study.py best --study t" in done.stdout
    assert "/#/experiments/" in done.stdout and "runs?orderByKey=metrics.%60val_auc_micro%60&orderByAsc=false" in done.stdout

    client, parent, runs = _study_runs(tmp_path / "mlflow.db", "t")
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


def _finished_trials(db: Path) -> int:
    return finished_trials(db, "r")


def _trials_with_an_epoch(db: Path) -> int:
    return count_in_mlflow_db(db, TRIALS_WITH_AN_EPOCH_SQL)


def test_resume_after_the_driver_is_killed_reruns_and_relogs_nothing(tiny_dataset, tmp_path):
    overrides = tiny_overrides(tiny_dataset, tmp_path, trials=5, epochs=3, name="r") + ["tune.max_concurrent=1"]
    args = [sys.executable, str(ROOT / "run_study.py"), "tune", "--name", "r", *_sets(overrides)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(args, cwd=tmp_path, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "mlflow.db"
    deadline = time.time() + 300
    # kill once two trials are finished and a third has reported an epoch (so Tune has snapshotted it)
    while (_finished_trials(db) < 2 or _trials_with_an_epoch(db) < 3) and time.time() < deadline \
            and driver.poll() is None:
        time.sleep(0.5)
    assert driver.poll() is None, "the study ended before it could be interrupted"
    os.killpg(driver.pid, signal.SIGKILL)   # the driver and the local Ray it started
    driver.wait()

    client, _, before = _study_runs(db, "r")
    finished = {r.info.run_id: (r.info.end_time, _epoch_steps(client, r.info.run_id))
                for r in before if r.data.tags.get("status") in ("completed", "pruned")}
    assert len(finished) >= 2

    again = run_cli("tune", "--name", "r", "--resume", *_sets(overrides), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    client, parent, after = _study_runs(db, "r")
    assert len(after) == 5 and len({r.data.tags["trial_id"] for r in after}) == 5
    for run in after:
        steps = _epoch_steps(client, run.info.run_id)
        assert steps == list(range(1, len(steps) + 1))
        assert run.data.tags["status"] in ("completed", "pruned")
        if run.info.run_id in finished:   # finished before the kill: not rerun, not re-logged
            assert (run.info.end_time, steps) == finished[run.info.run_id]
    board = client.download_artifacts(parent.info.run_id, "results/leaderboard.csv", str(tmp_path))
    assert len(Path(board).read_text().strip().splitlines()) == 1 + 5


def test_trials_spread_over_two_nodes_and_are_logged_once(tiny_dataset, tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    from study.config import load_config
    from study.search.tuner import run_study

    monkeypatch.chdir(tmp_path)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        config = load_config(None, tiny_overrides(tiny_dataset, tmp_path, trials=4, epochs=2, name="two"))
        outcome = run_study(config, address=cluster.address)
    finally:
        ray.shutdown()
        cluster.shutdown()
    client, _, runs = _study_runs(tmp_path / "mlflow.db", "two")
    assert len(runs) == 4 and len(outcome.trials) == 4
    nodes = {n for r in runs for n in r.data.tags["nodes"].split(",")}
    assert len(nodes) == 2, f"trials ran on {nodes}"
