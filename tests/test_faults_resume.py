"""Driver loss: a resumed study stops the same weak trials an uninterrupted one stops.

One local Ray instance (started here) serves three studies with the same seed and
``tune.max_concurrent=1`` (so the order of results is fixed): an uninterrupted one, and one
whose driver is SIGKILLed mid-study (the Ray cluster survives, as the head of a real cluster
does) and then resumed with ``--resume``. ASHA's rungs (``asha.json``) and the Optuna study
(``optuna.db``) are carried across the resume, so the two studies must propose the same
configurations, stop the same ones at the same epochs, and record the same rung values.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from conftest import FINISHED_TRIALS_SQL, ROOT, as_sets as _sets, count_in_mlflow_db, run_cli, tiny_overrides
from study.tracking import child_runs

pytestmark = pytest.mark.slow
TRIALS, EPOCHS = 6, 3


def _finished(db: Path) -> int:
    return count_in_mlflow_db(db, FINISHED_TRIALS_SQL)


def _outcome(tmp: Path, name: str) -> dict:
    """``{sampled config: (status, epochs logged)}`` from MLflow, and the ASHA rung values."""
    client = MlflowClient(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    parent, = client.search_runs([exp.experiment_id], "tags.role = 'study'")
    trials = {}
    for run in child_runs(client, exp.experiment_id, parent.info.run_id):
        p = run.data.params
        key = (p["model"], p.get("width"), round(float(p["lr"]), 12), round(float(p["weight_decay"]), 12))
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_auc_micro")]
        assert steps == list(range(1, len(steps) + 1)), "each epoch logged once"
        trials[key] = (run.data.tags["status"], len(steps))
    import json

    rungs = json.loads((tmp / "runs" / f"{name}.state" / "asha.json").read_text())
    values = [{m: sorted(round(v, 9) for v in rec.values()) for m, rec in bracket.items()} for bracket in rungs]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp / 'runs' / f'{name}.state' / 'optuna.db'}")
    told = [(t.state.name, round(t.value, 9) if t.value is not None else None, len(t.intermediate_values))
            for t in study.trials if t.state.is_finished()]
    return {"trials": trials, "rungs": values, "optuna": sorted(told, key=str),
            "orphans": sum(not t.state.is_finished() for t in study.trials)}


@pytest.fixture(scope="module")
def shared_ray():
    import ray

    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.mark.xfail(strict=False, reason=(
    "known race, open in issue 7: when the driver is SIGKILLed while Tune creates the next trial, "
    "Tune's experiment-state and searcher snapshots can disagree and the resumed study re-creates a "
    "trial instead of restoring it (seen once in three clean-clone CI runs)"))
def test_resumed_study_stops_the_same_trials_as_an_uninterrupted_one(shared_ray, tiny_dataset, tmp_path):
    def overrides(name):
        return tiny_overrides(tiny_dataset, tmp_path, trials=TRIALS, epochs=EPOCHS, name=name) + [
            "tune.max_concurrent=1"]

    plain = run_cli("tune", "--name", "u", "--address", shared_ray, *_sets(overrides("u")), cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-3000:]

    args = [sys.executable, str(ROOT / "run_study.py"), "tune", "--name", "r", "--address", shared_ray,
            *_sets(overrides("r"))]
    driver = subprocess.Popen(args, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db, deadline = tmp_path / "mlflow.db", time.time() + 300
    baseline = _finished(db)               # the uninterrupted study's trials share the file
    while _finished(db) - baseline < 2 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.3)
    assert driver.poll() is None, "the study ended before it could be interrupted"
    driver.send_signal(signal.SIGKILL)     # the driver only: the Ray cluster keeps running
    driver.wait()
    finished_at_kill = _finished(db) - baseline

    again = run_cli("tune", "--name", "r", "--resume", "--address", shared_ray, *_sets(overrides("r")),
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]

    uninterrupted, resumed = _outcome(tmp_path, "u"), _outcome(tmp_path, "r")
    assert len(resumed["trials"]) == TRIALS
    assert resumed["trials"] == uninterrupted["trials"], "same configurations, same trials stopped"
    assert resumed["rungs"] == uninterrupted["rungs"], "ASHA saw the same values at every rung"
    assert resumed["optuna"] == uninterrupted["optuna"], "Optuna was told the same outcomes"
    pruned = sum(status == "pruned" for status, _ in resumed["trials"].values())
    print(f"\nFIGURES driver loss: 1 driver SIGKILLed after {finished_at_kill} finished trials; "
          f"{TRIALS}/{TRIALS} trials recovered, {pruned} stopped by ASHA exactly as without the "
          f"interruption; {resumed['orphans']} Optuna trial(s) left RUNNING by the kill")
