"""SIGTERM stops a study cleanly (study/search/stop_signal.py): before ``fit`` it is seen by
``check``; during ``fit`` real Ray Tune leaves its loop and saves a state ``Tuner.restore`` can
continue; a SIGTERM that comes while ``fit`` is still starting is passed on once Tune listens.
The command line turns the stop into exit status 75 (see tests/deploy/test_slurm.py for a real
Slurm job that requeues itself on it)."""
from __future__ import annotations

import os
import signal
import time

import pytest
from ray.tune import Callback

from study.search.stop_signal import INTERRUPTED_EXIT, StopOnSignal, StudyInterrupted

STEPS = 200   # a trial that would run 200 x 0.05 s = 10 s unless stopped


def test_a_signal_before_fit_is_seen_by_check_and_a_second_one_goes_to_the_previous_handler():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with StopOnSignal() as stop:
            stop.check("x")                               # nothing yet
            os.kill(os.getpid(), signal.SIGTERM)
            with pytest.raises(StudyInterrupted, match="study 'x' stopped by SIGTERM") as err:
                stop.check("x")
            assert err.value.signum == signal.SIGTERM and seen == []
            os.kill(os.getpid(), signal.SIGTERM)          # a second one: the previous handler's
            assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is not stop._on_signal
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert INTERRUPTED_EXIT == 75


@pytest.fixture(scope="module")
def ray_instance():
    """The Ray this process has, or a 1-CPU one of this module's own."""
    import ray

    own = not ray.is_initialized()
    if own:
        ray.init(num_cpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    if own:
        ray.shutdown()


@pytest.fixture
def ray_and_handlers(ray_instance):
    """Ray, and afterwards the SIGINT/SIGUSR1/SIGTERM handlers Tune replaces put back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR1, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _steps_trainable():
    """A trial of STEPS reports 0.05 s apart (a closure: Ray's workers get it by value)."""
    def steps(config):
        from ray import tune

        for step in range(STEPS):
            time.sleep(0.05)
            tune.report({"step": step})
    return steps


def _tuner(tmp_path, callbacks=()):
    from ray import tune

    return tune.Tuner(_steps_trainable(), tune_config=tune.TuneConfig(num_samples=1),
                      run_config=tune.RunConfig(name="stop", storage_path=str(tmp_path), callbacks=list(callbacks)))


def _steps_done(tmp_path) -> int:
    """Steps the trial reported, read back from the saved state; it must not have failed."""
    from ray import tune

    (result,) = tune.Tuner.restore(str(tmp_path / "stop"), _steps_trainable()).get_results()
    assert result.error is None, result.error
    return int(result.metrics.get("step", -1)) + 1


class SigtermOnFirstResult(Callback):
    """A Tune callback (it runs in the driver's loop) that sends this process SIGTERM once."""

    sent = False

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_during_fit_stops_tune_and_leaves_a_state_to_resume(ray_and_handlers, tmp_path):
    from ray import tune

    with StopOnSignal() as stop:
        started = time.monotonic()
        _tuner(tmp_path, [SigtermOnFirstResult()]).fit()
        took = time.monotonic() - started
        with pytest.raises(StudyInterrupted):
            stop.check()
    assert tune.Tuner.can_restore(str(tmp_path / "stop"))
    done = _steps_done(tmp_path)
    assert 1 <= done < STEPS, f"the trial stopped early (after {done} of {STEPS} steps, {took:.1f} s)"


def test_sigterm_while_fit_is_starting_is_passed_on_once_tune_listens(ray_and_handlers, tmp_path):
    with StopOnSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)     # as if it came between check() and fit()
        _tuner(tmp_path).fit()
        with pytest.raises(StudyInterrupted):
            stop.check()
    assert _steps_done(tmp_path) < STEPS, "stopped before the trial ended"
