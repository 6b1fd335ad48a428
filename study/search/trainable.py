"""The Tune function trainable: one trial = build, restore if checkpointed, one report per epoch.

A trial restored from a checkpoint reports only the epochs it trains after it.

The dataset arrives through Ray's object store (``tune.with_parameters``): the driver puts the
train and validation arrays there once, each node holds one copy, and every trial on that node
reads them zero-copy. The trial's sampled values come in ``config``; the study's fixed settings
come in ``study``, the typed :class:`study.config.StudyConfig` itself (one shape from the YAML file
to the trial: :func:`study.search.space.run_spec` derives the run's spec from it).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import ray
from ray import tune

from study.config import StudyConfig
from study.search import tune_internals as internals
from study.engine.checkpoint import CHECKPOINT_FILE
from study.engine.spec import Split
from study.engine.trainer import Trainer, fit


def train_trial(config: dict, *, study: StudyConfig, data: dict) -> None:
    """Train one sampled configuration, reporting validation metrics and a checkpoint each epoch."""
    import torch

    from study.search.space import run_spec

    # Ray Train logs "Checkpoint successfully created at: ..." at INFO for every epoch of every
    # trial (dozens of lines per study); the study's own table already says what was saved.
    internals.quiet_checkpoint_logs()
    spec = run_spec(config, study)
    cpus = max(1, int(study.tune.cpus_per_trial))
    torch.set_num_threads(cpus)
    trainer = Trainer(spec, data["class_names"])
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load(Path(folder) / CHECKPOINT_FILE)

    node = ray.get_runtime_context().get_node_id()
    def report(record: dict) -> None:
        # the study metric first: Tune's live table shows the first four metrics of a result
        record = {study.tune.metric: record[study.tune.metric], **record, "node_id": node}
        with tempfile.TemporaryDirectory() as folder:
            trainer.save(Path(folder) / CHECKPOINT_FILE)
            tune.report(record, checkpoint=tune.Checkpoint.from_directory(folder))

    train = Split(data["train_images"], data["train_labels"])
    val = Split(data["val_images"], data["val_labels"])
    fit(trainer, train, val, until_epoch=spec.max_epochs, on_epoch=report)
