"""Shared fixtures: a tiny simulated dataset, made once per session (helpers: ``common.tiny_studies``)."""
from __future__ import annotations

from pathlib import Path

import pytest

import common.tiny_studies  # noqa: F401  (sets the Ray environment every test study runs in)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small three-class simulated dataset (small64 preset), made once per test session."""
    from data_io import simulate_dataset

    out = tmp_path_factory.mktemp("data") / "tiny"
    simulate_dataset("small64", 24, out, seed=3, progress=False, workers=1)
    return out
