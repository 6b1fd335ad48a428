#!/usr/bin/env python
"""Cut the part of KubeRay's RayJob CRD schema that deploy/k8s/rayjob.yaml uses (how
rayjob-v1.7.0.subset.json was made; rerun it after changing the manifest or KubeRay's version).

    git clone --depth 1 --branch v1.7.0 https://github.com/ray-project/kuberay
    python deploy/k8s/schema/cut_subset.py kuberay/ray-operator/config/crd/bases/ray.io_rayjobs.yaml \
        deploy/k8s/rayjob.yaml --tag v1.7.0 --commit <sha> > deploy/k8s/schema/rayjob-v1.7.0.subset.json

The full schema is 1.4 MB (every Pod field, twice). The subset keeps, along every path the
manifest uses, each object's complete list of property names with their types, `required`,
`enum`, `format`, bounds, patterns and the int-or-string markers; a property the manifest does not
use keeps only its type. So a misspelt or misplaced key, a wrong type or a missing required field
is caught as in the full schema; changing the manifest to use a new field needs a new cut.
Descriptions and `x-kubernetes-validations` (CEL rules, which only an API server evaluates) are
left out.
"""
from __future__ import annotations

import argparse
import json
import sys

import yaml

KEEP = ("type", "required", "enum", "format", "minimum", "maximum", "minItems", "maxItems",
        "minLength", "maxLength", "pattern", "nullable", "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields")
STUB = ("type", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "anyOf")


def cut(schema: dict, samples: list) -> dict:
    """``schema`` cut to what the manifest values ``samples`` (at this position) use."""
    if not samples:
        return {k: schema[k] for k in STUB if k in schema}
    out = {k: schema[k] for k in KEEP if k in schema}
    if "anyOf" in schema:
        out["anyOf"] = [cut(s, samples) for s in schema["anyOf"]]
    dicts = [s for s in samples if isinstance(s, dict)]
    if "properties" in schema:
        out["properties"] = {name: cut(sub, [d[name] for d in dicts if name in d])
                             for name, sub in schema["properties"].items()}
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = cut(schema["additionalProperties"], [v for d in dicts for v in d.values()])
    if "items" in schema:
        out["items"] = cut(schema["items"], [v for s in samples if isinstance(s, list) for v in s])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("crd", help="ray.io_rayjobs.yaml from ray-project/kuberay")
    parser.add_argument("manifest", help="the RayJob manifest to cut the schema for")
    parser.add_argument("--tag", required=True, help="the KubeRay release the CRD comes from")
    parser.add_argument("--commit", required=True, help="that release's commit")
    args = parser.parse_args()
    crd = yaml.safe_load(open(args.crd))
    manifest = yaml.safe_load(open(args.manifest))
    version = manifest["apiVersion"].split("/")[1]
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    path = "ray-operator/config/crd/bases/ray.io_rayjobs.yaml"
    subset = {
        "$comment": (f"A subset of the openAPIV3Schema of KubeRay {args.tag}'s RayJob CRD, {crd['spec']['group']}/"
                     f"{version}: https://github.com/ray-project/kuberay/blob/{args.tag}/{path} (commit "
                     f"{args.commit}), cut for deploy/k8s/rayjob.yaml by deploy/k8s/schema/cut_subset.py."),
        "x-source": {"repository": "https://github.com/ray-project/kuberay", "tag": args.tag,
                     "commit": args.commit, "path": path},
        "x-kind": {"group": crd["spec"]["group"], "version": version, "kind": crd["spec"]["names"]["kind"]},
        **cut(served["schema"]["openAPIV3Schema"], [manifest]),
    }
    json.dump(subset, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
