"""ASHA scheduling that survives a driver restart, and the resume rules it shares with the searcher
(:mod:`study.search.searcher`), fixed where Tune's defaults mislead or forget.

Two corrections to Ray Tune 2.60's stock classes:

1. :class:`study.search.searcher.PruningOptunaSearch`: when ASHA stops a trial, stock ``OptunaSearch`` tells Optuna the
   trial COMPLETED with its early value, so TPE treats a 1-epoch score as a finished one. Here a
   trial that ends before ``max_epochs`` without an error is told as PRUNED, with every epoch's
   value as an intermediate value (Tune does not pass the stopping result to the searcher, so it
   is added here), which is what TPE uses for pruned trials.
2. :class:`PersistentASHA`: ``Tuner.restore`` rebuilds the scheduler empty, forgetting the rungs.
   This ASHA writes its rungs, and every trial it stopped, to a JSON file after every decision and
   reads them back when it starts, so a resumed study stops the same trials an uninterrupted one would.

Surviving a SIGKILLed driver. Tune restores a study from its last experiment snapshot (trial list,
searcher state), which can be older than what the driver did just before it died: a trial stopped,
a result logged, a trial proposed. The rules that make ``--resume`` land where the study was:

- a trial is never started before a snapshot lists it (:meth:`PersistentASHA.choose_trial_to_run`),
  so no trial the restored study forgot has rungs, MLflow runs or checkpoints; only its Optuna
  trial can be left RUNNING, and :meth:`PruningOptunaSearch.restore` marks that FAIL;
- a snapshot is written before each result is handled, and Tune keeps two checkpoints per trial,
  so the checkpoint a snapshot names still exists when the study is restored;
- a trial this scheduler had stopped but the snapshot lists as unfinished is stopped again before
  anything runs (:meth:`PersistentASHA.choose_trial_to_run`): it never restarts, and Tune tells
  Optuna and MLflow it ended, with the stopping result from the state file;
- a restored trial reports only epochs after its checkpoint, but the epoch it was in when the
  driver died may have been reported already, so every consumer (rungs, Optuna, MLflow) ignores an
  epoch it has already recorded;
- the stopping result (epoch, value) is kept in the state file, so Optuna is told the same
  outcome even when the driver died between the decision and telling Optuna.

ASHA's rule (Li et al. 2020): with grace period ``g`` and reduction factor ``eta``, rungs sit at
``g * eta**k`` epochs; a trial reaching a rung is stopped if its metric is below the
``1 - 1/eta`` quantile of the values recorded at that rung so far. With ``per_group``
(``search.allocation: equal``; :class:`GroupASHA`) every group has rungs of its own, so a
trial is compared only with trials of its group.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from ray.tune.schedulers import ASHAScheduler

from common.atomic import atomic_file
from study.search import tune_internals as internals


TRIAL_STOPPED = "stopped"   # key of the state file's {trial id: {"epoch": e, "value": v}} record


def snapshot_experiment(tune_controller) -> None:
    """Make Tune write its experiment snapshot (trials, searcher state) to storage now, and wait.

    Schedulers receive Tune's controller behind a wrapper that whitelists a few methods;
    ``checkpoint`` is the controller's own public method, reached past the wrapper.
    """
    internals.tune_controller(tune_controller).checkpoint(force=True, wait=True)


def read_state(state_file: str | os.PathLike) -> dict:
    """The scheduler's state file: ``{"rungs": [...], "stopped": {...}}`` (empty when absent)."""
    path = Path(state_file)
    if not path.exists():
        return {"rungs": [], TRIAL_STOPPED: {}}
    return json.loads(path.read_text())


class GroupASHA(ASHAScheduler):
    """Ray Tune's ASHA; with ``per_group``, separate rungs per group (the trial's ``model``), so a
    trial is compared only with trials of its own group (``search.allocation: equal``)."""

    def __init__(self, *args, per_group: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_group = per_group
        self._empty_bracket = copy.deepcopy(internals.asha_brackets(self)[0])
        self._group_brackets: dict[str, object] = {}

    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        if self.per_group:
            internals.asha_trial_brackets(self)[trial.trial_id] = self._bracket_of(str(trial.config["model"]))

    def _bracket_of(self, group: str):
        if group not in self._group_brackets:
            self._group_brackets[group] = copy.deepcopy(self._empty_bracket)
        return self._group_brackets[group]

    def rungs(self) -> list[dict[str, dict[str, float]]]:
        """Per bracket: ``{milestone: {trial_id: metric}}``."""
        return [_rung_dict(rungs) for rungs in internals.asha_rung_lists(self)]

    def group_rungs(self) -> dict[str, dict[str, dict[str, float]]]:
        """``per_group``: per group, ``{milestone: {trial_id: metric}}``."""
        return {g: _rung_dict(internals.bracket_rungs(b)) for g, b in sorted(self._group_brackets.items())}


class PersistentASHA(GroupASHA):
    """:class:`GroupASHA` whose rungs and stopped trials survive a driver restart (kept in
    ``state_file``)."""

    def __init__(self, *args, state_file: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.state_file = str(state_file)
        self._loaded = False
        self._stopped: dict[str, dict] = {}
        self._listed: set[str] = set()    # trials a snapshot of this driver session lists
        self._restopped = False           # stopped trials a restored snapshot had forgotten: done

    def choose_trial_to_run(self, tune_controller):
        self._load_once()
        if not self._restopped:            # the first call of a driver session, before any trial runs
            self._restopped = True
            self._stop_again(tune_controller)
        trial = super().choose_trial_to_run(tune_controller)
        if trial is not None and trial.trial_id not in self._listed:
            snapshot_experiment(tune_controller)   # no trial runs before Tune's snapshot lists it
            self._listed.add(trial.trial_id)
        return trial

    def on_trial_result(self, tune_controller, trial, result):
        self._load_once()
        if tune_controller is not None:
            snapshot_experiment(tune_controller)   # names the trial's previous checkpoint, still kept
        if trial.trial_id in self._stopped:        # stopped already (a trial is stopped once)
            return self.STOP
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == self.STOP:
            self._stopped[trial.trial_id] = {"epoch": int(result[internals.asha_time_attr(self)]),
                                             "value": float(result[internals.asha_metric(self)])}
        self._save()
        return decision

    def _stop_again(self, tune_controller) -> None:
        """Stop the trials this scheduler stopped before the driver died but the restored snapshot
        lists as unfinished. Tune's ``stop_trial`` (one of the controller methods a scheduler may
        call) tells the searcher and the callbacks that the trial ended; it does not run again."""
        from ray.tune.experiment import Trial

        for trial in tune_controller.get_trials():
            if trial.trial_id in self._stopped and trial.status in (Trial.PENDING, Trial.PAUSED):
                tune_controller.stop_trial(trial)

    def on_trial_add(self, tune_controller, trial):
        self._load_once()
        super().on_trial_add(tune_controller, trial)

    def on_trial_complete(self, tune_controller, trial, result):
        self._load_once()
        super().on_trial_complete(tune_controller, trial, result)
        self._save()

    def _save(self) -> None:
        with atomic_file(Path(self.state_file), "w") as fh:
            json.dump({"rungs": self.rungs(), "group_rungs": self.group_rungs(), TRIAL_STOPPED: self._stopped}, fh)

    def _load_once(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        saved = read_state(self.state_file)
        self._stopped.update(saved.get(TRIAL_STOPPED, {}))
        for bracket, rungs in zip(internals.asha_rung_lists(self), saved["rungs"]):
            _restore_rungs(bracket, rungs)
        for group, rungs in saved.get("group_rungs", {}).items():
            _restore_rungs(internals.bracket_rungs(self._bracket_of(group)), rungs)


def _rung_dict(rungs: list[tuple[int, dict]]) -> dict[str, dict[str, float]]:
    return {str(m): dict(rec) for m, rec in rungs}


def _restore_rungs(rungs: list[tuple[int, dict]], saved: dict[str, dict[str, float]]) -> None:
    for milestone, recorded in rungs:
        recorded.update(saved.get(str(milestone), {}))
