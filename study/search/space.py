"""The search space as an Optuna define-by-run function.

A trial samples a model (a symmetry group or the ResNet-18 baseline), then - only for the
steerable/conventional family - a width multiplier, then learning rate and weight decay
log-uniformly and a batch size. ResNet-18 has no width: it has one fixed architecture.
"""
from __future__ import annotations

from typing import Callable

from lensnets.config import GROUPS
from study.config import SearchConfig, StudyConfig
from study.engine.spec import RunSpec

class DefineByRun:
    """``space(trial)`` sampling one configuration with Optuna's ``trial.suggest_*``.

    A class, not a closure, because Tune pickles the searcher (and this space) with plain pickle.
    """

    def __init__(self, search: SearchConfig):
        self.search = search

    def __call__(self, trial) -> None:
        s = self.search
        model = trial.suggest_categorical("model", list(s.groups))
        if model in GROUPS:   # steerable models have a width; resnet18 does not
            trial.suggest_categorical("width", list(s.widths))
        trial.suggest_float("lr", *s.lr, log=True)
        trial.suggest_float("weight_decay", *s.weight_decay, log=True)
        trial.suggest_categorical("batch_size", list(s.batch_sizes))


def define_by_run(search: SearchConfig) -> Callable:
    """The study's define-by-run search space (see :class:`DefineByRun`)."""
    return DefineByRun(search)


def describe(search: SearchConfig) -> dict:
    """The space in words and numbers, for the parent MLflow run."""
    return {
        "model": {"choice": list(search.groups)},
        "width": {"choice": list(search.widths), "only_if": "model is a group (not resnet18)"},
        "lr": {"log_uniform": list(search.lr)},
        "weight_decay": {"log_uniform": list(search.weight_decay)},
        "batch_size": {"choice": list(search.batch_sizes)},
    }


def run_spec(sampled: dict, config: StudyConfig) -> RunSpec:
    """Combine one trial's sampled values with the study's fixed settings."""
    d, t, share = config.data, config.train, config.tune.gpus_per_trial
    return RunSpec(
        model=sampled["model"], width=float(sampled.get("width", 1.0)), lr=float(sampled["lr"]),
        weight_decay=float(sampled["weight_decay"]), batch_size=int(sampled["batch_size"]),
        max_epochs=t.max_epochs, seed=config.seed, optimizer=t.optimizer, head=t.head,
        width_mode=t.width_mode, image_size=d.image_size, crop_fraction=d.crop_fraction,
        rotate=d.rotate, flip=d.flip, amp=t.amp, memory=t.memory,
        memory_budget_gb=t.memory_budget_gb, channels_last=t.channels_last, compile=t.compile,
        gpu_share=share if 0 < share < 1 else 1.0,
    )
