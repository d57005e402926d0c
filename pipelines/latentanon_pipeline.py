"""The latentanon pipeline for Kubeflow: the same stages as dvc.yaml, fanned out where it pays.

    open_run -> generate -> validate -> pretrain_encoder
             -> extract_shards x N (ParallelFor) -> finalize_extract
             -> tune_trials x M (ParallelFor, one shared Optuna storage) -> tune_select
             -> train -> evaluate -> audit_bias -> gate -> If(approved): promote -> close_run
"""
from typing import List

from kfp import dsl, kubernetes

from components.audit_bias import audit_bias
from components.evaluate import evaluate
from components.extract import extract_shards, extract_workers, finalize_extract
from components.gate import gate, promote
from components.generate import generate
from components.pretrain_encoder import pretrain_encoder
from components.tracking import close_run, open_run
from components.train import train
from components.tune import tune_select, tune_trials, tune_workers
from components.validate import validate

PIPELINE_NAME = "latentanon"

# Kubernetes objects the tasks read; created by k8s/ (names documented in docs/kubeflow.md).
S3_SECRET = "latentanon-s3"                     # keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
OPTUNA_SECRET = "latentanon-optuna"             # key: storage-url (optional: shared tune study)
ENV_CONFIG_MAP = "latentanon-env"               # endpoints and the MLflow fallback URI
ENV_CONFIG_KEYS = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION",
    "MLFLOW_S3_ENDPOINT_URL",
    "LATENTANON_MLFLOW_TRACKING_URI",
)
SCRATCH_MOUNT = "/scratch"
GPU_RESOURCE = "nvidia.com/gpu"

# (cpu request, cpu limit, memory request, memory limit) per kind of task.
LIGHT = ("250m", "1", "512Mi", "2Gi")
MEDIUM = ("1", "4", "4Gi", "8Gi")
HEAVY = ("4", "8", "16Gi", "32Gi")


def _resources(task: dsl.PipelineTask, sizes: tuple) -> dsl.PipelineTask:
    cpu_request, cpu_limit, memory_request, memory_limit = sizes
    return (
        task.set_cpu_request(cpu_request)
        .set_cpu_limit(cpu_limit)
        .set_memory_request(memory_request)
        .set_memory_limit(memory_limit)
    )


def _cluster_settings(task: dsl.PipelineTask, sizes: tuple = MEDIUM, scratch: bool = True) -> dsl.PipelineTask:
    """Object-store credentials from the Secret, endpoints from the ConfigMap, a scratch volume."""
    kubernetes.use_secret_as_env(
        task,
        secret_name=S3_SECRET,
        secret_key_to_env={"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"},
    )
    kubernetes.use_config_map_as_env(
        task, config_map_name=ENV_CONFIG_MAP, config_map_key_to_env={key: key for key in ENV_CONFIG_KEYS}
    )
    if scratch:
        kubernetes.empty_dir_mount(task, volume_name="scratch", mount_path=SCRATCH_MOUNT)
        task.set_env_variable("LATENTANON_SCRATCH", SCRATCH_MOUNT)
    return _resources(task, sizes)


def _optuna_storage(task: dsl.PipelineTask) -> dsl.PipelineTask:
    kubernetes.use_secret_as_env(
        task,
        secret_name=OPTUNA_SECRET,
        secret_key_to_env={"storage-url": "LATENTANON_TUNE_STORAGE"},
        optional=True,
    )
    return task


def _gpu(task: dsl.PipelineTask, gpus: int) -> dsl.PipelineTask:
    if gpus > 0:
        task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(gpus)
        kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    return task


def make_pipeline(gpus_per_task: int = 1):
    """The pipeline with ``gpus_per_task`` GPUs on the pretrain, extract and train tasks.

    The GPU count is fixed at compile time (``python -m pipelines.compile --gpus 0`` for CPU-only
    clusters): a resource limit taken from a run parameter does not reach the tasks inside a
    ParallelFor in every KFP backend (kfp.local among them).
    """
    if gpus_per_task < 0:
        raise ValueError(f"gpus_per_task must be >= 0, got {gpus_per_task}")

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Latent anonymization of video features: data, encoder, features, Optuna search, "
        "adapter training, utility/privacy/bias evaluation and a gated MLflow promotion.",
    )
    def latentanon_pipeline(
        params_yaml: str = "",
        overrides: List[str] = [],
        extract_workers_count: int = 2,
        tune_workers_count: int = 2,
    ) -> str:
        """Run the whole pipeline; returns the gate decision (``approved`` or ``rejected``).

        Args:
            params_yaml: the text of a params.yaml; empty means the defaults (what params.yaml holds).
            overrides: ``section.key=value`` settings applied on top, as with ``latentanon --set``.
            extract_workers_count: parallel feature-extraction workers (each takes every N-th shard).
            tune_workers_count: parallel Optuna workers; more than one needs a shared RDB storage
                (``tune.storage`` or the ``latentanon-optuna`` Secret), otherwise one worker runs.
        """
        return _pipeline_body(params_yaml, overrides, extract_workers_count, tune_workers_count, gpus_per_task)

    return latentanon_pipeline


def _pipeline_body(params_yaml, overrides, extract_workers_count, tune_workers_count, gpus_per_task: int):
    """The tasks and their wiring (see the module docstring for the shape)."""
    common = {"params_yaml": params_yaml, "overrides": overrides}

    run = open_run(**common).set_display_name("open MLflow run").set_caching_options(False)
    _cluster_settings(run, LIGHT, scratch=False)
    staged = {**common, "mlflow_run_id": run.output}

    data = _cluster_settings(generate(**staged), MEDIUM)
    checked = _cluster_settings(validate(**staged, data=data.outputs["data"]), MEDIUM)
    encoder = _cluster_settings(
        pretrain_encoder(**staged, data=data.outputs["data"], manifests=checked.outputs["manifests"]), HEAVY
    )
    _gpu(encoder, gpus_per_task)

    # Loop items carry the worker index and the parent run id (see components/extract).
    workers = _resources(extract_workers(num_workers=extract_workers_count, mlflow_run_id=run.output), LIGHT)
    with dsl.ParallelFor(workers.output, name="extract-fan-out") as item:
        shard = extract_shards(
            **common,
            mlflow_run_id=item.mlflow_run_id,
            worker=item.worker,
            num_workers=item.num_workers,
            data=data.outputs["data"],
            manifests=checked.outputs["manifests"],
            encoder=encoder.outputs["encoder"],
        )
        _gpu(_cluster_settings(shard, HEAVY), gpus_per_task)
    store = _cluster_settings(finalize_extract(**staged, shards=dsl.Collected(shard.outputs["features"])), MEDIUM)
    features = store.outputs["features"]

    tune_plan = tune_workers(**common, requested=tune_workers_count, mlflow_run_id=run.output)
    _optuna_storage(_resources(tune_plan, LIGHT))
    with dsl.ParallelFor(tune_plan.output, name="tune-fan-out") as tune_item:
        trial = tune_trials(**common, mlflow_run_id=tune_item.mlflow_run_id, worker=tune_item.worker,
                            features=features)
        _optuna_storage(_cluster_settings(trial, HEAVY))
    chosen = tune_select(**staged, trials=dsl.Collected(trial.outputs["tune_report"]), features=features)
    _optuna_storage(_cluster_settings(chosen, MEDIUM))

    adapter = train(**staged, features=features, tune_report=chosen.outputs["tune_report"])
    _gpu(_cluster_settings(adapter, HEAVY), gpus_per_task)

    scored = evaluate(
        **staged,
        features=features,
        anonymized=adapter.outputs["anonymized"],
        adapter=adapter.outputs["adapter"],
        train_report=adapter.outputs["train_report"],
    )
    _cluster_settings(scored, HEAVY)
    audit = audit_bias(
        **staged,
        features=features,
        anonymized=adapter.outputs["anonymized"],
        adapter=adapter.outputs["adapter"],
        evaluate_report=scored.outputs["evaluate_report"],
    )
    _cluster_settings(audit, MEDIUM)

    decision = gate(
        **staged,
        adapter=adapter.outputs["adapter"],
        train_report=adapter.outputs["train_report"],
        evaluate_report=scored.outputs["evaluate_report"],
        audit_bias_report=audit.outputs["audit_bias_report"],
        metrics_json=audit.outputs["metrics_json"],
    )
    _cluster_settings(decision.set_caching_options(False), LIGHT)

    with dsl.If(decision.outputs["Output"] == "approved", name="gate-approved"):
        champion = promote(**staged, gate_report=decision.outputs["gate_report"])
        _cluster_settings(champion.set_caching_options(False), LIGHT)

    closed = close_run(**common, mlflow_run_id=run.output, decision=decision.outputs["Output"])
    _cluster_settings(closed.set_caching_options(False), LIGHT, scratch=False)
    return decision.outputs["Output"]


latentanon_pipeline = make_pipeline()
