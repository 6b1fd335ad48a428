"""Tracking outage: a real ``mlflow server`` stops mid-study, comes back, stops again.

The study keeps training while the server is down (writes wait in the outbox), delivers them
when it answers again, and - still down at the end - keeps the outbox, exits with one line that
says how to deliver it, and ``--resume`` delivers it. Every epoch of every trial (as recorded in
the trials' own checkpoints) ends up in MLflow exactly once. The tracking URI carries a password
and AWS keys are in the environment: neither may reach MLflow or the output.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from tests.support.tiny_studies import tiny_overrides
from study.tracking.mlflow_store import child_runs
from study.tracking.trial_logger import MlflowTrialLogger

pytestmark = pytest.mark.slow
SECRET, AWS_SECRET = "s3cretPW", "AKIAFAKESECRETKEY1234"


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend, started and stopped by the test."""

    def __init__(self, folder: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder, self.proc = folder, None

    def start(self) -> None:
        args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
                "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"]
        log = open(self.folder / "server.log", "a")
        # MLflow 3.17's server also starts job-execution workers unless told not to; this test needs none
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True, env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError((self.folder / "server.log").read_text()[-3000:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)   # the group this test started
            self.proc.wait()
        self.proc = None


def _checkpoint_epochs(trial_dir: Path) -> list[int]:
    latest = sorted(trial_dir.glob("checkpoint_*"))[-1]
    state = torch.load(latest / "checkpoint.pt", map_location="cpu", weights_only=True)
    return [int(record["epoch"]) for record in state["history"]]


def test_outage_mid_study_loses_nothing(shared_ray, tiny_dataset, tmp_path, monkeypatch, capfd):
    from mlflow.tracking import MlflowClient

    from common.errors import UsageError
    from study.config import load_config
    from study.search.tuner import run_study

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    server = MlflowServer(tmp_path)
    server.start()
    uri = f"http://alice:{SECRET}@127.0.0.1:{server.port}"
    overrides = tiny_overrides(tiny_dataset, tmp_path, trials=4, epochs=2, name="o") + [
        "tune.max_concurrent=1", f"mlflow.tracking_uri={uri}"]
    config = load_config(None, overrides)

    events = []   # the outage schedule, driven from the driver's own callbacks (deterministic)
    started, logged = MlflowTrialLogger.on_trial_start, MlflowTrialLogger.on_trial_result

    def on_trial_start(self, iteration, trials, trial, **info):
        n = sum(1 for e in events if e == "trial")
        events.append("trial")
        if n == 1:        # second trial: the server is back
            server.start()
            events.append("up")
        if n == 3:        # last trial: down again, until after the study
            server.stop()
            events.append("down")
        started(self, iteration, trials, trial, **info)

    def on_result(self, iteration, trials, trial, result, **info):
        logged(self, iteration, trials, trial, result, **info)
        if "down" not in events:   # the first logged epoch: the server goes away
            server.stop()
            events.append("down")

    monkeypatch.setattr(MlflowTrialLogger, "on_trial_start", on_trial_start)
    monkeypatch.setattr(MlflowTrialLogger, "on_trial_result", on_result)
    try:
        with pytest.raises(UsageError) as stop:
            run_study(config)
        outbox = tmp_path / "runs" / "o.state" / "outbox.jsonl"
        message = str(stop.value)
        assert str(outbox) in message and "--name o --resume" in message and SECRET not in message
        buffered = len(outbox.read_text().splitlines())
        assert buffered > 0 and events.count("down") == 2 and events.count("up") == 1
        early = MlflowClient(f"sqlite:///{tmp_path / 'server.db'}")   # what the server got while up
        first = early.search_runs([early.get_experiment_by_name("o").experiment_id], "tags.role = 'trial'")
        assert any(len(early.get_metric_history(r.info.run_id, "epoch")) >= 1 for r in first)

        server.start()
        outcome = run_study(config, resume=True)
    finally:
        server.stop()
    assert not outbox.exists()

    client = MlflowClient(f"sqlite:///{tmp_path / 'server.db'}")
    runs = child_runs(client, outcome.experiment_id, outcome.parent_run_id)
    trial_dirs = {d.name.split("_")[2]: d for d in (tmp_path / "runs" / "o").glob("train_trial_*")}
    assert len(runs) == 4 == len(trial_dirs) == len(outcome.trials)
    epochs = 0
    for run in runs:
        trained = _checkpoint_epochs(trial_dirs[run.data.tags["trial_id"]])
        logged = [m.step for m in client.get_metric_history(run.info.run_id, "val_auc_micro")]
        assert logged == trained == list(range(1, len(trained) + 1)), (logged, trained)
        assert run.data.params["model"] and run.info.status == "FINISHED"
        epochs += len(trained)
    shown = capfd.readouterr()
    with capfd.disabled():
        print(f"\nFIGURES tracking outage: server stopped 2x, restarted 2x; {buffered} writes buffered at the "
              f"end; {epochs} epochs of 4 trials logged exactly once, 0 lost")
    params = client.get_run(outcome.parent_run_id).data.params
    assert params["mlflow.tracking_uri"] == f"http://alice:***@127.0.0.1:{server.port}"
    blobs = [shown.out, shown.err, str(params)] + [str(r.data.params) + str(r.data.tags) for r in runs]
    blobs += [p.read_text(errors="ignore") for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
    for blob in blobs:
        assert SECRET not in blob and AWS_SECRET not in blob
