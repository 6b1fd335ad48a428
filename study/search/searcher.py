"""The study's Optuna searcher: :class:`PruningOptunaSearch`, stock ``OptunaSearch`` corrected so
that a trial ASHA stopped reaches Optuna as PRUNED (not COMPLETED with its early value), and so
that a resumed study tells Optuna each outcome once. The resume rules it follows are in
:mod:`study.search.scheduler`'s docstring.
"""
from __future__ import annotations

import logging
import math

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from study.search import tune_internals as internals
from study.search.scheduler import TRIAL_STOPPED, read_state

logger = logging.getLogger(__name__)


class PruningOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that records early-stopped trials as PRUNED and survives a driver restart.

    Intermediate values are keyed by epoch (not Tune's ``training_iteration``, which counts an
    epoch retrained after a driver restart twice), and a trial Optuna has been told about is never
    told again.
    """

    def __init__(self, *args, max_epochs: int, stop_file: str | None = None,
                 equal_groups: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs
        self.stop_file = stop_file
        self.equal_groups = list(equal_groups or [])

    def suggest(self, trial_id: str):
        """``equal_groups``: the new trial's group is the one with the fewest trials so far (the
        first in config order on a tie); Optuna samples the rest (see :func:`next_group`)."""
        if self.equal_groups and trial_id not in internals.optuna_trials(self):
            self.optuna_study.enqueue_trial({"model": next_group(self.optuna_study, self.equal_groups)})
        return super().suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict):
        if trial_id not in internals.completed_trials(self):
            self._report(trial_id, result.get(self.metric), int(result.get("epoch", 0)))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in internals.completed_trials(self):
            return
        internals.completed_trials(self).add(trial_id)
        if self._stored(trial_id).state.is_finished():   # told just before the driver died
            return
        ot_trial = internals.optuna_trials(self)[trial_id]
        if error:
            return self._tell(ot_trial, None, TrialState.FAIL)
        value, epoch = self._final_result(trial_id, result or {})
        # Tune withholds the result that triggered the STOP from the searcher: record it here.
        self._report(trial_id, value, epoch)
        if value is None or epoch < self.max_epochs:
            return self._tell(ot_trial, None, TrialState.PRUNED)
        self._tell(ot_trial, value, TrialState.COMPLETE)

    def restore(self, checkpoint_path: str):
        """Restore the snapshot, then fail the Optuna trials the snapshot does not know (orphans)."""
        super().restore(checkpoint_path)
        study = self.optuna_study
        known = {internals.storage_id(t) for t in internals.optuna_trials(self).values()}
        for orphan in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if internals.storage_id(orphan) not in known:
                optuna.Trial(study, internals.storage_id(orphan)).set_user_attr(
                    "interrupted", "proposed, then the driver died before Tune recorded the trial")
                study.tell(orphan.number, state=TrialState.FAIL)

    @property
    def optuna_study(self):
        return internals.optuna_study(self)

    def _final_result(self, trial_id: str, result: dict) -> tuple[float | None, int]:
        """The stopping result as the scheduler recorded it, else the last result Tune passes."""
        stopped = read_state(self.stop_file).get(TRIAL_STOPPED, {}) if self.stop_file else {}
        if trial_id in stopped:
            return stopped[trial_id]["value"], int(stopped[trial_id]["epoch"])
        return result.get(self.metric), int(result.get("epoch", 0))

    def _stored(self, trial_id: str) -> optuna.trial.FrozenTrial:
        """The trial as Optuna's storage holds it now (state, intermediate values)."""
        ot_trial = internals.optuna_trials(self)[trial_id]
        return ot_trial.storage.get_trial(internals.storage_id(ot_trial))

    def _report(self, trial_id: str, value: float | None, epoch: int) -> None:
        """Record ``value`` at ``epoch`` unless Optuna has it already or the trial is finished."""
        if value is None or epoch < 1 or math.isnan(value):
            return
        stored = self._stored(trial_id)
        if not stored.state.is_finished() and epoch not in stored.intermediate_values:
            internals.optuna_trials(self)[trial_id].report(value, epoch)

    def _tell(self, ot_trial, value, state) -> None:
        try:
            self.optuna_study.tell(ot_trial, value, state=state)
        except Exception as exc:  # e.g. a NaN value: Optuna refuses it, the study goes on
            logger.warning("Optuna refused trial %s's outcome: %s", ot_trial.number, exc)


def next_group(study: optuna.Study, groups: list[str]) -> str:
    """The group with the fewest trials in ``study`` (proposed, running or finished; a FAILed trial
    never trained and does not count), the first in ``groups`` on a tie: round-robin that stays
    even across driver restarts (the count lives in Optuna's storage)."""
    counts = dict.fromkeys(groups, 0)
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.FAIL:
            continue
        model = trial.params.get("model", trial.system_attrs.get("fixed_params", {}).get("model"))
        if model in counts:
            counts[model] += 1
    return min(groups, key=lambda g: (counts[g], groups.index(g)))
