"""Open the runs-table URL a study prints in headless Chromium and check what a user sees.

Starts ``mlflow ui`` on a SQLite store (a study's ``mlflow.db``, or a fresh one that the study's
own functions fill: parent run, saved view, five trials logged through its Tune callback, two
pruned early), loads the URL from ``study.tracking.runs_view.runs_table_url`` and its chart
twin, saves ``runs_table.png`` / ``runs_charts.png`` with the rendered pages beside them, and
checks that the table shows only the study's trials, sorted by the study metric (best first),
with the columns val_auc_micro, model, width, lr, weight_decay, batch_size, status and epoch,
and that the chart view opens on the "Learning curves" section. Prints what the pages show and
exits 1 if a check fails. Needs the ``chromium`` binary (Debian: ``apt-get install chromium``).
A ``--db`` from a study older than the saved view gets the view written first (and says so).

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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: run name -> val_auc_micro per epoch; four epochs complete a trial, fewer mean ASHA pruned it
DEMO_TRIALS = {"C4 w0.12 lr3e-03 wd2e-04 bs64": [0.91, 0.95, 0.962, 0.9695],
               "D4 w0.25 lr1e-03 wd1e-05 bs32": [0.88, 0.91, 0.94, 0.9500],
               "trivial w0.12 lr3e-04 wd1e-06 bs64": [0.90, 0.94, 0.96, 0.9700],
               "C4 w0.25 lr1e-04 wd1e-06 bs32": [0.84, 0.89],
               "D4 w0.12 lr1e-04 wd1e-05 bs64": [0.80]}
DEMO_EPOCHS = 4
#: the column headers the study's view must show (the UI groups them: metrics, parameters, tags)
HEADERS = ("val_auc_micro", "model", "width", "lr", "weight_decay", "batch_size", "status", "epoch")
WINDOW = "2200,1000"


@dataclass
class DemoTrial:
    """What the study's MLflow callback reads of a Tune trial."""
    trial_id: str
    config: dict
    last_result: dict = field(default_factory=dict)


def demo_store(db: Path, experiment: str, metric: str) -> None:
    """A study's parent run, its saved runs-table view and five trial runs, written by the study's
    own functions and Tune callback (three trials complete, two pruned early)."""
    from study.config import StudyConfig
    from study.search.tuner import TrialLabel
    from study.tracking.mlflow_store import connect, open_parent_run
    from study.tracking.runs_view import write_runs_view
    from study.tracking.trial_logger import MlflowTrialLogger

    uri = f"sqlite:///{db}"
    client = connect(uri)
    exp, parent, _ = open_parent_run(client, experiment, experiment, resume=False)
    write_runs_view(client, exp, experiment, metric)
    logger = MlflowTrialLogger(uri, exp, parent, experiment, metric, DEMO_EPOCHS, str(db.parent / "outbox.jsonl"),
                               labeller=TrialLabel(StudyConfig()), fixed_params={"max_epochs": DEMO_EPOCHS})
    for number, (name, curve) in enumerate(DEMO_TRIALS.items()):
        model, width, lr, wd, bs = name.split()
        trial = DemoTrial(f"demo{number:05d}", {"model": model, "width": {"w0.12": 0.125, "w0.25": 0.25}[width],
                                                "lr": float(lr[2:]), "weight_decay": float(wd[2:]),
                                                "batch_size": int(bs[2:])})
        logger.on_trial_start(0, [], trial)
        for epoch, value in enumerate(curve, start=1):
            trial.last_result = {"epoch": epoch, metric: value, "train_loss": 1.0 - value}
            logger.on_trial_result(0, [], trial, trial.last_result)
        logger.on_trial_complete(0, [], trial)
    client.set_terminated(parent)


def expected_order(db: Path, experiment: str, study: str, metric: str) -> tuple[str, list[str]]:
    """The experiment id and its study's trial names with a ``metric``, best first (MLflow's sort)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"error: no experiment {experiment!r} in {db}; pass --experiment NAME")
    runs = client.search_runs([exp.experiment_id], f"tags.study = '{study}' and tags.role = 'trial'",
                              order_by=[f"metrics.`{metric}` DESC"], max_results=200)
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


def render(browser: str, url: str, png: Path) -> tuple[list[str], list[str]]:
    """Screenshot (``png``) and rendered DOM (beside it, ``.html``) of ``url``: the page's visible
    text, one string per element, and its runs-table column headers, left to right."""
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--window-size={WINDOW}", "--virtual-time-budget=20000"]
    subprocess.run([*flags, f"--screenshot={png}", url], capture_output=True, timeout=180)
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    png.with_suffix(".html").write_text(dom)
    headers = [html.unescape(h) for h in re.findall(r'data-testid="sort-header-([^"]*)"', dom)]
    text = re.sub(r"<script.*?</script>|<style.*?</style>", "", dom, flags=re.S)
    shown = [line.strip() for line in html.unescape(re.sub(r"<[^>]+>", "\n", text)).splitlines() if line.strip()]
    return shown, headers


def check(shown: list[str], runs: list[str], metric: str, headers: list[str] | None = None,
          expected: tuple[str, ...] = ()) -> list[str]:
    """What does not hold on the page (empty: all good): the sort, the rows' order, the columns."""
    problems = []
    if f"Sort: {metric}" not in shown:
        problems.append(f"the table is not sorted by {metric} (no 'Sort: {metric}' on the page)")
    positions = [shown.index(name) if name in shown else -1 for name in runs]
    if -1 in positions:
        problems.append(f"runs missing from the table: {[n for n, p in zip(runs, positions) if p < 0]}")
    elif positions != sorted(positions):
        problems.append(f"runs not in {metric} order: page shows {sorted(runs, key=shown.index)}, "
                        f"MLflow's sort gives {runs}")
    missing = [h for h in expected if h not in (headers or [])]
    if missing:
        problems.append(f"columns not shown: {missing} (the table's headers: {headers})")
    return problems


def main(argv: list[str] | None = None) -> int:
    from study.tracking.runs_view import VIEW_TAG_PREFIX, runs_table_url, view_key, write_runs_view

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, help="a study's mlflow.db (default: a fresh demo store)")
    ap.add_argument("--experiment", default="lens-study")
    ap.add_argument("--study", help="the study's name (default: the experiment's)")
    ap.add_argument("--metric", default="val_auc_micro")
    ap.add_argument("--out", type=Path, required=True, help="folder for runs_table.png / runs_charts.png")
    args = ap.parse_args(argv)
    study = args.study or args.experiment
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("error: no chromium binary; install it (apt-get install chromium)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    db = args.db.resolve() if args.db else args.out / "mlflow.db"
    if args.db is None:
        db.unlink(missing_ok=True)
        demo_store(db, args.experiment, args.metric)
    experiment_id, runs = expected_order(db, args.experiment, study, args.metric)
    if args.db is not None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{db}")
        if VIEW_TAG_PREFIX + view_key(study) not in client.get_experiment(experiment_id).tags:
            write_runs_view(client, experiment_id, study, args.metric)   # a study from before the view
            print(f"wrote the view {VIEW_TAG_PREFIX}{view_key(study)} (the study predates it)")
    port = free_port()
    ui = start_ui(db, port, args.out / "mlflow_ui.log")
    try:
        base = f"http://127.0.0.1:{port}"
        url = runs_table_url(base, experiment_id, study)
        shown, headers = render(browser, url, args.out / "runs_table.png")
        charts, _ = render(browser, runs_table_url(base, experiment_id, study, charts=True),
                           args.out / "runs_charts.png")
    finally:
        ui.terminate()
        ui.wait(30)
    print(f"URL: {url}")
    print(f"page shows: {[s for s in shown if s.startswith('Sort:')]} rows in order: "
          f"{sorted([r for r in runs if r in shown], key=shown.index)}")
    print(f"column headers: {headers}")
    print(f"chart section: {[s for s in charts if s.startswith(('Learning curves', args.metric))]}")
    print(f"screenshots: {args.out / 'runs_table.png'} {args.out / 'runs_charts.png'}")
    problems = check(shown, runs, args.metric, headers, (args.metric, *HEADERS[1:]))
    if "Learning curves" not in charts:
        problems.append("the chart view has no 'Learning curves' section")
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
