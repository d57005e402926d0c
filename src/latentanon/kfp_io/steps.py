"""What component bodies call: run a stage, log its metrics, the parent run's life cycle, the gate."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from latentanon._files import write_text_atomic
from latentanon.kfp_io.artifacts import (
    APPROVED,
    REJECTED,
    REPORT_SUFFIX,
    ArtifactError,
    _artifact_path,
    _set_metadata,
)
from latentanon.kfp_io.workspace import StageWorkspace
from latentanon.tracking import kfp_runs


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
    with (
        use_parent_run(mlflow_run_id),
        StageWorkspace(
            params_yaml=params_yaml,
            overrides=list(overrides or []),
            inputs=dict(inputs or {}),
            outputs=dict(outputs or {}),
        ) as workspace,
    ):
        kwargs = dict(stage_kwargs or {})
        if not track:
            kwargs["track"] = False
        summary = execute(stage, workspace.params, **kwargs)
        published = workspace.publish(summary, metrics=metrics)
        if plots is not None:
            write_plots_html(
                _artifact_path(plots, "plots"),
                workspace.layout.report_dir(PLOT_DIRS.get(stage, stage)),
                title=f"latentanon {stage}",
            )
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


# stage -> the report folder its plots are written to
PLOT_DIRS = {"tune": "tune"}


def open_pipeline_run(params_yaml: str, overrides: Iterable[str] = (), kfp_run_id: str = "") -> str:
    """The id of the MLflow parent run the pipeline's stages share (created when none is injected).

    The run is tagged with the KFP run id, so that the exit handler (which may depend on no task)
    finds it again to close it with the run's final state (``latentanon.tracking.kfp_runs``).
    """
    from latentanon.tracking.runs import client_for, pipeline_run_id

    with StageWorkspace(params_yaml, list(overrides or []), inputs={}, outputs={}) as workspace:
        run_id = pipeline_run_id(workspace.params.tracked(), workspace.layout)
        if kfp_run_id:
            kfp_runs.tag_kfp_run(client_for(workspace.params.tracking, workspace.layout), run_id, kfp_run_id)
        return run_id


def close_pipeline_run(
    params_yaml: str,
    overrides: Iterable[str],
    kfp_run_id: str,
    state: str,
    error_message: str = "",
    params_uri: str = "",
) -> str:
    """The exit handler: close the parent run of this KFP run with the run's final state.

    Backend (``COMPLETE``, ``CACHED``, ``FAILED``, ``CANCELED``, ...) and kfp.local / SDK states
    (``SUCCEEDED``, ...) are all understood; an unrecognised one closes the run as FAILED with a
    warning instead of failing the exit task. A run injected by Kubeflow's MLflow integration is
    left to Kubeflow. The base params come pasted or by ``params_uri``, as resolve_params reads them
    (the exit task may depend on no task, so it reads the base itself).
    """
    from latentanon.kfp_io.run_params import read_base_params
    from latentanon.tracking import runs

    if not kfp_run_id:
        raise ArtifactError("close_pipeline_run: the KFP run id is empty (nothing identifies the parent run)")
    params_yaml, _ = read_base_params(params_yaml, params_uri)
    with StageWorkspace(params_yaml, list(overrides or []), inputs={}, outputs={}) as workspace:
        if os.environ.get(runs.RUN_ID_ENV):
            return json.dumps({"run_id": os.environ[runs.RUN_ID_ENV], "closed": False, "owner": "kubeflow"})
        client = runs.client_for(workspace.params.tracking, workspace.layout)
        closed = kfp_runs.close_kfp_run(client, kfp_run_id, state, error_message)
    return json.dumps(closed, sort_keys=True)


def tag_gate_decision(params_yaml: str, overrides: Iterable[str], mlflow_run_id: str, decision: str) -> None:
    """Record the gate's verdict on the parent run (the exit handler closes the run later)."""
    from latentanon.tracking import runs

    with (
        use_parent_run(mlflow_run_id),
        StageWorkspace(params_yaml, list(overrides or []), inputs={}, outputs={}) as workspace,
    ):
        client = runs.client_for(workspace.params.tracking, workspace.layout)
        run_id = runs.pipeline_run_id(workspace.params.tracked(), workspace.layout, client)
        kfp_runs.tag_gate_decision(client, run_id, decision)


def log_stages(params_yaml: str, overrides: Iterable[str], mlflow_run_id: str, reports: Mapping[str, Any]) -> str:
    """Log cached stages (run without MLflow) into this run's parent run from their report artifacts.

    ``reports`` maps a stage name to its ``<stage>_report`` artifact, which holds ``summary.json``.
    Content-cached tasks take no run id, so a cache hit still shows up in every run's MLflow record.
    """
    from latentanon.tracking.runs import log_stage

    logged = {}
    inputs = {f"{stage}{REPORT_SUFFIX}": artifact for stage, artifact in reports.items()}
    with (
        use_parent_run(mlflow_run_id),
        StageWorkspace(params_yaml, list(overrides or []), inputs=inputs, outputs={}) as workspace,
    ):
        for stage in reports:
            folder = workspace.layout.report_dir(stage)
            summary_path = folder / "summary.json"
            try:
                summary = json.loads(summary_path.read_text())
            except FileNotFoundError as exc:
                raise ArtifactError(f"{stage}{REPORT_SUFFIX}: {summary_path.name} missing (did {stage} run?)") from exc
            except ValueError as exc:
                raise ArtifactError(f"{stage}{REPORT_SUFFIX}: {summary_path.name} is not valid JSON: {exc}") from exc
            logged[stage] = log_stage(workspace.params.tracked(), workspace.layout, stage, summary, [folder])
    return json.dumps(logged, sort_keys=True)


def write_plots_html(out: Path, folder: Path, title: str) -> Path:
    """One self-contained HTML page with every PNG of a report folder (the KFP UI renders it)."""
    import base64
    import html

    pngs = sorted(Path(folder).resolve().glob("*.png")) if Path(folder).exists() else []
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if not pngs:
        parts.append("<p>This stage wrote no plots.</p>")
    for png in pngs:
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(
            f"<figure><img alt='{html.escape(png.stem)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(png.name)}</figcaption></figure>"
        )
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


def promote_champion(
    params_yaml: str, overrides: Iterable[str], mlflow_run_id: str, gate_report: Any, champion: Any
) -> str:
    """Move @champion to the version the gate approved; the artifact records the registry entry."""
    from latentanon.tracking import gate as gate_lib
    from latentanon.tracking.registry import CHAMPION

    decision = read_gate_decision(_artifact_path(gate_report, "gate_report"))
    if decision["decision"] != APPROVED or not decision.get("version"):
        raise ArtifactError(
            f"gate decision is {decision['decision']!r} (version {decision.get('version')}); nothing to promote"
        )
    with (
        use_parent_run(mlflow_run_id),
        StageWorkspace(params_yaml, list(overrides or []), inputs={}, outputs={}) as workspace,
    ):
        promoted = gate_lib.promote(workspace.params.tracking, str(decision["version"]), workspace.layout)
    name, version = promoted["model_name"], promoted["version"]
    record = {**promoted, "model_uri": f"models:/{name}/{version}", "alias_uri": f"models:/{name}@{CHAMPION}"}
    out = _artifact_path(champion, "champion")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "registered_model.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
    _set_metadata(champion, model_uri=record["model_uri"], alias_uri=record["alias_uri"], version=version)
    return json.dumps(record, sort_keys=True)
