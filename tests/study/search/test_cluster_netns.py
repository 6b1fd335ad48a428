"""`ray up` of configs/cluster-local.yaml on three real SSH hosts (network namespaces), a tiny
real study (`run_study.py tune --address auto`) submitted with `ray job submit` through
`ray dashboard`'s port forward, its MLflow runs read through a forwarded port 5000, then
`ray down`. See tests/netns_cluster.py for how the hosts are made.

Bounded to TIME_BOUND seconds in all; cleans up (processes, namespaces, folders) even on failure.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import netns_cluster as nc
from tests.support.tiny_studies import tiny_overrides

pytestmark = [pytest.mark.netns, pytest.mark.slow]

from tests.support.tiny_studies import ROOT
HELPER = Path(nc.__file__).resolve()
TIME_BOUND = 360            # seconds for the whole test, cleanup included
TRIALS = 4                  # 1 CPU each, all at once: more than any one node's CPUs (2)
STUDY = "netns"
RAY = str(Path(sys.executable).parent / "ray")
PING = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)"


class Clock:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, cap: float = 1e9) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the namespace-cluster test ran past its {TIME_BOUND} s bound")
        return min(left, cap)


def cluster_file(lab: nc.Lab) -> Path:
    """configs/cluster-local.yaml with the lab's addresses, SSH user and key, and a unique name."""
    cfg = yaml.safe_load((ROOT / "configs" / "cluster-local.yaml").read_text())
    head, *workers = lab.hosts
    cfg["cluster_name"] = lab.tag
    cfg["provider"].update(head_ip=head.ip, worker_ips=[w.ip for w in workers])
    cfg["auth"] = {"ssh_user": "root", "ssh_private_key": str(lab.key)}
    cfg["min_workers"] = cfg["max_workers"] = len(workers)
    path = lab.workdir / "cluster.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def wait_for_nodes(lab, cfg, n, clock, log) -> list[str]:
    """Poll the head until ``n`` Ray nodes are alive; their addresses."""
    while True:
        out = lab.client([RAY, "exec", str(cfg), f"python {HELPER} nodes"], clock.left(60), log)
        ips = last_json(out)
        if len(ips) >= n:
            return ips
        clock.left()
        time.sleep(3)


def submit(lab, cfg, entrypoint, clock, log) -> str:
    """`ray job submit` through the dashboard port forward; the job's output."""
    lab.background([RAY, "dashboard", str(cfg), "--port", "8265"], log.with_suffix(".dashboard"))
    address = "http://127.0.0.1:8265"
    retry(lambda: lab.client([sys.executable, "-c", PING, f"{address}/api/version"], 10, log), clock)
    out = lab.client([RAY, "job", "submit", "--address", address, "--", *entrypoint],
                     clock.left(240), log)
    assert "succeeded" in out, out[-3000:]
    return out


@pytest.fixture
def lab():
    reason = nc.missing_tools()
    if reason:
        pytest.skip(f"namespace cluster test {reason}")
    assert importlib.util.find_spec("aiohttp_cors") and importlib.util.find_spec("opencensus"), (
        "`ray dashboard` / `ray job submit` need Ray's dashboard: install ray[default]==2.60.0")
    with nc.Lab(n_hosts=3) as made:
        yield made


def test_ray_up_spreads_a_study_over_hosts_and_logs_it_to_mlflow(lab, tiny_dataset, tmp_path):
    clock = Clock(TIME_BOUND - 20)           # 20 s kept for cleanup
    log = tmp_path / "cluster.log"
    cfg = cluster_file(lab)
    shared = lab.workdir / "shared"          # seen by every host, like an NFS mount
    shutil.copytree(tiny_dataset, shared / "data")
    try:
        lab.client([RAY, "up", "-y", str(cfg)], clock.left(180), log)
        ips = wait_for_nodes(lab, cfg, len(lab.hosts), clock, log)
        assert sorted(ips) == sorted(h.ip for h in lab.hosts)

        overrides = tiny_overrides(shared / "data", shared, trials=TRIALS, epochs=2, name=STUDY) + [
            f"tune.max_concurrent={TRIALS}", "tune.cpus_per_trial=1",
            "mlflow.tracking_uri=http://127.0.0.1:5000"]       # the head's MLflow server
        submit(lab, cfg, [sys.executable, str(ROOT / "run_study.py"), "tune", "--address", "auto",
                          *[a for o in overrides for a in ("--set", o)]], clock, log)

        # MLflow on the head, read from the laptop through a forwarded port (docs/cluster.md's path)
        lab.background([RAY, "exec", str(cfg), "--port-forward", "5000", "sleep 300"],
                       log.with_suffix(".mlflow"))
        runs = read_runs(lab, "http://127.0.0.1:5000", STUDY, clock, log)
        check_study(runs, tune_trial_ids(shared / "runs" / STUDY), ips)
    except BaseException:
        print(log.read_text()[-8000:] if log.exists() else "(no client log)")
        raise
    finally:
        lab.client([RAY, "down", "-y", str(cfg)], min(60, max(clock.end - time.monotonic() + 20, 5)),
                   log)
    alive = [p for p in lab.host_processes(lab.hosts[0]) if "raylet" in p or "gcs_server" in p]
    assert alive == [], f"`ray down` left Ray running on the head: {alive}"


def tune_trial_ids(experiment: Path) -> set[str]:
    """The trials Tune ran, from the experiment state in the shared storage path."""
    from ray.tune import ExperimentAnalysis

    return {t.trial_id for t in ExperimentAnalysis(str(experiment)).trials}


def check_study(runs: list[dict], trial_ids: set[str], ips: list[str]) -> None:
    """One parent run; a child run for every Tune trial; trials on more than one node."""
    parents = [r for r in runs if r["role"] == "study"]
    assert len(parents) == 1, runs
    children = [r for r in runs if r["parent"] == parents[0]["run_id"]]
    assert len(trial_ids) == TRIALS, trial_ids
    assert {r["trial_id"] for r in children} == trial_ids and len(children) == TRIALS, children
    nodes = {r["node"].split("/")[0] for r in children if r["node"]}
    assert nodes <= set(ips), (nodes, ips)
    assert len(nodes) > 1, f"every trial ran on one node: {children}"


def retry(step, clock, pause: float = 1.0):
    """``step()`` until it stops raising RuntimeError (a failed client command) or time runs out."""
    while True:
        try:
            return step()
        except RuntimeError:
            clock.left()
            time.sleep(pause)


def read_runs(lab, uri, experiment, clock, log) -> list[dict]:
    """The experiment's MLflow runs, read from the laptop (retried until the forward is up)."""
    cmd = [sys.executable, str(HELPER), "runs", uri, experiment]
    return last_json(retry(lambda: lab.client(cmd, clock.left(60), log), clock))


def last_json(out: str):
    """The last line of ``out`` that is a JSON list (ray exec adds ssh chatter after it)."""
    return json.loads([line for line in out.splitlines() if line.startswith("[")][-1])
