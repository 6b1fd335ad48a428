"""The study driver: preflight checks, Ray Tune + Optuna + ASHA, MLflow, final artifacts.

Order matters for "bad input changes nothing": every check that can fail on user input (config,
dataset, tracking server, cluster resources, study name) runs before the first MLflow write
and before the first trial starts.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from common.errors import UsageError
from study.config import StudyConfig

DATA_KEYS = ("train", "val")
ASHA_STATE = "asha.json"   # rungs and stopped trials (study.schedulers)


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


@dataclass
class StudyOutcome:
    config: StudyConfig
    experiment_id: str
    parent_run_id: str
    trials: "object"      # pandas DataFrame (leaderboard)
    artifacts: Path


# ----------------------------------------------------------------------------- preflight


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


def start_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
    # Tune snapshots its trial list at most every 10 s by default, so a SIGKILLed driver could
    # forget trials finished in the last 10 s; snapshot every second instead (a few KB here).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except ConnectionError as err:
            raise UsageError(f"cannot reach the Ray cluster at --address {address} ({err}); "
                             "start it (ray up / ray start --head) or drop --address for a local run")
    else:
        # Ray's own default auth for a local instance; do not set RAY_AUTH_MODE here: Ray reads it
        # at import time, so setting it now makes the GCS demand a token the driver never sends.
        # address="local": always a fresh local instance, never a cluster another process started
        ray.init(address="local", include_dashboard=False, log_to_driver=True, configure_logging=False)
        restrict_ray_token()


def restrict_ray_token() -> None:
    """Make Ray's auth token readable by its owner only (Ray 2.60 writes it with mode 0644).

    The token is what keeps other hosts and users off the local Ray instance's ports.
    """
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            path.chmod(0o600)
    except OSError:   # no token (auth disabled), or not ours to change
        pass


# ----------------------------------------------------------------------------- the study


def run_study(config: StudyConfig, *, address: str | None = None, resume: bool = False,
              explicit_name: bool = False) -> StudyOutcome:
    """Run (or resume) the study described by ``config``; return its leaderboard and locations."""
    from study import tracking

    config = pick_name(config, explicit_name, resume)
    paths = StudyPaths.of(config)
    if not address:   # a local instance: check before simulating data or starting Ray
        check_resources(config, remote=False, total=local_resources())
    dataset = ensure_dataset(config)
    check_models(config, len(dataset.class_names))
    for split in dataset.splits:  # bad labels or pixels (test too, for `best`) and empty splits fail
        dataset.arrays(split)       # here, before anything is written
    load_arrays(dataset)
    client = tracking.connect(config.mlflow.tracking_uri)
    start_ray(address)
    check_resources(config, remote=bool(address))

    paths.state.mkdir(parents=True, exist_ok=True)
    exp_id, parent_id, reused = tracking.open_parent_run(client, config.experiment, config.name, resume)
    if not reused:
        log_study_inputs(client, parent_id, config, dataset, paths)
    tuner = build_tuner(config, dataset, paths, exp_id, parent_id, resume, reuse_actors=not address)
    tuner.fit()
    tracking.check_delivered(paths.state / "outbox.jsonl", config.mlflow.tracking_uri, config.name)
    outcome = finish_study(client, config, exp_id, parent_id, paths)
    client.set_terminated(parent_id, status="FINISHED")
    return outcome


def log_study_inputs(client, parent_id: str, config: StudyConfig, dataset, paths: StudyPaths) -> None:
    from study.space import describe

    from study.tracking import redact

    params = {k: redact(str(v)) for k, v in _flatten(config.to_dict()).items()}
    meta = dict(dataset.metadata)
    params.update({f"dataset.{k}": v for k, v in _flatten(meta).items()})
    from mlflow.entities import Param

    client.log_batch(parent_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    client.set_tag(parent_id, "tune_experiment", paths.experiment)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "config.yaml").write_text(yaml.safe_dump(public_dict(config), sort_keys=False))
        (folder / "dataset.json").write_text(json.dumps(meta, indent=2, default=str))
        (folder / "search_space.json").write_text(json.dumps(describe(config.search), indent=2))
        client.log_artifacts(parent_id, str(folder), artifact_path="study")
    (paths.state / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def build_tuner(config: StudyConfig, dataset, paths: StudyPaths, exp_id: str, parent_id: str, resume: bool,
                reuse_actors: bool = False):
    """The study's ``Tuner``. ``reuse_actors``: one Ray actor runs trial after trial (torch, e2cnn
    and the data stay loaded; the trainable seeds everything per trial). Only for a local
    instance: on a cluster a reused actor keeps every later trial on its node, so trials would
    not spread (tests/test_cluster_netns.py)."""
    from ray import tune

    from study.trainable import train_trial

    trainable = tune.with_resources(
        tune.with_parameters(train_trial, settings=config.to_dict(), data=load_arrays(dataset)),
        {"cpu": config.tune.cpus_per_trial, "gpu": config.tune.gpus_per_trial},
    )
    if resume:
        return tune.Tuner.restore(paths.experiment, trainable, resume_unfinished=True, resume_errored=True)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(config, paths), scheduler=make_scheduler(config, paths),
            num_samples=config.tune.trials, max_concurrent_trials=config.tune.max_concurrent,
            trial_name_creator=TrialName(config), trial_dirname_creator=trial_folder,
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=config.name, storage_path=paths.storage,
            failure_config=tune.FailureConfig(max_failures=config.tune.max_failures),
            # two per trial: a restored snapshot names the newest or the one before it (schedulers.py)
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[make_logger(config, paths, exp_id, parent_id)],
        ),
    )


class TrialName:
    """Tune's display name for a trial, the one MLflow gives its run: ``C4 w0.12 lr7e-04 wd1e-04 bs32``.

    A class, not a closure: Tune pickles it with the experiment for ``--resume``.
    """

    def __init__(self, config: StudyConfig):
        self.config = config

    def __call__(self, trial) -> str:
        from study.space import run_spec

        return run_spec(trial.config, self.config).label()


def trial_folder(trial) -> str:
    """``train_trial_<id>``: Tune's default folder name spells the config out, weight decay as 0.0000."""
    return f"train_trial_{trial.trial_id}"


def load_arrays(dataset) -> dict:
    """The train/val arrays and class names, handed to trials through the object store once."""
    data = {"class_names": list(dataset.class_names)}
    for split in DATA_KEYS:
        images, labels = dataset.arrays(split)
        if len(labels) == 0:
            raise UsageError(f"dataset {dataset.path}: split {split!r} is empty; re-make it with more images")
        data[f"{split}_images"], data[f"{split}_labels"] = images, labels
    return data


def make_searcher(config: StudyConfig, paths: StudyPaths):
    from study.schedulers import PruningOptunaSearch
    from study.space import define_by_run

    return PruningOptunaSearch(
        space=define_by_run(config.search), metric=config.tune.metric, mode=config.tune.mode,
        seed=config.seed, study_name=config.name, max_epochs=config.train.max_epochs,
        storage=_optuna_storage(paths), stop_file=str(paths.state / ASHA_STATE),
    )


def _optuna_storage(paths: StudyPaths):
    import optuna

    return optuna.storages.RDBStorage(f"sqlite:///{paths.state / 'optuna.db'}")


def make_scheduler(config: StudyConfig, paths: StudyPaths):
    from study.schedulers import PersistentASHA

    return PersistentASHA(
        time_attr="epoch", metric=config.tune.metric, mode=config.tune.mode,
        max_t=config.train.max_epochs, grace_period=config.tune.grace_period,
        reduction_factor=config.tune.reduction_factor, state_file=str(paths.state / ASHA_STATE),
    )


def make_logger(config: StudyConfig, paths: StudyPaths, exp_id: str, parent_id: str):
    from study.space import run_spec
    from study.tracking import MlflowTrialLogger

    fixed = {"max_epochs": config.train.max_epochs, "image_size": config.data.image_size,
             "optimizer": config.train.optimizer, "head": config.train.head, "seed": config.seed}
    return MlflowTrialLogger(
        config.mlflow.tracking_uri, exp_id, parent_id, config.name, config.tune.metric,
        config.train.max_epochs, str(paths.state / "outbox.jsonl"),
        labeller=lambda sampled: run_spec(sampled, config).label(), fixed_params=fixed,
        mode=config.tune.mode,
    )


def finish_study(client, config: StudyConfig, exp_id: str, parent_id: str, paths: StudyPaths) -> StudyOutcome:
    """Leaderboard, best configuration and Optuna plots onto the parent run."""
    import optuna

    from study import leaderboard

    metric, t = config.tune.metric, config.tune
    rungs = leaderboard.rung_epochs(t.grace_period, t.reduction_factor, config.train.max_epochs)
    trials = leaderboard.collect_trials(client, exp_id, parent_id, metric, t.mode, rungs)
    folder = paths.state / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    leaderboard.write_tables(trials, folder, metric, t.mode)
    best = leaderboard.best_trial(trials, t.mode)
    if best is not None:
        leaderboard.write_best_config(best, public_dict(config), folder)
        client.log_metric(parent_id, f"best_{metric}", float(best["best"]))
        client.set_tag(parent_id, "best_trial", best["trial"])
        client.set_tag(parent_id, "best_run_id", best["run_id"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=config.name, storage=_optuna_storage(paths))
    leaderboard.write_optuna_plots(study, folder)
    client.log_artifacts(parent_id, str(folder), artifact_path="results")
    client.set_tag(parent_id, "trials", str(len(trials)))
    return StudyOutcome(config, exp_id, parent_id, trials, folder)


def public_dict(config: StudyConfig) -> dict:
    """The config as logged to MLflow: a password in the tracking URI is masked."""
    from study.tracking import redact

    out = config.to_dict()
    out["mlflow"]["tracking_uri"] = redact(out["mlflow"]["tracking_uri"])
    return out


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
