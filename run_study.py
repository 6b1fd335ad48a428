#!/usr/bin/env python
"""One command line for the whole project.

    python run_study.py                  # the embedded default study (= tune)
    python run_study.py tune --config configs/local.yaml --set tune.trials=8
    python run_study.py best --study NAME
    python run_study.py evaluate --model models:/NAME@best --data data/other
    python run_study.py simulate --preset model_i --per-class 100 --out data/mi
    python run_study.py ingest SRC --out data/real
    python run_study.py inspect data/mi
    python run_study.py models

Bad input exits with status 2 and one line on stderr; see ``common.errors.UsageError``.
Each subcommand is added by one ``register_...(subparsers)`` function of the package that owns it,
all listed in :func:`subcommands`; heavy imports (torch, ray, mlflow) stay inside the handlers so
``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import sys

from common.errors import UsageError

DEFAULT_COMMAND = "tune"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"error: {self.prog}: {message} (see --help)\n")


def subcommands() -> dict:
    """Every subcommand and the function that adds it to the parser, in ``--help``'s order."""
    from data_io import cli as data_cli
    from lensnets import cli as model_cli
    from study import cli as study_cli
    from study.final import best_cli
    from study.verdict import cli as verdict_cli

    return {"tune": study_cli.register_tune, "best": best_cli.register_best,
            "evaluate": best_cli.register_evaluate, "verdict": verdict_cli.register,
            "simulate": data_cli.register_simulate, "ingest": data_cli.register_ingest,
            "inspect": data_cli.register_inspect, "models": model_cli.register}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="run_study.py",
        description="Hyperparameter study for E(2)-equivariant dark-matter lens classifiers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for register in subcommands().values():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or (argv[0] not in subcommands() and argv[0] not in ("-h", "--help")):
        argv.insert(0, DEFAULT_COMMAND)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
