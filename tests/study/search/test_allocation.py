"""``search.allocation: equal``: every group gets the same number of trials (round-robin kept in
Optuna's storage, so it stays even across FAILed proposals and driver restarts), and ASHA compares
a trial only with trials of its own group, with those rungs kept across restarts too.

Real Optuna, real ASHA, a real tiny study on the shared Ray; only Tune's trial objects in the
scheduler test are stand-ins (``trial_id`` and ``config`` are all its hooks read).
"""
from __future__ import annotations

import json
from types import SimpleNamespace

import optuna
from mlflow.tracking import MlflowClient

from study.search.scheduler import PersistentASHA
from study.search.searcher import next_group
from tests.support.sessions import tune_in_process
from tests.support.tiny_studies import study_outcome, tiny_overrides

GROUPS = ["trivial", "C4", "D4"]


def test_the_next_group_is_the_one_with_fewest_trials_and_a_failed_trial_does_not_count():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    picked = []
    for n in range(7):
        study.enqueue_trial({"model": next_group(study, GROUPS)})
        trial = study.ask()
        picked.append(trial.suggest_categorical("model", GROUPS))
        study.tell(trial, state=optuna.trial.TrialState.FAIL if n == 3 else optuna.trial.TrialState.COMPLETE,
                   values=None if n == 3 else 0.5)
    assert picked == ["trivial", "C4", "D4", "trivial", "trivial", "C4", "D4"]


def _asha(state_file) -> PersistentASHA:
    return PersistentASHA(time_attr="epoch", metric="m", mode="max", max_t=4, grace_period=1,
                          reduction_factor=2, state_file=str(state_file), per_group=True)


def _result(scheduler, tid: str, model: str, value: float) -> str:
    trial = SimpleNamespace(trial_id=tid, config={"model": model})
    scheduler.on_trial_add(None, trial)
    return scheduler.on_trial_result(None, trial, {"epoch": 1, "m": value})


def test_per_group_asha_compares_a_trial_only_within_its_group_across_restarts(tmp_path):
    first = _asha(tmp_path / "asha.json")
    assert _result(first, "a", "C4", 0.9) == PersistentASHA.CONTINUE
    assert _result(first, "b", "C4", 0.5) == PersistentASHA.STOP        # behind C4's best
    assert _result(first, "x", "trivial", 0.1) == PersistentASHA.CONTINUE   # first of its group
    saved = json.loads((tmp_path / "asha.json").read_text())
    assert set(saved["group_rungs"]) == {"C4", "trivial"}

    restarted = _asha(tmp_path / "asha.json")                          # a resumed driver
    assert _result(restarted, "y", "trivial", 0.05) == PersistentASHA.STOP   # behind x, kept on disk
    assert restarted.group_rungs()["C4"] == first.group_rungs()["C4"]


def test_an_equal_study_gives_every_group_the_same_number_of_trials(shared_ray, tiny_dataset, tmp_path, capsys):
    overrides = tiny_overrides(tiny_dataset, tmp_path, trials=6, epochs=2, name="eq") + ["search.allocation=equal"]
    tune_in_process(tmp_path, overrides, "--name", "eq")
    outcome = study_outcome(tmp_path, "eq")
    per_group = {g: sum(1 for key in outcome["trials"] if key[0] == g) for g in GROUPS}
    assert per_group == {"trivial": 2, "C4": 2, "D4": 2}
    state = json.loads((tmp_path / "runs" / "eq.state" / "asha.json").read_text())
    assert set(state["group_rungs"]) == set(GROUPS)
    printed = capsys.readouterr().out
    assert "| model | trials | trial_epochs |" in printed
    assert "equal trials per group" in printed and "ASHA per group" in printed
    # the expected best score vs trials, per group, in results/ and on the parent run
    results = tmp_path / "runs" / "eq.state" / "artifacts"
    assert (results / "expected_best.png").stat().st_size > 0
    assert all(f"{g}: 2 trials, expected best" in printed for g in GROUPS)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (parent,) = client.search_runs([client.get_experiment_by_name("eq").experiment_id], "tags.role = 'study'")
    assert "results/expected_best.png" in {a.path for a in client.list_artifacts(parent.info.run_id, "results")}
