#!/usr/bin/env python
"""Where the default study's wall time goes, measured in one run on this machine.

Runs ``python run_study.py`` as a new user would (an empty folder, the embedded default config,
the dataset simulated on first run) and times it, then splits the time with what the study
itself logged and two separate measurements made in the same run:

- simulation: ``simulate_dataset`` with the default preset and size, timed on its own;
- Ray start: a fresh local instance started and stopped, timed on its own;
- per trial-epoch, from MLflow (``time_train_s``, ``time_bn_s``, ``time_val_s``): gradient
  steps, precise batch norm, validation - summed over all trial-epochs in core-slot seconds and
  divided by ``tune.max_concurrent`` for their share of the wall time;
- the rest: Tune's trial start-up, checkpoints and experiment snapshots, scheduling, idle
  slots, and the end-of-study tables and plots.

    python benchmarks/study_time.py            # about 4-5 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PHASES = ("time_train_s", "time_bn_s", "time_val_s")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ray_start_seconds() -> float:
    code = ("import time, ray; t = time.perf_counter(); "
            "ray.init(address='local', include_dashboard=False, configure_logging=False); "
            "print(time.perf_counter() - t); ray.shutdown()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def logged_phases(db: Path, experiment: str) -> tuple[int, dict[str, float]]:
    """Trial-epochs and summed per-epoch seconds of each phase, read from the study's MLflow."""
    from mlflow.tracking import MlflowClient

    from study.tracking.mlflow_store import child_runs

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    parent, = client.search_runs([exp.experiment_id], "tags.role = 'study'")
    sums, epochs = dict.fromkeys(PHASES, 0.0), 0
    for run in child_runs(client, exp.experiment_id, parent.info.run_id):
        epochs += len(client.get_metric_history(run.info.run_id, "epoch"))
        for phase in PHASES:
            sums[phase] += sum(m.value for m in client.get_metric_history(run.info.run_id, phase))
    return epochs, sums


def main(argv=None) -> int:
    from data_io import simulate_dataset
    from study.config import load_config

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.parse_args(argv)
    config = load_config(None, [])
    sim = config.data.simulate
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "study"
        folder.mkdir()
        total = timed(lambda: subprocess.run([sys.executable, str(ROOT / "run_study.py")], cwd=folder,
                                             check=True, capture_output=True))
        epochs, sums = logged_phases(folder / "mlflow.db", config.experiment)
        simulation = timed(lambda: simulate_dataset(sim.preset, sim.per_class, Path(tmp) / "sim",
                                                    seed=config.seed, progress=False))
    ray_start = ray_start_seconds()
    slots = config.tune.max_concurrent
    rows = [("simulation (timed on its own)", simulation), ("Ray start (timed on its own)", ray_start)]
    rows += [(f"{name} ({sums[key]:.0f} slot-s / {slots} slots)", sums[key] / slots)
             for key, name in zip(PHASES, ("gradient steps", "precise batch norm", "validation"))]
    rest = total - sum(seconds for _, seconds in rows)
    print(f"default study: {total:.0f} s wall, {epochs} trial-epochs, {slots} trials at a time")
    print("| part | seconds | share |\n|---|---|---|")
    for name, seconds in rows + [("the rest: trial start-up, checkpoints, snapshots, idle slots, "
                                  "final tables", rest)]:
        print(f"| {name} | {seconds:.0f} | {seconds / total:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
