"""The MLflow store of a study: connecting (with credentials masked), the study's parent run,
its trials' child runs, and the tags that tie them together (no Ray Tune here)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from common.errors import UsageError

PARENT_TAG = "mlflow.parentRunId"
STUDY_TAG = "study"
TRIAL_TAG = "trial_id"
SPEC_PARAMS = ("model", "width", "lr", "weight_decay", "batch_size")


def redact(uri: str) -> str:
    """``uri`` without a password or token in its user-info part: ``http://user:***@host``
    (a user-info without a colon is taken for a token: ``http://***@host``)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    user, _, host = parts.netloc.rpartition("@")
    name, colon, _ = user.partition(":")
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}" if colon else f"***@{host}"))


def check_delivered(outbox: Path, tracking_uri: str, name: str) -> None:
    """After the study: a left-over outbox means the server is still down; say how to deliver it."""
    outbox = Path(outbox)
    if outbox.exists():
        writes = sum(1 for line in outbox.read_text().splitlines() if line.strip())
        raise UsageError(
            f"MLflow tracking server {redact(tracking_uri)} is unreachable: training finished but {writes} "
            f"trial log writes wait in {outbox}; when the server is back, run the same command with "
            f"--name {name} --resume to deliver them and write the leaderboard"
        )


def connect(tracking_uri: str):
    """An ``MlflowClient`` for ``tracking_uri``, checked to answer; otherwise a :class:`UsageError`."""
    from mlflow.tracking import MlflowClient

    if redact(tracking_uri) != tracking_uri:  # MLflow's "View run at <uri>" lines would show the password
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    if tracking_uri.startswith("http"):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    for name in ("mlflow.store.db.utils", "alembic"):  # "Creating initial MLflow database tables"
        logging.getLogger(name).setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as err:
        raise UsageError(
            f"MLflow tracking server {redact(tracking_uri)} is unreachable ({type(err).__name__}); "
            "start it (mlflow server --host 127.0.0.1 --port 5000) or fix --tracking-uri / mlflow.tracking_uri"
        )
    return client


def open_parent_run(client, experiment: str, study: str, resume: bool) -> tuple[str, str, bool]:
    """Return ``(experiment_id, parent_run_id, reused)`` for the study, reusing it on resume."""
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    if resume:
        found = client.search_runs(
            [exp_id], f"tags.{STUDY_TAG} = '{study}' and tags.role = 'study'",
            order_by=["attributes.start_time DESC"], max_results=1,
        )
        if found:
            client.update_run(found[0].info.run_id, status="RUNNING")
            return exp_id, found[0].info.run_id, True
    run = client.create_run(exp_id, run_name=study, tags={STUDY_TAG: study, "role": "study"})
    return exp_id, run.info.run_id, False


def child_runs(client, experiment_id: str, parent_run_id: str) -> list:
    """All trial runs of a study (any status), oldest first."""
    return client.search_runs(
        [experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"], max_results=5000,
    )

