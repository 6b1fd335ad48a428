"""A real one-node Slurm cluster for a test: munged, slurmctld and slurmd from Debian's `munge`
and `slurm-wlm`, run as root, with everything (key, socket, state, spool, logs) in one folder.

The node is this machine (its short hostname, on 127.0.0.1) with all its CPUs. Process tracking
is `proctrack/linuxproc` and task binding `task/none`: no cgroups, so it runs in a container.
Two settings shorten Slurm's waits for a test (both documented in slurm.conf(5)):
`AuthInfo=cred_expire=5` (a requeued job may start again after 5 s instead of 120 s) and
`SchedulerParameters=sched_interval=1` (the scheduler looks at pending jobs every second, not 60).
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "srun")


def missing_binaries() -> list[str]:
    return [b for b in (*DAEMONS, *CLIENTS) if shutil.which(b) is None
            and not Path("/usr/sbin", b).exists()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ports_free(first: int, count: int) -> bool:
    for port in range(first, first + count):
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                return False
    return True


def first_job_id(port_block) -> int:
    """A job id whose Ray ports (``port_block(id)``: first port, 100 of them) are free here."""
    for _ in range(200):
        job = random.randint(100_000, 9_000_000)
        if ports_free(port_block(job), 100):
            return job
    raise RuntimeError("no free block of 100 ports for the job's Ray")


class SlurmLab:
    """Start with :meth:`start`, always :meth:`stop` (it also ends every job and its processes)."""

    def __init__(self, folder: Path, first_job: int):
        self.dir = Path(folder)
        self.first_job = first_job
        self.procs: list[subprocess.Popen] = []
        self.conf = self.dir / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        d = self.dir
        for sub in ("munge", "state", "spool", "log"):
            (d / sub).mkdir(parents=True, mode=0o700, exist_ok=True)
        d.chmod(0o755)   # munged checks the socket's folders
        (d / "munge").chmod(0o755)
        key = d / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._daemon(["munged", "-F", "--force", f"--socket={d / 'munge' / 'sock'}", f"--key-file={key}",
                      f"--pid-file={d / 'munge' / 'pid'}", f"--log-file={d / 'log' / 'munged.log'}",
                      f"--seed-file={d / 'munge' / 'seed'}"], "munged")
        self._wait(lambda: (d / "munge" / "sock").exists(), "munged", 20)
        self.conf.write_text(self._slurm_conf())
        self._daemon(["slurmctld", "-D", "-i"], "slurmctld")
        self._daemon(["slurmd", "-D"], "slurmd")
        self._wait(self._node_idle, "slurmd to register as idle", 60)

    def stop(self) -> None:
        """Cancel every job (Slurm kills their processes), stop the daemons, kill what is left."""
        try:
            subprocess.run(["scancel", "--full", "--user=root"], env=self.env, timeout=20,
                           capture_output=True)
            deadline = time.monotonic() + 30
            while self.jobs_alive() and time.monotonic() < deadline:
                time.sleep(0.5)
        except Exception:   # the controller may be gone already
            pass
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        kill_matching(str(self.dir))    # slurmstepd and anything a job left (their paths name it)

    # ------------------------------------------------------------------ clients
    def run(self, *args: str, cwd: Path | None = None, env: dict | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(list(args), cwd=cwd, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
        return done

    def job(self, job_id: str) -> dict:
        """``scontrol show job`` as a dict (JobState, ExitCode, Restarts, ...)."""
        out = self.run("scontrol", "-o", "show", "job", job_id, check=False).stdout
        return dict(item.split("=", 1) for item in out.split() if "=" in item)

    def jobs_alive(self) -> bool:
        out = self.run("squeue", "-h", "-o", "%i", check=False).stdout
        return bool(out.strip())

    # ------------------------------------------------------------------ internals
    def _daemon(self, args: list[str], name: str) -> None:
        log = open(self.dir / "log" / f"{name}.out", "w")
        self.procs.append(subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))
        log.close()

    def _wait(self, ready, what: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "".join(f"\n--- {p.name}\n" + p.read_text()[-1500:] for p in (self.dir / "log").iterdir())
                raise RuntimeError(f"waiting for {what}: {'exited: ' + ', '.join(dead) if dead else 'timed out'}{logs}")
            time.sleep(0.3)

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True,
                             timeout=10).stdout
        return out.strip() == "idle"

    def _slurm_conf(self) -> str:
        d, host = self.dir, socket.gethostname().split(".")[0]
        return f"""\
ClusterName=lab
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d / 'munge' / 'sock'},cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d / 'state'}
SlurmdSpoolDir={d / 'spool'}
SlurmctldPidFile={d / 'slurmctld.pid'}
SlurmdPidFile={d / 'slurmd.pid'}
SlurmctldLogFile={d / 'log' / 'slurmctld.log'}
SlurmdLogFile={d / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
FirstJobId={self.first_job}
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN
PartitionName=lab Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def kill_matching(marker: str) -> list[int]:
    """SIGKILL every process whose command line contains ``marker``; their pids."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except OSError:
                pass
    return killed
