"""The ``best`` and ``evaluate`` subcommands (``run_study.py`` registers them with the others)."""
from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_URI = "sqlite:///mlflow.db"


def add_study_arguments(p) -> None:
    """``--study NAME`` or ``--run-id ID`` (one of them), and ``--tracking-uri``."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", help="study name (as printed by `tune`)")
    which.add_argument("--run-id", help="the study's parent MLflow run id")
    p.add_argument("--tracking-uri", default=DEFAULT_URI, help=f"MLflow tracking URI (default {DEFAULT_URI})")


def register_best(subparsers) -> None:
    p = subparsers.add_parser(
        "best", help="rerun a study's best configuration as a standalone job (final model, test metrics)",
        description="Read the best finished trial of a study from MLflow, retrain it from scratch "
                    "with the same engine (plain PyTorch, no Tune), score it once on the test split, "
                    "log metrics, plots and the model to a new MLflow run and register the model "
                    "as NAME@best.",
    )
    add_study_arguments(p)
    p.add_argument("--epochs", type=int, help="train this many epochs (default: the study's train.max_epochs)")
    p.add_argument("--train-on-train-val", action="store_true",
                   help="train on train + val (the validation numbers are then not held out)")
    p.add_argument("--device", help="torch device, e.g. cuda or cpu (default: cuda if available)")
    p.add_argument("--data", help="dataset folder (default: the study's data.path; a warning "
                                  "names each difference of its domain from the study's data)")
    p.add_argument("--no-control", action="store_true",
                   help="skip the trivial-group control used for the rotation-robustness comparison")
    p.add_argument("--threads", type=int, help="torch CPU threads (1 repeats a 1-CPU trial bit for bit)")
    p.add_argument("--out", help="report folder (default: runs/<study>.best)")
    p.set_defaults(func=run_best_command)


def register_evaluate(subparsers) -> None:
    e = subparsers.add_parser(
        "evaluate", help="score a saved or registered model on a dataset (metrics, robustness, plots)",
        description="Score a model (models:/NAME@best, runs:/RUN_ID/model, or a model_weights.pt "
                    "file) on one split of any dataset in the project's format. The dataset's raw "
                    "image shape, pixel scale, field of view and preset or source are checked "
                    "against the model's training data first: one warning line per difference.",
    )
    e.add_argument("--model", required=True, help="models:/NAME@ALIAS, runs:/RUN_ID/model, or a file")
    e.add_argument("--data", required=True, help="dataset folder (simulated or ingested)")
    e.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to score (default test)")
    e.add_argument("--json", action="store_true", help="print the metrics as one JSON object on stdout")
    e.add_argument("--tracking-uri", default=DEFAULT_URI, help=f"MLflow tracking URI (default {DEFAULT_URI})")
    e.add_argument("--device", help="torch device (default: cuda if available)")
    e.add_argument("--seed", type=int, default=0, help="seed of the random rotation angles (default 0)")
    e.add_argument("--match-field", action="store_true",
                   help="resample the images to the model's field of view and raw image shape first "
                        "(needs both pixel scales: simulated sets have one, ingested ones take "
                        "`ingest --pixel-scale`)")
    e.add_argument("--out", help="folder for metrics.json and plots (default: runs/evaluate-<data>-<split>)")
    e.set_defaults(func=run_evaluate_command)


def quiet_mlflow() -> None:
    """No artifact-download progress bars: an error stays the one line on stderr."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def run_best_command(args: argparse.Namespace) -> int:
    from common.errors import UsageError
    from study.final.best import RerunOptions, find_study
    from study.final.best_job import run_best

    quiet_mlflow()
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs {args.epochs} must be >= 1")
    record = find_study(args.tracking_uri, study=args.study, run_id=args.run_id)
    options = RerunOptions(epochs=args.epochs, train_on_train_val=args.train_on_train_val,
                           device=args.device, data=args.data, control=not args.no_control,
                           out=args.out, threads=args.threads)
    summary = run_best(record, options)
    print_best(summary)
    return 0


def print_best(summary: dict) -> None:
    from study.final.evaluate import summary_table

    print(f"\nTest metrics of the best configuration ({summary['spec']['model']}):")
    print(summary_table(summary["test"], summary.get("control")))
    print(f"Model: {summary['model']['registered']} (version {summary['model']['version']}), "
          f"{summary['model']['run_model']}")
    print(f"Report: {summary['out']} (also on MLflow run {summary['run_id']} under report/)")
    print(f"Score it elsewhere: python run_study.py evaluate --model {summary['model']['registered']} "
          "--data DATASET")


def run_evaluate_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from study.final.evaluate import evaluate_dataset, summary_table
    from study.final.weights import load_model

    quiet_mlflow()
    out = args.out or str(Path("runs") / f"evaluate-{Path(args.data).name}-{args.split}")
    stdout = sys.stdout
    if args.json:
        sys.stdout = sys.stderr   # anything printed while loading/scoring stays off stdout
    try:
        predictor = load_model(args.model, args.tracking_uri, args.device)
        result = evaluate_dataset(predictor, args.data, args.split, Path(out), seed=args.seed,
                                  match_field=args.match_field)
    finally:
        sys.stdout = stdout
    if args.json:
        print(json.dumps(result, default=float))
    else:
        print(f"{args.model} on {args.data} ({args.split}, {result['n_images']} images):")
        print(summary_table(result))
        print(f"Plots and metrics.json: {out}")
    return 0
