"""The search on its own: the conditional space, Optuna pruning, ASHA persistence."""
from __future__ import annotations

import optuna
import pytest

from common.errors import UsageError
from study.config import load_config
from study.search.scheduler import PersistentASHA
from study.search.searcher import PruningOptunaSearch
from study.search.space import define_by_run


def test_space_is_conditional_on_resnet():
    config = load_config(None, ["search.groups=[resnet18, C8]"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    for _ in range(12):
        trial = study.ask()
        define_by_run(config.search)(trial)
        seen.append(trial.params)
        study.tell(trial, 0.5)
    assert any(p["model"] == "resnet18" for p in seen) and any(p["model"] == "C8" for p in seen)
    assert all(("width" in p) == (p["model"] != "resnet18") for p in seen)
    assert all(config.search.lr[0] <= p["lr"] <= config.search.lr[1] for p in seen)


def test_stopped_trial_reaches_optuna_as_pruned_with_its_intermediate_values():
    config = load_config(None, [])
    search = PruningOptunaSearch(space=define_by_run(config.search), metric="val_auc_micro", mode="max",
                                 seed=0, max_epochs=4)
    search.set_search_properties(None, None, {})
    for tid in ("full", "stopped"):
        assert search.suggest(tid)["model"] in config.search.groups
    for epoch in (1, 2, 3, 4):
        search.on_trial_result("full", {"val_auc_micro": 0.6 + epoch / 20, "training_iteration": epoch,
                                        "epoch": epoch})
    search.on_trial_complete("full", {"val_auc_micro": 0.8, "epoch": 4, "training_iteration": 4})
    # Tune does not pass the result that made ASHA stop a trial to the searcher, only to on_complete
    search.on_trial_complete("stopped", {"val_auc_micro": 0.55, "epoch": 1, "training_iteration": 1})
    states = {t.number: t for t in search.optuna_study.trials}
    assert states[0].state == optuna.trial.TrialState.COMPLETE and states[0].value == pytest.approx(0.8)
    assert states[1].state == optuna.trial.TrialState.PRUNED
    assert states[1].intermediate_values == {1: pytest.approx(0.55)}


class _Trial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def _asha(state_file):
    return PersistentASHA(time_attr="epoch", metric="m", mode="max", max_t=4, grace_period=1,
                          reduction_factor=2, state_file=str(state_file))


def test_asha_rung_lists_survive_a_restart(tmp_path):
    """A fresh ASHA reading the saved rungs stops the same weak trial the first one would have."""
    state = tmp_path / "asha.json"
    first = _asha(state)
    for tid, value in (("a", 0.9), ("b", 0.8), ("c", 0.85)):
        first.on_trial_add(None, _Trial(tid))
        first.on_trial_result(None, _Trial(tid), {"epoch": 1, "m": value})
    restarted, forgetful = _asha(state), _asha(tmp_path / "other.json")
    for scheduler in (restarted, forgetful):
        scheduler.on_trial_add(None, _Trial("d"))
    weak = {"epoch": 1, "m": 0.5}
    assert restarted.on_trial_result(None, _Trial("d"), weak) == PersistentASHA.STOP
    assert forgetful.on_trial_result(None, _Trial("d"), weak) == PersistentASHA.CONTINUE
    assert first.rungs() != [{}] and "d" in restarted.rungs()[0]["1"]


@pytest.mark.parametrize("setting, expected", [("auto", True), ("true", True), ("false", False)])
def test_actors_are_reused_on_a_one_node_cluster_unless_told_otherwise(shared_ray, setting, expected):
    """``tune.reuse_actors: auto`` reuses on one node with CPUs (the session's local Ray); on several
    nodes it does not (tests/study/search/test_faults_nodes.py sees two trials spread)."""
    from study.search.tuner import reuse_actors

    assert reuse_actors(load_config(None, [f"tune.reuse_actors={setting}"])) is expected


def test_reuse_actors_takes_auto_true_or_false_only():
    with pytest.raises(UsageError, match="tune.reuse_actors 'sometimes' is unknown; use one of auto, true, false"):
        load_config(None, ["tune.reuse_actors=sometimes"])
