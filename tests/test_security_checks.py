"""Security: no unpickling by default, localhost services, SSH-only cluster, no secrets shown.

See SECURITY.md for what is trusted. Source checks read the product's Python with ``ast`` (not
the tests, not the virtual environment), so a call split over lines is still found.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support.tiny_studies import ROOT

PRODUCT = sorted(p for d in ("common", "data_io", "lensnets", "study") for p in (ROOT / d).rglob("*.py")) \
    + [ROOT / "run_study.py"] + sorted((ROOT / "benchmarks").glob("*.py"))
CLUSTER_FILES = [ROOT / "cluster.yaml", ROOT / "configs" / "cluster-local.yaml"]
# the one place that may unpickle: ingest's read_image, only when the user passed --allow-pickle
PICKLE_OPT_IN = {("data_io/ingest.py", "read_image")}


def _calls(path: Path):
    """``(dotted callee, call node, enclosing function name)`` for every call in ``path``."""
    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Call):
                yield ast.unparse(child.func), child, func
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            yield from visit(child, inner)
    yield from visit(ast.parse(path.read_text(), str(path)), "<module>")


def _keyword(call: ast.Call, name: str):
    return next((ast.unparse(k.value) for k in call.keywords if k.arg == name), None)


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_torch_load_is_always_weights_only():
    found = [(path, call) for path in PRODUCT for name, call, _ in _calls(path) if name == "torch.load"]
    assert found, "the checker finds the project's torch.load calls"
    unsafe = [f"{_where(p)}:{c.lineno}" for p, c in found if _keyword(c, "weights_only") != "True"]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


def test_nothing_else_unpickles_untrusted_files():
    risky = {"pickle.load", "pickle.loads", "cloudpickle.load", "joblib.load", "dill.load", "torch.jit.load",
             "pd.read_pickle", "pandas.read_pickle"}
    bad, opt_in = [], set()
    for path in PRODUCT:
        for name, call, func in _calls(path):
            where = f"{_where(path)}:{call.lineno}"
            if name in risky:
                bad.append(f"{where} {name}")
            if name in ("np.load", "numpy.load") and _keyword(call, "allow_pickle") not in (None, "False"):
                opt_in.add((_where(path), func))
            if name == "yaml.load" and _keyword(call, "Loader") not in ("ConfigLoader", "yaml.SafeLoader"):
                bad.append(f"{where} yaml.load with an unsafe Loader")
    assert not bad, bad
    assert opt_in == PICKLE_OPT_IN, f"np.load(allow_pickle=...) outside the --allow-pickle path: {opt_in}"
    from study.config import ConfigLoader

    assert issubclass(ConfigLoader, yaml.SafeLoader)


def test_opt_in_pickle_is_guarded_by_the_flag():
    """In read_image the pickling np.load sits under ``if not allow_pickle: raise``."""
    source = (ROOT / "data_io" / "ingest.py").read_text()
    body = source[source.index("def read_image"):source.index("def ingest_folder")]
    guard, unsafe = body.index("if not allow_pickle:"), body.index("np.load(path, allow_pickle=True)")
    assert guard < unsafe and "raise UsageError" in body[guard:unsafe]


def test_mlflow_ui_commands_bind_to_localhost(capsys):
    from study.cli import print_summary
    from study.config import load_config
    from study.search.tuner import StudyOutcome

    board = pd.DataFrame({"trial": ["C4 w0.10"], "status": ["completed"], "epochs": [2], "best": [0.9],
                          "model": ["C4"], "run_id": ["r1"]})
    for uri in ("sqlite:///mlflow.db", "http://alice:hunter2@mlflow.example:5000"):
        config = load_config(None, [f"mlflow.tracking_uri={uri}"])
        print_summary(StudyOutcome(config, "1", "p1", board, Path("runs")))
    out = capsys.readouterr().out
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1" in out
    assert "hunter2" not in out and "http://alice:***@mlflow.example:5000" in out
    for line in (ROOT / "README.md").read_text().splitlines():   # commands users run on their laptop
        if "mlflow ui" in line or "mlflow server" in line:
            assert "--host 0.0.0.0" not in line, line


def _public_rules(config: dict) -> list[dict]:
    """Inbound rules open to addresses outside the cluster. Ray's AWS provider adds two defaults
    (ray/autoscaler/_private/aws/config.py: SSH 22 from 0.0.0.0/0, and all traffic from the
    cluster's own security group) to the file's ``security_group.IpPermissions``."""
    extra = config["provider"].get("security_group", {}).get("IpPermissions", [])
    ssh = {"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    return [r for r in [ssh, *extra] if r.get("IpRanges") or r.get("Ipv6Ranges") or r.get("PrefixListIds")]


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_cluster_file_opens_only_ssh_to_the_internet(path):
    config = yaml.safe_load(path.read_text())
    text = path.read_text()
    for line in text.splitlines():
        if "ray start --head" in line:
            assert "--dashboard-host=127.0.0.1" in line, line
    if config["provider"]["type"] == "aws":
        assert [(r["FromPort"], r["ToPort"]) for r in _public_rules(config)] == [(22, 22)]
    else:   # no security group: MLflow on the head's loopback, reached through SSH port forwarding
        servers = [line for line in text.splitlines() if "mlflow server" in line and not line.lstrip().startswith("#")]
        assert servers and all("mlflow server --host 127.0.0.1 " in line for line in servers), servers


def test_ray_default_rules_are_what_this_test_assumes():
    """If Ray's AWS provider changes its default inbound rules, the check above must change too."""
    source = (Path(__import__("ray").__file__).parent / "autoscaler" / "_private" / "aws" / "config.py").read_text()
    body = source[source.index("def _create_default_ssh_inbound_rules"):source.index("def _get_role")]
    assert '"FromPort": 22' in body and '"ToPort": 22' in body and body.count("CidrIp") == 1


@pytest.mark.slow
def test_local_ray_uses_token_auth_and_no_dashboard(tmp_path):
    """What ``run_study`` starts on a laptop: token authentication on, no dashboard server, and a
    token file only its owner can read (Ray writes it 0644).

    (Ray 2.60's gRPC ports listen on every interface; the token is what keeps others out.)"""
    probe = (
        "import ray\n"
        "from study.search.tuner import start_ray\n"
        "start_ray(None)\n"
        "from ray._private.authentication.authentication_utils import is_token_auth_enabled\n"
        "print('TOKEN', is_token_auth_enabled())\n"
        "print('DASHBOARD', ray._private.worker._global_node.address_info.get('webui_url'))\n"
        "ray.shutdown()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}   # Ray makes a new token here
    env.pop("RAY_AUTH_MODE", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TOKEN True" in done.stdout, done.stdout
    assert done.stdout.split("DASHBOARD ")[1].strip() in ("", "None"), done.stdout
    token = tmp_path / ".ray" / "auth_token"
    assert token.stat().st_mode & 0o777 == 0o600, "the token is readable by its owner only"


def test_credentials_are_masked_wherever_a_uri_is_shown():
    from common.errors import UsageError
    from study.tracking.mlflow_store import connect, redact

    assert redact("https://bob:tok3n@mlflow.example/path") == "https://bob:***@mlflow.example/path"
    assert redact("https://tok3n@mlflow.example") == "https://***@mlflow.example"   # a bare token
    assert redact("sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    with pytest.raises(UsageError) as err:
        connect("http://bob:tok3n@127.0.0.1:9")
    assert "tok3n" not in str(err.value) and "bob:***@127.0.0.1:9" in str(err.value)
