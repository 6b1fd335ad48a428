"""Preflight: every check on user input that can fail, run before the first MLflow write and the
first trial (the study's name, its models at the configured image size, the dataset, the
cluster's resources), and where a study keeps its state."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from common.errors import UsageError
from study.config import StudyConfig


@dataclass
class StudyPaths:
    """Where a study keeps its state: Tune's experiment folder and a local state folder."""

    storage: str          # Tune storage_path: an absolute local folder, or s3://, gs://, ...
    experiment: str       # storage/<name>: Tune's experiment folder (checkpoints, trial state)
    state: Path           # local: optuna.db, asha.json, outbox.jsonl, config.yaml

    @classmethod
    def of(cls, config: StudyConfig) -> "StudyPaths":
        storage = config.tune.storage_path
        remote = "://" in storage
        if not remote:
            storage = str(Path(storage).resolve())
        state_root = Path("runs").resolve() if remote else Path(storage)
        return cls(storage, f"{storage.rstrip('/')}/{config.name}", state_root / f"{config.name}.state")



def pick_name(config: StudyConfig, explicit: bool, resume: bool) -> StudyConfig:
    """Resolve the study name: an explicit name must be new (or resumed); a default one is numbered."""
    from ray import tune

    paths = StudyPaths.of(config)
    exists = paths.state.exists() or (not "://" in paths.storage and Path(paths.experiment).exists())
    if resume:
        if not tune.Tuner.can_restore(paths.experiment):
            raise UsageError(
                f"no interrupted study named {config.name!r} under {paths.storage}; "
                "check --name and tune.storage_path, or start it without --resume"
            )
        return config
    if not exists:
        return config
    if explicit:
        raise UsageError(
            f"a study named {config.name!r} already exists under {paths.storage}; "
            "pass --resume to continue it or --name NEW to start another"
        )
    n = 2
    while StudyPaths.of(_renamed(config, f"{config.name}-{n}")).state.exists():
        n += 1
    print(f"note: study {config.name!r} exists; this one is {config.name}-{n} "
          f"(continue the old one with --name {config.name} --resume)")
    return _renamed(config, f"{config.name}-{n}")


def _renamed(config: StudyConfig, name: str) -> StudyConfig:
    import dataclasses

    return dataclasses.replace(config, name=name)


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


def ensure_dataset(config: StudyConfig):
    """Open the configured dataset, simulating it first when it is absent and a preset is set."""
    from data_io import open_dataset, simulate_dataset

    path = Path(config.data.path)
    if not path.exists():
        sim = config.data.simulate
        if sim is None:
            raise UsageError(
                f"dataset {path} does not exist; make it with `run_study.py simulate` or `ingest`, "
                "or set data.path to an existing dataset"
            )
        print(f"Simulating {sim.per_class} images per class ({sim.preset}) into {path} ...")
        simulate_dataset(sim.preset, sim.per_class, path, seed=config.seed)
    return open_dataset(path)


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
