"""Where a study keeps its state (:class:`StudyPaths`: Tune's experiment folder and the local
state folder) and how its name is chosen when one is taken (:func:`pick_name`)."""
from __future__ import annotations

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
    return config.model_copy(update={"name": name})
