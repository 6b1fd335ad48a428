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

import pytest

from common.tiny_studies import (ROOT, as_sets as _sets, finished_trials, local_ray_instance, run_cli, study_outcome,
                      tiny_overrides)

pytestmark = pytest.mark.slow
TRIALS, EPOCHS = 6, 3


@pytest.fixture(scope="module")
def shared_ray():
    with local_ray_instance(num_cpus=2) as address:
        yield address


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
    baseline = finished_trials(db, "r")               # the uninterrupted study's trials share the file
    while finished_trials(db, "r") - baseline < 2 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.3)
    assert driver.poll() is None, "the study ended before it could be interrupted"
    driver.send_signal(signal.SIGKILL)     # the driver only: the Ray cluster keeps running
    driver.wait()
    finished_at_kill = finished_trials(db, "r") - baseline

    again = run_cli("tune", "--name", "r", "--resume", "--address", shared_ray, *_sets(overrides("r")),
                    cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]

    uninterrupted, resumed = study_outcome(tmp_path, "u"), study_outcome(tmp_path, "r")
    assert len(resumed["trials"]) == TRIALS
    assert resumed["trials"] == uninterrupted["trials"], "same configurations, same trials stopped"
    assert resumed["rungs"] == uninterrupted["rungs"], "ASHA saw the same values at every rung"
    assert resumed["optuna"] == uninterrupted["optuna"], "Optuna was told the same outcomes"
    assert resumed["running"] == 0, "no Optuna trial is left RUNNING"
    pruned = sum(status == "pruned" for status, _ in resumed["trials"].values())
    print(f"\nFIGURES driver loss: 1 driver SIGKILLed after {finished_at_kill} finished trials; "
          f"{TRIALS}/{TRIALS} trials recovered, {pruned} stopped by ASHA exactly as without the "
          f"interruption; {resumed['orphans']} Optuna trial(s) proposed by the killed driver marked FAIL")
