"""A trial ASHA stopped just before the driver died, which Tune's last snapshot still lists as
unfinished, is stopped again when the study resumes - before anything runs, so it never trains
(or reports) again - and Tune's callbacks (the MLflow logger among them) hear that it ended.

Real Ray Tune: a study stopped by SIGTERM mid-trial (study/search/stop_signal.py), whose scheduler
state file then records that trial as stopped, as the driver writes it right after the decision.
"""
from __future__ import annotations

import json
import os
import signal
import time

from ray.tune import Callback

from study.search import tune_internals as internals
from study.search.scheduler import PersistentASHA
from study.search.stop_signal import StopOnSignal

EPOCHS = 40   # 40 x 0.05 s: long enough to be interrupted after its first epoch


def _epochs_trainable():
    def epochs(config):
        from ray import tune

        for epoch in range(1, EPOCHS + 1):
            time.sleep(0.05)
            tune.report({"epoch": epoch, "m": 0.5})
    return epochs


class Record(Callback):
    """Results and ends the driver saw; sends SIGTERM once on the first result when ``interrupt``."""

    def __init__(self, interrupt: bool):
        self.interrupt, self.results, self.ended = interrupt, [], []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.append((trial.trial_id, result["epoch"]))
        if self.interrupt:
            self.interrupt = False
            os.kill(os.getpid(), signal.SIGTERM)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended.append(trial.trial_id)


def test_a_stopped_trial_the_snapshot_forgot_is_stopped_again_and_never_runs(shared_ray, tmp_path):
    from ray import tune

    state_file = tmp_path / "asha.json"
    scheduler = PersistentASHA(time_attr="epoch", metric="m", mode="max", max_t=EPOCHS, grace_period=EPOCHS,
                               state_file=str(state_file))
    first = Record(interrupt=True)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR1, signal.SIGTERM)}
    try:
        with StopOnSignal():
            tune.Tuner(_epochs_trainable(),
                       tune_config=tune.TuneConfig(num_samples=2, max_concurrent_trials=1, scheduler=scheduler),
                       run_config=tune.RunConfig(name="s", storage_path=str(tmp_path), callbacks=[first])).fit()
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)

    (victim, _), *_ = first.results
    assert victim not in first.ended, "interrupted mid-trial"
    state = json.loads(state_file.read_text())
    state["stopped"][victim] = {"epoch": 1, "value": 0.5}     # the decision the snapshot missed
    state_file.write_text(json.dumps(state))

    resumed = tune.Tuner.restore(str(tmp_path / "s"), _epochs_trainable(), resume_unfinished=True)
    (record,) = [c for c in internals.restored_callbacks(resumed) if isinstance(c, Record)]
    record.interrupt = False                                  # unpickled as it was pickled: True
    results = resumed.fit()
    assert [epoch for trial, epoch in record.results if trial == victim] == [], "it trained again"
    assert victim in record.ended, "the callbacks (MLflow) heard that it ended"
    others = [r for r in results if r.metrics.get("trial_id") != victim]
    assert len(results) == 2 and all(r.metrics["epoch"] == EPOCHS for r in others), "the other trial ran"
