"""The oldest Kubeflow Pipelines backend the compiled pipeline runs on, and the spec fields each
backend understands.

The KFP SDK and kfp-kubernetes write fields that an older backend (API server, driver, launcher)
either rejects or silently ignores. ``unsupported_fields`` lists every field of a compiled YAML
that is unknown here or newer than ``MIN_KFP_BACKEND``; the compile test fails on any, so a new
SDK feature cannot slip into the YAML without someone checking that the declared backend has it.
"""

from __future__ import annotations

MIN_KFP_BACKEND = "2.15.0"

CORE = "2.0.0"  # the v2 pipeline spec (schemaVersion 2.1.0) every v2 backend reads
NOT_PINNED = "2.15.0"  # supported by 2.15.0; the first release with it is not pinned down here
UNRELEASED = "99.0.0"  # in no released backend yet

# field -> (first backend version that honours it, source)
FIELD_SINCE: dict[str, tuple[str, str]] = {
    # Core IR: pipeline, components, DAGs, tasks, inputs/outputs, executors, caching.
    **{
        name: (CORE, "KFP v2 pipeline spec")
        for name in (
            "pipelineInfo",
            "root",
            "components",
            "deploymentSpec",
            "executors",
            "container",
            "image",
            "command",
            "args",
            "env",
            "name",
            "value",
            "dag",
            "tasks",
            "taskInfo",
            "componentRef",
            "inputs",
            "outputs",
            "parameters",
            "artifacts",
            "inputDefinitions",
            "outputDefinitions",
            "parameterType",
            "artifactType",
            "schemaTitle",
            "schemaVersion",
            "isOptional",
            "defaultValue",
            "description",
            "runtimeValue",
            "constant",
            "componentInputParameter",
            "componentInputArtifact",
            "taskOutputParameter",
            "taskOutputArtifact",
            "producerTask",
            "outputParameterKey",
            "outputArtifactKey",
            "dependentTasks",
            "executorLabel",
            "cachingOptions",
            "enableCache",
            "sdkVersion",
            "triggerPolicy",
            "condition",
            "strategy",
            "parameterIterator",
            "items",
            "inputParameter",
            "itemInput",
            "parameterExpressionSelector",
            "artifactSelectors",
            "producerSubtask",
            "resources",
            "cpuLimit",
            "memoryLimit",
            "cpuRequest",
            "memoryRequest",
            "accelerator",
            "type",
            "count",
            "platforms",
            "kubernetes",
            "defaultPipelineRoot",
        )
    },
    # Exit handler with dsl.PipelineTaskFinalStatus.
    "taskFinalStatus": (NOT_PINNED, "dsl.ExitHandler exit task with PipelineTaskFinalStatus"),
    # ParallelFor(parallelism=...): backend PR kubeflow/pipelines#10798 (merged 2024).
    "iteratorPolicy": (NOT_PINNED, "kubeflow/pipelines#10798"),
    "parallelismLimit": (NOT_PINNED, "kubeflow/pipelines#10798"),
    # set_retry: the Argo compiler maps retryPolicy to retryStrategy (kubeflow/pipelines#11861, 2025).
    "retryPolicy": (NOT_PINNED, "kubeflow/pipelines#11861"),
    "maxRetryCount": (NOT_PINNED, "kubeflow/pipelines#11861"),
    "backoffDuration": (NOT_PINNED, "kubeflow/pipelines#11861"),
    "backoffFactor": (NOT_PINNED, "kubeflow/pipelines#11861"),
    "backoffMaxDuration": (NOT_PINNED, "kubeflow/pipelines#11861"),
    # Resource fields that may hold pipeline parameters (written by SDK 2.x next to the old ones).
    **{
        name: (NOT_PINNED, "resource requests as placeholders")
        for name in (
            "resourceCpuLimit",
            "resourceCpuRequest",
            "resourceMemoryLimit",
            "resourceMemoryRequest",
            "resourceType",
            "resourceCount",
        )
    },
    # dsl.Collected over artifacts (fan-in of a ParallelFor's Dataset outputs).
    "isArtifactList": ("2.14.0", "artifact fan-in with dsl.Collected"),
    # kfp-kubernetes platform spec.
    **{
        name: (CORE, "kfp-kubernetes platform spec")
        for name in (
            "secretAsEnv",
            "secretName",
            "keyToEnv",
            "secretKey",
            "envVar",
            "configMapAsEnv",
            "configMapName",
            "configMapKey",
            "tolerations",
            "key",
            "operator",
            "effect",
        )
    },
    "emptyDirMounts": (NOT_PINNED, "kfp-kubernetes empty_dir_mount"),
    "volumeName": (NOT_PINNED, "kfp-kubernetes empty_dir_mount"),
    "mountPath": (NOT_PINNED, "kfp-kubernetes empty_dir_mount"),
    "sizeLimit": (NOT_PINNED, "kfp-kubernetes empty_dir_mount(size_limit=...)"),
    "podMetadata": (NOT_PINNED, "kfp-kubernetes add_pod_label"),
    "labels": (NOT_PINNED, "kfp-kubernetes add_pod_label"),
    # kfp-kubernetes >= 2.15 writes these on every secret/config-map env; older drivers fail with
    # 'unknown field "optional" in kfp_kubernetes.SecretAsEnv' (kubeflow/pipelines#12495).
    "optional": ("2.15.0", "kubeflow/pipelines#12495"),
    "secretNameParameter": ("2.15.0", "kubeflow/pipelines#12495"),
    "configMapNameParameter": ("2.15.0", "kubeflow/pipelines#12495"),
    # Known fields of features no released backend runs yet: they must not appear.
    "artifactSources": (UNRELEASED, "static artifact fan-in, kubeflow/pipelines#14042 (open)"),
    "policy": (UNRELEASED, "set_retry(policy=...), kubeflow/pipelines#13386 (open)"),
}

# Maps whose keys are names chosen by the pipeline (tasks, inputs, labels), not spec fields.
NAME_MAPS = frozenset({"components", "executors", "tasks", "parameters", "artifacts", "labels"})
# Values that are user data (constants, defaults, command lines), not spec structure.
OPAQUE = frozenset(
    {"constant", "defaultValue", "description", "command", "args", "condition", "parameterExpressionSelector"}
)


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def spec_fields(documents: list[dict]) -> set[str]:
    """Every field name used in the compiled pipeline and platform spec (user-chosen names excluded)."""
    found: set[str] = set()

    def walk(node, in_name_map: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if in_name_map:
                    walk(value, False)
                    continue
                found.add(key)
                if key not in OPAQUE:
                    walk(value, key in NAME_MAPS)
        elif isinstance(node, list):
            for item in node:
                walk(item, False)

    for document in documents:
        walk(document, False)
    return found


def unsupported_fields(documents: list[dict], minimum: str = MIN_KFP_BACKEND) -> dict[str, str]:
    """Fields the declared backend may not understand: field -> why."""
    problems = {}
    for name in sorted(spec_fields(documents)):
        if name not in FIELD_SINCE:
            problems[name] = "not vetted: add it to pipelines/backend.py with the first backend that supports it"
            continue
        since, source = FIELD_SINCE[name]
        if version_tuple(since) > version_tuple(minimum):
            shown = "no released backend" if since == UNRELEASED else f"backend {since}"
            problems[name] = f"needs {shown} ({source}); the declared minimum is {minimum}"
    return problems
