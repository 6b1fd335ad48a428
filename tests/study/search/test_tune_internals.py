"""The private Ray / Optuna attributes the study relies on still exist (study/search/tune_internals.py).

Real objects: an OptunaSearch the study builds, set up and asked for a trial; the study's ASHA;
Ray Tune's own scheduler wrapper. A failure names the attribute and the file to update.
"""
from __future__ import annotations

import logging

import optuna
import ray

from study.search import tune_internals as internals
from study.config import load_config
from study.search.schedulers import PersistentASHA, PruningOptunaSearch
from study.search.space import define_by_run


def _search():
    config = load_config(None, [])
    search = PruningOptunaSearch(space=define_by_run(config.search), metric="val_auc_micro", mode="max",
                                 seed=0, max_epochs=4)
    search.set_search_properties(None, None, {})
    search.suggest("t1")
    return search


def test_every_private_attribute_is_where_it_was_checked(tmp_path):
    search = _search()
    asha = PersistentASHA(time_attr="epoch", metric="m", mode="max", max_t=4, grace_period=1,
                          reduction_factor=2, state_file=str(tmp_path / "asha.json"))
    trial = internals.optuna_trials(search)["t1"]
    assert internals.check(search=search, scheduler=asha, optuna_trial=trial) == []
    assert isinstance(internals.optuna_study(search), optuna.Study)
    assert internals.completed_trials(search) == set()
    assert internals.storage_id(trial) == internals.storage_id(internals.optuna_study(search).trials[0])
    assert [m for m, _ in internals.asha_rung_lists(asha)[0]] == [4, 2, 1]   # milestones, deepest first
    assert (internals.asha_time_attr(asha), internals.asha_metric(asha)) == ("epoch", "m")


def test_check_names_a_missing_attribute_and_the_file_to_update():
    class Moved:                                     # what an upgrade that renames them looks like
        _brackets = []

    (problem,) = [p for p in internals.check(scheduler=Moved()) if "_time_attr" in p]
    assert f"ray {ray.__version__}" in problem and "study/search/tune_internals.py" in problem
    assert any("_ot_study" in p for p in internals.check(search=object()))


def test_checkpoint_logger_is_silenced():
    logger = logging.getLogger(internals.RAY_CHECKPOINT_LOGGER)
    before = logger.level
    try:
        internals.quiet_checkpoint_logs()
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
    finally:
        logger.setLevel(before)
