"""Offline checks of the `ray up` cluster files and the cluster study config.

`ray up` has no dry run, so a mistake in cluster.yaml shows up only after paying for instances.
These tests run Ray's own validation (``prepare_config`` + ``validate_config``, with boto3 made to
fail so nothing can reach AWS) and the static checks for the known traps; each check is also fed a
broken copy to prove it catches the trap.
"""
from __future__ import annotations

import copy
import re
import shlex
import sys
from pathlib import Path

import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from study.config import load_config

from tests.support.tiny_studies import ROOT
AWS_FILE = ROOT / "cluster.yaml"
LOCAL_FILE = ROOT / "configs" / "cluster-local.yaml"
STUDY_FILE = ROOT / "configs" / "cluster-gpu.yaml"
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")
AWS_PLACEHOLDERS = {"<REGION>", "<AMI_ID>", "<BUCKET>", "<ACCOUNT_ID>"}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def worker_types(cfg: dict) -> dict:
    return {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}


# ----------------------------------------------------------------------------- the checks


def non_integer_resources(cfg: dict) -> list[str]:
    """Node-type resources Ray's schema rejects (fractions belong in the trial's request)."""
    return [
        f"{name}.{res}={val!r}"
        for name, node in cfg.get("available_node_types", {}).items()
        for res, val in node.get("resources", {}).items()
        if not isinstance(val, int) or isinstance(val, bool)
    ]


def workers_without_profile(cfg: dict, storage_path: str) -> list[str]:
    """Worker types that cannot reach an s3:// Tune storage path (only the head gets a profile)."""
    if not storage_path.startswith("s3://"):
        return []
    return [n for n, t in worker_types(cfg).items() if "IamInstanceProfile" not in t["node_config"]]


def image_tags(cfg: dict) -> dict[str, str]:
    docker = cfg.get("docker", {})
    return {k: docker[k] for k in ("image", "head_image", "worker_image") if k in docker}


def bad_image_tags(cfg: dict, version: str) -> list[str]:
    """Images that are not ``rayproject/ray:<version>-py3XX-...`` for the installed Ray."""
    pattern = re.compile(rf"rayproject/ray:{re.escape(version)}-py3\d+(-(cpu|gpu|cu\d+))?")
    return [f"{k}={v}" for k, v in image_tags(cfg).items() if not pattern.fullmatch(v)]


def world_open_ports(cfg: dict) -> list[str]:
    """Security-group rules opening anything but SSH (22) to 0.0.0.0/0."""
    rules = cfg["provider"].get("security_group", {}).get("IpPermissions", [])
    found = []
    for rule in rules:
        world = any(r.get("CidrIp") == "0.0.0.0/0" for r in rule.get("IpRanges", []))
        if world and (rule.get("FromPort"), rule.get("ToPort")) != (22, 22):
            found.append(f"{rule.get('FromPort')}-{rule.get('ToPort')}")
    return found


def server_hosts(cfg: dict) -> dict[str, str]:
    """The --host of `mlflow server` and the --dashboard-host of `ray start` on the head."""
    hosts = {}
    for line in cfg["head_start_ray_commands"]:
        words = shlex.split(line.replace(";", " ; "))
        for flag, key in (("--host", "mlflow"), ("--dashboard-host", "dashboard")):
            for i, w in enumerate(words):
                if w == flag and i + 1 < len(words):
                    hosts[key] = words[i + 1]
                elif w.startswith(flag + "="):
                    hosts[key] = w.split("=", 1)[1]
    return hosts


def ray_validate(cfg: dict, monkeypatch) -> dict:
    """Ray's own offline validation, with boto3/botocore unimportable so nothing reaches AWS."""
    for module in ("boto3", "botocore"):
        monkeypatch.setitem(sys.modules, module, None)   # `import boto3` now raises ImportError
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


# ----------------------------------------------------------------------------- the files pass


@pytest.mark.parametrize("path", [AWS_FILE, LOCAL_FILE], ids=["aws", "local"])
def test_ray_accepts_cluster_file(path, monkeypatch):
    prepared = ray_validate(load(path), monkeypatch)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_local_provider_keeps_every_listed_worker(monkeypatch):
    cfg = load(LOCAL_FILE)
    node = ray_validate(cfg, monkeypatch)["available_node_types"]["local.cluster.node"]
    assert node["min_workers"] == node["max_workers"] == len(cfg["provider"]["worker_ips"])


@pytest.mark.parametrize("path", [AWS_FILE, LOCAL_FILE], ids=["aws", "local"])
def test_static_traps_absent(path):
    cfg = load(path)
    assert non_integer_resources(cfg) == []
    assert bad_image_tags(cfg, ray.__version__) == []
    hosts = server_hosts(cfg)
    assert hosts.get("dashboard") in LOCAL_HOSTS, hosts
    # MLflow: on AWS localhost and the head's private address (jobs on GPU workers log to it),
    # the security group keeps 5000 closed (test_aws_cluster_matches...); hosts without a
    # security group (the local provider) bind it to loopback only
    allowed = LOCAL_HOSTS | {"0.0.0.0"} if cfg["provider"]["type"] == "aws" else LOCAL_HOSTS
    assert hosts.get("mlflow") in allowed, hosts


def test_aws_cluster_matches_the_study_config():
    cfg, study = load(AWS_FILE), load_config(STUDY_FILE)
    assert workers_without_profile(cfg, study.tune.storage_path) == []
    assert world_open_ports(cfg) == []
    tags = image_tags(cfg)
    assert tags["worker_image"].endswith("-gpu") and tags["head_image"].endswith("-cpu")
    gpu_types = [t for t in worker_types(cfg).values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types, "no GPU worker type"
    assert all(t["min_workers"] == 0 for t in gpu_types), "idle GPUs must scale to zero"
    fits = [t for t in gpu_types if t["resources"]["CPU"] >= study.tune.cpus_per_trial
            and t["resources"]["GPU"] >= study.tune.gpus_per_trial]
    assert fits, "no worker type can hold one trial"
    assert cfg["available_node_types"][cfg["head_node_type"]]["resources"].get("CPU") == 0
    assert study.mlflow.tracking_uri.split("//")[1].split(":")[0] in LOCAL_HOSTS
    assert study.data.image_size == 129 and abs(study.data.crop_fraction - 128 / 150) < 1e-3


def test_placeholders_are_documented_and_absent_from_the_local_variant():
    aws_text = AWS_FILE.read_text()
    assert set(PLACEHOLDER.findall(aws_text)) == AWS_PLACEHOLDERS
    header = aws_text.split("cluster_name:")[0]
    assert all(p in header for p in AWS_PLACEHOLDERS), "explain every placeholder at the top"
    assert set(PLACEHOLDER.findall(STUDY_FILE.read_text())) <= AWS_PLACEHOLDERS
    assert PLACEHOLDER.findall(LOCAL_FILE.read_text()) == []


def test_image_tag_matches_the_project_pin():
    pin = re.search(r'"ray\[[^\]]*\]==([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert pin == ray.__version__
    assert all(t.split(":")[1].startswith(pin + "-") for t in image_tags(load(AWS_FILE)).values())


# ----------------------------------------------------------------------------- the checks bite


def test_checks_catch_broken_copies(monkeypatch):
    cfg = load(AWS_FILE)
    broken = copy.deepcopy(cfg)
    broken["available_node_types"]["ray.worker.gpu"]["resources"]["GPU"] = 0.5
    assert non_integer_resources(broken) == ["ray.worker.gpu.GPU=0.5"]
    with pytest.raises(Exception, match="not of type 'integer'"):
        ray_validate(broken, monkeypatch)

    broken = copy.deepcopy(cfg)
    del broken["available_node_types"]["ray.worker.gpu"]["node_config"]["IamInstanceProfile"]
    assert workers_without_profile(broken, "s3://b/x") == ["ray.worker.gpu"]
    assert workers_without_profile(broken, "/mnt/nfs/runs") == []

    broken["docker"]["worker_image"] = "rayproject/ray-ml:2.9.0-py310-gpu"
    assert bad_image_tags(broken, ray.__version__) == ["worker_image=rayproject/ray-ml:2.9.0-py310-gpu"]

    broken["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 5000, "ToPort": 5000, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    ]
    assert world_open_ports(broken) == ["5000-5000"]

    broken["head_start_ray_commands"] = ["ray start --head --dashboard-host=0.0.0.0",
                                         "nohup mlflow server --host 203.0.113.7 --port 5000 &"]
    assert server_hosts(broken) == {"dashboard": "0.0.0.0", "mlflow": "203.0.113.7"}
