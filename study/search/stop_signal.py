"""Stopping a study cleanly on SIGTERM, so that a batch system can cut it off and resume it later.

A Slurm job script (``deploy/slurm/study.sbatch``) forwards the time-limit warning to the driver as
SIGTERM; Kubernetes sends SIGTERM to a pod it evicts. On that signal the driver asks Ray Tune to
stop the way Ctrl+C does: Tune leaves its loop, writes the experiment state one last time and stops
the trials. A trial in the middle of an epoch loses that epoch; every finished epoch is in its
checkpoint and, through the driver's MLflow callback, in MLflow. ``run_study`` then delivers any
buffered MLflow writes and raises :class:`StudyInterrupted`; the command line exits with
:data:`INTERRUPTED_EXIT`, and ``--resume`` continues the study exactly where it stopped.

How the signal reaches Tune: every ``Tuner.fit`` installs Tune's own handler for SIGINT and
SIGUSR1 (``ray.tune.tune._setup_signal_catching``, Ray 2.60), which sets the event that ends Tune's
loop (the graceful stop Ray's guide "How to Define Stopping Criteria" documents for Ctrl+C). The
handler here records the signal and raises SIGUSR1 in the driver as soon as Tune's handler is in
place (at once during ``fit``; a signal that comes while ``fit`` is still starting is passed on
by a watcher thread when it is). One that comes before ``fit`` is seen by
:meth:`StopOnSignal.check`. A second SIGTERM gets the previous handler (Ray's: exit at once), as a
second Ctrl+C does in Tune.
"""
from __future__ import annotations

import os
import signal
import threading
import time

#: exit status of an interrupted study: EX_TEMPFAIL of sysexits.h ("try again later")
INTERRUPTED_EXIT = 75
STOP_SIGNALS = (signal.SIGTERM,)
TUNE_STOP_SIGNAL = signal.SIGUSR1   # what Tune's own handler listens to during fit


class StudyInterrupted(Exception):
    """The study stopped on a signal; its state is saved and ``--resume`` continues it."""

    def __init__(self, signum: int, study: str = ""):
        self.signum, self.study = signum, study
        super().__init__(f"study {study!r} stopped by {signal.Signals(signum).name}")


class StopOnSignal:
    """Context manager: while active, STOP_SIGNALS stop the study cleanly instead of killing it."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._tune_handler_before = None

    def __enter__(self) -> "StopOnSignal":
        self._tune_handler_before = signal.getsignal(TUNE_STOP_SIGNAL)
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame) -> None:
        self.received = signum
        os.write(2, f"{signal.Signals(signum).name} received: stopping the study cleanly (trials stop, "
                    "state is saved; continue it with --resume)\n".encode())   # no print: not reentrant
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))   # a second one is not gentle
        if self._tune_listens():
            signal.raise_signal(TUNE_STOP_SIGNAL)
        else:
            threading.Thread(target=self._pass_on_when_tune_listens, daemon=True).start()

    def _tune_listens(self) -> bool:
        """Tune's handler is installed: a callable that was not there when the study started."""
        handler = signal.getsignal(TUNE_STOP_SIGNAL)
        return callable(handler) and handler is not self._tune_handler_before

    def _pass_on_when_tune_listens(self) -> None:
        while self._previous:   # until the study leaves the context
            if self._tune_listens():
                os.kill(os.getpid(), TUNE_STOP_SIGNAL)
                return
            time.sleep(0.1)

    def check(self, study: str = "") -> None:
        """Raise :class:`StudyInterrupted` if a stop signal has come."""
        if self.received is not None:
            raise StudyInterrupted(self.received, study)
