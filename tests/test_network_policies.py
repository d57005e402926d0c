"""The rendered NetworkPolicies, evaluated: a small model of Kubernetes NetworkPolicy semantics
decides whether a connection (from a pod, to a pod or an address, on a port) is allowed, and the
tests walk the paths KFP and latentanon need (allowed) and the ones nothing should open (denied),
in both install modes."""
from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
import yaml
from test_k8s import K8S, kubectl

OURS = {"app.kubernetes.io/part-of": "latentanon"}
PIPELINE_POD_LABELS = {**OURS, "pipelines.kubeflow.org/v2_component": "true"}
KUBE_API_SERVICE = "10.96.0.1"        # the overlays' default (kind / kubeadm)
KUBE_API_ENDPOINT = "172.18.0.2"


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: dict = field(default_factory=dict)

    def __hash__(self):
        return hash((self.namespace, tuple(sorted(self.labels.items()))))


@dataclass(frozen=True)
class Address:
    ip: str


def selects(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector: matchLabels and matchExpressions all hold ({} selects everything)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def namespace_labels(name: str) -> dict:
    return {"kubernetes.io/metadata.name": name}


def peer_matches(peer: dict, policy_namespace: str, other) -> bool:
    """One NetworkPolicyPeer against the other end of the connection."""
    if "ipBlock" in peer:
        if not isinstance(other, Address):
            return False  # pod-to-pod traffic is matched by selectors in this model
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(c) for c in block.get("except", []))
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels(other.namespace)):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), other.labels)


def port_matches(ports: list | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        if "port" not in entry:
            return True
        first = entry["port"]
        if first <= port <= entry.get("endPort", first):
            return True
    return False


def direction_allows(policies: list[dict], pod: Pod, other, port: int, protocol: str, direction: str) -> bool:
    """Isolated pods (selected by a policy of that direction) need a rule that admits the peer."""
    peers_key = "to" if direction == "Egress" else "from"
    selecting = [p for p in policies if p["metadata"]["namespace"] == pod.namespace
                 and direction in p["spec"].get("policyTypes", ["Ingress"])
                 and selects(p["spec"]["podSelector"], pod.labels)]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction.lower(), []) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(peer_matches(peer, pod.namespace, other) for peer in peers)
            if peer_ok and port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(policies: list[dict], source: Pod, target, port: int, protocol: str = "TCP") -> bool:
    if not direction_allows(policies, source, target, port, protocol, "Egress"):
        return False
    if isinstance(target, Pod):
        return direction_allows(policies, target, source, port, protocol, "Ingress")
    return True


def render_policies(overlay: str) -> list[dict]:
    done = subprocess.run([kubectl(), "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "NetworkPolicy"]


# ------------------------------------------------------------------------------------------------
# the evaluator itself

def test_evaluator_follows_networkpolicy_semantics():
    deny = {"metadata": {"namespace": "a", "name": "deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    web = Pod("a", {"app": "web"})
    db = Pod("a", {"app": "db"})
    elsewhere = Pod("b", {"app": "web"})
    assert allowed([], web, db, 5432), "no policy: everything is allowed"
    assert not allowed([deny], web, db, 5432)
    assert allowed([deny], elsewhere, Address("8.8.8.8"), 443), "policies only bind their namespace's pods"
    egress = {"metadata": {"namespace": "a", "name": "egress"},
              "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
                                   "ports": [{"protocol": "TCP", "port": 5432}]}]}}
    ingress = {"metadata": {"namespace": "a", "name": "ingress"},
               "spec": {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                            {"key": "app", "operator": "In", "values": ["web"]}]}}]}]}}
    assert not allowed([deny, egress], web, db, 5432), "egress alone is not enough: db still isolated"
    assert allowed([deny, egress, ingress], web, db, 5432)
    assert not allowed([deny, egress, ingress], web, db, 5433)
    assert not allowed([deny, egress, ingress], web, db, 5432, "UDP")
    cross = {"metadata": {"namespace": "a", "name": "cross"},
             "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                      "egress": [{"to": [{"namespaceSelector": {"matchLabels": namespace_labels("b")},
                                          "podSelector": {"matchLabels": {"app": "web"}}},
                                         {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]}}
    assert allowed([deny, cross], web, elsewhere, 80)
    assert not allowed([deny, cross], web, Pod("c", {"app": "web"}), 80)
    assert allowed([deny, cross], web, Address("10.2.3.4"), 80)
    assert not allowed([deny, cross], web, Address("10.1.3.4"), 80)


# ------------------------------------------------------------------------------------------------
# the rendered policies, per install mode

MODES = {"overlays/standalone": "kubeflow", "overlays/multi-user": "latentanon",
         "overlays/standalone-minio": "kubeflow", "overlays/multi-user-minio": "latentanon"}


@pytest.fixture(scope="module", params=sorted(MODES))
def mode(request):
    return request.param, MODES[request.param], render_policies(request.param)


# KFP's object store as upstream installs it. Clients dial the Service minio-service:9000 in
# kubeflow; a NetworkPolicy sees the backing pod and its container port after the Service's DNAT.
#   SeaweedFS (KFP >= 2.15 default; kubeflow/manifests v1.11.0 applications/pipeline/upstream/
#   third-party/seaweedfs): pods app=seaweedfs, Service port 9000 -> targetPort 8333 (S3); the pod
#   also listens on 8111 (IAM), 9333/19333 (master), 8888 (filer).
#   MinIO (kubeflow/manifests v1.10.2, KFP 2.5.0; KFP >= 2.15's MinIO option): pods app=minio, 9000.
SEAWEEDFS = {"pod": Pod("kubeflow", {"app": "seaweedfs", "application-crd-id": "kubeflow-pipelines"}),
             "port": 8333, "closed_ports": (8111, 9333, 19333, 8888)}
MINIO = {"pod": Pod("kubeflow", {"app": "minio", "application-crd-id": "kubeflow-pipelines"}),
         "port": 9000, "closed_ports": (9001,)}


def kfp_object_store(overlay: str) -> dict:
    return MINIO if overlay.endswith("-minio") else SEAWEEDFS


def service(name: str) -> Pod:
    return Pod("latentanon", {"app.kubernetes.io/name": name, **OURS})


KFP_API = Pod("kubeflow", {"app": "ml-pipeline"})
KFP_METADATA = Pod("kubeflow", {"component": "metadata-grpc-server"})
KFP_UI = Pod("kubeflow", {"app": "ml-pipeline-ui"})
KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
ISTIOD = Pod("istio-system", {"app": "istiod"})


def test_pipeline_pods_reach_exactly_what_kfp_and_latentanon_need(mode):
    overlay, pipeline_namespace, policies = mode
    task = Pod(pipeline_namespace, dict(PIPELINE_POD_LABELS))
    for target, port, protocol in [
        (service("minio"), 9000, "TCP"), (service("mlflow"), 5000, "TCP"), (service("postgres"), 5432, "TCP"),
        (kfp_object_store(overlay)["pod"], kfp_object_store(overlay)["port"], "TCP"), (KFP_API, 8888, "TCP"), (KFP_API, 8887, "TCP"),
        (KFP_METADATA, 8080, "TCP"), (KUBE_DNS, 53, "UDP"), (KUBE_DNS, 53, "TCP"),
        (Address(KUBE_API_SERVICE), 443, "TCP"), (Address(KUBE_API_ENDPOINT), 6443, "TCP"),
    ]:
        assert allowed(policies, task, target, port, protocol), f"{overlay}: task -> {target}:{port}/{protocol}"
    for target, port in [
        (Address("8.8.8.8"), 443), (Address("140.82.112.3"), 443), (Address("10.96.0.2"), 443),
        (Address(KUBE_API_SERVICE), 80), (KFP_API, 9090),
        (Pod("kubeflow", {"app": "katib-controller"}), 8443), (Pod("kubeflow", {"app": "ml-pipeline-ui"}), 3000),
        (service("postgres"), 5433), (Pod("kube-system", {"k8s-app": "metrics-server"}), 53),
        (Pod("team-b", {"app": "minio"}), 9000),
    ]:
        assert not allowed(policies, task, target, port), f"{overlay}: task -> {target}:{port} must be denied"


def test_pipeline_pods_reach_the_object_store_their_overlay_names_and_no_other(mode):
    """Launcher uploads and Argo's archived logs reach the backing pods on their S3 port only."""
    overlay, pipeline_namespace, policies = mode
    task = Pod(pipeline_namespace, dict(PIPELINE_POD_LABELS))
    store = kfp_object_store(overlay)
    other = MINIO if store is SEAWEEDFS else SEAWEEDFS
    assert allowed(policies, task, store["pod"], store["port"]), f"{overlay}: task -> KFP object store"
    for port in store["closed_ports"]:
        assert not allowed(policies, task, store["pod"], port), f"{overlay}: object store port {port} stays closed"
    assert not allowed(policies, task, other["pod"], other["port"]), f"{overlay}: only the installed store"
    assert not allowed(policies, task, Pod("team-b", dict(store["pod"].labels)), store["port"])


def test_the_default_overlays_follow_kfp_2_15s_seaweedfs_store():
    """Without the object-store component the pipeline pods would reach no KFP store at all."""
    for overlay in ("overlays/standalone", "overlays/multi-user"):
        policies = render_policies(overlay)
        task = Pod(MODES[overlay], dict(PIPELINE_POD_LABELS))
        assert allowed(policies, task, SEAWEEDFS["pod"], 8333) and not allowed(policies, task, MINIO["pod"], 9000)
    bare = [p for p in render_policies("overlays/standalone") if p["metadata"]["name"] != "pipeline-kfp-object-store"]
    assert not allowed(bare, Pod("kubeflow", dict(PIPELINE_POD_LABELS)), SEAWEEDFS["pod"], 8333)


def test_services_admit_only_their_clients(mode):
    overlay, pipeline_namespace, policies = mode
    mlflow, minio, postgres = service("mlflow"), service("minio"), service("postgres")
    anonymize = Pod("latentanon", {"app.kubernetes.io/name": "anonymize", "latentanon.io/store-client": "true",
                                   **OURS})
    assert allowed(policies, mlflow, postgres, 5432) and allowed(policies, mlflow, minio, 9000)
    assert allowed(policies, anonymize, minio, 9000) and allowed(policies, anonymize, mlflow, 5000)
    assert allowed(policies, service("bucket-init"), minio, 9000)
    # The KFP UI shows the report: it reads the pipeline root in this MinIO (and nothing else).
    assert allowed(policies, KFP_UI, minio, 9000)
    assert not allowed(policies, KFP_UI, postgres, 5432) and not allowed(policies, KFP_UI, mlflow, 5000)
    if pipeline_namespace == "latentanon":
        assert allowed(policies, Pod("latentanon", {"app": "ml-pipeline-ui-artifact"}), minio, 9000)
    # Lookalikes: pipeline labels in another namespace, unlabelled pods next to KFP, other tenants.
    for stranger in [Pod("team-b", dict(PIPELINE_POD_LABELS)), Pod("kubeflow", {"app": "ml-pipeline"}),
                     Pod("kubeflow", {"pipelines.kubeflow.org/v2_component": "true"}),
                     Pod("latentanon", {"app": "notebook"})]:
        for target, port in [(minio, 9000), (mlflow, 5000), (postgres, 5432)]:
            assert not allowed(policies, stranger, target, port), f"{overlay}: {stranger} -> {target}:{port}"
    # The services themselves reach nothing outside (no internet, no KFP).
    for source in (minio, postgres, mlflow, anonymize):
        assert not allowed(policies, source, Address("8.8.8.8"), 443), f"{overlay}: {source} -> internet"
        assert not allowed(policies, source, KFP_API, 8888)
    assert not allowed(policies, postgres, minio, 9000)


def test_istio_sidecars_reach_istiod_only_in_istio_mode(mode):
    overlay, pipeline_namespace, policies = mode
    task = Pod(pipeline_namespace, dict(PIPELINE_POD_LABELS))
    istio = overlay.startswith("overlays/multi-user")
    for source in (task, service("mlflow"), service("minio")):
        for port in (15012, 15017):
            assert allowed(policies, source, ISTIOD, port) is istio, f"{overlay}: {source} -> istiod:{port}"
        assert not allowed(policies, source, ISTIOD, 15010), "only the secure xDS and webhook ports"


def test_scoped_default_deny_leaves_kfp_itself_alone():
    """Standalone: our policies live next to KFP in kubeflow but select only latentanon's pods."""
    policies = render_policies("overlays/standalone")
    assert allowed(policies, KFP_API, Address("8.8.8.8"), 443)
    assert allowed(policies, KFP_UI, KFP_API, 8888)


@pytest.mark.parametrize("overlay", sorted(MODES))
def test_no_egress_rule_allows_any_address(overlay):
    for policy in render_policies(overlay):
        for rule in policy["spec"].get("egress", []) or []:
            name = policy["metadata"]["name"]
            assert rule.get("to"), f"{overlay} {name}: an egress rule without destinations allows any address"
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    assert network.prefixlen == network.max_prefixlen, f"{overlay} {name}: {network} is a range"
                else:
                    assert peer.get("podSelector"), f"{overlay} {name}: a whole namespace is a destination"


# ------------------------------------------------------------------------------------------------
# the Kubernetes API addresses, filled from the target cluster at install time

# `kubectl get service,endpoints kubernetes -n default -o json` of a managed cluster (EKS-like:
# service CIDR 172.20.0.0/16, two control-plane endpoints on 443; nothing like kind's defaults).
CLUSTER_DESCRIPTION = {
    "apiVersion": "v1", "kind": "List",
    "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
         "spec": {"clusterIP": "172.20.0.1", "clusterIPs": ["172.20.0.1"],
                  "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "namespace": "default"},
         "subsets": [{"addresses": [{"ip": "10.0.12.34"}, {"ip": "10.0.45.6"}],
                      "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}]},
    ],
}


def kube_api_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("kube_api_egress", K8S / "install" / "kube_api_egress.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("overlay", sorted(MODES))
def test_kube_api_egress_is_filled_from_the_cluster_description(overlay, tmp_path):
    """The generated policy replaces the overlay's: this cluster's API is reachable, kind's is not."""
    done = subprocess.run([sys.executable, str(K8S / "install" / "kube_api_egress.py")],
                          input=json.dumps(CLUSTER_DESCRIPTION), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    generated = yaml.safe_load(done.stdout)
    assert generated["metadata"]["name"] == "pipeline-kube-api"
    namespace = MODES[overlay]
    generated["metadata"]["namespace"] = namespace
    policies = [p for p in render_policies(overlay) if p["metadata"]["name"] != "pipeline-kube-api"] + [generated]
    task = Pod(namespace, dict(PIPELINE_POD_LABELS))
    for ip in ("172.20.0.1", "10.0.12.34", "10.0.45.6"):
        assert allowed(policies, task, Address(ip), 443), f"{overlay}: task -> {ip}:443"
    for ip, port in [(KUBE_API_SERVICE, 443), (KUBE_API_ENDPOINT, 6443), ("10.0.12.35", 443), ("10.0.12.34", 80)]:
        assert not allowed(policies, task, Address(ip), port), f"{overlay}: {ip}:{port} must be denied"


def test_kube_api_tool_rejects_descriptions_without_endpoints():
    tool = kube_api_tool()
    service_only = {"kind": "List", "items": [CLUSTER_DESCRIPTION["items"][0]]}
    with pytest.raises(tool.ClusterDescriptionError, match="no Endpoints"):
        tool.kube_api_policy(service_only)
    empty = {"kind": "List", "items": [{**CLUSTER_DESCRIPTION["items"][1], "subsets": []}]}
    with pytest.raises(tool.ClusterDescriptionError, match="no ready address"):
        tool.kube_api_policy(empty)
    bad = {"kind": "Endpoints", "metadata": {"name": "kubernetes"},
           "subsets": [{"addresses": [{"ip": "not-an-ip"}], "ports": [{"port": 443}]}]}
    with pytest.raises(tool.ClusterDescriptionError, match="not an IP address"):
        tool.kube_api_policy(bad)
    ipv6 = {"kind": "Endpoints", "metadata": {"name": "kubernetes"},
            "subsets": [{"addresses": [{"ip": "fd00::10"}], "ports": [{"port": 6443}]}]}
    assert tool.kube_api_destinations(ipv6) == [("fd00::10/128", 6443)]
