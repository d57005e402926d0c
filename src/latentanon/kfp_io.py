"""Glue between Kubeflow Pipelines and the stage functions.

A KFP component gets its inputs as artifacts (directories or files somewhere on local disk, put
there by the KFP launcher) and its settings as parameters. The stage functions instead read and
write a fixed layout under ``paths.workdir`` (see ``latentanon.config.Layout``). This module builds
a scratch workspace laid out like a DVC checkout, links the input artifacts into it, lets the
component run the same stage function that DVC runs, and copies what the stage wrote into the
output artifacts.

Artifacts are named by *role*; the role says where in the layout the artifact lives:

=================  ==================================================  =========================
role               location under the workspace                          KFP type
=================  ==================================================  =========================
data               ``data.root`` (the benchmark videos)                  Dataset
manifests          ``data/manifests``                                     Dataset
encoder            ``models/encoder``                                     Model
adapter            ``models/aam``                                         Model
features           the feature store (``paths.features_uri``)             Dataset
anonymized         the anonymized store (``paths.anonymized_uri``)        Dataset
<stage>_report     ``reports/<stage>``                                    Dataset
report_md          ``reports/report.md``                                  Markdown
metrics_json       ``reports/metrics.json``                               Dataset
=================  ==================================================  =========================

Feature stores may live in object storage (``s3://``): then every worker writes the same store
and the artifact only carries a pointer file (``store.json``) instead of the shards.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from latentanon._files import write_text_atomic
from latentanon.config import ConfigError, Layout, Params, params_from_dict
from latentanon.errors import LatentanonError

STORE_POINTER = "store.json"
BENCHMARK_DIR = "data/benchmark"           # data.root inside a workspace
STORE_ROLES = {"features": "features_uri", "anonymized": "anonymized_uri"}
REPORT_SUFFIX = "_report"

# Where a component may find the settings that do not belong in params (they differ per cluster).
ENV_SCRATCH = "LATENTANON_SCRATCH"                  # roomy scratch volume (an emptyDir in the pod)
ENV_TUNE_STORAGE = "LATENTANON_TUNE_STORAGE"        # Optuna RDB URL from a Secret (read by the tune stage)
ENV_MLFLOW_FALLBACK = "LATENTANON_MLFLOW_TRACKING_URI"  # used only when no MLFLOW_TRACKING_URI is set

APPROVED = "approved"
REJECTED = "rejected"


class ArtifactError(LatentanonError):
    """An input artifact that does not hold what its role needs, or a missing stage output."""


# ----------------------------------------------------------------------------------------------
# params


def parse_params(params_yaml: str, overrides: Sequence[str] = ()) -> tuple[dict, list[str]]:
    """The params tree from the pipeline's YAML parameter and the user's overrides, both checked."""
    try:
        tree = yaml.safe_load(params_yaml) if params_yaml and params_yaml.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline parameter params_yaml: not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError("pipeline parameter params_yaml: expected a mapping of sections at the top level")
    overrides = [str(o) for o in (overrides or [])]
    params_from_dict(tree, overrides)  # fail early, before any work, on unknown keys or bad types
    return tree, overrides


def is_remote_uri(uri: str) -> bool:
    return "://" in (uri or "")


def tune_storage(params: Params) -> str:
    """The Optuna storage URL the tune workers share: the cluster's Secret first, as in the tune stage."""
    return os.environ.get(ENV_TUNE_STORAGE) or params.tune.storage


def tune_worker_count(params_yaml: str, overrides: Sequence[str], requested: int) -> int:
    """How many tune workers run at once: several only against one shared RDB storage.

    Every worker runs trials until the study holds ``tune.n_trials`` completed ones, so workers
    sharing a study split the trials among themselves. Without a shared server database each pod
    would keep its own sqlite study and repeat the others' work; then a single worker runs.
    """
    if requested < 1:
        raise ConfigError(f"pipeline parameter tune_workers_count: must be at least 1, got {requested}")
    tree, overrides = parse_params(params_yaml, overrides)
    params = params_from_dict(tree, overrides)
    storage = tune_storage(params)
    if not storage or storage.startswith("sqlite"):
        return 1
    return max(1, min(requested, params.tune.n_trials))


def worker_items(num_workers: int, mlflow_run_id: str) -> list[dict]:
    """ParallelFor items: each iteration's worker index, the worker count and the parent run."""
    if num_workers < 1:
        raise ConfigError(f"number of workers must be at least 1, got {num_workers}")
    return [{"worker": i, "num_workers": num_workers, "mlflow_run_id": mlflow_run_id} for i in range(num_workers)]


# ----------------------------------------------------------------------------------------------
# roles and locations


def role_location(role: str, layout: Layout) -> Path:
    """Where an artifact of this role lives inside the workspace layout."""
    fixed = {
        "data": layout.data_root,
        "manifests": layout.manifests,
        "encoder": layout.encoder_dir,
        "adapter": layout.adapter_dir,
        "report_md": layout.reports / "report.md",
        "metrics_json": layout.reports / "metrics.json",
    }
    if role in fixed:
        return fixed[role]
    if role in STORE_ROLES:
        uri = getattr(layout, STORE_ROLES[role])
        if is_remote_uri(uri):
            raise ArtifactError(f"role {role!r} is the remote store {uri}; it has no local location")
        return Path(uri)
    if role.endswith(REPORT_SUFFIX) and len(role) > len(REPORT_SUFFIX):
        return layout.report_dir(role[: -len(REPORT_SUFFIX)])
    raise ArtifactError(f"unknown artifact role {role!r}")


def _artifact_path(artifact: Any, role: str) -> Path:
    path = getattr(artifact, "path", None)
    if not path:
        raise ArtifactError(f"artifact for role {role!r} has no local path (uri={getattr(artifact, 'uri', None)!r})")
    return Path(path)


def read_store_pointer(path: Path) -> str | None:
    """The remote store URI an artifact points at, or None when the artifact holds the store."""
    pointer = path / STORE_POINTER
    if not pointer.is_file():
        return None
    try:
        uri = json.loads(pointer.read_text())["uri"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{pointer}: not a store pointer ({{'uri': ...}}): {exc}") from exc
    if not is_remote_uri(uri):
        raise ArtifactError(f"{pointer}: store pointer {uri!r} is not a remote URI")
    return uri


def _as_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


# ----------------------------------------------------------------------------------------------
# the workspace


@dataclass
class StageWorkspace:
    """A scratch DVC-like checkout for one component run.

    ``inputs`` maps a role to an input artifact or, for fan-in steps (``dsl.Collected``), a list
    of artifacts whose contents are merged. ``outputs`` maps a role to an output artifact.
    """

    params_yaml: str
    overrides: Sequence[str]
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    root: Path | None = None
    params: Params | None = None
    layout: Layout | None = None
    _owns_root: bool = False

    # -- set-up ------------------------------------------------------------------------------

    def __enter__(self) -> "StageWorkspace":
        _apply_environment_defaults()
        tree, overrides = parse_params(self.params_yaml, self.overrides)
        if self.root is None:
            scratch = os.environ.get(ENV_SCRATCH)
            base = scratch if scratch and Path(scratch).is_dir() else None
            self.root = Path(tempfile.mkdtemp(prefix="latentanon-kfp-", dir=base))
            self._owns_root = True
        try:
            self._prepare(tree, overrides)
        except BaseException:
            self.__exit__(None, None, None)  # no half-built workspace is left behind
            raise
        return self

    def _prepare(self, tree: dict, overrides: list[str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        forced = [f"paths.workdir={json.dumps(str(self.root))}", f"data.root={BENCHMARK_DIR}"]
        forced += self._store_overrides(tree, overrides)
        self.params = params_from_dict(tree, [*overrides, *forced])
        self.layout = Layout.from_params(self.params)
        for role, artifact in self.inputs.items():
            self._stage_in(role, artifact)

    def _store_overrides(self, tree: dict, overrides: list[str]) -> list[str]:
        """Remote stores stay where params put them; local ones live in the workspace."""
        configured = params_from_dict(tree, overrides).paths
        forced = []
        for role, field_name in STORE_ROLES.items():
            uri = getattr(configured, field_name)
            pointed = {read_store_pointer(_artifact_path(a, role)) for a in _as_list(self.inputs.get(role))}
            pointed.discard(None)
            if len(pointed) > 1:
                raise ArtifactError(f"input artifacts for {role!r} point at different stores: {sorted(pointed)}")
            if pointed:
                uri = pointed.pop()
            if not is_remote_uri(uri):
                uri = ""
            forced.append(f"paths.{field_name}={json.dumps(uri)}" if uri else f"paths.{field_name}=")
        return forced

    def _stage_in(self, role: str, artifact: Any) -> None:
        if role in STORE_ROLES and is_remote_uri(getattr(self.layout, STORE_ROLES[role])):
            return  # the stage reads the remote store directly
        sources = [_artifact_path(a, role) for a in _as_list(artifact)]
        for src in sources:
            if not src.exists():
                raise ArtifactError(f"input artifact for {role!r} is missing: {src}")
        dst = role_location(role, self.layout)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if len(sources) == 1 and role not in self.outputs:
            # Read-only input: a link is enough and costs nothing for large data.
            dst.symlink_to(sources[0].resolve(), target_is_directory=sources[0].is_dir())
            return
        # Fan-in, or an input the stage also updates: work on a private copy, never on the
        # upstream task's artifact.
        for src in sources:
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)

    # -- finishing ---------------------------------------------------------------------------

    def publish(self, summary: Mapping | None, metrics: Any = None) -> dict:
        """Copy what the stage wrote into the output artifacts and log its numbers as KFP metrics."""
        summary = dict(summary or {})
        for role, artifact in self.outputs.items():
            self._stage_out(role, artifact)
        if metrics is not None:
            log_metrics(metrics, summary)
        return summary

    def _stage_out(self, role: str, artifact: Any) -> None:
        dst = _artifact_path(artifact, role)
        if role in STORE_ROLES:
            uri = getattr(self.layout, STORE_ROLES[role])
            if is_remote_uri(uri):
                dst.mkdir(parents=True, exist_ok=True)
                write_text_atomic(dst / STORE_POINTER, json.dumps({"uri": uri}) + "\n")
                _set_metadata(artifact, store_uri=uri)
                return
        src = role_location(role, self.layout)
        if role in STORE_ROLES and not src.exists():
            src.mkdir(parents=True)  # an extract worker whose shards were all done elsewhere
        if not src.exists():
            raise ArtifactError(f"the stage did not write {src} (output artifact {role!r})")
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=False)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        _set_metadata(artifact, role=role)

    def __exit__(self, *exc_info) -> None:
        if self._owns_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


def _set_metadata(artifact: Any, **values: Any) -> None:
    metadata = getattr(artifact, "metadata", None)
    if isinstance(metadata, dict):
        metadata.update(values)


def _apply_environment_defaults() -> None:
    """Offline switches as in the CLI, and the cluster's MLflow URI when no integration set one."""
    from latentanon.cli import OFFLINE_ENV

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    fallback = os.environ.get(ENV_MLFLOW_FALLBACK)
    if fallback and not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = fallback


# ----------------------------------------------------------------------------------------------
# metrics and decisions


def scalar_metrics(summary: Mapping, prefix: str = "") -> dict[str, float]:
    """Every finite number in a nested summary, keyed by its dotted path."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(scalar_metrics(value, f"{name}."))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


def log_metrics(metrics: Any, summary: Mapping) -> dict[str, float]:
    values = scalar_metrics(summary)
    for name, value in sorted(values.items()):
        metrics.log_metric(name, value)
    return values


def gate_decision(summary: Mapping) -> str:
    """``approved`` or ``rejected``, as the gate stage's summary states it."""
    decision = summary.get("decision")
    if decision not in (APPROVED, REJECTED):
        raise ArtifactError(f"gate summary has no valid decision (got {decision!r}; keys {sorted(summary)})")
    return decision


# ----------------------------------------------------------------------------------------------
# the one call a component body makes


def run_component(
    stage: str,
    execute: Callable[..., Mapping | None],
    params_yaml: str,
    overrides: Iterable[str] = (),
    mlflow_run_id: str = "",
    inputs: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    metrics: Any = None,
    stage_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """Run one stage in a fresh workspace; returns its summary as JSON text.

    ``execute`` is ``latentanon.stages.execute`` (what the CLI, hence DVC, runs: the stage, its
    summary.json and its MLflow record), called as ``execute(stage, params, **stage_kwargs)``.
    ``mlflow_run_id`` is the pipeline's parent run (from the ``open_run`` step); a run id that the
    Kubeflow MLflow integration injected into the environment takes precedence.
    """
    with use_parent_run(mlflow_run_id), StageWorkspace(
        params_yaml=params_yaml,
        overrides=list(overrides or []),
        inputs=dict(inputs or {}),
        outputs=dict(outputs or {}),
    ) as workspace:
        summary = execute(stage, workspace.params, **dict(stage_kwargs or {}))
        published = workspace.publish(summary, metrics=metrics)
    return json.dumps(published, sort_keys=True, default=str)


@contextlib.contextmanager
def use_parent_run(mlflow_run_id: str):
    """Let the stage log under the pipeline's parent run unless KFP injected one already."""
    from latentanon.tracking.runs import RUN_ID_ENV

    if not isinstance(mlflow_run_id, str):
        raise ArtifactError(f"mlflow_run_id must be the parent run's id (text), got {mlflow_run_id!r}")
    if not mlflow_run_id or os.environ.get(RUN_ID_ENV):
        yield
        return
    os.environ[RUN_ID_ENV] = mlflow_run_id
    try:
        yield
    finally:
        os.environ.pop(RUN_ID_ENV, None)


def open_pipeline_run(params_yaml: str, overrides: Iterable[str] = ()) -> str:
    """The id of the MLflow parent run the pipeline's stages share (created when none is injected)."""
    from latentanon.tracking.runs import pipeline_run_id

    with StageWorkspace(params_yaml, list(overrides or []), inputs={}, outputs={}) as workspace:
        return pipeline_run_id(workspace.params, workspace.layout)


def close_pipeline_run(params_yaml: str, overrides: Iterable[str], mlflow_run_id: str, decision: str) -> str:
    """Close the parent run opened by ``open_pipeline_run``; a run KFP injected stays KFP's."""
    from latentanon.tracking import runs

    with StageWorkspace(params_yaml, list(overrides or []), inputs={}, outputs={}) as workspace:
        if os.environ.get(runs.RUN_ID_ENV):
            return json.dumps({"run_id": os.environ[runs.RUN_ID_ENV], "closed": False, "owner": "kubeflow"})
        client = runs.client_for(workspace.params, workspace.layout)
        client.set_tag(mlflow_run_id, "latentanon.gate_decision", decision)
        runs.close_pipeline_run(client, mlflow_run_id)
    return json.dumps({"run_id": mlflow_run_id, "closed": True, "decision": decision})


# ----------------------------------------------------------------------------------------------
# the gate, split so that the pipeline can branch on the decision (dsl.If) before promotion


def read_gate_decision(gate_report: Path) -> dict:
    path = Path(gate_report) / "decision.json"
    try:
        decision = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path}: gate decision missing (did the gate step run?)") from exc
    except ValueError as exc:
        raise ArtifactError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(decision, dict) or "decision" not in decision:
        raise ArtifactError(f"{path}: no 'decision' field")
    return decision


def promote_champion(params_yaml: str, overrides: Iterable[str], mlflow_run_id: str, gate_report: Any,
                     champion: Any) -> str:
    """Move @champion to the version the gate approved; the artifact records the registry entry."""
    from latentanon.tracking import gate as gate_lib
    from latentanon.tracking.registry import CHAMPION

    decision = read_gate_decision(_artifact_path(gate_report, "gate_report"))
    if decision["decision"] != APPROVED or not decision.get("version"):
        raise ArtifactError(
            f"gate decision is {decision['decision']!r} (version {decision.get('version')}); nothing to promote"
        )
    with use_parent_run(mlflow_run_id), StageWorkspace(params_yaml, list(overrides or []), inputs={},
                                                       outputs={}) as workspace:
        promoted = gate_lib.promote(workspace.params, str(decision["version"]), workspace.layout)
    name, version = promoted["model_name"], promoted["version"]
    record = {**promoted, "model_uri": f"models:/{name}/{version}", "alias_uri": f"models:/{name}@{CHAMPION}"}
    out = _artifact_path(champion, "champion")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "registered_model.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    _set_metadata(champion, model_uri=record["model_uri"], alias_uri=record["alias_uri"], version=version)
    return json.dumps(record, sort_keys=True)
