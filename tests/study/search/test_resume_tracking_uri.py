"""A resumed study logs to this run's MLflow address, not the one pickled at the study's start.

``Tuner.restore`` rebuilds the study's callbacks from ``tuner.pkl``, so its MLflow logger would
keep the tracking URI of the first run. A Slurm job requeued onto another node, or resubmitted
with another job id, has its MLflow server at another address; ``build_tuner`` points the
restored logger at the current one (``tune_internals.restored_callbacks``,
``MlflowTrialLogger.use_tracking_uri``). Real Tune objects, no Ray instance needed.
"""
from __future__ import annotations

from ray import tune

from study.search import tune_internals as internals
from study.tracking.trial_logger import MlflowTrialLogger


def _trainable(config):
    pass


def test_the_restored_logger_is_pointed_at_the_new_tracking_uri(tmp_path):
    first = MlflowTrialLogger("http://10.0.0.7:24509", "1", "parent", "s", "val_auc_micro", 3,
                              str(tmp_path / "outbox.jsonl"))
    tune.Tuner(_trainable, run_config=tune.RunConfig(name="s", storage_path=str(tmp_path), callbacks=[first]))

    restored = tune.Tuner.restore(str(tmp_path / "s"), _trainable)
    (logger,) = [c for c in internals.restored_callbacks(restored) if isinstance(c, MlflowTrialLogger)]
    assert logger is not first and logger.tracking_uri == "http://10.0.0.7:24509"   # as pickled

    now = f"sqlite:///{tmp_path / 'now.db'}"
    logger.use_tracking_uri(now)
    assert logger.tracking_uri == now
    logger.client.search_experiments(max_results=1)      # a real client on the new store
    assert (tmp_path / "now.db").exists()
