"""What the test session shares: one local Ray instance, and the command line called in process.

Tests import these from here (never from ``conftest``, which pytest loads under another module
name, so its globals would exist twice).
"""
from __future__ import annotations

import os
from pathlib import Path

from tests.support.tiny_studies import as_sets


class SessionRay:
    """The session's local Ray instance (2 CPUs), started on first use and again after a test
    that needed a Ray of its own stopped it."""

    address: str | None = None

    def ensure(self) -> str:
        import ray

        if ray.is_initialized():
            address = ray.get_runtime_context().gcs_address
            if address == self.address:
                return address
            ray.shutdown()
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
        self.address = ray.get_runtime_context().gcs_address
        return self.address

    def owns_connection(self) -> bool:
        """True when this process is connected to the session's instance."""
        import ray

        return ray.is_initialized() and ray.get_runtime_context().gcs_address == self.address

    @staticmethod
    def stop() -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()


SESSION_RAY = SessionRay()


def call_main(args: list, capfd) -> tuple[int, str, str]:
    """``run_study.main(args)`` in this process: (exit status, stdout, stderr)."""
    import torch

    from run_study import main

    threads = torch.get_num_threads()   # `best --threads 1` sets it for the whole process
    capfd.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    finally:
        torch.set_num_threads(threads)
    out, err = capfd.readouterr()
    return code, out, err


def tune_in_process(folder: Path, overrides: list[str], *flags: str) -> None:
    """``run_study.py tune [flags] --set ...`` in this process, on the shared Ray, in ``folder``."""
    from run_study import main

    SESSION_RAY.ensure()
    here = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["tune", *flags, *as_sets(overrides)]) == 0
    finally:
        os.chdir(here)
