"""deploy/k8s/rayjob.yaml against KubeRay's published RayJob CRD schema, offline.

The schema is the vendored subset deploy/k8s/schema/rayjob-v1.7.0.subset.json (its `x-source`
names the KubeRay release and commit; deploy/k8s/schema/cut_subset.py made it). Validation is
JSON Schema plus what Kubernetes adds for a CRD: an unknown field is an error (kubectl's strict
field validation) unless the schema preserves unknown fields, and `x-kubernetes-int-or-string`
takes either. No cluster is involved: nothing here talks to an API server or runs the job.
"""
from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import yaml

from tests.support.tiny_studies import ROOT

MANIFEST = ROOT / "deploy" / "k8s" / "rayjob.yaml"
SCHEMA = ROOT / "deploy" / "k8s" / "schema" / "rayjob-v1.7.0.subset.json"


def kubernetes_strict(schema: dict) -> dict:
    """The CRD schema as JSON Schema with Kubernetes' rules for unknown fields and int-or-string."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-") and k != "$comment"}
    if schema.get("x-kubernetes-int-or-string") and "anyOf" not in schema:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in schema:
        out["properties"] = {k: kubernetes_strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = kubernetes_strict(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = kubernetes_strict(schema["items"])
    if "anyOf" in schema:
        out["anyOf"] = [kubernetes_strict(s) for s in schema["anyOf"]]
    return out


@pytest.fixture(scope="module")
def subset() -> dict:
    return json.loads(SCHEMA.read_text())


@pytest.fixture(scope="module")
def validator(subset):
    return jsonschema.Draft7Validator(kubernetes_strict(subset))


@pytest.fixture
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def errors(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_manifest_passes_kuberays_rayjob_schema(validator, subset, manifest):
    assert errors(validator, manifest) == []
    kind = subset["x-kind"]
    assert manifest["apiVersion"] == f"{kind['group']}/{kind['version']}" and manifest["kind"] == kind["kind"]
    source = subset["x-source"]
    assert source["repository"] == "https://github.com/ray-project/kuberay" and source["tag"] in subset["$comment"]


@pytest.mark.parametrize("change, expected", [
    (lambda m: m["spec"].update(shutdownAfterJobFinish=True), "Additional properties"),          # a typo
    (lambda m: m["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(replicas="2"), "is not of type 'integer'"),
    (lambda m: m["spec"]["rayClusterSpec"]["headGroupSpec"].pop("template"), "'template' is a required property"),
    (lambda m: m["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
     "is not of type 'string'"),
    (lambda m: m["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
     .update(volumeMount=[]), "Additional properties"),
])
def test_the_check_catches_what_the_api_server_would_reject(validator, manifest, change, expected):
    broken = copy.deepcopy(manifest)
    change(broken)
    found = errors(validator, broken)
    assert any(expected in e for e in found), found


def test_the_manifest_runs_the_study_the_slurm_job_runs(manifest):
    from study.config import load_config

    spec = manifest["spec"]
    entry = spec["entrypoint"].split()
    assert entry[entry.index("--config") + 1] == "/app/configs/slurm-gpu.yaml"
    assert "--resume" in entry and entry[entry.index("--resume") + 1] == "auto"   # a retry resumes
    config = load_config(str(ROOT / "configs" / "slurm-gpu.yaml"), [])
    workers = spec["rayClusterSpec"]["workerGroupSpecs"]
    gpus = sum(w["replicas"] * w["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
               for w in workers)
    assert gpus == config.tune.max_concurrent * config.tune.gpus_per_trial
    import ray

    assert spec["rayClusterSpec"]["rayVersion"] == ray.__version__
