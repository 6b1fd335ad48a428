"""Test support (not installed with the project). Real, tiny studies for the tests and the benchmarks: the command line as a subprocess, config
overrides for a study that finishes in seconds, a fresh local Ray instance, and readers of what a
study left behind (MLflow runs, ASHA rungs, Optuna trials), all without mocks."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]   # the repository


def use_test_ray_environment() -> None:
    """Ray as tests and benchmarks run it: CPU-only trials keep the GPU visible (CUDA tests), no
    automatic CSV/JSON/TensorBoard loggers, every worker's log line shown. Called by
    ``tests/conftest.py`` at the session's start and by the benchmarks' ``main``, before Ray starts
    (subprocess drivers inherit it)."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def run_cli(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python run_study.py ARGS`` in ``cwd``; returns the completed process (text output)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "run_study.py"), *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def tiny_overrides(dataset: Path, tmp: Path, *, trials: int = 4, epochs: int = 3, name: str = "t") -> list[str]:
    """``--set`` overrides for a study that finishes in seconds (29-px images, tiny widths)."""
    return [
        f"name={name}", f"data.path={dataset}", "data.simulate=null", "data.image_size=29",
        "search.groups=[trivial, C4, D4]", "search.widths=[0.1]", "search.batch_sizes=[16]",
        "search.lr=[1.0e-3, 1.0e-2]", f"train.max_epochs={epochs}", f"tune.trials={trials}",
        "tune.max_concurrent=2", "tune.grace_period=1", "tune.reduction_factor=2",
        f"tune.storage_path={tmp / 'runs'}", f"mlflow.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
    ]


def tune_tiny_study(dataset: Path, tmp: Path, extra: list[str] = (), *, trials: int = 2,
                    epochs: int = 2) -> str:
    """Run a finished tiny study ``t`` in ``tmp`` (``extra``: more overrides); its tracking URI."""
    tuned = run_cli("tune", *as_sets(tiny_overrides(dataset, tmp, trials=trials, epochs=epochs) + list(extra)),
                    cwd=tmp)
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    return f"sqlite:///{tmp / 'mlflow.db'}"


@contextlib.contextmanager
def local_ray_instance(num_cpus: int):
    """A fresh local Ray instance for a module's tests or a benchmark; yields its GCS address."""
    import ray

    ray.shutdown()
    ray.init(num_cpus=num_cpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def as_sets(overrides: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``."""
    return [a for o in overrides for a in ("--set", o)]


def count_in_mlflow_db(db: Path, sql: str) -> int:
    """A read-only count from an MLflow SQLite file another process may be writing (0 if absent)."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
        try:
            return con.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:
            return 0


TRIALS_WITH_AN_EPOCH_SQL = "select count(distinct run_uuid) from metrics where key='epoch'"


def finished_trials(db: Path, experiment: str) -> int:
    """How many trials of one MLflow experiment carry a final status (read-only, 0 if absent)."""
    sql = ("select count(*) from tags t join runs r on t.run_uuid = r.run_uuid "
           "join experiments e on r.experiment_id = e.experiment_id "
           f"where e.name = '{experiment}' and t.key = 'status' and t.value in ('completed', 'pruned')")
    return count_in_mlflow_db(db, sql)


def study_outcome(folder: Path, name: str) -> dict:
    """What a finished study left behind, in comparable form.

    ``trials``: ``{sampled config: (status, epochs logged)}`` from MLflow (each epoch logged once);
    ``rungs``: ASHA's recorded values per bracket and milestone; ``optuna``: the finished Optuna
    trials as (state, value, epochs with an intermediate value); ``orphans``: Optuna trials an
    interrupted driver proposed but Tune never recorded (marked FAIL on resume); ``running``: never told.
    """
    import json

    import optuna
    from mlflow.tracking import MlflowClient

    from study.tracking.mlflow_store import child_runs

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    parent, = client.search_runs([exp.experiment_id], "tags.role = 'study'")
    trials = {}
    for run in child_runs(client, exp.experiment_id, parent.info.run_id):
        p = run.data.params
        key = (p["model"], p.get("width"), round(float(p["lr"]), 12), round(float(p["weight_decay"]), 12))
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_auc_micro")]
        assert steps == list(range(1, len(steps) + 1)), f"{name}: each epoch logged once, got steps {steps}"
        assert key not in trials, f"{name}: configuration {key} logged twice"
        trials[key] = (run.data.tags["status"], len(steps))
    state = folder / "runs" / f"{name}.state"
    rungs = json.loads((state / "asha.json").read_text())["rungs"]
    values = [{m: sorted(round(v, 9) for v in rec.values()) for m, rec in bracket.items()} for bracket in rungs]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{state / 'optuna.db'}")
    told = [(t.state.name, round(t.value, 9) if t.value is not None else None, sorted(t.intermediate_values))
            for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    return {"trials": trials, "rungs": values, "optuna": sorted(told, key=str),
            "orphans": sum(t.state == optuna.trial.TrialState.FAIL and "interrupted" in t.user_attrs
                           for t in study.trials),
            "running": sum(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)}
