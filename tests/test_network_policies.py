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
KUBE_API_SERVICE = "10.96.0.1"  # the overlays' default (kind / kubeadm)
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
            ip in ipaddress.ip_network(c) for c in block.get("except", [])
        )
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
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and direction in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], pod.labels)
    ]
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
    deny = {
        "metadata": {"namespace": "a", "name": "deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    web = Pod("a", {"app": "web"})
    db = Pod("a", {"app": "db"})
    elsewhere = Pod("b", {"app": "web"})
    assert allowed([], web, db, 5432), "no policy: everything is allowed"
    assert not allowed([deny], web, db, 5432)
    assert allowed([deny], elsewhere, Address("8.8.8.8"), 443), "policies only bind their namespace's pods"
    egress = {
        "metadata": {"namespace": "a", "name": "egress"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"protocol": "TCP", "port": 5432}]}
            ],
        },
    }
    ingress = {
        "metadata": {"namespace": "a", "name": "ingress"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "db"}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}}]}
            ],
        },
    }
    assert not allowed([deny, egress], web, db, 5432), "egress alone is not enough: db still isolated"
    assert allowed([deny, egress, ingress], web, db, 5432)
    assert not allowed([deny, egress, ingress], web, db, 5433)
    assert not allowed([deny, egress, ingress], web, db, 5432, "UDP")
    cross = {
        "metadata": {"namespace": "a", "name": "cross"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            "namespaceSelector": {"matchLabels": namespace_labels("b")},
                            "podSelector": {"matchLabels": {"app": "web"}},
                        },
                        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                    ]
                }
            ],
        },
    }
    assert allowed([deny, cross], web, elsewhere, 80)
    assert not allowed([deny, cross], web, Pod("c", {"app": "web"}), 80)
    assert allowed([deny, cross], web, Address("10.2.3.4"), 80)
    assert not allowed([deny, cross], web, Address("10.1.3.4"), 80)


# ------------------------------------------------------------------------------------------------
# the rendered policies, per install mode

MODES = {
    "overlays/standalone": "kubeflow",
    "overlays/multi-user": "latentanon",
    "overlays/standalone-minio": "kubeflow",
    "overlays/multi-user-minio": "latentanon",
}


@pytest.fixture(scope="module", params=sorted(MODES))
def mode(request):
    return request.param, MODES[request.param], render_policies(request.param)


# KFP's object store as upstream installs it. Clients dial the Service minio-service:9000 in
# kubeflow; a NetworkPolicy sees the backing pod and its container port after the Service's DNAT.
#   SeaweedFS (KFP >= 2.15 default; kubeflow/manifests v1.11.0 applications/pipeline/upstream/
#   third-party/seaweedfs): pods app=seaweedfs, Service port 9000 -> targetPort 8333 (S3); the pod
#   also listens on 8111 (IAM), 9333/19333 (master), 8888 (filer).
#   MinIO (kubeflow/manifests v1.10.2, KFP 2.5.0; KFP >= 2.15's MinIO option): pods app=minio, 9000.
SEAWEEDFS = {
    "pod": Pod("kubeflow", {"app": "seaweedfs", "application-crd-id": "kubeflow-pipelines"}),
    "port": 8333,
    "closed_ports": (8111, 9333, 19333, 8888),
}
MINIO = {
    "pod": Pod("kubeflow", {"app": "minio", "application-crd-id": "kubeflow-pipelines"}),
    "port": 9000,
    "closed_ports": (9001,),
}


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
        (service("minio"), 9000, "TCP"),
        (service("mlflow"), 5000, "TCP"),
        (service("postgres"), 5432, "TCP"),
        (kfp_object_store(overlay)["pod"], kfp_object_store(overlay)["port"], "TCP"),
        (KFP_API, 8888, "TCP"),
        (KFP_API, 8887, "TCP"),
        (KFP_METADATA, 8080, "TCP"),
        (KUBE_DNS, 53, "UDP"),
        (KUBE_DNS, 53, "TCP"),
        (Address(KUBE_API_SERVICE), 443, "TCP"),
        (Address(KUBE_API_ENDPOINT), 6443, "TCP"),
    ]:
        assert allowed(policies, task, target, port, protocol), f"{overlay}: task -> {target}:{port}/{protocol}"
    for target, port in [
        (Address("8.8.8.8"), 443),
        (Address("140.82.112.3"), 443),
        (Address("10.96.0.2"), 443),
        (Address(KUBE_API_SERVICE), 80),
        (KFP_API, 9090),
        (Pod("kubeflow", {"app": "katib-controller"}), 8443),
        (Pod("kubeflow", {"app": "ml-pipeline-ui"}), 3000),
        (service("postgres"), 5433),
        (Pod("kube-system", {"k8s-app": "metrics-server"}), 53),
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
    anonymize = Pod("latentanon", {"app.kubernetes.io/name": "anonymize", "latentanon.io/store-client": "true", **OURS})
    assert allowed(policies, mlflow, postgres, 5432) and allowed(policies, mlflow, minio, 9000)
    assert allowed(policies, anonymize, minio, 9000) and allowed(policies, anonymize, mlflow, 5000)
    assert allowed(policies, service("bucket-init"), minio, 9000)
    # The set-up Jobs reach exactly the service they configure.
    roles, auth_init = service("postgres-roles"), service("mlflow-auth-init")
    assert allowed(policies, roles, postgres, 5432) and allowed(policies, auth_init, mlflow, 5000)
    assert not allowed(policies, roles, mlflow, 5000) and not allowed(policies, roles, minio, 9000)
    assert not allowed(policies, auth_init, postgres, 5432) and not allowed(policies, auth_init, minio, 9000)
    # The KFP UI shows the report: it reads the pipeline root in this MinIO (and nothing else).
    assert allowed(policies, KFP_UI, minio, 9000)
    assert not allowed(policies, KFP_UI, postgres, 5432) and not allowed(policies, KFP_UI, mlflow, 5000)
    if pipeline_namespace == "latentanon":
        assert allowed(policies, Pod("latentanon", {"app": "ml-pipeline-ui-artifact"}), minio, 9000)
    # Lookalikes: pipeline labels in another namespace, unlabelled pods next to KFP, other tenants.
    for stranger in [
        Pod("team-b", dict(PIPELINE_POD_LABELS)),
        Pod("kubeflow", {"app": "ml-pipeline"}),
        Pod("kubeflow", {"pipelines.kubeflow.org/v2_component": "true"}),
        Pod("latentanon", {"app": "notebook"}),
    ]:
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
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {
                "clusterIP": "172.20.0.1",
                "clusterIPs": ["172.20.0.1"],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [
                {
                    "addresses": [{"ip": "10.0.12.34"}, {"ip": "10.0.45.6"}],
                    "ports": [{"name": "https", "port": 443, "protocol": "TCP"}],
                }
            ],
        },
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
    done = subprocess.run(
        [sys.executable, str(K8S / "install" / "kube_api_egress.py")],
        input=json.dumps(CLUSTER_DESCRIPTION),
        capture_output=True,
        text=True,
        timeout=60,
    )
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
    bad = {
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes"},
        "subsets": [{"addresses": [{"ip": "not-an-ip"}], "ports": [{"port": 443}]}],
    }
    with pytest.raises(tool.ClusterDescriptionError, match="not an IP address"):
        tool.kube_api_policy(bad)
    ipv6 = {
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes"},
        "subsets": [{"addresses": [{"ip": "fd00::10"}], "ports": [{"port": 6443}]}],
    }
    assert tool.kube_api_destinations(ipv6) == [("fd00::10/128", 6443)]


# ------------------------------------------------------------------------------------------------
# Istio (multi-user): a model of AuthorizationPolicy and PeerAuthentication on top of the
# NetworkPolicies. A connection goes through when the NetworkPolicies allow it and, where the
# target has a sidecar, the target's Istio policies do: PeerAuthentication STRICT refuses plain
# text; then any matching DENY rule refuses; then, if any ALLOW policy applies to the target (the
# mesh-wide deny-all is one that matches nothing), some ALLOW rule must match.

ROOT_NAMESPACE = "istio-system"


@dataclass(frozen=True)
class Workload:
    pod: Pod
    sidecar: bool
    principal: str = ""  # its mTLS identity when it has a sidecar

    @property
    def identity(self) -> tuple[str, str] | None:
        return (self.principal, self.pod.namespace) if self.sidecar else None


def _applies(policy: dict, target: Pod) -> bool:
    namespace = policy["metadata"]["namespace"]
    if namespace not in (ROOT_NAMESPACE, target.namespace):
        return False
    selector = (policy.get("spec") or {}).get("selector")
    return not selector or selects(selector, target.labels)


def _values_match(patterns: list[str], value: str) -> bool:
    return any(p == "*" and value or p == value for p in patterns)


def _source_matches(source: dict, identity: tuple[str, str] | None) -> bool:
    principal, namespace = identity or ("", "")
    if "principals" in source and not _values_match(source["principals"], principal):
        return False
    if "namespaces" in source and not _values_match(source["namespaces"], namespace):
        return False
    if "notPrincipals" in source and _values_match(source["notPrincipals"], principal):
        return False
    # Negative fields match plain text too (no identity is "not" any listed one): that is why our
    # DENY rule also asks for principals ["*"], which only an mTLS request has.
    return not ("notNamespaces" in source and namespace in source["notNamespaces"])


def _rule_matches(rule: dict, identity, port: int, headers: dict) -> bool:
    sources = rule.get("from")
    if sources and not any(_source_matches(s.get("source", {}), identity) for s in sources):
        return False
    operations = rule.get("to")
    if operations:
        ok = False
        for entry in operations:
            operation = entry.get("operation", {})
            if "ports" in operation and str(port) not in operation["ports"]:
                continue
            if "paths" in operation or "methods" in operation:
                continue  # the connections modelled here are not matched on HTTP paths
            ok = True
        if not ok:
            return False
    for condition in rule.get("when", []):
        key, values = condition["key"], condition.get("values", [])
        if key == "source.namespace":
            if not identity or identity[1] not in values:
                return False
        elif key.startswith("request.headers["):
            if headers.get(key[len("request.headers[") : -1]) not in values:
                return False
        else:
            return False
    return True


def istio_allows(policies: list[dict], source: Workload, target: Workload, port: int, headers: dict | None = None):
    if not target.sidecar:
        return True  # nothing enforces Istio policy at a pod without a sidecar
    headers = headers or {}
    applying = [p for p in policies if _applies(p, target.pod)]
    peer = [p for p in applying if p["kind"] == "PeerAuthentication"]
    if (
        not source.sidecar
        and any(p["spec"].get("mtls", {}).get("mode") == "STRICT" for p in peer)
        and not any(p["spec"].get("mtls", {}).get("mode") == "PERMISSIVE" and p["spec"].get("selector") for p in peer)
    ):
        return False  # a workload-level PERMISSIVE overrides a namespace or mesh STRICT
    authz = [p for p in applying if p["kind"] == "AuthorizationPolicy"]
    identity = source.identity
    for policy in authz:
        denying = (policy.get("spec") or {}).get("action") == "DENY"
        if denying and any(_rule_matches(r, identity, port, headers) for r in policy["spec"].get("rules", [])):
            return False
    allows = [p for p in authz if (p.get("spec") or {}).get("action", "ALLOW") == "ALLOW"]
    if not allows:
        return True
    return any(
        _rule_matches(r, identity, port, headers) for p in allows for r in (p.get("spec") or {}).get("rules", [])
    )


# What the Kubeflow platform installs (kubeflow/manifests v1.11.0): the mesh-wide deny-all
# (common/istio/istio-install/base/deny_all_authorizationpolicy.yaml) and, in each profile
# namespace, the profile controller's ns-owner-access-istio (the owner through the gateway, any
# workload of the namespace, health probes). Mesh mTLS STRICT is assumed: the harder case.
KUBEFLOW_ISTIO = [
    {"kind": "AuthorizationPolicy", "metadata": {"name": "global-deny-all", "namespace": ROOT_NAMESPACE}, "spec": {}},
    {
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": ROOT_NAMESPACE},
        "spec": {"mtls": {"mode": "STRICT"}},
    },
    {
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "ns-owner-access-istio", "namespace": "latentanon"},
        "spec": {
            "rules": [
                {
                    "from": [
                        {
                            "source": {
                                "principals": ["cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]
                            }
                        }
                    ],
                    "when": [{"key": "request.headers[kubeflow-userid]", "values": ["owner@example.com"]}],
                },
                {"when": [{"key": "source.namespace", "values": ["latentanon"]}]},
                {"to": [{"operation": {"paths": ["/healthz", "/metrics", "/wait-for-drain"]}}]},
            ]
        },
    },
]


def render_istio(overlay: str) -> list[dict]:
    done = subprocess.run([kubectl(), "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [
        d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] in ("AuthorizationPolicy", "PeerAuthentication")
    ]


def in_mesh(pod: Pod, service_account: str) -> Workload:
    return Workload(pod, True, f"cluster.local/ns/{pod.namespace}/sa/{service_account}")


def test_istio_evaluator_follows_authorization_semantics():
    target = in_mesh(Pod("a", {"app": "db"}), "db")
    friend, stranger = in_mesh(Pod("a", {"app": "web"}), "web"), in_mesh(Pod("b", {"app": "web"}), "web")
    plain = Workload(Pod("a", {"app": "job"}), False)
    assert istio_allows([], stranger, target, 5432), "no policy: allowed"
    assert not istio_allows(KUBEFLOW_ISTIO[:1], friend, target, 5432), "deny-all matches nothing"
    profile = {
        **KUBEFLOW_ISTIO[2],
        "metadata": {"name": "p", "namespace": "a"},
        "spec": {"rules": [{"when": [{"key": "source.namespace", "values": ["a"]}]}]},
    }
    assert istio_allows([KUBEFLOW_ISTIO[0], profile], friend, target, 5432)
    assert not istio_allows([KUBEFLOW_ISTIO[0], profile], stranger, target, 5432)
    assert not istio_allows([KUBEFLOW_ISTIO[0], profile], plain, target, 5432), "plain text has no namespace"
    assert not istio_allows(KUBEFLOW_ISTIO[1:2], plain, target, 5432), "STRICT refuses plain text"
    assert istio_allows([], plain, Workload(Pod("a", {}), False), 80), "no sidecar, no enforcement"


def test_istio_admits_every_path_a_run_needs_and_refuses_the_others():
    for overlay in ("overlays/multi-user", "overlays/multi-user-minio"):
        istio = KUBEFLOW_ISTIO + render_istio(overlay)
        network = render_policies(overlay)
        task = Workload(Pod("latentanon", dict(PIPELINE_POD_LABELS)), False)  # KFP: inject "false"
        bucket_init = Workload(service("bucket-init"), False)
        roles, auth_init = Workload(service("postgres-roles"), False), Workload(service("mlflow-auth-init"), False)
        anonymize = Workload(
            Pod("latentanon", {"app.kubernetes.io/name": "anonymize", "latentanon.io/store-client": "true", **OURS}),
            False,
        )
        minio, mlflow, postgres = (in_mesh(service(n), n) for n in ("minio", "mlflow", "postgres"))
        ui = in_mesh(KFP_UI, "ml-pipeline-ui")
        ui_artifact = in_mesh(Pod("latentanon", {"app": "ml-pipeline-ui-artifact"}), "default-editor")

        def through(source: Workload, target: Workload, port: int) -> bool:
            return allowed(network, source.pod, target.pod, port) and istio_allows(istio, source, target, port)

        for source, target, port in [
            (task, minio, 9000),
            (task, mlflow, 5000),
            (task, postgres, 5432),
            (mlflow, postgres, 5432),
            (mlflow, minio, 9000),
            (bucket_init, minio, 9000),
            (roles, postgres, 5432),
            (auth_init, mlflow, 5000),
            (anonymize, minio, 9000),
            (anonymize, mlflow, 5000),
            (ui, minio, 9000),
            (ui_artifact, minio, 9000),
        ]:
            assert through(source, target, port), f"{overlay}: {source.pod} -> {target.pod}:{port}"
        # Without our policies the deny-all refuses the sidecar-less pipeline pods: what broke.
        assert not istio_allows(KUBEFLOW_ISTIO, task, minio, 9000)
        assert not istio_allows(KUBEFLOW_ISTIO, ui, minio, 9000)
        foreign = in_mesh(Pod("team-b", {"app": "notebook"}), "default-editor")
        kfp_api = in_mesh(KFP_API, "ml-pipeline")
        for source, target, port in [
            (foreign, minio, 9000),
            (foreign, mlflow, 5000),
            (kfp_api, postgres, 5432),
            (ui, mlflow, 5000),
            (ui, postgres, 5432),
            (task, minio, 9001),
            (task, mlflow, 5001),
        ]:
            assert not through(source, target, port), f"{overlay}: {source.pod} -> {target.pod}:{port}"
        # Istio alone refuses a foreign identity, whatever the NetworkPolicies would say.
        for source, target, port in [(foreign, minio, 9000), (foreign, postgres, 5432), (kfp_api, mlflow, 5000)]:
            assert not istio_allows(istio, source, target, port), f"{overlay}: Istio admits {source.pod}"
        assert not istio_allows(istio, task, minio, 9001), "only the service port is opened"


def test_jobs_run_without_a_sidecar_so_they_complete_under_either_istio_mode():
    """A classic Envoy sidecar never exits, so a Job with one never completes; native sidecars
    would end with it. Jobs opt out of injection and so work under both."""
    for overlay in ("overlays/multi-user", "overlays/standalone"):
        done = subprocess.run([kubectl(), "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=120)
        jobs = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] in ("Job", "CronJob")]
        assert {j["metadata"]["name"] for j in jobs} >= {
            "bucket-init",
            "latentanon-anonymize",
            "postgres-roles",
            "mlflow-auth-init",
        }
        for job in jobs:
            template = (
                job["spec"]["jobTemplate"]["spec"]["template"] if job["kind"] == "CronJob" else job["spec"]["template"]
            )
            annotations = template["metadata"].get("annotations", {})
            assert annotations.get("sidecar.istio.io/inject") == "false", f"{overlay}: {job['metadata']['name']}"
