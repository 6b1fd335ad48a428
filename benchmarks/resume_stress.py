"""Kill the study driver at many different moments; count resumed studies that match an uninterrupted one.

One local Ray instance serves every study (as the head of a real cluster outlives its driver).
First an uninterrupted study runs; then, in each cycle, the same study (same seed, one trial at a
time) is started, its driver is SIGKILLed once MLflow holds ``m`` logged epochs plus a random delay
of up to ``--max-delay`` seconds (so kills land before, during and after Tune's snapshots), and it is
resumed with ``--resume``. A cycle matches when the resumed study has the same trials (configuration,
status, epochs logged once each), the same ASHA rung values and the same Optuna outcomes.

    python benchmarks/resume_stress.py --cycles 20           # prints matches / cycles and each mismatch
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.tiny_studies import as_sets, count_in_mlflow_db, finished_trials, local_ray_instance, run_cli, study_outcome, tiny_overrides, use_test_ray_environment  # noqa: E402

EPOCHS_SQL = ("select count(*) from metrics m join runs r on m.run_uuid = r.run_uuid join experiments e "
              "on r.experiment_id = e.experiment_id where e.name = '{name}' and m.key = 'epoch'")


def epochs_logged(db: Path, name: str) -> int:
    return count_in_mlflow_db(db, EPOCHS_SQL.format(name=name))


TRIGGERS = {"epochs": epochs_logged, "finished": finished_trials}


def overrides(dataset: Path, folder: Path, name: str, trials: int, epochs: int) -> list[str]:
    return as_sets(tiny_overrides(dataset, folder, trials=trials, epochs=epochs, name=name)
                   + ["tune.max_concurrent=1"])


def killed_and_resumed(args, folder: Path, dataset: Path, address: str, name: str, at: int,
                       delay: float) -> tuple[dict, str]:
    """Start study ``name``, SIGKILL its driver ``delay`` s after MLflow counts ``at`` events, resume."""
    sets = overrides(dataset, folder, name, args.trials, args.epochs)
    cmd = [sys.executable, str(ROOT / "run_study.py"), "tune", "--name", name, "--address", address, *sets]
    driver = subprocess.Popen(cmd, cwd=folder, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db, deadline = folder / "mlflow.db", time.time() + 600
    while TRIGGERS[args.trigger](db, name) < at and time.time() < deadline:
        if driver.poll() is not None:
            return {}, "the study ended before the kill"
        time.sleep(0.05)
    time.sleep(delay)
    if driver.poll() is not None:
        return {}, "the study ended before the kill"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    again = run_cli("tune", "--name", name, "--resume", "--address", address, *sets, cwd=folder)
    if again.returncode != 0:
        (folder / f"{name}.stderr").write_text(again.stderr)
        return {}, f"resume failed (stderr in {folder / name}.stderr): " + again.stderr.strip().splitlines()[-1][:300]
    try:
        return study_outcome(folder, name), ""
    except AssertionError as err:
        return {}, str(err)


def differences(expected: dict, got: dict) -> str:
    parts = []
    for key in ("trials", "rungs", "optuna", "running"):
        if expected.get(key) != got.get(key):
            parts.append(f"{key}: expected {expected.get(key)} got {got.get(key)}")
    return "; ".join(parts)


def main() -> int:
    use_test_ray_environment()
    os.environ.pop("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", None)   # set for tests; a real study keeps Tune's loggers
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-delay", type=float, default=1.5, help="seconds of random delay after the trigger")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trigger", choices=sorted(TRIGGERS), default="epochs",
                        help="count logged epochs, or trials given a final status, before the delay")
    args = parser.parse_args()

    from data_io import simulate_dataset

    folder = Path(tempfile.mkdtemp(prefix="resume-stress-"))
    dataset = folder / "tiny"
    simulate_dataset("small64", 24, dataset, seed=3, progress=False, workers=1)
    with local_ray_instance(num_cpus=2) as address:
        return stress(args, folder, dataset, address)


def stress(args, folder: Path, dataset: Path, address: str) -> int:
    """The uninterrupted study, then ``args.cycles`` killed-and-resumed ones; 0 when all match."""
    rng = random.Random(args.seed)
    plain = run_cli("tune", "--name", "u", "--address", address,
                    *overrides(dataset, folder, "u", args.trials, args.epochs), cwd=folder)
    assert plain.returncode == 0, plain.stderr[-2000:]
    expected = study_outcome(folder, "u")
    total_epochs = sum(n for _, n in expected["trials"].values())
    events = total_epochs if args.trigger == "epochs" else args.trials
    matches, orphans, ran = 0, 0, 0
    for cycle in range(args.cycles):
        at, delay = rng.randint(1, events - 1), rng.uniform(0.0, args.max_delay)
        start = time.time()
        got, error = killed_and_resumed(args, folder, dataset, address, f"r{cycle}", at, delay)
        when = f"kill after {at} {args.trigger} + {delay:.2f} s"
        if error == "the study ended before the kill":
            print(f"cycle {cycle}: {when}: skipped ({error})", flush=True)
            continue
        ran += 1
        diff = error or differences(expected, got)
        matches += not diff
        orphans += got.get("orphans", 0)
        print(f"cycle {cycle}: {when}: "
              f"{'MATCH' if not diff else 'MISMATCH ' + diff} ({time.time() - start:.0f} s)", flush=True)
    print(f"\n{matches}/{ran} interrupted studies matched the uninterrupted one "
          f"({args.trials} trials x {args.epochs} epochs, {total_epochs} epochs logged in all); "
          f"{orphans} Optuna trial(s) proposed by a killed driver and marked FAIL on resume; folder {folder}")
    return 0 if matches == ran else 1


if __name__ == "__main__":
    sys.exit(main())
