"""The study driver: Ray Tune + Optuna + ASHA assembled, MLflow inputs and final artifacts.

Order matters for "bad input changes nothing": every check that can fail on user input (config,
dataset, tracking server, cluster resources, study name) runs before the first MLflow write
and before the first trial starts.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from common.errors import UsageError
from study.config import StudyConfig
from study.search.data_preparation import ensure_dataset
from study.search.preflight import check_models, check_resources, local_resources
from study.search.study_paths import StudyPaths, pick_name
from study.search import tune_internals as internals
from study.search.ray_start import one_node_cluster, start_ray
from study.search.stop_signal import StopOnSignal

DATA_KEYS = ("train", "val")
ASHA_STATE = "asha.json"   # rungs and stopped trials (study.search.scheduler)


@dataclass
class StudyOutcome:
    config: StudyConfig
    experiment_id: str
    parent_run_id: str
    trials: "object"      # pandas DataFrame (leaderboard)
    artifacts: Path


# ----------------------------------------------------------------------------- the study


def run_study(config: StudyConfig, *, address: str | None = None, resume: bool = False,
              explicit_name: bool = False) -> StudyOutcome:
    """Run (or resume) the study described by ``config``; return its leaderboard and locations.

    SIGTERM stops it cleanly (``study.search.stop_signal``): ``StudyInterrupted`` is raised once
    Tune has saved its state, and ``resume=True`` continues it."""
    from study.tracking import mlflow_store as tracking
    from study.tracking.runs_view import write_runs_view

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
    with StopOnSignal() as stop:   # after ray.init, which installs its own SIGTERM handler
        check_resources(config, remote=bool(address))

        paths.state.mkdir(parents=True, exist_ok=True)
        exp_id, parent_id, reused = tracking.open_parent_run(client, config.experiment, config.name, resume)
        write_runs_view(client, exp_id, config.name, config.tune.metric, config.tune.mode)  # the URL's view
        if not reused:
            log_study_inputs(client, parent_id, config, dataset, paths)
        tuner = build_tuner(config, dataset, paths, exp_id, parent_id, resume, reuse_actors=reuse_actors(config))
        internals.readable_console_floats()   # 1e-05, not 0.00001, in trial start/result blocks
        internals.readable_console_header(*console_names(config))
        stop.check(config.name)
        tuner.fit()
        stop.check(config.name)   # stopped by a signal: Tune saved its state; the parent run stays RUNNING
        tracking.check_delivered(paths.state / "outbox.jsonl", config.mlflow.tracking_uri, config.name)
        outcome = finish_study(client, config, exp_id, parent_id, paths)
        client.set_terminated(parent_id, status="FINISHED")
    return outcome


def log_study_inputs(client, parent_id: str, config: StudyConfig, dataset, paths: StudyPaths) -> None:
    from study.search.space import describe

    from study.tracking.mlflow_store import redact

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
    and the data stay loaded; the trainable seeds everything per trial); see :func:`reuse_actors`."""
    from ray import tune

    from study.search.trainable import train_trial

    trainable = tune.with_resources(
        tune.with_parameters(train_trial, study=config, data=load_arrays(dataset)),
        {"cpu": config.tune.cpus_per_trial, "gpu": config.tune.gpus_per_trial},
    )
    if resume:
        tuner = tune.Tuner.restore(paths.experiment, trainable, resume_unfinished=True, resume_errored=True)
        from study.tracking.trial_logger import MlflowTrialLogger

        for callback in internals.restored_callbacks(tuner):   # pickled when the study started
            if isinstance(callback, MlflowTrialLogger):
                callback.use_tracking_uri(config.mlflow.tracking_uri)
        return tuner
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=make_searcher(config, paths), scheduler=make_scheduler(config, paths),
            num_samples=config.tune.trials, max_concurrent_trials=config.tune.max_concurrent,
            trial_name_creator=TrialLabel(config).of_trial, trial_dirname_creator=trial_folder,
            reuse_actors=reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=config.name, storage_path=paths.storage,
            failure_config=tune.FailureConfig(max_failures=config.tune.max_failures),
            # two per trial: a restored snapshot names the newest or the one before it (scheduler.py)
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[make_logger(config, paths, exp_id, parent_id)],
        ),
    )


def console_names(config: StudyConfig) -> tuple[str, str]:
    """How the console names the search and the scheduler: ``Optuna TPE (seed 0)`` and
    ``ASHA: rungs at epochs 1, 3 of 8, keeps the top 1/3``."""
    t, rungs, epoch = config.tune, [], config.tune.grace_period
    while epoch < config.train.max_epochs:
        rungs.append(str(epoch))
        epoch *= t.reduction_factor
    if config.search.allocation == "equal":
        return (f"Optuna TPE (seed {config.seed}), equal trials per group",
                f"ASHA per group: rungs at epochs {', '.join(rungs) or 'none'} of {config.train.max_epochs}, "
                f"keeps the top 1/{t.reduction_factor}")
    return (f"Optuna TPE (seed {config.seed})",
            f"ASHA: rungs at epochs {', '.join(rungs) or 'none'} of {config.train.max_epochs}, "
            f"keeps the top 1/{t.reduction_factor}")


def reuse_actors(config: StudyConfig) -> bool:
    """``tune.reuse_actors``: true, false, or auto - reuse on a one-node cluster only. On several
    nodes a reused actor keeps every later trial on its node, so trials would not spread
    (tests/study/search/test_cluster_netns.py)."""
    setting = config.tune.reuse_actors
    return one_node_cluster() if setting == "auto" else bool(setting)


class TrialLabel:
    """A trial's name, the same in Tune's table and in MLflow: ``C4 w0.12 lr7e-04 wd1e-04 bs32``.

    Called with the sampled values (MLflow's run name); :meth:`of_trial` is Tune's
    ``trial_name_creator``. A class, not a closure: Tune pickles both with the experiment.
    """

    def __init__(self, config: StudyConfig):
        self.config = config

    def __call__(self, sampled: dict) -> str:
        from study.search.space import run_spec

        return run_spec(sampled, self.config).label()

    def of_trial(self, trial) -> str:
        return self(trial.config)


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
    return searcher_for(config, study_name=config.name, storage=_optuna_storage(paths),
                        stop_file=str(paths.state / ASHA_STATE))


def searcher_for(config: StudyConfig, sampler=None, **where):
    """The study's searcher; ``where``: its Optuna storage, study name and ASHA state file (none:
    in memory). ``sampler`` replaces the study's TPE (``benchmarks/study_efficiency.py`` replays
    random search through the same searcher)."""
    import optuna

    from study.search.searcher import PruningOptunaSearch
    from study.search.space import define_by_run

    equal = config.search.allocation == "equal"
    # equal: multivariate TPE models the group with the rest, so it tunes within the group
    sampler = sampler or optuna.samplers.TPESampler(seed=config.seed, multivariate=equal)
    return PruningOptunaSearch(
        space=define_by_run(config.search), metric=config.tune.metric, mode=config.tune.mode,
        max_epochs=config.train.max_epochs, sampler=sampler, **where,
        equal_groups=list(config.search.groups) if equal else None,
    )


def _optuna_storage(paths: StudyPaths):
    import optuna

    return optuna.storages.RDBStorage(f"sqlite:///{paths.state / 'optuna.db'}")


def make_scheduler(config: StudyConfig, paths: StudyPaths):
    from study.search.scheduler import PersistentASHA

    return PersistentASHA(**asha_settings(config), state_file=str(paths.state / ASHA_STATE))


def asha_settings(config: StudyConfig) -> dict:
    """The study's ASHA: its rungs from the config, one set per group under equal allocation."""
    return dict(time_attr="epoch", metric=config.tune.metric, mode=config.tune.mode,
                max_t=config.train.max_epochs, grace_period=config.tune.grace_period,
                reduction_factor=config.tune.reduction_factor,
                per_group=config.search.allocation == "equal")


def make_logger(config: StudyConfig, paths: StudyPaths, exp_id: str, parent_id: str):
    from study.tracking.trial_logger import MlflowTrialLogger

    fixed = {"max_epochs": config.train.max_epochs, "image_size": config.data.image_size,
             "optimizer": config.train.optimizer, "head": config.train.head, "seed": config.seed}
    return MlflowTrialLogger(
        config.mlflow.tracking_uri, exp_id, parent_id, config.name, config.tune.metric,
        config.train.max_epochs, str(paths.state / "outbox.jsonl"),
        labeller=TrialLabel(config), fixed_params=fixed,
        mode=config.tune.mode,
    )


def finish_study(client, config: StudyConfig, exp_id: str, parent_id: str, paths: StudyPaths) -> StudyOutcome:
    """Leaderboard, best configuration and Optuna plots onto the parent run."""
    import optuna

    from study.tracking import leaderboard
    from study.tracking.expected_best import write_expected_best

    metric, t = config.tune.metric, config.tune
    trials = leaderboard.study_trials(client, exp_id, parent_id, config)
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
    write_expected_best(trials, folder, metric, t.mode)
    client.log_artifacts(parent_id, str(folder), artifact_path="results")
    client.set_tag(parent_id, "trials", str(len(trials)))
    return StudyOutcome(config, exp_id, parent_id, trials, folder)


def public_dict(config: StudyConfig) -> dict:
    """The config as logged to MLflow: a password in the tracking URI is masked."""
    from study.tracking.mlflow_store import redact

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
