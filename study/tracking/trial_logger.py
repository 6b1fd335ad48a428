"""The Tune callback that logs every trial as a nested MLflow child run, through an outbox.

Everything is written from the study driver (a Tune callback runs in the driver process), so a
SQLite backend is safe. Child runs are found again by their ``trial_id`` tag, and metrics are
logged with ``step = epoch`` only for epochs not logged yet, so a resumed study or a trial
restored from a checkpoint never creates a second run or a duplicate point.

Writes go through an outbox: if the tracking server is unreachable, operations are kept in
order (in memory and in ``outbox.jsonl`` beside the study state) and delivered on the next
callback once the server answers again; nothing is silently dropped.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ray.tune import Callback

from study.tracking.mlflow_store import PARENT_TAG, SPEC_PARAMS, STUDY_TAG, TRIAL_TAG

RETRY_S = 5.0   # after a failed delivery, queue without trying again for this long (seconds)
FINAL_STATUSES = ("completed", "pruned")   # a run with one of these is closed for good


def numeric_metrics(result: dict) -> dict[str, float]:
    """The per-epoch numbers of a Tune result worth plotting (train/val metrics and epoch)."""
    return {
        k: float(v) for k, v in result.items()
        if (k.startswith(("val_", "train_", "memory_", "time_")) or k in ("epoch", "micro_batch"))
        and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


class MlflowTrialLogger(Callback):
    """Tune callback (driver side) logging every trial as a nested child run of the study."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, study: str,
                 metric: str, max_epochs: int, outbox_path: str, labeller=None, fixed_params=None,
                 mode: str = "max"):
        self.tracking_uri, self.experiment_id = tracking_uri, experiment_id
        self.parent_run_id, self.study, self.metric = parent_run_id, study, metric
        self.max_epochs, self.outbox_path = max_epochs, outbox_path
        self.sign = 1.0 if mode == "max" else -1.0   # best = max of sign * metric
        self.labeller = labeller or (lambda config: config.get("model", "trial"))
        self.fixed_params = dict(fixed_params or {})
        self._client = None
        self._runs: dict[str, str] = {}       # trial id -> run id
        self._logged: dict[str, int] = {}     # trial id -> last epoch logged
        self._final: set[str] = set()         # trial ids whose run carries its final status
        self._best: dict[str, float] = {}
        self._nodes: dict[str, list[str]] = {}
        self._outbox: list[dict] = self._read_outbox()

    def __getstate__(self):  # Tune pickles callbacks into the experiment state
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def __setstate__(self, state):  # on --resume: the outbox on disk, not the one pickled at the start
        self.__dict__.update(state)
        self._outbox = self._read_outbox()

    def use_tracking_uri(self, tracking_uri: str) -> None:
        """On --resume: log to this run's tracking URI, not the one pickled at the study's start (a
        requeued Slurm job's MLflow server can be on another node or port)."""
        self.tracking_uri, self._client = tracking_uri, None

    # ------------------------------------------------------------------ Tune hooks

    def on_trial_start(self, iteration, trials, trial, **info):
        self._send({"op": "start", "trial": trial.trial_id, "config": _plain(trial.config)})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        self._send({"op": "start", "trial": trial.trial_id, "config": _plain(trial.config)})
        self._send({"op": "epoch", "trial": trial.trial_id, "epoch": epoch,
                    "metrics": numeric_metrics(result), "time": int(time.time() * 1000),
                    "node": f"{result.get('node_ip', '')}/{str(result.get('node_id', ''))[:8]}"})

    def on_trial_complete(self, iteration, trials, trial, **info):
        epoch = int(trial.last_result.get("epoch", 0)) if trial.last_result else 0
        status = "completed" if epoch >= self.max_epochs else "pruned"
        self._send({"op": "end", "trial": trial.trial_id, "status": status, "run_status": "FINISHED"})

    def on_trial_error(self, iteration, trials, trial, **info):
        self._send({"op": "end", "trial": trial.trial_id, "status": "failed", "run_status": "FAILED",
                    "reason": failure_reason(trial)})

    def on_experiment_end(self, trials, **info):
        self.flush()
        if self._outbox:
            print(f"warning: {len(self._outbox)} MLflow writes could not be delivered; they are kept in "
                  f"{self.outbox_path} and are sent when you rerun with --name {self.study} --resume")

    # ------------------------------------------------------------------ outbox

    def _send(self, op: dict) -> None:
        self._outbox.append(op)
        if time.monotonic() < getattr(self, "_retry_at", 0.0):
            self._write_outbox(None)  # the server was down a moment ago: do not stall Tune's loop again
            return
        self.flush()

    def flush(self) -> None:
        """Deliver queued operations in order; on a connection failure keep the rest on disk."""
        while self._outbox:
            try:
                self._apply(self._outbox[0])
            except Exception as err:  # unreachable server, locked database, ...
                self._retry_at = time.monotonic() + RETRY_S
                self._write_outbox(err)
                return
            self._outbox.pop(0)
        self._write_outbox(None)

    def _write_outbox(self, err) -> None:
        path = Path(self.outbox_path)
        if not self._outbox:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(op) + "\n" for op in self._outbox))
        if err is not None and not getattr(self, "_warned", False):
            self._warned = True
            print(f"warning: MLflow unreachable ({type(err).__name__}); buffering trial logs in {path}")

    def _read_outbox(self) -> list[dict]:
        path = Path(self.outbox_path)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # ------------------------------------------------------------------ applying operations

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _apply(self, op: dict) -> None:
        if op["op"] == "start":
            self._run_id(op["trial"], op["config"])
        elif op["op"] == "epoch":
            self._log_epoch(op)
        elif op["op"] == "end":
            run_id = self._run_id(op["trial"], None)
            if run_id and op["trial"] not in self._final:   # a restored trial ends once, not twice
                self.client.set_tag(run_id, "status", op["status"])
                if op.get("reason"):
                    self.client.set_tag(run_id, "failure_reason", op["reason"])
                self.client.set_terminated(run_id, status=op["run_status"])
                if op["status"] in FINAL_STATUSES:
                    self._final.add(op["trial"])

    def _run_id(self, trial_id: str, config: dict | None) -> str | None:
        if trial_id in self._runs:
            return self._runs[trial_id]
        found = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and tags.{TRIAL_TAG} = '{trial_id}'",
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            if config is not None and not found[0].data.params:  # created, then the server went away
                self._log_params(run_id, config)
            history = self.client.get_metric_history(run_id, "epoch")
            self._logged[trial_id] = int(max((m.value for m in history), default=0))
            if found[0].data.tags.get("status") in FINAL_STATUSES:
                self._final.add(trial_id)
            self._best[trial_id] = self.sign * found[0].data.metrics.get(f"best_{self.metric}", -self.sign * math.inf)
        elif config is not None:
            run_id = self._create_run(trial_id, config)
        else:
            return None
        self._runs[trial_id] = run_id
        return run_id

    def _create_run(self, trial_id: str, config: dict) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=self.labeller(config),
            tags={PARENT_TAG: self.parent_run_id, STUDY_TAG: self.study, TRIAL_TAG: trial_id,
                  "role": "trial", "status": "running"},
        )
        self._log_params(run.info.run_id, config)
        self._logged[trial_id] = 0
        return run.info.run_id

    def _log_params(self, run_id: str, config: dict) -> None:
        from mlflow.entities import Param

        params = {**self.fixed_params, **{k: config[k] for k in SPEC_PARAMS if k in config}}
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def _log_epoch(self, op: dict) -> None:
        from mlflow.entities import Metric

        trial_id, epoch = op["trial"], op["epoch"]
        run_id = self._run_id(trial_id, None)
        if run_id is None or epoch <= self._logged.get(trial_id, 0) or trial_id in self._final:
            return  # already logged (a trial restored from a checkpoint repeats no epoch here)
        metrics = dict(op["metrics"])
        value = metrics.get(self.metric)
        if value is not None and not math.isnan(value):
            self._best[trial_id] = max(self._best.get(trial_id, -math.inf), self.sign * value)
        if self._best.get(trial_id, -math.inf) > -math.inf:
            metrics[f"best_{self.metric}"] = self.sign * self._best[trial_id]
        now = op.get("time", int(time.time() * 1000))  # fixed when queued: a resent batch is a no-op
        batch = [Metric(k, v, now, epoch) for k, v in metrics.items()]
        self.client.log_batch(run_id, metrics=batch)
        if op.get("node"):
            self.client.set_tag(run_id, "node", op["node"])
            nodes = self._nodes.setdefault(trial_id, [])
            if op["node"] not in nodes:
                nodes.append(op["node"])
                self.client.set_tag(run_id, "nodes", ",".join(nodes))
        self._logged[trial_id] = epoch


def failure_reason(trial) -> str:
    """The last line of a failed trial's error (``Type: message``, module path dropped)."""
    try:   # Tune writes error.txt locally first (trial.error_file) and syncs it to storage later
        path = trial.error_file
        text = Path(path).read_text() if path and Path(path).exists() else (trial.get_error() or "")
    except Exception:   # the error file is not readable (storage gone): no reason rather than a crash
        text = ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return "unknown error (see the trial's error.txt)"
    kind, colon, message = lines[-1].partition(": ")
    return (f"{kind.rsplit('.', 1)[-1]}: {message}" if colon else lines[-1])[:500]


def _plain(config: dict) -> dict:
    return {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))}
