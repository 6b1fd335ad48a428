"""Several SSH-reachable "hosts" on one machine, for launching a real `ray up` cluster in tests.

Each host is a network namespace with its own address and sshd, its own PID namespace (so
`ray stop`, which the cluster file runs on every node, sees and kills only that host's Ray) and its
own mount namespace with a private ``/tmp`` (Ray's sockets, session and cluster-state files) and a
private home (``~/ray_bootstrap_config.yaml``, ``~/mlflow``). The hosts hang off a bridge inside a
"laptop" namespace, from which `ray up` / `ray job submit` run, so the root namespace gets no
address, link or mount. The filesystem is otherwise shared, so the project's venv works on every
host, as on machines sharing an NFS home.

Cleanup kills every process of every namespace (the PID-namespace init first: when it dies the
kernel kills the rest), deletes the namespaces (their veth links and bridge go with them) and the
work folder. Namespaces left by a killed run (named ``lensnet-<pid>-*`` after a dead pid) are
removed by the next run.

Run as a script (``nodes``, ``runs``) it reads the cluster's nodes or an MLflow experiment and
prints JSON, for the test to run over SSH or through a forwarded port.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "lensnet"
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR"]

# PID 1 of a host: private /tmp and home (keeping the listed entries of the real /tmp and home,
# e.g. the pyenv the venv's python lives in, or a checkout under /tmp), then sshd; reaps orphans
# (Ray daemons) until sshd exits.
INIT = r"""
import os, signal, subprocess, sys
tmp, home, keep, keep_tmp, *sshd = sys.argv[1:]
real = os.path.expanduser("~")
for name in filter(None, keep.split(",")):
    os.makedirs(os.path.join(home, name), exist_ok=True)
    subprocess.check_call(["mount", "--rbind", os.path.join(real, name), os.path.join(home, name)])
for name in filter(None, keep_tmp.split(",")):
    os.makedirs(os.path.join(tmp, name), exist_ok=True)
    subprocess.check_call(["mount", "--rbind", os.path.join("/tmp", name), os.path.join(tmp, name)])
subprocess.check_call(["mount", "--rbind", tmp, "/tmp"])
subprocess.check_call(["mount", "--rbind", home, real])
os.makedirs("/run/sshd", exist_ok=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
child = subprocess.Popen(sshd)
while os.wait()[0] != child.pid:
    pass
"""


def home_entries_python_needs() -> list[str]:
    """Top-level entries of the real home holding this interpreter, its venv or the checkout."""
    return entries_needed_under(Path.home().resolve())


def tmp_entries_python_needs() -> list[str]:
    """The same for /tmp (CI may clone the project there; every host mounts its own /tmp)."""
    return entries_needed_under(Path("/tmp"))


def entries_needed_under(home: Path) -> list[str]:
    needed = set()
    root = Path(__file__).resolve().parent.parent
    for p in (Path(sys.executable).resolve(), Path(sys.base_prefix).resolve(), Path(sys.prefix), root):
        if p.is_relative_to(home) and p != home:
            needed.add(p.relative_to(home).parts[0])
    return sorted(needed)


SSHD_CONFIG = """\
ListenAddress {ip}
Port 22
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {keys}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
MaxSessions 64
MaxStartups 64
Subsystem sftp internal-sftp
"""


def missing_tools() -> str | None:
    """Why the namespace hosts cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, bind mounts)"
    for tool in ("ip", "unshare", "ssh", "ssh-keygen", "rsync"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` on PATH (see the apt-get line in .ci/run)"
    if not Path("/usr/sbin/sshd").exists():
        return "needs /usr/sbin/sshd (apt-get install openssh-server, as .ci/run does)"
    return None


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, timeout=timeout, capture_output=True, text=True)


@dataclass
class Host:
    ns: str
    ip: str
    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"


@dataclass
class Lab:
    """Network-namespace hosts plus the "laptop" namespace that reaches them (see module doc)."""

    n_hosts: int = 3
    venv_bin: Path = Path(sys.executable).parent
    tag: str = field(default_factory=lambda: f"{PREFIX}-{os.getpid()}")
    hosts: list[Host] = field(default_factory=list)
    workdir: Path | None = None

    @property
    def lan(self) -> str:
        return f"{self.tag}-lan"

    @property
    def key(self) -> Path:
        return self.workdir / "keys" / "id_ed25519"

    def __enter__(self) -> "Lab":
        remove_stale_namespaces()
        # not under /tmp: every host mounts its own /tmp over it
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-", dir="/var/tmp"))
        try:
            self._make_network()
            self._make_keys()
            for host in self.hosts:
                self._start_sshd(host)
            for host in self.hosts:
                self._wait_for_ssh(host)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------- building

    def _make_network(self) -> None:
        net = f"10.{(os.getpid() >> 8) % 200 + 20}.{os.getpid() % 250}"
        sh("ip", "netns", "add", self.lan)
        sh("ip", "-n", self.lan, "link", "set", "lo", "up")
        sh("ip", "-n", self.lan, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.lan, "addr", "add", f"{net}.1/24", "dev", "br0")
        sh("ip", "-n", self.lan, "link", "set", "br0", "up")
        for i in range(self.n_hosts):
            host = Host(f"{self.tag}-h{i}", f"{net}.{10 + i}", self.workdir / f"h{i}")
            self.hosts.append(host)
            sh("ip", "netns", "add", host.ns)
            sh("ip", "link", "add", "eth0", "netns", host.ns, "type", "veth",
               "peer", "name", f"p{i}", "netns", self.lan)
            sh("ip", "-n", self.lan, "link", "set", f"p{i}", "master", "br0", "up")
            for args in (["link", "set", "lo", "up"], ["link", "set", "eth0", "up"],
                         ["addr", "add", f"{host.ip}/24", "dev", "eth0"],
                         # a default route lets Ray find the node's address (UDP connect, no traffic)
                         ["route", "add", "default", "via", f"{net}.1"]):
                sh("ip", "-n", host.ns, *args)

    def _make_keys(self) -> None:
        self.key.parent.mkdir(parents=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        shutil.copy(f"{self.key}.pub", self.key.parent / "authorized_keys")
        for d in ("tmp", "home"):
            (self.workdir / "lan" / d).mkdir(parents=True)

    def _start_sshd(self, host: Host) -> None:
        for d in ("tmp", "home", "ssh"):
            (host.root / d).mkdir(parents=True)
        (host.root / "tmp").chmod(0o1777)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host.root / "ssh" / "host_key"))
        cfg = host.root / "ssh" / "sshd_config"
        cfg.write_text(SSHD_CONFIG.format(ip=host.ip, dir=host.root / "ssh", keys=self.key.parent))
        (host.home / ".bashrc").write_text(
            f'export PATH="{self.venv_bin}:$PATH" RAY_USAGE_STATS_ENABLED=0\n'
            # three Ray nodes share this machine's /dev/shm: keep each object store small
            "export RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION=0.04\n"
        )
        log = open(host.root / "init.log", "wb")
        subprocess.Popen(
            ["ip", "netns", "exec", host.ns, "unshare", "--pid", "--fork", "--mount-proc",
             sys.executable, "-c", INIT, str(host.root / "tmp"), str(host.home),
             ",".join(home_entries_python_needs()), ",".join(tmp_entries_python_needs()),
             "/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def _wait_for_ssh(self, host: Host, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            done = sh("ip", "netns", "exec", self.lan, "ssh", *SSH_OPTS, "-i", str(self.key),
                      f"root@{host.ip}", "echo $HOME; ls /tmp | wc -l", check=False)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                log = (host.root / "init.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"sshd on {host.ip} not reachable: {done.stderr.strip()}\n{log}")
            time.sleep(0.3)

    # ------------------------------------------------------------------------- using

    def client_cmd(self, args: list[str]) -> list[str]:
        """``args`` as run on the laptop: its namespace, a private /tmp, the venv first on PATH."""
        keep = "".join(f'mkdir -p "$0/{name}" && mount --rbind "/tmp/{name}" "$0/{name}" && '
                       for name in tmp_entries_python_needs())
        return ["ip", "netns", "exec", self.lan, "unshare", "--mount", "--", "sh", "-c",
                keep + 'mount --rbind "$0" /tmp && exec "$@"', str(self.workdir / "lan" / "tmp"), *args]

    def client_env(self) -> dict:
        env = dict(os.environ, HOME=str(self.workdir / "lan" / "home"), RAY_USAGE_STATS_ENABLED="0")
        # the hosts start Ray with its default (auth disabled); a RAY_AUTH_MODE that an earlier
        # in-process ray.init left in this test process must not make the client demand a token
        env["RAY_AUTH_MODE"] = "disabled"
        for key in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.pop(key, None)
        env["PATH"] = f"{self.venv_bin}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def client(self, args: list[str], timeout: float, log: Path | None = None) -> str:
        """Run ``args`` on the laptop; its output, or RuntimeError naming the command and its tail."""
        proc = subprocess.Popen(self.client_cmd(args), env=self.client_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            out += f"\n[timed out after {timeout:.0f} s]"
        if log is not None:
            with open(log, "a") as f:
                f.write(f"$ {' '.join(args)}\n{out}\n")
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:4])} ... failed ({proc.returncode}):\n{out[-3000:]}")
        return out

    def background(self, args: list[str], log: Path) -> subprocess.Popen:
        """Start ``args`` on the laptop and leave it running (killed by ``close``)."""
        return subprocess.Popen(self.client_cmd(args), env=self.client_env(), stdin=subprocess.DEVNULL,
                                stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def host_processes(self, host: Host) -> list[str]:
        """Command lines of the processes living in ``host``'s namespaces."""
        pids = sh("ip", "netns", "pids", host.ns, check=False).stdout.split()
        lines = []
        for pid in pids:
            try:
                lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
        return lines

    # ------------------------------------------------------------------------- cleanup

    def close(self) -> None:
        names = [self.lan] + [h.ns for h in self.hosts]
        for ns in names:
            kill_namespace(ns)
        if self.workdir is not None and self.workdir.name.startswith(self.tag):
            remove_unmounted(self.workdir)


def kill_namespace(ns: str, timeout: float = 10) -> None:
    """SIGKILL every process in network namespace ``ns`` until none is left, then delete it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    sh("ip", "netns", "del", ns, check=False)


def remove_stale_namespaces() -> None:
    """Delete ``lensnet-<pid>-*`` namespaces (and work folders) whose creating process is gone."""
    for name in sh("ip", "netns", "list", check=False).stdout.split():
        m = re.fullmatch(rf"{PREFIX}-(\d+)-\w+", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            kill_namespace(name)
    for old in Path("/var/tmp").glob(f"{PREFIX}-*"):
        m = re.match(rf"{PREFIX}-(\d+)-", old.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            remove_unmounted(old)


def remove_unmounted(folder: Path) -> None:
    """``rm -rf folder``, unless something is mounted below it here (never delete through a bind)."""
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    if any(f" {folder}/" in line or f" {folder} " in line for line in mounts):
        print(f"netns_cluster: {folder} still has mounts below it; left in place", file=sys.stderr)
        return
    shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- run on the cluster


def alive_nodes() -> list[str]:
    """Addresses of the alive nodes of the cluster this host belongs to."""
    import ray

    ray.init(address="auto", logging_level="ERROR")
    return sorted(n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"])


def mlflow_runs(tracking_uri: str, experiment: str) -> list[dict]:
    """Every run of ``experiment``: id, parent run id and the tags the cluster test reads."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    return [{"run_id": r.info.run_id, "parent": r.data.tags.get("mlflow.parentRunId"),
             **{k: r.data.tags.get(k) for k in ("role", "trial_id", "node", "status")}}
            for r in runs]


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Helpers the cluster test runs on the cluster.")
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("nodes", help=alive_nodes.__doc__)
    p = sub.add_parser("runs", help=mlflow_runs.__doc__.splitlines()[0])
    p.add_argument("tracking_uri")
    p.add_argument("experiment")
    a = parser.parse_args()
    if a.what == "nodes":
        print(json.dumps(alive_nodes()))
    else:
        print(json.dumps(mlflow_runs(a.tracking_uri, a.experiment)))
