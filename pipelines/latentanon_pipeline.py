"""The latentanon pipeline for Kubeflow: the same stages as dvc.yaml, fanned out where it pays.

    ExitHandler(close_run):
      resolve_params -> open_run
      generate -> validate -> pretrain_encoder
               -> extract_shards x N (ParallelFor, bounded) -> finalize_extract -> log_stages
               -> tune_trials x M (ParallelFor, bounded, one shared Optuna storage) -> tune_select
               -> train -> evaluate -> audit_bias -> gate -> If(approved): promote

Caching is keyed on content: generate, validate, pretrain_encoder and extract take only the
resolved params text and upstream artifacts (no run id, no timestamp), so a second run with the
same inputs reuses them; log_stages records them in each run's MLflow parent run. The exit
handler closes that parent run with the run's final state, failures included.
"""

import json
from pathlib import Path
from typing import List

from components.audit_bias import audit_bias
from components.evaluate import evaluate
from components.extract import extract_shards, extract_workers, finalize_extract
from components.gate import gate, promote
from components.generate import generate
from components.image import PROJECT_IMAGE_CUDA, on_image
from components.pretrain_encoder import pretrain_encoder
from components.tracking import close_run, log_stages, open_run, resolve_params
from components.train import train
from components.tune import tune_select, tune_trials, tune_workers
from components.validate import validate
from kfp import dsl, kubernetes

from latentanon.features.s3 import scope_variable

PIPELINE_NAME = "latentanon"
# The pipeline's own artifact root (the latentanon MinIO, bucket made by k8s/ bucket-init): compiled
# in, so it applies to this pipeline only and KFP's kfp-launcher default stays every other
# pipeline's. The launcher finds endpoint and credentials for the bucket in the provider entry that
# k8s/install/kfp_launcher_provider.py merges into kfp-launcher. A run may still name another root.
PIPELINE_ROOT = "s3://latentanon-pipelines/v2/artifacts"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULTS_FILE = REPO_ROOT / "params.yaml"  # the run form's defaults are read from it at compile time

# Kubernetes objects the tasks read; created by k8s/ (names documented in docs/kubeflow.md).
# Object-store identities, one per Secret (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), each held
# to the least MinIO policy its role needs (k8s/base/bucket-init.yaml). A store's key reaches a pod
# as LATENTANON_S3_<STORE>_*, so a task that holds two stores signs each with its own key.
S3_FEATURES_READ_SECRET = "latentanon-s3-features-read"
S3_FEATURES_WRITE_SECRET = "latentanon-s3-features-write"
S3_RELEASE_READ_SECRET = "latentanon-s3-release-read"
S3_RELEASE_WRITE_SECRET = "latentanon-s3-release-write"
S3_PARAMS_READ_SECRET = "latentanon-s3-params-read"  # the base params by URI (boto3's default chain)
# The pipeline root's identity is read by the KFP launcher (its provider entry), never a task's env.
S3_PIPELINE_ROOT_SECRET = "latentanon-s3-pipeline-root"
S3_KEY_ENV = {
    "FEATURES": (scope_variable("FEATURES", "ACCESS_KEY_ID"), scope_variable("FEATURES", "SECRET_ACCESS_KEY")),
    "RELEASE": (scope_variable("RELEASE", "ACCESS_KEY_ID"), scope_variable("RELEASE", "SECRET_ACCESS_KEY")),
    "PARAMS": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
}
OPTUNA_SECRET = "latentanon-optuna"  # key: storage-url (optional: shared tune study)
# MLflow identities (keys username, password) for the server's basic-auth app: the gate's may write
# the registered model (registry decisions), the pipeline's only reads it and logs runs.
MLFLOW_PIPELINE_SECRET = "latentanon-mlflow-pipeline"
MLFLOW_GATE_SECRET = "latentanon-mlflow-gate"
ENV_CONFIG_MAP = "latentanon-env"  # endpoints and the MLflow fallback URI
ENV_CONFIG_KEYS = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION",
    "MLFLOW_S3_ENDPOINT_URL",
    "LATENTANON_MLFLOW_TRACKING_URI",
)
SCRATCH_MOUNT = "/scratch"
GPU_RESOURCE = "nvidia.com/gpu"
# Every task pod carries this label: the NetworkPolicies of k8s/ select exactly these pods.
POD_LABEL = ("app.kubernetes.io/part-of", "latentanon")

# (cpu request, cpu limit, memory request, memory limit) per kind of task.
LIGHT = ("250m", "1", "512Mi", "2Gi")
MEDIUM = ("1", "4", "4Gi", "8Gi")
HEAVY = ("4", "8", "16Gi", "32Gi")
# The scratch emptyDir's sizeLimit per kind of task: a task that outgrows it is evicted instead of
# filling the node's disk. (The v2 pipeline spec has no ephemeral-storage request; in a profile
# namespace k8s/overlays/multi-user/pipelines/limits.yaml gives every container a default one.)
SCRATCH_LIMIT = {LIGHT: "2Gi", MEDIUM: "20Gi", HEAVY: "100Gi"}
_TASK_SIZES: dict[int, tuple] = {}  # id(task) -> its sizes, recorded by _task for _cluster_settings

# At most this many loop iterations run at once, whatever the worker count (a cluster's quota
# and the object store's bandwidth, not the run form, bound the fan-out).
MAX_PARALLEL_EXTRACT = 8
MAX_PARALLEL_TUNE = 4
# GPU builds: at most this many GPUs held by extract workers at once (the multi-user overlay's quota
# is the same number); a standalone namespace is shared, so there the compiled bound is the bound.
MAX_GPUS_AT_ONCE = 4


def extract_parallelism(gpus_per_task: int) -> int:
    """How many extract workers may run at once: bounded by the GPUs they hold in a GPU build."""
    if gpus_per_task <= 0:
        return MAX_PARALLEL_EXTRACT
    if gpus_per_task > MAX_GPUS_AT_ONCE:
        raise ValueError(f"gpus_per_task={gpus_per_task} exceeds MAX_GPUS_AT_ONCE={MAX_GPUS_AT_ONCE}")
    return min(MAX_PARALLEL_EXTRACT, MAX_GPUS_AT_ONCE // gpus_per_task)


# Retries: tasks that only talk to MLflow / the object store retry quickly; heavy stages, which
# also write to them, retry once (a deterministic error should not burn hours of GPU time).
NETWORK_RETRY = {"num_retries": 3, "backoff_duration": "30s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}
HEAVY_RETRY = {"num_retries": 1, "backoff_duration": "60s", "backoff_factor": 2.0, "backoff_max_duration": "600s"}

# The stage settings a GPU task gets: ask for the GPU explicitly, so that a pod without one fails
# with a clear error instead of silently running on the CPU (``device: auto`` would fall back).
GPU_OVERRIDES = {
    "pretrain_encoder": ["pretrain_encoder.device=cuda"],
    "extract": ["extract.device=cuda"],
    "train": ["train.device=cuda"],
}


def knob_defaults() -> dict:
    from latentanon import kfp_io

    return kfp_io.knob_defaults(DEFAULTS_FILE.read_text())


def _resources(task: dsl.PipelineTask, sizes: tuple) -> dsl.PipelineTask:
    cpu_request, cpu_limit, memory_request, memory_limit = sizes
    return (
        task.set_cpu_request(cpu_request)
        .set_cpu_limit(cpu_limit)
        .set_memory_request(memory_request)
        .set_memory_limit(memory_limit)
    )


def _task(
    task: dsl.PipelineTask, display_name: str, sizes: tuple = LIGHT, cache: bool = True, retry: dict | None = None
) -> dsl.PipelineTask:
    """Display name, resources, caching, retries and the pod label every task gets."""
    task.set_display_name(display_name).set_caching_options(cache)
    if retry:
        task.set_retry(**retry)
    kubernetes.add_pod_label(task, *POD_LABEL)
    _TASK_SIZES[id(task)] = sizes
    return _resources(task, sizes)


def _cluster_settings(
    task: dsl.PipelineTask,
    scratch: bool = True,
    mlflow_identity: str | None = MLFLOW_PIPELINE_SECRET,
    s3: dict[str, str] | None = None,
) -> dsl.PipelineTask:
    """Endpoints from the ConfigMap, a scratch volume, the object-store identities the task holds
    (``s3``: store -> Secret, see S3_KEY_ENV) and the MLflow identity it logs as (``None``: a task
    that never talks to MLflow)."""
    for store, secret_name in (s3 or {}).items():
        access_key_env, secret_key_env = S3_KEY_ENV[store]
        kubernetes.use_secret_as_env(
            task,
            secret_name=secret_name,
            secret_key_to_env={"AWS_ACCESS_KEY_ID": access_key_env, "AWS_SECRET_ACCESS_KEY": secret_key_env},
        )
    kubernetes.use_config_map_as_env(
        task, config_map_name=ENV_CONFIG_MAP, config_map_key_to_env={key: key for key in ENV_CONFIG_KEYS}
    )
    if mlflow_identity:
        kubernetes.use_secret_as_env(
            task,
            secret_name=mlflow_identity,
            secret_key_to_env={"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"},
        )
    if scratch:
        sizes = _TASK_SIZES.get(id(task), LIGHT)
        kubernetes.empty_dir_mount(
            task, volume_name="scratch", mount_path=SCRATCH_MOUNT, size_limit=SCRATCH_LIMIT[sizes]
        )
        task.set_env_variable("LATENTANON_SCRATCH", SCRATCH_MOUNT)
    return task


# Each task's object-store identities by role (store -> Secret); tasks not named hold none (their
# artifacts move through the launcher). The matrix is in docs/kubeflow.md.
PARAMS_READER = {"PARAMS": S3_PARAMS_READ_SECRET}
FEATURES_WRITER = {"FEATURES": S3_FEATURES_WRITE_SECRET}
FEATURES_READER = {"FEATURES": S3_FEATURES_READ_SECRET}
RELEASE_WRITER = {"RELEASE": S3_RELEASE_WRITE_SECRET}
ANALYST = {"FEATURES": S3_FEATURES_READ_SECRET, "RELEASE": S3_RELEASE_READ_SECRET}


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
    ParallelFor in every KFP backend (kfp.local among them). GPU tasks run the CUDA image and
    ask for ``device=cuda``.
    """
    if gpus_per_task < 0:
        raise ValueError(f"gpus_per_task must be >= 0, got {gpus_per_task}")
    defaults = knob_defaults()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        pipeline_root=PIPELINE_ROOT,
        description="Latent anonymization of video features: data, encoder, features, Optuna search, "
        "method training, utility/privacy/bias evaluation and a gated MLflow promotion.",
    )
    def latentanon_pipeline(
        encoder: str = defaults["encoder"],
        pretrain_epochs: int = defaults["pretrain_epochs"],
        tune_trials: int = defaults["tune_trials"],
        tune_epochs_per_trial: int = defaults["tune_epochs_per_trial"],
        train_epochs: int = defaults["train_epochs"],
        max_normalized_leakage: float = defaults["max_normalized_leakage"],
        max_moving_normalized_leakage: float = defaults["max_moving_normalized_leakage"],
        min_relative_cmap_drop: float = defaults["min_relative_cmap_drop"],
        max_utility_relative_drop: float = defaults["max_utility_relative_drop"],
        extract_workers_count: int = 2,
        tune_workers_count: int = 2,
        params_yaml: str = "",
        params_uri: str = "",
        overrides: List[str] = [],
    ):
        """Run the whole pipeline. The gate task's output (and the parent run's
        ``latentanon.gate_decision`` tag) is the decision; KFP returns no pipeline output from
        inside an exit handler.

        Args:
            encoder: the frozen encoder (``builtin``, or a local Hugging Face directory).
            pretrain_epochs: epochs of the built-in encoder's pretraining.
            tune_trials: completed Optuna trials the search runs (over all workers).
            tune_epochs_per_trial: training epochs per trial.
            train_epochs: epochs of the final training.
            max_normalized_leakage: gate: highest static-clip normalised leakage that passes.
            max_moving_normalized_leakage: gate: highest moving-clip normalised leakage that passes.
            min_relative_cmap_drop: gate: smallest relative cMAP drop that passes.
            max_utility_relative_drop: gate: largest relative utility drop that passes.
            extract_workers_count: parallel feature-extraction workers (each takes every N-th shard).
            tune_workers_count: parallel Optuna workers; more than one needs a shared RDB storage
                (``tune.storage`` or the ``latentanon-optuna`` Secret), otherwise one worker runs.
            params_yaml: the text of a params.yaml as the base (empty: the defaults). A typed
                parameter above overrides it only when changed from its default here; the
                ``run_parameters`` Markdown artifact says which value of each knob won and why.
            params_uri: the base params file by URI instead (``s3://bucket/key`` or a path in the
                pod), read with the pod's S3 credentials; giving it and params_yaml is an error.
            overrides: ``section.key=value`` settings applied last, as with ``latentanon --set``.
        """
        knobs = dict(
            encoder=encoder,
            pretrain_epochs=pretrain_epochs,
            tune_trials=tune_trials,
            tune_epochs_per_trial=tune_epochs_per_trial,
            train_epochs=train_epochs,
            max_normalized_leakage=max_normalized_leakage,
            max_moving_normalized_leakage=max_moving_normalized_leakage,
            min_relative_cmap_drop=min_relative_cmap_drop,
            max_utility_relative_drop=max_utility_relative_drop,
        )
        # The exit task may depend on no task: it finds the parent run by the KFP run id.
        closer = close_run(
            params_yaml=params_yaml,
            params_uri=params_uri,
            overrides=overrides,
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )
        _cluster_settings(
            _task(closer, "close MLflow run", cache=False, retry=NETWORK_RETRY), scratch=False, s3=PARAMS_READER
        )
        with dsl.ExitHandler(closer, name="latentanon-run"):
            _pipeline_body(
                params_yaml,
                params_uri,
                overrides,
                knobs,
                defaults,
                extract_workers_count,
                tune_workers_count,
                gpus_per_task,
            )

    return latentanon_pipeline


def _pipeline_body(
    params_yaml,
    params_uri,
    overrides,
    knobs: dict,
    form_defaults: dict,
    extract_workers_count,
    tune_workers_count,
    gpus_per_task: int,
):
    """The tasks and their wiring (see the module docstring for the shape)."""
    gpu = gpus_per_task > 0
    pretrain_op = on_image(pretrain_encoder, PROJECT_IMAGE_CUDA) if gpu else pretrain_encoder
    extract_op = on_image(extract_shards, PROJECT_IMAGE_CUDA) if gpu else extract_shards
    train_op = on_image(train, PROJECT_IMAGE_CUDA) if gpu else train

    def gpu_overrides(stage: str) -> list:
        return list(GPU_OVERRIDES[stage]) if gpu else []

    # The run form's defaults travel as a constant: a knob left at its default keeps the base's value.
    settings = _task(
        resolve_params(
            params_yaml=params_yaml,
            params_uri=params_uri,
            overrides=overrides,
            form_defaults=json.dumps(form_defaults, sort_keys=True),
            **knobs,
        ),
        "resolve run parameters",
    )
    # The base file by URI is read with the params reader's key; nothing here talks to MLflow.
    _cluster_settings(settings, scratch=False, mlflow_identity=None, s3=PARAMS_READER)
    resolved = settings.outputs["Output"]  # one complete params text: what every stage task takes
    common = {"params_yaml": resolved, "overrides": []}

    run = _task(
        open_run(**common, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
        "open MLflow run",
        cache=False,
        retry=NETWORK_RETRY,
    )
    _cluster_settings(run, scratch=False)

    # Content-cached: no run id, no per-run value among the inputs.
    untracked = {"mlflow_identity": None}  # content-cached stages run without MLflow
    data = _cluster_settings(_task(generate(**common), "generate benchmark", MEDIUM), **untracked)
    checked = _cluster_settings(
        _task(validate(**common, data=data.outputs["data"]), "validate data", MEDIUM), **untracked
    )
    encoder = pretrain_op(
        params_yaml=resolved,
        overrides=gpu_overrides("pretrain_encoder"),
        data=data.outputs["data"],
        manifests=checked.outputs["manifests"],
    )
    _gpu(_cluster_settings(_task(encoder, "pretrain encoder", HEAVY, retry=HEAVY_RETRY), **untracked), gpus_per_task)

    workers = _task(extract_workers(num_workers=extract_workers_count, params_yaml=resolved), "plan extract workers")
    with dsl.ParallelFor(
        workers.output, name="extract-fan-out", parallelism=extract_parallelism(gpus_per_task)
    ) as item:
        shard = extract_op(
            params_yaml=item.params_yaml,
            overrides=gpu_overrides("extract"),
            worker=item.worker,
            num_workers=item.num_workers,
            data=data.outputs["data"],
            manifests=checked.outputs["manifests"],
            encoder=encoder.outputs["encoder"],
        )
        extract_task = _task(shard, "extract shards", HEAVY, retry=NETWORK_RETRY)
        _gpu(_cluster_settings(extract_task, s3=FEATURES_WRITER, **untracked), gpus_per_task)
    store = finalize_extract(**common, shards=dsl.Collected(shard.outputs["features"]))
    _cluster_settings(
        _task(store, "finalize feature store", MEDIUM, retry=NETWORK_RETRY), s3=FEATURES_WRITER, **untracked
    )
    features = store.outputs["features"]

    logged = log_stages(
        **common,
        mlflow_run_id=run.output,
        generate_report=data.outputs["generate_report"],
        validate_report=checked.outputs["validate_report"],
        pretrain_encoder_report=encoder.outputs["pretrain_encoder_report"],
        finalize_extract_report=store.outputs["finalize_extract_report"],
    )
    _cluster_settings(_task(logged, "log cached stages to MLflow", cache=False, retry=NETWORK_RETRY))

    # From here on every task logs to the run's parent run (it takes the run id).
    tune_plan = _task(
        tune_workers(**common, requested=tune_workers_count, mlflow_run_id=run.output), "plan tune workers", cache=False
    )
    _optuna_storage(tune_plan)
    with dsl.ParallelFor(tune_plan.output, name="tune-fan-out", parallelism=MAX_PARALLEL_TUNE) as tune_item:
        trial = tune_trials(
            params_yaml=tune_item.params_yaml,
            overrides=[],
            mlflow_run_id=tune_item.mlflow_run_id,
            worker=tune_item.worker,
            features=features,
        )
        _optuna_storage(_cluster_settings(_task(trial, "tune trials", HEAVY, retry=NETWORK_RETRY), s3=FEATURES_READER))
    chosen = tune_select(
        **common, mlflow_run_id=run.output, trials=dsl.Collected(trial.outputs["tune_report"]), features=features
    )
    _optuna_storage(
        _cluster_settings(_task(chosen, "select operating point", MEDIUM, retry=NETWORK_RETRY), s3=FEATURES_READER)
    )

    trained = train_op(
        params_yaml=resolved,
        overrides=gpu_overrides("train"),
        mlflow_run_id=run.output,
        features=features,
        tune_report=chosen.outputs["tune_report"],
    )
    # Train reads the raw features and writes the release: two stores, two keys.
    trainer = {**FEATURES_READER, **RELEASE_WRITER}
    _gpu(_cluster_settings(_task(trained, "train method", HEAVY, retry=HEAVY_RETRY), s3=trainer), gpus_per_task)

    scored = evaluate(
        **common,
        mlflow_run_id=run.output,
        features=features,
        anonymized=trained.outputs["anonymized"],
        method=trained.outputs["method"],
        train_report=trained.outputs["train_report"],
    )
    _cluster_settings(_task(scored, "evaluate utility and privacy", HEAVY, retry=HEAVY_RETRY), s3=ANALYST)
    audit = audit_bias(
        **common,
        mlflow_run_id=run.output,
        features=features,
        anonymized=trained.outputs["anonymized"],
        method=trained.outputs["method"],
        evaluate_report=scored.outputs["evaluate_report"],
    )
    _cluster_settings(_task(audit, "audit bias and report", MEDIUM, retry=HEAVY_RETRY), s3=ANALYST)

    decision = gate(
        **common,
        mlflow_run_id=run.output,
        method=trained.outputs["method"],
        train_report=trained.outputs["train_report"],
        evaluate_report=scored.outputs["evaluate_report"],
        audit_bias_report=audit.outputs["audit_bias_report"],
        metrics_json=audit.outputs["metrics_json"],
        anonymized=trained.outputs["anonymized"],
    )
    # Only the gate's identity may write the registered model (versions, tags, aliases); its S3 key
    # marks the release (PUBLISH_STATUS.json) and reads no raw features.
    _cluster_settings(
        _task(decision, "promotion gate", MEDIUM, cache=False, retry=NETWORK_RETRY),
        mlflow_identity=MLFLOW_GATE_SECRET,
        s3=RELEASE_WRITER,
    )

    with dsl.If(decision.outputs["Output"] == "approved", name="gate-approved"):
        champion = promote(**common, mlflow_run_id=run.output, gate_report=decision.outputs["gate_report"])
        _cluster_settings(
            _task(champion, "promote champion", cache=False, retry=NETWORK_RETRY), mlflow_identity=MLFLOW_GATE_SECRET
        )
    return decision


latentanon_pipeline = make_pipeline()
