"""Subcommands of run_study.py contributed by this package."""


def register(subparsers) -> None:
    """Add this package's subcommands to run_study.py's parser."""
