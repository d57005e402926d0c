"""The pipeline's run parameters and its MLflow parent run.

resolve_params merges the typed run parameters into one params text (content-cached); open_run
opens the parent run and tags it with the KFP run id; log_stages records the content-cached stages
(which take no run id) in it; close_run is the exit handler that closes it with the run's final
state, failures included.
"""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components.image import stage_component


@stage_component
def resolve_params(
    params_yaml: str,
    overrides: List[str],
    encoder: str,
    pretrain_epochs: int,
    tune_trials: int,
    tune_epochs_per_trial: int,
    train_epochs: int,
    max_normalized_leakage: float,
    max_moving_normalized_leakage: float,
    min_relative_cmap_drop: float,
    max_utility_relative_drop: float,
    params_uri: str,
    form_defaults: str,
    run_parameters: Output[Markdown],
) -> str:
    """One validated params text: the base (params_yaml or params_uri), the changed typed run
    parameters, then the overrides; ``run_parameters`` says which value of each knob won and why."""
    import json
    from pathlib import Path

    from latentanon import kfp_io

    resolved, provenance = kfp_io.resolve_params_with_provenance(
        params_yaml,
        overrides,
        {
            "encoder": encoder,
            "pretrain_epochs": pretrain_epochs,
            "tune_trials": tune_trials,
            "tune_epochs_per_trial": tune_epochs_per_trial,
            "train_epochs": train_epochs,
            "max_normalized_leakage": max_normalized_leakage,
            "max_moving_normalized_leakage": max_moving_normalized_leakage,
            "min_relative_cmap_drop": min_relative_cmap_drop,
            "max_utility_relative_drop": max_utility_relative_drop,
        },
        form_defaults=json.loads(form_defaults) if form_defaults else None,
        params_uri=params_uri,
    )
    out = Path(run_parameters.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(kfp_io.provenance_markdown(provenance))
    run_parameters.metadata["provenance"] = provenance
    return resolved


@stage_component
def open_run(params_yaml: str, overrides: List[str], kfp_run_id: str) -> str:
    """The parent run every stage logs under: the one KFP's MLflow integration injected, else a new one."""
    from latentanon import kfp_io

    return kfp_io.open_pipeline_run(params_yaml, overrides, kfp_run_id)


@stage_component
def log_stages(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    generate_report: Input[Dataset],
    validate_report: Input[Dataset],
    pretrain_encoder_report: Input[Dataset],
    finalize_extract_report: Input[Dataset],
) -> str:
    """Log the content-cached stages (generate, validate, pretrain_encoder, extract) into the parent run."""
    from latentanon import kfp_io

    return kfp_io.log_stages(
        params_yaml,
        overrides,
        mlflow_run_id,
        {
            "generate": generate_report,
            "validate": validate_report,
            "pretrain_encoder": pretrain_encoder_report,
            "finalize_extract": finalize_extract_report,
        },
    )


@stage_component
def close_run(
    params_yaml: str, params_uri: str, overrides: List[str], kfp_run_id: str, status: dsl.PipelineTaskFinalStatus
) -> str:
    """Exit handler: close this KFP run's MLflow parent run as FINISHED, FAILED or KILLED."""
    from latentanon import kfp_io

    return kfp_io.close_pipeline_run(
        params_yaml, overrides, kfp_run_id, status.state, status.error_message or "", params_uri=params_uri
    )
