"""Driver loss: a resumed study stops the same weak trials an uninterrupted one stops.

The session's local Ray instance serves two studies with the same seed and
``tune.max_concurrent=1`` (so the order of results is fixed): an uninterrupted one (run in this
process), and one whose driver - a real `run_study.py tune` process - is SIGKILLed mid-study
(the Ray cluster survives, as the head of a real cluster does) and then resumed with
``--resume``. ASHA's rungs (``asha.json``) and the Optuna study (``optuna.db``) are carried
across the resume, so the two studies must propose the same configurations, stop the same ones
at the same epochs, and record the same rung values; trials that finished before the kill are
neither rerun nor logged again.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from tests.support.tiny_studies import ROOT, as_sets as _sets, finished_trials, study_outcome, tiny_overrides
from study.tracking.mlflow_store import child_runs
from tests.support.sessions import tune_in_process

pytestmark = pytest.mark.slow
TRIALS, EPOCHS = 6, 3


def _finished_runs(db, name: str) -> dict:
    """run id -> (end time, logged epochs) of the study's trials that carry a final status."""
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(name)
    (parent,) = client.search_runs([exp.experiment_id], "tags.role = 'study'")
    return {r.info.run_id: (r.info.end_time, [m.step for m in client.get_metric_history(r.info.run_id, "val_auc_micro")])
            for r in child_runs(client, exp.experiment_id, parent.info.run_id)
            if r.data.tags.get("status") in ("completed", "pruned")}


def test_resumed_study_stops_the_same_trials_as_an_uninterrupted_one(shared_ray, tiny_dataset, tmp_path):
    def overrides(name):
        return tiny_overrides(tiny_dataset, tmp_path, trials=TRIALS, epochs=EPOCHS, name=name) + [
            "tune.max_concurrent=1"]

    tune_in_process(tmp_path, overrides("u"), "--name", "u")

    args = [sys.executable, str(ROOT / "run_study.py"), "tune", "--name", "r", "--address", shared_ray,
            *_sets(overrides("r"))]
    driver = subprocess.Popen(args, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db, deadline = tmp_path / "mlflow.db", time.time() + 300
    baseline = finished_trials(db, "r")               # the uninterrupted study's trials share the file
    while finished_trials(db, "r") - baseline < 2 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.3)
    assert driver.poll() is None, "the study ended before it could be interrupted"
    driver.send_signal(signal.SIGKILL)     # the driver only: the Ray cluster keeps running
    driver.wait()
    finished_at_kill = finished_trials(db, "r") - baseline
    before = _finished_runs(db, "r")
    assert len(before) >= 2

    tune_in_process(tmp_path, overrides("r"), "--name", "r", "--resume")

    uninterrupted, resumed = study_outcome(tmp_path, "u"), study_outcome(tmp_path, "r")
    assert len(resumed["trials"]) == TRIALS
    assert resumed["trials"] == uninterrupted["trials"], "same configurations, same trials stopped"
    assert resumed["rungs"] == uninterrupted["rungs"], "ASHA saw the same values at every rung"
    assert resumed["optuna"] == uninterrupted["optuna"], "Optuna was told the same outcomes"
    assert resumed["running"] == 0, "no Optuna trial is left RUNNING"
    after = _finished_runs(db, "r")
    assert len(after) == TRIALS
    for run_id, (end_time, steps) in before.items():   # finished before the kill: not rerun, not re-logged
        assert after[run_id] == (end_time, steps)
    board = tmp_path / "runs" / "r.state" / "artifacts" / "leaderboard.csv"
    assert len(board.read_text().strip().splitlines()) == 1 + TRIALS
    pruned = sum(status == "pruned" for status, _ in resumed["trials"].values())
    print(f"\nFIGURES driver loss: 1 driver SIGKILLed after {finished_at_kill} finished trials; "
          f"{TRIALS}/{TRIALS} trials recovered, {pruned} stopped by ASHA exactly as without the "
          f"interruption; {resumed['orphans']} Optuna trial(s) proposed by the killed driver marked FAIL")
