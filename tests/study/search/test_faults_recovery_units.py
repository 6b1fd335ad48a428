"""The rules that let a resumed study pick up exactly where a SIGKILLed driver left it.

Tune restores from a snapshot that can be older than the driver's last actions, so each of our
components must accept what the snapshot forgot (study.search.scheduler's docstring lists the rules).
Real Optuna (SQLite storage), real ASHA, a real SQLite MLflow store; only Tune's trial objects
are stand-ins (``trial_id`` and ``config`` are all these hooks read).
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import optuna
import pytest
from mlflow.tracking import MlflowClient

from study.config import load_config
from study.search.scheduler import PersistentASHA
from study.search.searcher import PruningOptunaSearch
from study.search.space import define_by_run
from study.tracking.mlflow_store import child_runs
from study.tracking.trial_logger import MlflowTrialLogger

MAX_EPOCHS = 4


def _searcher(tmp_path, stop_file=None) -> PruningOptunaSearch:
    config = load_config(None, [])
    search = PruningOptunaSearch(
        space=define_by_run(config.search), metric="m", mode="max", seed=0, max_epochs=MAX_EPOCHS,
        study_name="s", storage=optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}"),
        stop_file=str(stop_file) if stop_file else None)
    search.set_search_properties(None, None, {})
    return search


def _result(epoch, value, iteration=None):
    return {"m": value, "epoch": epoch, "training_iteration": iteration or epoch}


def test_restore_fails_the_trial_the_snapshot_never_saw_and_keeps_the_rest(tmp_path):
    """The driver asked Optuna for a trial, then died before Tune's snapshot listed it."""
    first = _searcher(tmp_path)
    first.suggest("known")
    first.save(str(tmp_path / "searcher.pkl"))   # Tune's snapshot
    first.suggest("forgotten")                   # proposed after it: an orphan once restored
    resumed = _searcher(tmp_path)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    states = {t.number: t for t in resumed.optuna_study.trials}
    assert states[0].state == optuna.trial.TrialState.RUNNING, "the listed trial goes on"
    assert states[1].state == optuna.trial.TrialState.FAIL and "interrupted" in states[1].user_attrs
    resumed.on_trial_result("known", _result(1, 0.7))
    resumed.on_trial_complete("known", _result(4, 0.9))
    assert resumed.optuna_study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_a_trial_told_before_the_snapshot_is_not_told_again(tmp_path):
    """The snapshot predates Optuna hearing of the trial's end; the restored trial ends a second time."""
    first = _searcher(tmp_path)
    first.suggest("t")
    first.save(str(tmp_path / "searcher.pkl"))
    first.on_trial_result("t", _result(1, 0.6))
    first.on_trial_complete("t", _result(2, 0.5))            # stopped at epoch 2: PRUNED
    resumed = _searcher(tmp_path)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    resumed.on_trial_result("t", _result(2, 0.5, iteration=3))   # the restored trial's re-report
    resumed.on_trial_complete("t", _result(2, 0.5, iteration=3))
    trial, = resumed.optuna_study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.intermediate_values == {1: pytest.approx(0.6), 2: pytest.approx(0.5)}


def test_intermediate_values_are_keyed_by_epoch_not_tune_iteration(tmp_path):
    search = _searcher(tmp_path)
    search.suggest("t")
    for epoch, iteration in ((1, 1), (2, 2), (2, 3), (3, 4)):     # a restore re-reported epoch 2
        search.on_trial_result("t", _result(epoch, 0.5 + epoch / 10, iteration))
    assert search.optuna_study.trials[0].intermediate_values == {
        1: pytest.approx(0.6), 2: pytest.approx(0.7), 3: pytest.approx(0.8)}


def test_optuna_hears_the_recorded_stopping_result_not_the_restored_one(tmp_path):
    """The driver died after ASHA stopped the trial at epoch 3 but before Optuna was told; the
    snapshot's checkpoint is epoch 2, so the restored trial's last result says epoch 2."""
    stop_file = tmp_path / "asha.json"
    stop_file.write_text(json.dumps({"rungs": [], "stopped": {"t": {"epoch": 3, "value": 0.4}}}))
    search = _searcher(tmp_path, stop_file)
    search.suggest("t")
    search.on_trial_complete("t", _result(2, 0.55, iteration=3))
    trial, = search.optuna_study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values[3] == pytest.approx(0.4)


def _asha(state_file):
    return PersistentASHA(time_attr="epoch", metric="m", mode="max", max_t=MAX_EPOCHS, grace_period=1,
                          reduction_factor=2, state_file=str(state_file))


def test_a_stopped_trial_restored_by_a_stale_snapshot_is_stopped_again_without_new_rungs(tmp_path):
    state = tmp_path / "asha.json"
    first = _asha(state)
    for tid, value in (("a", 0.9), ("b", 0.8), ("weak", 0.1)):
        first.on_trial_add(None, SimpleNamespace(trial_id=tid))
        decision = first.on_trial_result(None, SimpleNamespace(trial_id=tid), {"epoch": 1, "m": value})
    assert decision == PersistentASHA.STOP
    saved = json.loads(state.read_text())
    assert saved["stopped"] == {"b": {"epoch": 1, "value": 0.8}, "weak": {"epoch": 1, "value": 0.1}}

    restarted = _asha(state)                     # the resumed driver; "weak" comes back RUNNING
    restarted.on_trial_add(None, SimpleNamespace(trial_id="weak"))
    assert restarted.on_trial_result(None, SimpleNamespace(trial_id="weak"), {"epoch": 1, "m": 0.1}) \
        == PersistentASHA.STOP
    restarted.on_trial_add(None, SimpleNamespace(trial_id="a"))   # re-report of a kept trial: no change
    assert restarted.on_trial_result(None, SimpleNamespace(trial_id="a"), {"epoch": 1, "m": 0.9}) \
        == PersistentASHA.CONTINUE
    assert restarted.rungs() == first.rungs()


def test_mlflow_keeps_a_finished_runs_status_and_epochs_when_its_trial_ends_again(tmp_path):
    """After a resume, a trial MLflow already closed as completed (4 of 4 epochs) is restored from
    its epoch-3 checkpoint, re-reports epoch 3 and is stopped: nothing about its run may change."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("e")
    parent = client.create_run(exp, tags={"role": "study"}).info.run_id

    def logger():
        return MlflowTrialLogger(uri, exp, parent, "s", "val_m", MAX_EPOCHS, str(tmp_path / "outbox.jsonl"))

    trial = SimpleNamespace(trial_id="t", config={"model": "C4"}, last_result={"epoch": MAX_EPOCHS})
    first = logger()
    for epoch in range(1, MAX_EPOCHS + 1):
        first.on_trial_result(0, [], trial, {"epoch": epoch, "val_m": 0.5 + epoch / 10})
    first.on_trial_complete(0, [], trial)

    again = logger()                             # the resumed driver's logger
    trial.last_result = {"epoch": MAX_EPOCHS - 1}
    again.on_trial_result(0, [], trial, {"epoch": MAX_EPOCHS - 1, "val_m": 0.77})
    again.on_trial_complete(0, [], trial)        # would read "pruned" from the re-reported epoch
    run, = child_runs(client, exp, parent)
    assert run.data.tags["status"] == "completed"
    history = client.get_metric_history(run.info.run_id, "val_m")
    assert [(m.step, round(m.value, 6)) for m in history] == [(e, round(0.5 + e / 10, 6)) for e in range(1, 5)]
