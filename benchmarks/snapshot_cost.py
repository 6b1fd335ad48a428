"""What Tune's experiment snapshots cost the study driver: how many are written, and how long they take.

Runs a small study in this process (local Ray, simulated data, SQLite MLflow) with Tune's
``TuneController.checkpoint`` and ``save_to_dir`` timed, and prints the number of snapshots
written, the median time per ``checkpoint`` call that wrote one, and the total share of the
study's wall time the driver spent in them.

    python benchmarks/snapshot_cost.py [--trials 6 --epochs 4]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.tiny_studies import tiny_overrides, use_test_ray_environment  # noqa: E402


def timed_snapshots():
    """Wrap Tune's snapshot calls; return the list that collects (seconds, wrote a snapshot)."""
    from ray.tune.execution.tune_controller import TuneController

    calls: list[tuple[float, bool]] = []
    checkpoint, save = TuneController.checkpoint, TuneController.save_to_dir
    written = [0]

    def counted_save(self, *args, **kwargs):
        written[0] += 1
        return save(self, *args, **kwargs)

    def timed_checkpoint(self, *args, **kwargs):
        before, start = written[0], time.perf_counter()
        try:
            return checkpoint(self, *args, **kwargs)
        finally:
            calls.append((time.perf_counter() - start, written[0] > before))

    TuneController.checkpoint, TuneController.save_to_dir = timed_checkpoint, counted_save
    return calls


def main() -> int:
    use_test_ray_environment()
    os.environ.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)   # set for tests; a real study keeps Tune's loggers
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    from data_io import simulate_dataset
    from study.config import load_config
    from study.search.tuner import run_study

    folder = Path(tempfile.mkdtemp(prefix="snapshot-cost-"))
    os.chdir(folder)
    simulate_dataset("small64", 24, folder / "tiny", seed=3, progress=False, workers=1)
    calls = timed_snapshots()
    config = load_config(None, tiny_overrides(folder / "tiny", folder, trials=args.trials, epochs=args.epochs))
    start = time.perf_counter()
    outcome = run_study(config)
    wall = time.perf_counter() - start
    writes = [s for s, wrote in calls if wrote]
    results = sum(int(n) for n in outcome.trials["epochs"]) if "epochs" in outcome.trials else "?"
    print(f"\n{args.trials} trials x {args.epochs} epochs ({results} epoch results) in {wall:.1f} s: "
          f"{len(writes)} snapshots written, median {1000 * statistics.median(writes):.1f} ms each "
          f"(checkpoint call incl. waiting for the copy to storage), {sum(s for s, _ in calls):.2f} s in all "
          f"= {100 * sum(s for s, _ in calls) / wall:.1f}% of the study's wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
