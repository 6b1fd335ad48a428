"""Find a study's best trial in MLflow and retrain it as one standalone job (no Ray Tune).

The rerun uses the same engine as the trials (:func:`study.engine.fit`), the same seed and the
same fixed settings, so on CPU with the default schedule it repeats the trial; it then scores
the final model once on the held-out test split. See :mod:`study.final.best_job` for what is
logged, and ``docs/best-and-evaluate.md`` for commands and reproducibility.
"""
from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass

import yaml

from common.errors import UsageError
from lensnets.config import GROUPS
from study.config import StudyConfig, config_from_dict



@dataclass
class StudyRecord:
    """A study as stored in MLflow, and the trial that won it."""

    client: object
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    name: str
    config: StudyConfig
    trial: dict            # leaderboard row of the best finished trial (see study.tracking.leaderboard)

    @property
    def sampled(self) -> dict:
        """The trial's sampled values (``width`` is absent for ResNet-18)."""
        keys = ("model", "width", "lr", "weight_decay", "batch_size")
        return {k: self.trial[k] for k in keys if not _missing(self.trial.get(k))}


def find_study(tracking_uri: str, study: str | None = None, run_id: str | None = None) -> StudyRecord:
    """The study named ``study`` (newest parent run with that name) or the parent run ``run_id``."""
    from study.tracking import mlflow_store as tracking

    client = tracking.connect(tracking_uri)
    parent = _parent_by_id(client, run_id) if run_id else _parent_by_name(client, study, tracking_uri)
    name = parent.data.tags.get("study", parent.info.run_name)
    config = _study_config(client, parent.info.run_id, name)
    trial = best_finished_trial(client, parent.info.experiment_id, parent.info.run_id, config)
    if trial is None:
        raise UsageError(f"study {name!r} has no finished trial with a {config.tune.metric} value; "
                         "let it finish (run_study.py tune --name NAME --resume) before `best`")
    return StudyRecord(client, tracking_uri, parent.info.experiment_id, parent.info.run_id, name,
                       config, trial)


def _parent_by_id(client, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UsageError(f"run {run_id} does not exist in this MLflow; pass the study's parent "
                         "run id (the one `tune` printed) or use --study NAME")
    if run.data.tags.get("role") != "study":
        raise UsageError(f"run {run_id} is not a study's parent run (role={run.data.tags.get('role')!r}); "
                         "pass the parent run id that `tune` printed, or --study NAME")
    return run


def _parent_by_name(client, study: str, tracking_uri: str):
    ids = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(ids, f"tags.study = '{study}' and tags.role = 'study'",
                               order_by=["attributes.start_time DESC"], max_results=1) if ids else []
    if not found:
        raise UsageError(f"no study named {study!r} in MLflow at {tracking_uri}; check --study "
                         "(the name `tune` printed) and --tracking-uri")
    return found[0]


def _study_config(client, parent_run_id: str, name: str) -> StudyConfig:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(parent_run_id, "study/config.yaml", folder)
        except Exception:
            raise UsageError(f"study {name!r} (run {parent_run_id}) has no study/config.yaml artifact; "
                             "it was not started by `run_study.py tune`")
        with open(path) as fh:
            return config_from_dict(yaml.safe_load(fh))


def study_data_domain(record: StudyRecord):
    """The domain of the data the study tuned on (its ``study/dataset.json`` artifact), or
    ``None`` for a study logged without one."""
    import json
    import tempfile

    from data_io.domain import dataset_domain

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = record.client.download_artifacts(record.parent_run_id, "study/dataset.json", folder)
            with open(path) as fh:
                return dataset_domain(json.load(fh))
        except Exception:  # noqa: BLE001 - no record: the check is skipped, not the rerun
            return None


def best_finished_trial(client, experiment_id: str, parent_run_id: str, config: StudyConfig) -> dict | None:
    """The study's winner by :func:`study.tracking.leaderboard.best_trial` (the rule the leaderboard uses)."""
    from study.tracking.leaderboard import best_trial, study_trials

    return best_trial(study_trials(client, experiment_id, parent_run_id, config), config.tune.mode)


def trial_metric_at(client, run_id: str, metric: str, epoch: int) -> float:
    """The trial's logged ``metric`` at ``step == epoch`` (NaN if it was not logged)."""
    for m in client.get_metric_history(run_id, metric):
        if m.step == epoch:
            return float(m.value)
    return math.nan


# ----------------------------------------------------------------------------- the rerun


@dataclass
class RerunOptions:
    epochs: int | None = None          # default: the study's train.max_epochs
    train_on_train_val: bool = False
    device: str | None = None
    data: str | None = None            # default: the study's data.path
    control: bool = True               # also train the trivial-group control
    out: str | None = None             # default: runs/<study>.best
    threads: int | None = None         # torch threads (default: torch's own choice)


def rerun_spec(record: StudyRecord, options: RerunOptions):
    """The best trial's :class:`RunSpec`, with the rerun's epoch count."""
    from study.search.space import run_spec

    epochs = options.epochs or record.config.train.max_epochs
    if epochs < 1:
        raise UsageError(f"--epochs {epochs} must be >= 1")
    return dataclasses.replace(run_spec(record.sampled, record.config), max_epochs=int(epochs))


def control_spec(spec, config: StudyConfig):
    """The trivial-group control: same width, lr, weight decay, batch size, epochs and seed.

    For a ResNet-18 winner (no width) it takes the smallest width of the study's search space.
    With the default ``fields`` width mode the control has the winner's number of fields with
    one channel each, so it costs about 1/|G|^2 of the winner's compute per epoch.
    """
    width = spec.width if spec.model in GROUPS else min(config.search.widths)
    return dataclasses.replace(spec, model="trivial", width=width)


def load_splits(path: str, train_on_train_val: bool):
    """``(dataset, train, val, test)`` Splits; with ``train_on_train_val`` train = train + val."""
    import numpy as np

    from data_io import open_dataset
    from study.engine.spec import Split

    dataset = open_dataset(path)
    splits = {}
    for name in ("train", "val", "test"):
        images, labels = dataset.arrays(name)
        if len(labels) == 0:
            raise UsageError(f"dataset {path}: split {name!r} is empty; re-make it with more images")
        splits[name] = Split(images, labels)
    train = splits["train"]
    if train_on_train_val:
        val = splits["val"]
        train = Split(np.concatenate([train.images, val.images]), np.concatenate([train.labels, val.labels]))
    return dataset, train, splits["val"], splits["test"]


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def config_yaml(config: StudyConfig) -> str:
    buf = io.StringIO()
    yaml.safe_dump(config.to_dict(), buf, sort_keys=False)
    return buf.getvalue()
