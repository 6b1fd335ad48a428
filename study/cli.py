"""The ``tune`` subcommand (the default): run or resume a study and print where its results are."""
from __future__ import annotations

import argparse
import sys

from common.errors import UsageError


SHOWN_TRIALS = 15   # rows of the end-of-study leaderboard printed; all are in leaderboard.csv


def register_tune(subparsers) -> None:
    p = subparsers.add_parser(
        "tune", help="run a hyperparameter study (the default command)",
        description="Run a study: Optuna proposes, Ray Tune schedules, ASHA stops weak trials, "
                    "MLflow records every trial. With no options: the embedded laptop default.",
    )
    p.add_argument("--config", help="study YAML (default: configs/local.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set tune.trials=8 (repeatable)")
    p.add_argument("--address", help="Ray cluster to join, e.g. 'auto' on a `ray up` head")
    p.add_argument("--name", help="study name (MLflow experiment and Tune folder); default from config")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default from config: sqlite:///mlflow.db)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="auto",
                   help="continue an interrupted study: finished trials are kept, unfinished ones resume; "
                        "'--resume auto' continues it if Tune has it and starts it otherwise (job scripts)")
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from study.config import load_config
    from study.search.stop_signal import INTERRUPTED_EXIT, StudyInterrupted
    from study.search.tuner import run_study

    overrides = list(args.overrides)
    if args.name:
        overrides.append(f"name={args.name}")
    if args.tracking_uri:
        overrides.append(f"mlflow.tracking_uri={args.tracking_uri}")
    config = load_config(args.config, overrides)
    try:
        outcome = run_study(config, address=args.address, resume=resume_mode(args.resume, config),
                            explicit_name=bool(args.name))
    except StudyInterrupted as stop:
        print(f"{stop}: finished trials and checkpoints are saved; continue it with the same command "
              f"and --name {stop.study} --resume (exit status {INTERRUPTED_EXIT})", file=sys.stderr)
        return INTERRUPTED_EXIT
    print_summary(outcome)
    if len(outcome.trials) and (outcome.trials.status == "failed").all():
        print(f"error: every trial failed; see the error.txt files under {config.tune.storage_path}/"
              f"{outcome.config.name}/", file=sys.stderr)
        return 1
    return 0


def resume_mode(value, config) -> bool:
    """``--resume``: True; ``--resume auto``: True when Tune can restore the study, else a new one."""
    if value in (True, False):
        return value
    if value != "auto":
        raise UsageError(f"--resume takes no value or 'auto', not {value!r}")
    from ray import tune

    from study.search.study_paths import StudyPaths

    return tune.Tuner.can_restore(StudyPaths.of(config).experiment)


def print_summary(outcome) -> None:
    from study.tracking.leaderboard import MATCHED_NOTE, by_group, markdown, matched_order, rung_columns

    config, trials = outcome.config, outcome.trials
    metric, mode = config.tune.metric, config.tune.mode
    rungs = rung_columns(trials)
    shown = matched_order(trials, mode)[["trial", "status", "epochs", *rungs]]
    print(f"\nStudy {config.name!r}: {len(trials)} trials "
          f"({(trials.status == 'completed').sum()} completed, {(trials.status == 'pruned').sum()} pruned "
          f"by ASHA, {(trials.status == 'failed').sum()} failed)\n")
    print(MATCHED_NOTE.format(metric=metric) + "\n")
    print(markdown(shown.head(SHOWN_TRIALS)))
    if len(shown) > SHOWN_TRIALS:
        print(f"... {len(shown) - SHOWN_TRIALS} more in {outcome.artifacts / 'leaderboard.csv'}\n")
    print(markdown(by_group(trials, mode)))
    expected = outcome.artifacts / "expected_best.md"
    if expected.exists():
        print("\n".join(expected.read_text().splitlines()[2:]) + f"\n(plot: {outcome.artifacts / 'expected_best.png'})\n")
    from study.tracking.mlflow_store import redact
    from study.tracking.runs_view import runs_table_url

    uri = redact(config.mlflow.tracking_uri)
    print(f"MLflow: {uri}  experiment {config.experiment!r} (id {outcome.experiment_id}), "
          f"parent run {outcome.parent_run_id}")
    print(f"Results: {outcome.artifacts}  (also on the parent run under results/)")
    if uri.startswith("sqlite"):
        print(f"Open the MLflow UI:   mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")
        base = "http://127.0.0.1:5000"
    else:
        base = uri.rstrip("/")
    print(f"Runs table:           "
          f"{runs_table_url(base, outcome.experiment_id, config.name)}")
    print(f"Learning curves:      {runs_table_url(base, outcome.experiment_id, config.name, charts=True)}")
    print(f"Rerun the best:       python run_study.py best --study {config.name}"
          + ("" if uri == "sqlite:///mlflow.db" else f" --tracking-uri {uri}"))
