"""The runs-table URL the study prints, opened in headless Chromium against a real `mlflow ui`: the
study's saved view (its trials, best first, with metric, parameter, status and epoch columns, and
a learning-curve chart section), checked in the installed MLflow UI's own code and in the browser
(benchmarks/mlflow_ui_check.py; screenshots kept)."""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_the_printed_url_opens_the_study_view_with_its_columns_sorted_by_the_metric(tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("no chromium binary (apt-get install chromium; .ci/run installs it)")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mlflow_ui_check.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert "runs?viewStateShareKey=study-lens-study\n" in out.stdout
    assert "page shows: ['Sort: val_auc_micro']" in out.stdout
    assert ("rows in order: ['trivial w0.12 lr3e-04 wd1e-06 bs64', 'C4 w0.12 lr3e-03 wd2e-04 bs64', "
            "'D4 w0.25 lr1e-03 wd1e-05 bs32', 'C4 w0.25 lr1e-04 wd1e-06 bs32', 'D4 w0.12 lr1e-04 wd1e-05 bs64']"
            ) in out.stdout
    headers = ast.literal_eval(re.search(r"column headers: (\[.*\])", out.stdout).group(1))
    for column in ("val_auc_micro", "model", "width", "lr", "weight_decay", "batch_size", "status", "epoch"):
        assert column in headers, headers
    assert "chart section: ['Learning curves', 'val_auc_micro']" in out.stdout
    for png in ("runs_table.png", "runs_charts.png"):
        assert (tmp_path / png).stat().st_size > 10_000


def test_check_fails_when_the_page_is_not_sorted_or_misses_a_column():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mlflow_ui_check import check

    runs = ["best", "middle", "worst"]
    assert check(["Sort: val_auc_micro", *runs], runs, "val_auc_micro") == []
    (problem,) = check(["Sort: val_auc_micro", "middle", "best", "worst"], runs, "val_auc_micro")
    assert "not in val_auc_micro order" in problem
    assert len(check(["Sort: Created", "best"], runs, "val_auc_micro")) == 2
    (problem,) = check(["Sort: val_auc_micro", *runs], runs, "val_auc_micro", ["Run Name", "lr"], ("lr", "status"))
    assert problem.startswith("columns not shown: ['status']")


def _ui_code() -> str:
    import mlflow

    build = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    return "".join(p.read_text(errors="replace") for p in build.glob("*.js"))


def test_the_installed_mlflow_ui_reads_the_view_the_study_writes(tmp_path):
    """MLflow's UI code (3.17) names the tag prefix and URL parameter, the envelope it parses, and
    the page-state keys it takes from a view; a new MLflow that changes them fails here first."""
    from mlflow.tracking import MlflowClient

    from study.tracking.runs_view import (SHARE_KEY_PARAM, VIEW_TAG_PREFIX, runs_table_url, view_key,
                                          view_state, write_runs_view)

    code = _ui_code()
    assert f'"{VIEW_TAG_PREFIX}"' in code and f'"{SHARE_KEY_PARAM}"' in code
    assert "expected an object with a string `name`, number `createdAt`, and string `state`" in code
    search_keys = json.loads(re.search(r'\["searchFilter","orderByKey"[^\]]*\]', code).group(0))
    ui_keys = json.loads(re.search(r'\["selectedColumns","columnOrder"[^\]]*\]', code).group(0))
    state = view_state("lens-study", "val_auc_micro")
    assert set(state) <= set(search_keys) | set(ui_keys), set(state) - set(search_keys) - set(ui_keys)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("lens-study")
    key = write_runs_view(client, exp, "lens-study", "val_auc_micro")
    write_runs_view(client, exp, "lens-study", "val_auc_micro")   # a resumed study rewrites it, once
    tags = {k: v for k, v in client.get_experiment(exp).tags.items() if k.startswith(VIEW_TAG_PREFIX)}
    assert list(tags) == [VIEW_TAG_PREFIX + key]
    envelope = json.loads(tags[VIEW_TAG_PREFIX + key])
    assert isinstance(envelope["name"], str) and isinstance(envelope["createdAt"], int)
    saved = json.loads(envelope["state"])
    assert saved["orderByKey"] == "metrics.`val_auc_micro`" and saved["orderByAsc"] is False
    assert saved["selectedColumns"] == ["metrics.`val_auc_micro`", "params.`model`", "params.`width`",
                                        "params.`lr`", "params.`weight_decay`", "params.`batch_size`",
                                        "tags.`status`", "metrics.`epoch`"]
    assert saved["compareRunCharts"][0]["metricKey"] == "val_auc_micro" and saved["runsHiddenMode"] == "SHOW_ALL"
    assert view_state("s", "val_loss", "min")["orderByAsc"] is True

    url = runs_table_url("http://127.0.0.1:5000/", exp, "lens-study")
    assert url == f"http://127.0.0.1:5000/#/experiments/{exp}/runs?viewStateShareKey=study-lens-study"
    assert "orderByKey" not in url   # with a search facet in the URL, the UI skips the saved view
    assert view_key("lens study #2") != view_key("lens study #3")
    assert re.fullmatch(r"study-[A-Za-z0-9_.-]+", view_key("lens study #2"))
