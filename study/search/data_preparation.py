"""The study's dataset: opened from ``data.path``, or simulated there first when it is absent and
``data.simulate`` names a preset (the laptop default's first run)."""
from __future__ import annotations

from pathlib import Path

from common.errors import UsageError
from study.config import StudyConfig


def ensure_dataset(config: StudyConfig):
    """Open the configured dataset, simulating it first when it is absent and a preset is set."""
    from data_io import open_dataset, simulate_dataset

    path = Path(config.data.path)
    if not path.exists():
        sim = config.data.simulate
        if sim is None:
            raise UsageError(
                f"dataset {path} does not exist; make it with `run_study.py simulate` or `ingest`, "
                "or set data.path to an existing dataset"
            )
        print(f"Simulating {sim.per_class} images per class ({sim.preset}) into {path} ...")
        simulate_dataset(sim.preset, sim.per_class, path, seed=config.seed)
    return open_dataset(path)
