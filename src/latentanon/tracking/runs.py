"""MLflow runs of the pipeline: one parent run per pipeline run, nested runs below it.

Where the tracking server is: ``latentanon.tracking.uri.tracking_uri`` (``MLFLOW_TRACKING_URI``,
else ``params.tracking.tracking_uri``, else the embedded database ``sqlite:///<workdir>/mlflow.db``).

How the stages of one pipeline run find the same parent run:

- Under Kubeflow the MLflow integration injects ``MLFLOW_TRACKING_URI`` and ``MLFLOW_RUN_ID``;
  that run is the parent, and it is never closed here (KFP owns its life cycle).
- Under DVC every stage is its own process. The first stage that logs creates the parent run
  (tags ``latentanon.pipeline_run=true``, ``latentanon.pipeline_state=open``, the params hash,
  the workdir and the git commit) and records its id in ``reports/tracking/pipeline_run.json``.
  Later stages reuse the recorded run while it is still open, lives in the same tracking store
  and was made with the same params. The last stage (``gate``) closes it
  (``pipeline_state=complete``, status FINISHED), so the next ``dvc repro`` starts a new parent
  run; a pipeline that died half way is continued by the next invocation, in the same run.
  In the MLflow UI, filter with ``tags.latentanon.pipeline_run = 'true'``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from latentanon import environment
from latentanon._configtools import sections_hash
from latentanon._files import write_json_atomic
from latentanon._redact import redact
from latentanon.errors import LatentanonError
from latentanon.layout import PIPELINE, Layout
from latentanon.tracking.config import TrackedParams, TrackingConfig
from latentanon.tracking.uri import tracking_uri

RUN_ID_ENV = environment.RUN_ID_ENV
TAG_PIPELINE = "latentanon.pipeline_run"
TAG_STATE = "latentanon.pipeline_state"
TAG_PARAMS_HASH = "latentanon.params_hash"
TAG_WORKDIR = "latentanon.workdir"
TAG_STAGE = "latentanon.stage"
LAST_STAGE = "gate"
_PARAM_SECTIONS = (
    "paths",
    "data",
    "validate",
    "pretrain_encoder",
    "extract",
    "tune",
    "train",
    "evaluate",
    "audit_bias",
    "gate",
    "tracking",
)
_MLFLOW_BATCH = 100
_BAD_KEY_CHARS = re.compile(r"[^0-9A-Za-z_\-. /]")


class TrackingError(LatentanonError):
    """The MLflow tracking store cannot be reached or used."""


def resolve_tracking_uri(tracking: TrackingConfig, layout: Layout) -> str:
    return tracking_uri(tracking.tracking_uri, layout.workdir)


@contextlib.contextmanager
def fluent_uri(uri: str):
    """Point MLflow's fluent API (log_model, load_model) at ``uri`` for the block only.

    MLflow's set_tracking_uri pins a process-wide value that outlives the caller (and overrides
    MLFLOW_TRACKING_URI afterwards); here the environment carries the URI and everything is put
    back on exit. A URI someone else pinned is overridden for the block and restored.
    """
    import mlflow

    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {key: os.environ.get(key) for key in keys}
    os.environ.update({key: uri for key in keys})
    pinned_tracking = mlflow.get_tracking_uri() if mlflow.get_tracking_uri() != uri else None
    pinned_registry = mlflow.get_registry_uri() if mlflow.get_registry_uri() != uri else None
    if pinned_tracking:
        mlflow.set_tracking_uri(uri)
    if pinned_registry:
        mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        if pinned_tracking:
            mlflow.set_tracking_uri(pinned_tracking)
        if pinned_registry:
            mlflow.set_registry_uri(pinned_registry)
        for key, value in saved_env.items():  # after the setters: they write the environment too
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def connect(uri: str):
    """A client bound to ``uri`` (tracking and registry), checked to answer."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:  # any failure to talk to the store is the same problem for the user
        raise TrackingError(f"MLflow tracking store {uri} is unreachable: {exc}") from exc
    return client


def client_for(tracking: TrackingConfig, layout: Layout):
    return connect(resolve_tracking_uri(tracking, layout))


def experiment_id(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=_local_artifact_location(client.tracking_uri))
    if experiment.lifecycle_stage != "active":
        raise TrackingError(f"MLflow experiment {name!r} is deleted; restore it or pick another name")
    return experiment.experiment_id


def _local_artifact_location(uri: str) -> str | None:
    """Artifacts of an embedded sqlite store live next to the database, not in the cwd."""
    if not uri.startswith("sqlite:///"):
        return None  # a server decides (and proxies) its own artifact store
    database = Path(uri[len("sqlite:///") :])
    return (database.parent / "mlartifacts").resolve().as_uri()


def params_hash(plain: dict[str, Any]) -> str:
    """The hash of every section (``plain``: the params in plain form, ``Params.to_dict``)."""
    return sections_hash({section: plain[section] for section in _PARAM_SECTIONS})


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists as ``a.b.0.c`` keys."""
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(tree, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in tree):
        for i, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix] = tree
    return out


def numeric_metrics(summary: dict, prefix: str) -> dict[str, float]:
    """The finite numbers of a (nested) summary, keyed for MLflow."""
    metrics = {}
    for key, value in flatten(summary, prefix).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            metrics[_BAD_KEY_CHARS.sub("_", key)] = float(value)
    return metrics


def git_state(workdir: Path) -> dict[str, str]:
    """Commit and dirty flag of the checkout holding ``workdir`` (empty outside git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=workdir, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "mlflow.source.git.commit": commit, "git_dirty": str(bool(status)).lower()}


def dvc_lock_hashes(workdir: Path, stage: str) -> dict[str, str]:
    """Output hashes that dvc.lock records for the stages upstream of ``stage``, as tags
    ``dvc.<stage>.<path>``.

    dvc.lock is rewritten after a stage's command ends, so while ``stage`` runs only the entries
    of the stages before it (in pipeline order) describe this pipeline run; the rest are stale.
    """
    lock = workdir / "dvc.lock"
    if not lock.exists() or stage not in PIPELINE:
        return {}
    upstream = set(PIPELINE[: PIPELINE.index(stage)])
    try:
        tree = yaml.safe_load(lock.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TrackingError(f"{lock}: not valid YAML: {exc}") from exc
    tags = {}
    for name, entry in (tree.get("stages") or {}).items():
        if name not in upstream or not isinstance(entry, dict):
            continue
        for out in entry.get("outs") or []:
            digest = out.get("md5") or out.get("hash") or out.get("etag")
            if out.get("path") and digest:
                tags[_BAD_KEY_CHARS.sub("_", f"dvc.{name}.{out['path']}")] = str(digest)
    return tags


def _record_path(layout: Layout) -> Path:
    return layout.reports / "tracking" / "pipeline_run.json"


def _log_in_batches(
    client, run_id: str, *, params: dict | None = None, metrics: dict | None = None, tags: dict | None = None
) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    # every param is redacted here too: no caller can log a credential by forgetting to
    param_items = [Param(k, str(redact(v, k))[:6000]) for k, v in (params or {}).items()]
    for i in range(0, len(param_items), _MLFLOW_BATCH):
        client.log_batch(run_id, params=param_items[i : i + _MLFLOW_BATCH])
    metric_items = [Metric(k, v, now, 0) for k, v in (metrics or {}).items()]
    for i in range(0, len(metric_items), _MLFLOW_BATCH):
        client.log_batch(run_id, metrics=metric_items[i : i + _MLFLOW_BATCH])
    tag_items = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for i in range(0, len(tag_items), _MLFLOW_BATCH):
        client.log_batch(run_id, tags=tag_items[i : i + _MLFLOW_BATCH])


def _ensure_params_logged(client, run, plain: dict[str, Any]) -> None:
    """Log every param once per parent run (MLflow params are immutable)."""
    if run.data.tags.get(TAG_PARAMS_HASH):
        return
    flat = {_BAD_KEY_CHARS.sub("_", k): v for k, v in flatten(redact(plain)).items()}
    _log_in_batches(client, run.info.run_id, params=flat, tags={TAG_PARAMS_HASH: params_hash(plain)})


def _reusable(client, record: dict, uri: str, digest: str) -> bool:
    if record.get("tracking_uri") != uri or record.get("params_hash") != digest:
        return False
    try:
        run = client.get_run(record["run_id"])
    except Exception:  # deleted store, purged run: start afresh
        return False
    return run.info.lifecycle_stage == "active" and run.data.tags.get(TAG_STATE) == "open"


def pipeline_run_id(tracked: TrackedParams, layout: Layout, client=None) -> str:
    """The parent run of the current pipeline run, created when there is none (see module doc)."""
    uri = resolve_tracking_uri(tracked.tracking, layout)
    client = client or connect(uri)
    injected = os.environ.get(RUN_ID_ENV, "")
    if injected:
        try:
            run = client.get_run(injected)
        except Exception as exc:
            raise TrackingError(f"{RUN_ID_ENV}={injected}: no such run in {uri}: {exc}") from exc
        _ensure_params_logged(client, run, tracked.plain)
        return injected
    record_path = _record_path(layout)
    digest = params_hash(tracked.plain)
    if record_path.exists():
        try:
            record = json.loads(record_path.read_text())
        except json.JSONDecodeError:
            record = {}
        if _reusable(client, record, uri, digest):
            return record["run_id"]
    tags = {
        TAG_PIPELINE: "true",
        TAG_STATE: "open",
        TAG_WORKDIR: str(layout.workdir.resolve()),
        **git_state(layout.workdir),
    }
    run = client.create_run(
        experiment_id(client, tracked.tracking.experiment),
        run_name=f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}",
        tags=tags,
    )
    _ensure_params_logged(client, run, tracked.plain)
    write_json_atomic(
        record_path,
        {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "tracking_uri": uri,
            "params_hash": digest,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return run.info.run_id


def start_child_run(client, parent_run_id: str, name: str, tags: dict | None = None) -> str:
    """A nested run under the parent (same experiment); the caller terminates it."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    parent = client.get_run(parent_run_id)
    run = client.create_run(
        parent.info.experiment_id,
        run_name=name,
        tags={MLFLOW_PARENT_RUN_ID: parent_run_id, **{k: str(v) for k, v in (tags or {}).items()}},
    )
    return run.info.run_id


def log_child_run(
    client,
    parent_run_id: str,
    name: str,
    params: dict,
    metrics: dict,
    tags: dict | None = None,
    status: str = "FINISHED",
) -> str:
    """Create, fill and close a nested run in one go (e.g. one Optuna trial)."""
    run_id = start_child_run(client, parent_run_id, name, tags)
    _log_in_batches(client, run_id, params=redact(params), metrics=numeric_metrics(metrics, ""))
    client.set_terminated(run_id, status=status)
    return run_id


def log_stage(tracked: TrackedParams, layout: Layout, stage: str, summary: dict, artifacts: list[Path]) -> str:
    """Log one finished stage into the pipeline's parent run; returns the parent run id.

    Records metrics (the summary's numbers as ``<stage>.<key>``), the summary as JSON, the given
    files or folders under ``<stage>/``, the git commit, and dvc.lock (as an artifact, and the
    output hashes of the upstream stages as tags).
    The last stage closes the parent run (except a run injected by Kubeflow).
    """
    client = client_for(tracked.tracking, layout)
    run_id = pipeline_run_id(tracked, layout, client)
    tags = {f"{TAG_STAGE}.{stage}": "done", **git_state(layout.workdir), **dvc_lock_hashes(layout.workdir, stage)}
    _log_in_batches(client, run_id, metrics=numeric_metrics(summary, stage), tags=tags)
    client.log_dict(run_id, json.loads(json.dumps(summary, default=str)), f"{stage}/summary.json")
    for path in map(Path, artifacts):
        if path.is_dir():
            # the stage's own report folder goes straight under <stage>/
            client.log_artifacts(run_id, str(path), stage if path.name == stage else f"{stage}/{path.name}")
        elif path.is_file():
            client.log_artifact(run_id, str(path), stage)
    lock = layout.workdir / "dvc.lock"
    if lock.is_file():
        client.log_artifact(run_id, str(lock), stage)
    if stage == LAST_STAGE and not os.environ.get(RUN_ID_ENV):
        close_pipeline_run(client, run_id)
    return run_id


def close_pipeline_run(client, run_id: str, status: str = "FINISHED") -> None:
    client.set_tag(run_id, TAG_STATE, "complete")
    client.set_terminated(run_id, status=status)
