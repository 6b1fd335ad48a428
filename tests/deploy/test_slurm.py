"""`deploy/slurm/study.sbatch` on a real Slurm (tests/deploy/slurm_lab.py: munged, slurmctld and
slurmd on this machine, as root), cut off mid-study and requeued.

The job runs a tiny study (4 trials of up to 3 epochs on 29-px images, one at a time, so the
order of results is fixed) with the script's defaults: Ray started by the script, an MLflow
tracking server on the head writing SQLite in the study folder. Once a trial has finished, the
test sends the batch script what Slurm sends at ``--signal=B:USR1@...`` before a time limit
(``scancel --batch --signal=USR1``); the study stops cleanly, the job requeues itself with
``scontrol requeue``, and its second run resumes the study with ``--resume auto``. The requeued
study must end with every trial in MLflow once, each epoch once, and the same trials, statuses,
ASHA rungs and Optuna outcomes as the same study run without interruption (run at the same time,
locally, in another folder).

Bounded to TIME_BOUND seconds; the daemons, the jobs' processes and Ray's folders are removed
even on failure.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.tiny_studies import ROOT, as_sets, finished_trials, study_outcome, tiny_overrides
from tests.deploy import slurm_lab

SCRIPT = ROOT / "deploy" / "slurm" / "study.sbatch"
TIME_BOUND = 300            # seconds for the requeue test, cleanup included
TRIALS, EPOCHS, NAME = 4, 3, "s"
# the script's per-job Ray ports: 100 of them from here (the test picks a job id whose block is free)
PORT_BLOCK = lambda job: 20000 + (job % 127) * 100   # noqa: E731
# sbatch options for this one-node, no-GPU cluster: the script's own #SBATCH lines ask for 2 nodes
# with a GPU each
LAB_OPTIONS = ["--nodes=1", "--gpus-per-task=0", f"--cpus-per-task={os.cpu_count()}", "--time=10"]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to run munged, slurmctld and slurmd (CI runs as root)"
    missing = slurm_lab.missing_binaries()
    if missing:
        return f"Slurm or MUNGE is not installed (missing {', '.join(missing)}; apt-get install slurm-wlm munge)"
    return None


needs_slurm = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def test_outside_slurm_the_script_exits_2_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run(["bash", str(SCRIPT), "configs/local.yaml"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: study.sbatch: not inside a Slurm job")


@pytest.fixture
def lab(tmp_path):
    first_job = slurm_lab.first_job_id(PORT_BLOCK)
    lab = slurm_lab.SlurmLab(tmp_path / "slurm", first_job)
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        for job in range(first_job, first_job + 5):   # Ray's node-local folders of the lab's jobs
            slurm_lab.kill_matching(f"/tmp/ray-{job}")
            shutil.rmtree(f"/tmp/ray-{job}", ignore_errors=True)
        slurm_lab.kill_matching(str(tmp_path))


class Clock:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise TimeoutError(f"the Slurm requeue test ran past its {TIME_BOUND} s bound while {what}")


def submit(lab, folder: Path, *args: str) -> str:
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "LENS_STUDY_PROJECT": str(ROOT)}
    return lab.run("sbatch", "--parsable", *LAB_OPTIONS, str(SCRIPT), *args, cwd=folder, env=env).stdout.strip()


def wait_done(lab, job: str, clock: Clock, what: str) -> dict:
    while True:
        info = lab.job(job)
        if info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return info
        clock.check(what)
        time.sleep(0.5)


@needs_slurm
def test_bad_input_fails_the_job_with_exit_2_and_one_line(lab, tmp_path):
    clock = Clock(60)
    job = submit(lab, tmp_path, "configs/missing.yaml")
    info = wait_done(lab, job, clock, "a job with a missing config ran")
    assert (info["JobState"], info["ExitCode"]) == ("FAILED", "2:0")
    log = (tmp_path / f"lens-study-{job}.out").read_text()
    assert log.count("\n") == 1 and log.startswith("error: study.sbatch: config file configs/missing.yaml does not exist")

    config = tmp_path / "study.yaml"
    config.write_text("name: x\n")
    job = submit(lab, tmp_path, str(config), "--address", "auto")
    info = wait_done(lab, job, clock, "a job with --address ran")
    assert info["ExitCode"] == "2:0"
    assert (tmp_path / f"lens-study-{job}.out").read_text().startswith("error: study.sbatch: do not pass --address")


@pytest.mark.slow
@needs_slurm
def test_a_requeued_study_finishes_as_an_uninterrupted_one(lab, tiny_dataset, tmp_path):
    clock = Clock(TIME_BOUND)
    sets = tiny_overrides(tiny_dataset, tmp_path / "job", trials=TRIALS, epochs=EPOCHS, name=NAME) + [
        "tune.max_concurrent=1"]
    folder, ref = tmp_path / "job", tmp_path / "ref"
    folder.mkdir()
    ref.mkdir()
    config = tmp_path / "study.yaml"
    config.write_text(f"name: {NAME}\n")

    started = time.monotonic()
    job = submit(lab, folder, str(config), *as_sets(sets))
    db, reference = folder / "mlflow.db", None
    try:
        while finished_trials(db, NAME) < 1:                       # mid-study: one trial done
            assert lab.job(job).get("JobState") in ("PENDING", "RUNNING"), lab.job(job)
            clock.check("waiting for the first trial")
            time.sleep(0.3)
        done_at_signal = finished_trials(db, NAME)
        signalled = time.monotonic()
        lab.run("scancel", "--batch", "--signal=USR1", job)        # = --signal=B:USR1@T at the limit
        # meanwhile, the same study uninterrupted in another folder (local Ray, SQLite)
        reference = subprocess.Popen(
            [sys.executable, str(ROOT / "run_study.py"), "tune", "--config", str(config),
             *as_sets(tiny_overrides(tiny_dataset, ref, trials=TRIALS, epochs=EPOCHS, name=NAME)),
             "--set", "tune.max_concurrent=1"],
            cwd=ref, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        info = wait_done(lab, job, clock, "the requeued job ran")
        finished = time.monotonic()
        _, ref_err = reference.communicate(timeout=max(1.0, clock.end - time.monotonic()))
    finally:
        if reference is not None and reference.poll() is None:
            reference.kill()
            reference.wait()
    assert reference.returncode == 0, ref_err[-3000:]
    log = (folder / f"lens-study-{job}.out").read_text()
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), log[-4000:]

    # the first run stopped on the warning and requeued itself; the second resumed and finished
    first, second = log.split("(restart 1)", 1)
    assert "time-limit warning (SIGUSR1): stopping the study cleanly" in first
    assert "SIGTERM received: stopping the study cleanly" in first
    assert f"study {NAME!r} stopped by SIGTERM" in first
    assert "study exited with status 75" in first and f"requeueing job {job}" in first
    assert "study exited with status 0" in second and f"Study {NAME!r}: {TRIALS} trials" in second

    uninterrupted, requeued = study_outcome(ref, NAME), study_outcome(folder, NAME)  # each epoch once
    assert len(requeued["trials"]) == TRIALS
    assert requeued["trials"] == uninterrupted["trials"], "same configurations, statuses and epochs"
    assert requeued["rungs"] == uninterrupted["rungs"], "ASHA saw the same values at every rung"
    assert requeued["optuna"] == uninterrupted["optuna"], "Optuna was told the same outcomes"
    assert requeued["running"] == 0 and requeued["orphans"] == 0
    runs = _runs_per_trial(folder / "mlflow.db")
    assert len(runs) == TRIALS and set(runs.values()) == {1}, f"one MLflow run per trial: {runs}"
    restart = re.search(r"\[(\d\d):(\d\d):(\d\d)\]: job \d+ \(restart 1\)", log)
    requeue = re.search(r"\[(\d\d):(\d\d):(\d\d)\]: requeueing job", log)
    gap = _seconds(restart) - _seconds(requeue)
    epochs = sum(e for _, e in requeued["trials"].values())
    print(f"\nFIGURES slurm requeue: USR1 after {done_at_signal}/{TRIALS} trials finished "
          f"({signalled - started:.0f} s after sbatch); first run exited 75 and requeued itself; "
          f"second run started {gap:.0f} s after the requeue and finished the study; "
          f"{TRIALS} trials, {epochs} epochs, each once in MLflow, identical to the uninterrupted run; "
          f"sbatch to COMPLETED {finished - started:.0f} s")


def _runs_per_trial(db: Path) -> dict:
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("select value, count(*) from tags where key = 'trial_id' group by value").fetchall()
    return dict(rows)


def _seconds(match) -> int:
    h, m, s = (int(g) for g in match.groups())
    return h * 3600 + m * 60 + s
