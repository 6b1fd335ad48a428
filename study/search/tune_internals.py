"""Every private Ray Tune, Ray Train and Optuna attribute the study touches, in one place.

The resume guarantees (``study.search.scheduler``) and the quiet console (``study.search.trainable``) need a
few things the libraries do not expose publicly. Each is reached only through a function here,
with the version it was checked against; :func:`check` (run by ``tests/study/search/test_tune_internals.py``
on real objects) fails with one clear message per attribute when an upgrade moves it, instead of
a resumed study silently forgetting its rungs. Checked against ray 2.60.0 and optuna 5.1.0
(``pyproject.toml`` pins ray exactly and optuna to 5.x).

What, under which private name, and what for:

- Tune's controller, ``TrialRunnerWrapper._tune_controller``: writing the experiment snapshot;
- ``OptunaSearch._ot_study``, ``._ot_trials``, ``._completed_trials``: telling Optuna each
  trial's outcome once, as PRUNED or COMPLETE, and failing orphans after a restart;
- ``optuna.Trial._trial_id`` / ``FrozenTrial._trial_id``: a trial's row in Optuna's storage;
- ASHA's ``_brackets``, ``_trial_info`` and each bracket's ``_rungs``, ``_time_attr``, ``_metric``: the rungs
  kept on disk across driver restarts;
- the logger ``ray.train._internal.storage``: its "Checkpoint successfully created" INFO line;
- ``ray.tune.experimental.output._render_table_item``: the console's float format in a trial's
  start and result blocks (``.5f``, so a weight decay of 1e-6 printed as ``0.``);
- ``ray.tune.experimental.output.TuneTerminalReporter.experiment_started``: the start table's
  names for the search and scheduler, and its TensorBoard hint;
- ``Tuner._local_tuner``: the callbacks a restored ``Tuner`` unpickled (``Tuner.restore`` takes no
  ``run_config``), so that a resumed study logs to this run's MLflow address.
"""
from __future__ import annotations

import importlib
import logging

CHECKED_AGAINST = {"ray": "2.60.0", "optuna": "5.1.0"}

RAY_CHECKPOINT_LOGGER = "ray.train._internal.storage"   # logs "Checkpoint successfully created"
RAY_CONSOLE_OUTPUT = "ray.tune.experimental.output"      # renders the console's tables


# ----------------------------------------------------------------------------- Ray Tune

def tune_controller(wrapped):
    """Tune's controller behind the method-whitelisting wrapper schedulers receive."""
    return getattr(wrapped, "_tune_controller", wrapped)


def asha_rung_lists(scheduler) -> list[list[tuple[int, dict]]]:
    """Per bracket, ASHA's live ``[(milestone, {trial_id: value}), ...]`` (mutable)."""
    return [bracket._rungs for bracket in scheduler._brackets]


def asha_trial_brackets(scheduler) -> dict:
    """ASHA's ``{trial_id: bracket}`` (mutable): which bracket's rungs a trial is compared in."""
    return scheduler._trial_info


def asha_brackets(scheduler) -> list:
    """ASHA's brackets (one, with Tune's default ``brackets=1``)."""
    return scheduler._brackets


def bracket_rungs(bracket) -> list[tuple[int, dict]]:
    """One bracket's live ``[(milestone, {trial_id: value}), ...]`` (mutable)."""
    return bracket._rungs


def asha_time_attr(scheduler) -> str:
    return scheduler._time_attr


def asha_metric(scheduler) -> str:
    return scheduler._metric


def quiet_checkpoint_logs() -> None:
    """Silence Ray Train's INFO line per saved checkpoint (one per epoch per trial)."""
    logging.getLogger(RAY_CHECKPOINT_LOGGER).setLevel(logging.WARNING)


def readable_console_floats() -> None:
    """Tune's start and result blocks print floats with 4 significant digits (``1e-05``,
    ``0.9695``) instead of 5 decimals (``0.00001``, and ``0.`` for anything below 5e-6)."""
    output = importlib.import_module(RAY_CONSOLE_OUTPUT)
    render = output._render_table_item
    if getattr(render, "readable_floats", False):
        return

    def render_table_item(key, item, prefix=""):
        if isinstance(item, float):
            yield prefix + key, f"{item:.4g}"
        else:
            yield from render(key, item, prefix)

    render_table_item.readable_floats = True
    output._render_table_item = render_table_item


def readable_console_header(search: str, scheduler: str) -> None:
    """Tune's start table names the study's search and scheduler (``search``, ``scheduler``), not
    Tune's wrapper classes (``SearchGenerator``, ``PersistentASHA``), and drops Tune's TensorBoard
    hint (the study logs to MLflow; TensorBoard is not installed). Safe to call once per study."""
    reporter = importlib.import_module(RAY_CONSOLE_OUTPUT).TuneTerminalReporter
    original = getattr(reporter.experiment_started, "original", reporter.experiment_started)

    def experiment_started(self, experiment_name, experiment_path, searcher_str, scheduler_str,
                           total_num_samples, tensorboard_path=None, **kwargs):
        return original(self, experiment_name, experiment_path, search, scheduler, total_num_samples,
                        tensorboard_path=None, **kwargs)

    experiment_started.original = original
    reporter.experiment_started = experiment_started


def restored_callbacks(tuner) -> list:
    """The callbacks of a ``Tuner.restore``d tuner, as unpickled from its ``tuner.pkl``."""
    return list(tuner._local_tuner.get_run_config().callbacks or [])


# ----------------------------------------------------------------------------- Optuna via Tune

def optuna_study(search):
    """The ``optuna.Study`` inside Tune's ``OptunaSearch``."""
    return search._ot_study


def optuna_trials(search) -> dict:
    """``{tune trial id: optuna.Trial}`` of Tune's ``OptunaSearch``."""
    return search._ot_trials


def completed_trials(search) -> set:
    """Tune trial ids ``OptunaSearch`` has told Optuna about (mutable)."""
    return search._completed_trials


def storage_id(trial) -> int:
    """An ``optuna.Trial``'s or ``FrozenTrial``'s id in its storage."""
    return trial._trial_id


# ----------------------------------------------------------------------------- the check

def check(search=None, scheduler=None, optuna_trial=None) -> list[str]:
    """What no longer holds on the installed versions, one line each (empty: all good).

    Pass real objects (a set-up ``OptunaSearch``, an ``ASHAScheduler``, an ``optuna.Trial``) to
    check their attributes; the logger's module is always checked.
    """
    import optuna
    import ray

    installed = {"ray": ray.__version__, "optuna": optuna.__version__}
    problems = []

    def missing(obj, names, where):
        for name in names:
            if not hasattr(obj, name):
                problems.append(f"{where}.{name} is gone in ray {installed['ray']} / optuna "
                                f"{installed['optuna']} (checked against {CHECKED_AGAINST}); "
                                f"update study/search/tune_internals.py")

    from ray.tune.execution.tune_controller import TrialRunnerWrapper

    if tune_controller(TrialRunnerWrapper("controller", None)) != "controller":
        problems.append(f"TrialRunnerWrapper no longer keeps the controller in _tune_controller "
                        f"(ray {installed['ray']}, checked against {CHECKED_AGAINST['ray']}); "
                        "update tune_controller() in study/search/tune_internals.py")
    from ray.tune import Tuner
    from ray.tune.impl.tuner_internal import TunerInternal

    if "_local_tuner" not in getattr(Tuner, "__annotations__", {}):
        missing(Tuner, ("_local_tuner",), "Tuner")
    missing(TunerInternal, ("get_run_config",), "TunerInternal")
    if search is not None:
        missing(search, ("_ot_study", "_ot_trials", "_completed_trials"), "OptunaSearch")
    if scheduler is not None:
        missing(scheduler, ("_brackets", "_trial_info", "_time_attr", "_metric"), "ASHAScheduler")
        for bracket in getattr(scheduler, "_brackets", []):
            missing(bracket, ("_rungs",), "ASHA _Bracket")
    if optuna_trial is not None:
        missing(optuna_trial, ("_trial_id",), "optuna.Trial")
    output = importlib.import_module(RAY_CONSOLE_OUTPUT)
    missing(output, ("_render_table_item", "_get_dict_as_table_data", "TuneTerminalReporter"), RAY_CONSOLE_OUTPUT)
    try:
        source = importlib.import_module(RAY_CHECKPOINT_LOGGER)
        if "Checkpoint successfully created" not in open(source.__file__).read():
            problems.append(f"{RAY_CHECKPOINT_LOGGER} no longer logs the checkpoint line; find its "
                            "new logger and update RAY_CHECKPOINT_LOGGER in study/search/tune_internals.py")
    except ImportError:
        problems.append(f"module {RAY_CHECKPOINT_LOGGER} is gone in ray {installed['ray']}; "
                        "update RAY_CHECKPOINT_LOGGER in study/search/tune_internals.py")
    return problems
