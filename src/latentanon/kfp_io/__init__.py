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
method             ``models/method``                                      Model
features           the feature store (``paths.features_uri``)             Dataset
anonymized         the anonymized store (``paths.anonymized_uri``)        Dataset
<stage>_report     ``reports/<stage>``                                    Dataset
report_md          ``reports/report.md``                                  Markdown
metrics_json       ``reports/metrics.json``                               Dataset
=================  ==================================================  =========================

Feature stores may live in object storage (``s3://``): then every worker writes the same store
and the artifact only carries a pointer file (``store.json``) instead of the shards.

Modules: ``artifacts`` (roles, store pointers), ``run_params`` (the params text and the run form's
knobs), ``workspace`` (the scratch checkout), ``steps`` (what a component body calls). The MLflow
parent run's life cycle (its tags, the exit handler's final states) is tracking's:
``latentanon.tracking.kfp_runs``.
"""

from latentanon.kfp_io.artifacts import (
    APPROVED,
    BENCHMARK_DIR,
    METRICS_MAX_DEPTH,
    REJECTED,
    REPORT_SUFFIX,
    STORE_POINTER,
    STORE_ROLES,
    ArtifactError,
    is_remote_uri,
    log_metrics,
    read_store_pointer,
    role_location,
    scalar_metrics,
)
from latentanon.kfp_io.run_params import (
    ENV_TUNE_STORAGE,
    PIPELINE_KNOBS,
    knob_defaults,
    parse_params,
    provenance_markdown,
    read_base_params,
    resolve_params,
    resolve_params_with_provenance,
    tune_storage,
    tune_worker_count,
    worker_items,
)
from latentanon.kfp_io.steps import (
    PLOT_DIRS,
    close_pipeline_run,
    gate_decision,
    log_stages,
    open_pipeline_run,
    promote_champion,
    read_gate_decision,
    run_component,
    tag_gate_decision,
    use_parent_run,
    write_plots_html,
)
from latentanon.kfp_io.workspace import ENV_MLFLOW_FALLBACK, ENV_SCRATCH, StageWorkspace
from latentanon.tracking.kfp_runs import TAG_GATE_DECISION, TAG_KFP_RUN, TAG_KFP_STATE

__all__ = [
    "APPROVED",
    "BENCHMARK_DIR",
    "ENV_MLFLOW_FALLBACK",
    "ENV_SCRATCH",
    "ENV_TUNE_STORAGE",
    "METRICS_MAX_DEPTH",
    "PIPELINE_KNOBS",
    "PLOT_DIRS",
    "REJECTED",
    "REPORT_SUFFIX",
    "STORE_POINTER",
    "STORE_ROLES",
    "TAG_GATE_DECISION",
    "TAG_KFP_RUN",
    "TAG_KFP_STATE",
    "ArtifactError",
    "StageWorkspace",
    "close_pipeline_run",
    "gate_decision",
    "is_remote_uri",
    "knob_defaults",
    "log_metrics",
    "log_stages",
    "open_pipeline_run",
    "parse_params",
    "promote_champion",
    "provenance_markdown",
    "read_base_params",
    "read_gate_decision",
    "read_store_pointer",
    "resolve_params",
    "resolve_params_with_provenance",
    "role_location",
    "run_component",
    "scalar_metrics",
    "tag_gate_decision",
    "tune_storage",
    "tune_worker_count",
    "use_parent_run",
    "worker_items",
    "write_plots_html",
]
