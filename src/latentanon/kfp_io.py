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
from latentanon.environment import TUNE_STORAGE_ENV
from latentanon.errors import LatentanonError

STORE_POINTER = "store.json"
BENCHMARK_DIR = "data/benchmark"           # data.root inside a workspace
STORE_ROLES = {"features": "features_uri", "anonymized": "anonymized_uri"}
REPORT_SUFFIX = "_report"

# Where a component may find the settings that do not belong in params (they differ per cluster).
ENV_SCRATCH = "LATENTANON_SCRATCH"                  # roomy scratch volume (an emptyDir in the pod)
ENV_TUNE_STORAGE = TUNE_STORAGE_ENV                # Optuna RDB URL from a Secret (read by the tune stage)
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


def worker_items(num_workers: int, **shared: str) -> list[dict]:
    """ParallelFor items: each iteration's worker index, the worker count and the shared texts.

    Everything a loop iteration needs from upstream task *parameters* travels in its item
    (``params_yaml``, the parent run id): kfp.local substitutes the loop item for task-output
    parameters that cross into a loop, so only artifacts and items may cross.
    """
    if num_workers < 1:
        raise ConfigError(f"number of workers must be at least 1, got {num_workers}")
    for key, value in shared.items():
        if not isinstance(value, str):
            raise ArtifactError(f"loop item field {key!r} must be text, got {value!r}")
    return [{"worker": i, "num_workers": num_workers, **shared} for i in range(num_workers)]


# ----------------------------------------------------------------------------------------------
# typed run parameters (the knobs a user changes per run, shown in the KFP run form)

# run parameter -> the params key it sets. Precedence: params_yaml < these < overrides.
PIPELINE_KNOBS: dict[str, str] = {
    "encoder": "pretrain_encoder.encoder",
    "pretrain_epochs": "pretrain_encoder.epochs",
    "tune_trials": "tune.n_trials",
    "tune_epochs_per_trial": "tune.epochs_per_trial",
    "train_epochs": "train.epochs",
    "max_normalized_leakage": "gate.max_normalized_leakage",
    "max_moving_normalized_leakage": "gate.max_moving_normalized_leakage",
    "min_relative_cmap_drop": "gate.min_relative_cmap_drop",
    "max_utility_relative_drop": "gate.max_utility_relative_drop",
}


def knob_defaults(params_yaml: str) -> dict[str, Any]:
    """The knobs' values in a params text (the compiled pipeline's run-form defaults)."""
    params = params_from_dict(*parse_params(params_yaml))
    values = {}
    for knob, key in PIPELINE_KNOBS.items():
        section, field_name = key.split(".")
        values[knob] = getattr(getattr(params, section), field_name)
    return values


def resolve_params(params_yaml: str, overrides: Sequence[str], knobs: Mapping[str, Any]) -> str:
    """One complete, validated params text: params_yaml, then the typed knobs, then the overrides.

    The text is deterministic (sorted keys), so tasks that take it are cached on its content.
    """
    from latentanon._configtools import to_dict

    unknown = sorted(set(knobs) - set(PIPELINE_KNOBS))
    if unknown:
        raise ConfigError(f"unknown pipeline run parameters {unknown}; known: {sorted(PIPELINE_KNOBS)}")
    tree, overrides = parse_params(params_yaml, overrides)
    settings = [f"{PIPELINE_KNOBS[name]}={json.dumps(value)}" for name, value in sorted(knobs.items())]
    try:
        params = params_from_dict(tree, [*settings, *overrides])
    except ConfigError as exc:
        raise ConfigError(f"pipeline run parameters: {exc}") from exc
    return yaml.safe_dump(to_dict(params), sort_keys=True)


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
    from latentanon.environment import OFFLINE_ENV

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    fallback = os.environ.get(ENV_MLFLOW_FALLBACK)
    if fallback and not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["MLFLOW_TRACKING_URI"] = fallback


# ----------------------------------------------------------------------------------------------
# metrics and decisions


# The KFP run page lists Metrics flat: keep the headline numbers (at most two levels deep, e.g.
# ``utility.ar_top1``), not every per-seed or per-attribute breakdown (those are in MLflow).
METRICS_MAX_DEPTH = 2


def scalar_metrics(summary: Mapping, prefix: str = "", max_depth: int | None = None) -> dict[str, float]:
    """Every finite number in a nested summary, keyed by its dotted path (down to ``max_depth``)."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if max_depth is None or max_depth > 1:
                out.update(scalar_metrics(value, f"{name}.", None if max_depth is None else max_depth - 1))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)) and math.isfinite(float(value)):
            out[name] = float(value)
    return out


def log_metrics(metrics: Any, summary: Mapping, max_depth: int = METRICS_MAX_DEPTH) -> dict[str, float]:
    """The curated headline numbers as KFP Metrics (the full summary goes to MLflow)."""
    values = scalar_metrics(summary, max_depth=max_depth)
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
    track: bool = True,
    plots: Any = None,
) -> str:
    """Run one stage in a fresh workspace; returns its summary as JSON text.

    ``execute`` is ``latentanon.stages.execute`` (what the CLI, hence DVC, runs: the stage, its
    summary.json and its MLflow record), called as ``execute(stage, params, **stage_kwargs)``.
    ``mlflow_run_id`` is the pipeline's parent run (from the ``open_run`` step); a run id that the
    Kubeflow MLflow integration injected into the environment takes precedence.
    ``track=False`` runs the stage without MLflow (cached tasks take no run id; ``log_stages``
    records them in the run later). ``plots`` (an HTML artifact) receives the stage's PNG plots.
    """
    with use_parent_run(mlflow_run_id), StageWorkspace(
        params_yaml=params_yaml,
        overrides=list(overrides or []),
        inputs=dict(inputs or {}),
        outputs=dict(outputs or {}),
    ) as workspace:
        kwargs = dict(stage_kwargs or {})
        if not track:
            kwargs["track"] = False
        summary = execute(stage, workspace.params, **kwargs)
        published = workspace.publish(summary, metrics=metrics)
        if plots is not None:
            write_plots_html(_artifact_path(plots, "plots"), workspace.layout.report_dir(PLOT_DIRS.get(stage, stage)),
                             title=f"latentanon {stage}")
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


TAG_KFP_RUN = "latentanon.kfp_run_id"       # the KFP run a parent MLflow run belongs to
TAG_KFP_STATE = "latentanon.kfp_state"      # the KFP run's final state, set by the exit handler
TAG_GATE_DECISION = "latentanon.gate_decision"
# KFP final task state -> MLflow run status
RUN_STATUS = {"SUCCEEDED": "FINISHED", "FAILED": "FAILED", "CANCELED": "KILLED", "CANCELLED": "KILLED"}
# stage -> the report folder its plots are written to
PLOT_DIRS = {"tune": "tune"}


def open_pipeline_run(params_yaml: str, overrides: Iterable[str] = (), kfp_run_id: str = "") -> str:
    """The id of the MLflow parent run the pipeline's stages share (created when none is injected).

    The run is tagged with the KFP run id, so that the exit handler (which may depend on no task)
    finds it again to close it with the run's final state.
    """
    from latentanon.tracking.runs import client_for, pipeline_run_id

    with StageWorkspace(params_yaml, list(overrides or []), inputs={}, outputs={}) as workspace:
        run_id = pipeline_run_id(workspace.params, workspace.layout)
        if kfp_run_id:
            client_for(workspace.params, workspace.layout).set_tag(run_id, TAG_KFP_RUN, kfp_run_id)
        return run_id


def find_pipeline_runs(client, kfp_run_id: str) -> list:
    """The MLflow parent runs tagged with this KFP run id (normally one; none if open_run never ran)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    quoted = kfp_run_id.replace("'", "")
    return list(client.search_runs(experiments, filter_string=f"tags.`{TAG_KFP_RUN}` = '{quoted}'"))


def close_pipeline_run(params_yaml: str, overrides: Iterable[str], kfp_run_id: str, state: str,
                       error_message: str = "") -> str:
    """The exit handler: close the parent run of this KFP run with the run's final state.

    A failed or cancelled KFP run leaves its parent run FAILED / KILLED instead of RUNNING; a run
    injected by Kubeflow's MLflow integration is left to Kubeflow.
    """
    from latentanon.tracking import runs

    if not kfp_run_id:
        raise ArtifactError("close_pipeline_run: the KFP run id is empty (nothing identifies the parent run)")
    status = RUN_STATUS.get(str(state).upper())
    if status is None:
        raise ArtifactError(f"close_pipeline_run: unknown final state {state!r}; known: {sorted(RUN_STATUS)}")
    with StageWorkspace(params_yaml, list(overrides or []), inputs={}, outputs={}) as workspace:
        if os.environ.get(runs.RUN_ID_ENV):
            return json.dumps({"run_id": os.environ[runs.RUN_ID_ENV], "closed": False, "owner": "kubeflow"})
        client = runs.client_for(workspace.params, workspace.layout)
        found = find_pipeline_runs(client, kfp_run_id)
        for run in found:
            client.set_tag(run.info.run_id, TAG_KFP_STATE, str(state).upper())
            if error_message:
                client.set_tag(run.info.run_id, "latentanon.kfp_error", error_message[:4000])
            runs.close_pipeline_run(client, run.info.run_id, status=status)
    return json.dumps({"run_ids": sorted(r.info.run_id for r in found), "closed": bool(found), "status": status})


def tag_gate_decision(params_yaml: str, overrides: Iterable[str], mlflow_run_id: str, decision: str) -> None:
    """Record the gate's verdict on the parent run (the exit handler closes the run later)."""
    from latentanon.tracking import runs

    with use_parent_run(mlflow_run_id), StageWorkspace(params_yaml, list(overrides or []), inputs={},
                                                       outputs={}) as workspace:
        client = runs.client_for(workspace.params, workspace.layout)
        client.set_tag(runs.pipeline_run_id(workspace.params, workspace.layout, client), TAG_GATE_DECISION, decision)


def log_stages(params_yaml: str, overrides: Iterable[str], mlflow_run_id: str, reports: Mapping[str, Any]) -> str:
    """Log cached stages (run without MLflow) into this run's parent run from their report artifacts.

    ``reports`` maps a stage name to its ``<stage>_report`` artifact, which holds ``summary.json``.
    Content-cached tasks take no run id, so a cache hit still shows up in every run's MLflow record.
    """
    from latentanon.tracking.runs import log_stage

    logged = {}
    inputs = {f"{stage}{REPORT_SUFFIX}": artifact for stage, artifact in reports.items()}
    with use_parent_run(mlflow_run_id), StageWorkspace(params_yaml, list(overrides or []), inputs=inputs,
                                                       outputs={}) as workspace:
        for stage in reports:
            folder = workspace.layout.report_dir(stage)
            summary_path = folder / "summary.json"
            try:
                summary = json.loads(summary_path.read_text())
            except FileNotFoundError as exc:
                raise ArtifactError(f"{stage}{REPORT_SUFFIX}: {summary_path.name} missing (did {stage} run?)") from exc
            except ValueError as exc:
                raise ArtifactError(f"{stage}{REPORT_SUFFIX}: {summary_path.name} is not valid JSON: {exc}") from exc
            logged[stage] = log_stage(workspace.params, stage, summary, [folder])
    return json.dumps(logged, sort_keys=True)


def write_plots_html(out: Path, folder: Path, title: str) -> Path:
    """One self-contained HTML page with every PNG of a report folder (the KFP UI renders it)."""
    import base64
    import html

    pngs = sorted(Path(folder).resolve().glob("*.png")) if Path(folder).exists() else []
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if not pngs:
        parts.append("<p>This stage wrote no plots.</p>")
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(png.stem)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{html.escape(png.name)}</figcaption></figure>")
    parts.append("</body></html>")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "\n".join(parts) + "\n")
    return out


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
