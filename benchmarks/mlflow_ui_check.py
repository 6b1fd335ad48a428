"""Open the runs-table URL a study prints in headless Chromium and check what a user sees.

Starts ``mlflow ui`` on a SQLite store (a study's ``mlflow.db``, or a fresh one holding a parent
run and three trial runs with known ``val_auc_micro``), loads the URL from
``study.tracking.mlflow_store.runs_table_url``, saves a screenshot and the rendered page, and
checks that the table is sorted by the study metric, best run first. Prints what the page shows
and exits 1 if a check fails. Needs the ``chromium`` binary (Debian: ``apt-get install chromium``).

    python benchmarks/mlflow_ui_check.py --out /tmp/ui                 # a fresh store
    python benchmarks/mlflow_ui_check.py --db mlflow.db --experiment lens-study --out /tmp/ui
"""
from __future__ import annotations

import argparse
import html
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEMO_TRIALS = {"C4 w0.12 lr3e-03 wd2e-04 bs64": 0.9695, "D4 w0.25 lr1e-03 wd1e-05 bs32": 0.9500,
               "trivial w0.12 lr3e-04 wd1e-06 bs64": 0.9700}


def demo_store(db: Path, experiment: str, metric: str) -> None:
    """A parent run and three trial runs, as the study logs them (one metric point each)."""
    from mlflow.tracking import MlflowClient

    from study.tracking.mlflow_store import PARENT_TAG

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.create_experiment(experiment)
    parent = client.create_run(exp, run_name=experiment, tags={"role": "study"}).info.run_id
    for name, value in DEMO_TRIALS.items():
        run = client.create_run(exp, run_name=name, tags={PARENT_TAG: parent}).info.run_id
        client.log_metric(run, metric, value, step=1)
        client.set_terminated(run)
    client.set_terminated(parent)


def expected_order(db: Path, experiment: str, metric: str) -> tuple[str, list[str]]:
    """The experiment id and its run names with a ``metric``, best first (MLflow's own sort)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"error: no experiment {experiment!r} in {db}; pass --experiment NAME")
    runs = client.search_runs([exp.experiment_id], order_by=[f"metrics.`{metric}` DESC"], max_results=200)
    return exp.experiment_id, [r.info.run_name for r in runs if metric in r.data.metrics]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(db: Path, port: int, log: Path) -> subprocess.Popen:
    ui = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{db}",
                           "--host", "127.0.0.1", "--port", str(port)],
                          stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return ui
        except OSError:
            if ui.poll() is not None:
                break
            time.sleep(0.5)
    ui.kill()
    raise SystemExit(f"error: mlflow ui did not answer on port {port}; see {log}")


def render(browser: str, url: str, out: Path) -> list[str]:
    """Screenshot and rendered DOM of ``url``; the page's visible text, one string per element."""
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--window-size=1600,1000", "--virtual-time-budget=20000"]
    subprocess.run([*flags, f"--screenshot={out / 'runs_table.png'}", url], capture_output=True, timeout=180)
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    (out / "runs_table.html").write_text(dom)
    text = re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S)
    return [line.strip() for line in html.unescape(re.sub(r"<[^>]+>", "\n", text)).splitlines() if line.strip()]


def check(shown: list[str], runs: list[str], metric: str) -> list[str]:
    """What does not hold on the page (empty: all good)."""
    problems = []
    if f"Sort: {metric}" not in shown:
        problems.append(f"the table is not sorted by {metric} (no 'Sort: {metric}' on the page)")
    positions = [shown.index(name) if name in shown else -1 for name in runs]
    if -1 in positions:
        problems.append(f"runs missing from the table: {[n for n, p in zip(runs, positions) if p < 0]}")
    elif positions != sorted(positions):
        problems.append(f"runs not in {metric} order: page shows {sorted(runs, key=shown.index)}, "
                        f"MLflow's sort gives {runs}")
    return problems


def main(argv: list[str] | None = None) -> int:
    from study.tracking.mlflow_store import runs_table_url

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, help="a study's mlflow.db (default: a fresh demo store)")
    ap.add_argument("--experiment", default="lens-study")
    ap.add_argument("--metric", default="val_auc_micro")
    ap.add_argument("--out", type=Path, required=True, help="folder for runs_table.png / .html")
    args = ap.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("error: no chromium binary; install it (apt-get install chromium)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    db = args.db.resolve() if args.db else args.out / "mlflow.db"
    if args.db is None:
        db.unlink(missing_ok=True)
        demo_store(db, args.experiment, args.metric)
    experiment_id, runs = expected_order(db, args.experiment, args.metric)
    port = free_port()
    ui = start_ui(db, port, args.out / "mlflow_ui.log")
    try:
        url = runs_table_url(f"http://127.0.0.1:{port}", experiment_id, args.metric)
        shown = render(browser, url, args.out)
    finally:
        ui.terminate()
        ui.wait(30)
    print(f"URL: {url}")
    print(f"page shows: {[s for s in shown if s.startswith('Sort:')]} rows in order: "
          f"{sorted([r for r in runs if r in shown], key=shown.index)}")
    print(f"{args.metric} column visible: {args.metric in shown}"
          f" (MLflow keeps chosen columns in the browser, not in the URL)")
    print(f"screenshot: {args.out / 'runs_table.png'}")
    problems = check(shown, runs, args.metric)
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
