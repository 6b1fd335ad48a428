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
from study.search.scheduler import PersistentASHA
from study.search.searcher import PruningOptunaSearch
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


def test_console_blocks_print_a_small_weight_decay_in_scientific_notation():
    from ray.tune.experimental import output

    config = {"model": "C4", "lr": 7.3e-4, "weight_decay": 1.2e-6, "batch_size": 32}
    if not getattr(output._render_table_item, "readable_floats", False):   # not yet installed here
        assert dict(output._get_dict_as_table_data(config))["weight_decay"] == "0."   # Ray by itself
    internals.readable_console_floats()
    internals.readable_console_floats()                 # twice is once
    shown = dict(output._get_dict_as_table_data(config))
    assert (shown["weight_decay"], shown["lr"], shown["batch_size"], shown["model"]) == ("1.2e-06", "0.00073", 32, "C4")


def test_console_header_names_the_study_search_and_scheduler_and_no_tensorboard(capsys):
    from ray.tune.experimental.output import AirVerbosity, TuneTerminalReporter

    from study.search.tuner import console_names

    config = load_config(None, [])          # configs/local.yaml: grace 1, reduction 3, 8 epochs
    search, scheduler = console_names(config)
    assert (search, scheduler) == ("Optuna TPE (seed 0)", "ASHA: rungs at epochs 1, 3 of 8, keeps the top 1/3")
    internals.readable_console_header(search, scheduler)
    internals.readable_console_header(search, scheduler)     # twice is once
    TuneTerminalReporter(AirVerbosity.DEFAULT).experiment_started(
        experiment_name="lens-study", experiment_path="/tmp/runs/lens-study", searcher_str="SearchGenerator",
        scheduler_str="PersistentASHA", total_num_samples=16, tensorboard_path="/tmp/runs/lens-study")
    out = capsys.readouterr().out
    assert search in out and scheduler in out
    assert "SearchGenerator" not in out and "PersistentASHA" not in out and "tensorboard" not in out.lower()
