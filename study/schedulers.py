"""Optuna search and ASHA scheduling, fixed where Tune's defaults mislead or forget.

Two corrections to Ray Tune 2.60's stock classes:

1. :class:`PruningOptunaSearch`: when ASHA stops a trial, stock ``OptunaSearch`` tells Optuna the
   trial COMPLETED with its early value, so TPE treats a 1-epoch score as a finished one. Here a
   trial that ends before ``max_epochs`` without an error is told as PRUNED, with every epoch's
   value as an intermediate value (Tune does not pass the stopping result to the searcher, so it
   is added here), which is what TPE uses for pruned trials.
2. :class:`PersistentASHA`: ``Tuner.restore`` rebuilds the scheduler empty, forgetting the rungs.
   This ASHA writes its rungs to a JSON file after every decision and reads them back when it
   starts, so a resumed study stops the same trials an uninterrupted one would.

ASHA's rule (Li et al. 2020): with grace period ``g`` and reduction factor ``eta``, rungs sit at
``g * eta**k`` epochs; a trial reaching a rung is stopped if its metric is below the
``1 - 1/eta`` quantile of the values recorded at that rung so far.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from common.atomic import atomic_file
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch


class PruningOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that records early-stopped trials as PRUNED instead of COMPLETE."""

    def __init__(self, *args, max_epochs: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_epochs = max_epochs

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        stopped_early = (
            not error and result is not None and int(result.get("epoch", 0)) < self.max_epochs
        )
        if not stopped_early or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result=result, error=error)
        from optuna.trial import TrialState

        ot_trial = self._ot_trials[trial_id]
        value, epoch = result.get(self.metric), int(result["epoch"])
        # Tune withholds the result that triggered the STOP from the searcher: record it here.
        if value is not None and epoch not in ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values:
            ot_trial.report(value, epoch)
        self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        self._completed_trials.add(trial_id)

    @property
    def optuna_study(self):
        return self._ot_study


class PersistentASHA(ASHAScheduler):
    """ASHA whose rung records survive a driver restart (kept in ``state_file``)."""

    def __init__(self, *args, state_file: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.state_file = str(state_file)
        self._loaded = False

    def on_trial_result(self, tune_controller, trial, result):
        self._load_once()
        decision = super().on_trial_result(tune_controller, trial, result)
        self._save()
        return decision

    def on_trial_add(self, tune_controller, trial):
        self._load_once()
        super().on_trial_add(tune_controller, trial)

    def rungs(self) -> list[dict[str, dict[str, float]]]:
        """Per bracket: ``{milestone: {trial_id: metric}}``."""
        return [{str(m): dict(rec) for m, rec in b._rungs} for b in self._brackets]

    def _save(self) -> None:
        with atomic_file(Path(self.state_file), "w") as fh:
            json.dump(self.rungs(), fh)

    def _load_once(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not os.path.exists(self.state_file):
            return
        saved = json.loads(Path(self.state_file).read_text())
        for bracket, rungs in zip(self._brackets, saved):
            for milestone, recorded in bracket._rungs:
                recorded.update(rungs.get(str(milestone), {}))
