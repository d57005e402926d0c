"""The oldest Kubeflow Pipelines backend the compiled pipeline runs on, and what its protos do not say.

Which fields a backend knows is read from its own protos (``pipelines/protos.py`` parses the
compiled YAML strictly with the oldest and the newest supported backends'). A proto can define a
field that a backend's driver does not yet honour, or that the protos of an older backend also
define with no effect: those few are listed here with the first backend that acts on them, and
``unsupported_fields`` flags any of them newer than ``MIN_KFP_BACKEND``.
"""

from __future__ import annotations

MIN_KFP_BACKEND = "2.15.0"

UNRELEASED = "99.0.0"  # in no released backend yet

# field -> (first backend version that honours it, source)
FIELD_SINCE: dict[str, tuple[str, str]] = {
    # dsl.Collected over artifacts (fan-in of a ParallelFor's Dataset outputs).
    "isArtifactList": ("2.14.0", "artifact fan-in with dsl.Collected"),
    # kfp-kubernetes >= 2.15 writes these on every secret/config-map env; older drivers fail with
    # 'unknown field "optional" in kfp_kubernetes.SecretAsEnv' (kubeflow/pipelines#12495).
    "optional": ("2.15.0", "kubeflow/pipelines#12495"),
    "secretNameParameter": ("2.15.0", "kubeflow/pipelines#12495"),
    "configMapNameParameter": ("2.15.0", "kubeflow/pipelines#12495"),
    # In the protos, not yet run by any released backend: they must not appear.
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
    """Fields of the table above that the declared backend does not act on: field -> why."""
    problems = {}
    for name in sorted(spec_fields(documents) & set(FIELD_SINCE)):
        since, source = FIELD_SINCE[name]
        if version_tuple(since) > version_tuple(minimum):
            shown = "no released backend" if since == UNRELEASED else f"backend {since}"
            problems[name] = f"needs {shown} ({source}); the declared minimum is {minimum}"
    return problems
