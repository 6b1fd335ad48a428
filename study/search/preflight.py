"""Preflight: the checks on user input that can fail, run before the first MLflow write and the
first trial: the study's models at the configured image size, and the cluster's resources (the
name: :mod:`.study_paths`; the dataset: :mod:`.data_preparation`)."""
from __future__ import annotations

import os

from common.errors import UsageError
from study.config import StudyConfig


def check_models(config: StudyConfig, num_classes: int) -> None:
    """Every model the space can propose must be buildable at the configured image size."""
    from lensnets import ModelConfig

    t = config.train
    for group in config.search.groups:
        for width in config.search.widths:
            try:
                ModelConfig(name=group, width=width, width_mode=t.width_mode, num_classes=num_classes,
                            input_size=config.data.image_size, head=t.head)
            except UsageError as err:
                raise UsageError(f"search.groups {group} with data.image_size {config.data.image_size}: {err}")


def local_resources() -> dict[str, float]:
    """What a local Ray instance started here will offer: this machine's cores and GPUs."""
    import torch

    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def check_resources(config: StudyConfig, remote: bool, total: dict | None = None) -> None:
    """Fail early when no node of the cluster can ever hold one trial."""
    import ray

    t = config.tune
    total = ray.cluster_resources() if total is None else total
    need = {"CPU": t.cpus_per_trial, "GPU": t.gpus_per_trial}
    for key, amount in need.items():
        have = total.get(key, 0)
        if amount > have:
            if remote and key == "GPU":
                print(f"note: the cluster has {have:g} GPUs now; waiting for the autoscaler to add workers")
                continue
            raise UsageError(
                f"each trial asks for {amount:g} {key} (tune.{key.lower()}s_per_trial) but the Ray cluster "
                f"has {have:g}; lower it with --set tune.{key.lower()}s_per_trial=... or add nodes"
            )
