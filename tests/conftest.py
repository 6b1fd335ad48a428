"""Shared, real fixtures, each made once per test session and copied where a test changes it.

- ``tiny_dataset``: a small three-class simulated dataset (small64 preset).
- ``shared_ray``: one local Ray instance (2 CPUs) for every test that neither kills a node nor
  needs a cluster of its own; in-process studies run on it (``start_ray`` reuses a connected
  Ray) and subprocess drivers join it with ``--address``. A test that starts its own Ray takes
  ``own_ray`` instead, which shuts the shared one down; the next ``shared_ray`` starts it again.
- ``c4_study``: a copy of one finished tiny C4 study (MLflow store and Tune folder), for the
  tests that run ``best``, ``evaluate`` or ``verdict`` on a study.
- ``run_main``: the command line called in this process (exit status, stdout, stderr).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.tiny_studies import tiny_overrides, use_test_ray_environment
from tests.support.sessions import SESSION_RAY, call_main, tune_in_process

# The finished study every `best`/`verdict`/`evaluate` test starts from: 2 C4 trials of 2 epochs,
# one at a time, on 29-px images; grace period = epoch budget, so ASHA stops neither (each trial
# has a full curve for the retrains to repeat).
C4_STUDY = ["search.groups=[C4]", "tune.max_concurrent=1", "tune.grace_period=2"]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small three-class simulated dataset (small64 preset), made once per test session."""
    from data_io import simulate_dataset

    out = tmp_path_factory.mktemp("data") / "tiny"
    simulate_dataset("small64", 24, out, seed=3, progress=False, workers=1)
    return out


@pytest.fixture
def shared_ray() -> str:
    """The session's local Ray instance (2 CPUs); its GCS address for ``--address``."""
    return SESSION_RAY.ensure()


@pytest.fixture
def own_ray():
    """For a test that starts a Ray of its own (a ``Cluster``, a fresh local instance)."""
    SESSION_RAY.stop()
    yield
    SESSION_RAY.stop()


def pytest_configure(config):
    use_test_ray_environment()   # before any test starts Ray (subprocess drivers inherit it)


def pytest_sessionfinish(session, exitstatus):
    SESSION_RAY.stop()


@pytest.fixture
def run_main(capfd, monkeypatch, tmp_path):
    """Call the command line in this process, in ``cwd`` (default: the test's tmp_path)."""
    def run(*args, cwd: Path | None = None) -> tuple[int, str, str]:
        monkeypatch.chdir(cwd or tmp_path)
        return call_main(list(args), capfd)
    return run


@pytest.fixture(scope="session")
def finished_c4_study(tiny_dataset, tmp_path_factory) -> Path:
    """A finished tiny C4 study ``t`` (``mlflow.db`` and ``runs/`` in one folder), made once."""
    folder = tmp_path_factory.mktemp("c4study")
    tune_in_process(folder, tiny_overrides(tiny_dataset, folder, trials=2, epochs=2) + C4_STUDY)
    return folder


@pytest.fixture
def c4_study(finished_c4_study, tmp_path) -> Path:
    """A copy of the finished C4 study for one test to change (run ``best``, ``verdict`` on it).

    The MLflow store holds absolute artifact paths into the original folder; the copy reads them
    there and writes its own runs' artifacts under new run ids, so copies never collide."""
    return Path(shutil.copytree(finished_c4_study, tmp_path / "study"))
