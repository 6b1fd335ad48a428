"""The study's saved view of the MLflow runs table, and the URL that opens it.

MLflow 3.17's UI keeps saved, shareable runs-table views as experiment tags
``mlflow.sharedViewState.<key>`` and opens one with ``#/experiments/<id>/runs?viewStateShareKey=<key>``.
The tag value is an envelope ``{"name", "createdAt", "updatedAt", "state"}`` (times in ms) whose
``state`` is a JSON string (or ``deflate;`` + base64) of the page's search facets (``searchFilter``,
``orderByKey``, ``orderByAsc``, ...) and table/chart state (``selectedColumns``, ``runsHiddenMode``,
``compareRunCharts``, ``compareRunSections``, ...). The UI ignores the view when the URL also
carries a search facet such as ``orderByKey``, so the URL holds the share key alone.
``benchmarks/mlflow_ui_check.py`` opens it in headless Chromium and checks the column headers.
"""
from __future__ import annotations

import hashlib
import json
import re
import time

from study.tracking.mlflow_store import SPEC_PARAMS, STUDY_TAG

VIEW_TAG_PREFIX = "mlflow.sharedViewState."   # MLflow UI: const $="mlflow.sharedViewState."
SHARE_KEY_PARAM = "viewStateShareKey"
STATUS_TAG = "status"        # completed / pruned / failed / running (trial_logger)
EPOCH_METRIC = "epoch"       # logged every epoch: its latest value is the epochs a trial trained
CURVES_SECTION = "Learning curves"


def view_key(study: str) -> str:
    """The share key of a study's view: its name, made URL- and tag-safe (hashed if changed)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", study)
    if safe != study:
        safe += "-" + hashlib.sha1(study.encode()).hexdigest()[:6]
    return f"study-{safe}"


def columns(metric: str) -> list[str]:
    """The runs table's visible columns, keyed as the UI keys them (``metrics.`name```, ...)."""
    return [f"metrics.`{metric}`", *(f"params.`{p}`" for p in SPEC_PARAMS),
            f"tags.`{STATUS_TAG}`", f"metrics.`{EPOCH_METRIC}`"]


def view_state(study: str, metric: str, mode: str = "max") -> dict:
    """The page state of the view: the study's trials, best first, with their settings as columns,
    and a chart section plotting every trial's ``metric`` per epoch (all runs shown, not 10)."""
    curve = {
        "uuid": "learning-curve", "type": "LINE", "runsCountToCompare": 100,
        "metricSectionId": "learning-curves", "deleted": False, "isGenerated": False,
        "displayName": f"{metric} per epoch", "metricKey": metric, "selectedMetricKeys": [metric],
        "lineSmoothness": 0, "xAxisScaleType": "linear", "scaleType": "linear", "range": {},
        "xAxisKey": "step", "selectedXAxisMetricKey": "", "yAxisKey": "metric", "yAxisExpressions": [],
        "ignoreOutliers": False, "useGlobalXaxisKey": False, "useGlobalLineSmoothing": False,
    }
    return {
        "searchFilter": f"tags.{STUDY_TAG} = '{study}' and tags.role = 'trial'",
        "orderByKey": f"metrics.`{metric}`",
        "orderByAsc": mode == "min",
        "selectedColumns": columns(metric),
        "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": [curve],
        "compareRunSections": [{"uuid": "learning-curves", "name": CURVES_SECTION, "display": True,
                                "isReordered": False, "columns": 1, "cardHeight": 420}],
    }


def write_runs_view(client, experiment_id: str, study: str, metric: str, mode: str = "max") -> str:
    """Save (or refresh) the study's view as an experiment tag; return its share key."""
    key = view_key(study)
    now = int(time.time() * 1000)
    envelope = {"name": f"{study}: trials by {metric}", "createdAt": now, "updatedAt": now,
                "state": json.dumps(view_state(study, metric, mode))}
    client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + key, json.dumps(envelope))
    return key


def runs_table_url(base: str, experiment_id: str, study: str, charts: bool = False) -> str:
    """The MLflow UI's runs table of one experiment in the study's saved view (the charts with
    ``charts=True``); :func:`write_runs_view` must have saved it."""
    from urllib.parse import urlencode

    query = {SHARE_KEY_PARAM: view_key(study), **({"compareRunsMode": "CHART"} if charts else {})}
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{urlencode(query)}"
