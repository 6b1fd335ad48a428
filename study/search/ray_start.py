"""Starting Ray: a fresh local instance (token auth, no dashboard, the token file private) or a
connection to a running cluster, with Tune's snapshot interval set for crash safety."""
from __future__ import annotations

import os
from pathlib import Path

from common.errors import UsageError


def start_ray(address: str | None) -> None:
    """Join the cluster at ``address``, or start a fresh local instance; nothing when this process
    is already connected (a test session's shared instance, or a second study in one process)."""
    import ray

    # Tune's settings, read when a Tuner runs: set them even when Ray is already up.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
    # Tune snapshots its trial list at most every 10 s by default, so a SIGKILLed driver could
    # forget trials finished in the last 10 s; snapshot every second instead (a few KB here).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    if address:
        try:
            ray.init(address=address, log_to_driver=True)
        except ConnectionError as err:
            raise UsageError(f"cannot reach the Ray cluster at --address {address} ({err}); "
                             "start it (ray up / ray start --head) or drop --address for a local run")
    else:
        # Ray's own default auth for a local instance; do not set RAY_AUTH_MODE here: Ray reads it
        # at import time, so setting it now makes the GCS demand a token the driver never sends.
        # address="local": always a fresh local instance, never a cluster another process started
        ray.init(address="local", include_dashboard=False, log_to_driver=True, configure_logging=False)
        restrict_ray_token()


def restrict_ray_token() -> None:
    """Make Ray's auth token readable by its owner only (Ray 2.60 writes it with mode 0644).

    The token is what keeps other hosts and users off the local Ray instance's ports.
    """
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            path.chmod(0o600)
    except OSError:   # no token (auth disabled), or not ours to change
        pass


def one_node_cluster() -> bool:
    """True when the connected Ray cluster is a single node that can run trials (a laptop, or a
    one-machine ``ray start --head``); False for several nodes, or a head with no CPUs (a
    ``ray up`` cluster whose workers are still starting)."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    return len(alive) == 1 and alive[0].get("Resources", {}).get("CPU", 0) > 0
