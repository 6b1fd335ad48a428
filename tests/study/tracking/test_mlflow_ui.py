"""The runs-table URL the study prints, opened in headless Chromium against a real `mlflow ui`:
sorted by the study metric, best run first (benchmarks/mlflow_ui_check.py; screenshot kept)."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from common.tiny_studies import ROOT


@pytest.mark.slow
def test_the_printed_url_opens_the_runs_table_sorted_by_the_study_metric(tmp_path):
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("no chromium binary (apt-get install chromium; .ci/run installs it)")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "mlflow_ui_check.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert "page shows: ['Sort: val_auc_micro']" in out.stdout
    assert ("rows in order: ['trivial w0.12 lr3e-04 wd1e-06 bs64', 'C4 w0.12 lr3e-03 wd2e-04 bs64', "
            "'D4 w0.25 lr1e-03 wd1e-05 bs32']") in out.stdout
    assert (tmp_path / "runs_table.png").stat().st_size > 10_000


def test_check_fails_when_the_page_is_not_sorted():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mlflow_ui_check import check

    runs = ["best", "middle", "worst"]
    assert check(["Sort: val_auc_micro", *runs], runs, "val_auc_micro") == []
    (problem,) = check(["Sort: val_auc_micro", "middle", "best", "worst"], runs, "val_auc_micro")
    assert "not in val_auc_micro order" in problem
    assert len(check(["Sort: Created", "best"], runs, "val_auc_micro")) == 2
