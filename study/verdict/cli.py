"""The ``verdict`` subcommand (registered by ``study.cli``): see :mod:`study.verdict.run`."""
from __future__ import annotations

import argparse

from study.final.best_cli import add_study_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verdict", help="retrain each group's best configuration with several seeds: which group wins, "
                        "by how much, beyond noise or not",
        description="Retrain the best configuration of every group of a study (and the trivial "
                    "control) from scratch at the full budget with K seeds, as Ray tasks; report test "
                    "AUC, per-class AUC, accuracy and rotated-test AUC as mean +- std, and each group's "
                    "paired difference from the trivial control with a 95%% bootstrap interval.",
    )
    add_study_arguments(p)
    p.add_argument("--seeds", type=int, default=3, help="retrains per group (default 3)")
    p.add_argument("--epochs", type=int, help="epochs per retrain (default: the study's train.max_epochs)")
    p.add_argument("--address", help="Ray cluster to run the retrains on, e.g. 'auto' (default: a local instance)")
    p.add_argument("--data", help="dataset folder (default: the study's data.path)")
    p.add_argument("--out", help="report folder (default: runs/<study>.verdict)")
    p.set_defaults(func=run_verdict_command)


def run_verdict_command(args: argparse.Namespace) -> int:
    from common.errors import UsageError
    from study.final.best import find_study
    from study.final.best_cli import quiet_mlflow
    from study.verdict.run import VerdictOptions, run_verdict

    quiet_mlflow()
    for flag, value in (("--seeds", args.seeds), ("--epochs", args.epochs)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value} must be >= 1")
    record = find_study(args.tracking_uri, study=args.study, run_id=args.run_id)
    options = VerdictOptions(seeds=args.seeds, epochs=args.epochs, address=args.address,
                             out=args.out, data=args.data)
    summary = run_verdict(record, options)
    print("\n" + summary["markdown"])
    print(f"Report: {summary['out']} (verdict.md, verdict.png, CSVs; also on MLflow run "
          f"{summary['run_id']} under verdict/)")
    return 0
