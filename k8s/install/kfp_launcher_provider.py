"""Add latentanon's object-store entry to KFP's kfp-launcher ConfigMap without replacing it.

KFP's launcher reads ``kfp-launcher`` in the namespace a pipeline pod runs in. That ConfigMap
belongs to KFP: standalone KFP ships it in ``kubeflow`` (every tenant's pipelines read it), and
in a profile namespace the KFP profile controller writes it. latentanon therefore never applies
its own copy. Its pipeline names its root itself (``s3://latentanon-pipelines/v2/artifacts``,
compiled in), and this script merges one ``providers.s3.overrides`` entry, for that bucket only,
into the ConfigMap that is there: ``defaultPipelineRoot``, the default provider and every other
override stay exactly as they were, so no other pipeline's artifacts move.

    kubectl -n kubeflow get configmap kfp-launcher -o json \
      | python k8s/install/kfp_launcher_provider.py | kubectl apply -f -
    # no kfp-launcher there yet: python k8s/install/kfp_launcher_provider.py --namespace kubeflow --new

Running it again changes nothing (the entry is replaced, never duplicated).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys

import yaml

CONFIG_MAP = "kfp-launcher"
BUCKET = "latentanon-pipelines"
PIPELINE_ROOT = f"s3://{BUCKET}/v2/artifacts"
MANAGED_BY = "latentanon.io/kfp-launcher-provider"   # annotation naming the entry we own

PROVIDER_OVERRIDE = {
    "bucketName": BUCKET,
    "endpoint": "minio.latentanon.svc.cluster.local:9000",
    "region": "us-east-1",
    "disableSSL": True,
    "forcePathStyle": True,
    "credentials": {
        "fromEnv": False,
        "secretRef": {
            "secretName": "latentanon-s3-pipeline-root",
            "accessKeyKey": "AWS_ACCESS_KEY_ID",
            "secretKeyKey": "AWS_SECRET_ACCESS_KEY",
        },
    },
}


class LauncherConfigError(ValueError):
    pass


def merge_provider(config_map: dict | None, namespace: str) -> dict:
    """The ConfigMap with latentanon's bucket override in ``providers``; nothing else changed."""
    if config_map is None:
        merged = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP, "namespace": namespace},
                  "data": {}}
    else:
        if config_map.get("kind") != "ConfigMap" or config_map.get("metadata", {}).get("name") != CONFIG_MAP:
            raise LauncherConfigError(f"input is not the {CONFIG_MAP} ConfigMap (kind {config_map.get('kind')!r})")
        merged = copy.deepcopy(config_map)
        for server_field in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            merged["metadata"].pop(server_field, None)
    data = merged.setdefault("data", {}) or {}
    merged["data"] = data
    try:
        providers = yaml.safe_load(data.get("providers") or "") or {}
    except yaml.YAMLError as exc:
        raise LauncherConfigError(f"{CONFIG_MAP}: data.providers is not valid YAML: {exc}") from exc
    if not isinstance(providers, dict):
        raise LauncherConfigError(f"{CONFIG_MAP}: data.providers must be a mapping, got {type(providers).__name__}")
    s3 = providers.setdefault("s3", {}) or {}
    providers["s3"] = s3
    overrides = [o for o in (s3.get("overrides") or []) if o.get("bucketName") != BUCKET]
    s3["overrides"] = [*overrides, copy.deepcopy(PROVIDER_OVERRIDE)]
    data["providers"] = yaml.safe_dump(providers, sort_keys=False)
    merged["metadata"].setdefault("annotations", {})[MANAGED_BY] = f"providers.s3.overrides[bucketName={BUCKET}]"
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="kubeflow", help="where the ConfigMap lives (with --new)")
    parser.add_argument("--new", action="store_true", help="no kfp-launcher exists yet: write one with only our entry")
    args = parser.parse_args(argv)
    current = None
    if not args.new:
        text = sys.stdin.read()
        try:
            current = json.loads(text)
        except ValueError as exc:
            raise SystemExit(f"stdin: not the JSON of `kubectl get configmap {CONFIG_MAP} -o json`: {exc}") from exc
    try:
        merged = merge_provider(current, current["metadata"].get("namespace", args.namespace) if current else args.namespace)
    except LauncherConfigError as exc:
        raise SystemExit(str(exc)) from exc
    json.dump(merged, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
