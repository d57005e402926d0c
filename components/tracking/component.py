"""The pipeline's MLflow parent run: opened before the first stage, closed after the gate."""
from typing import List

from components.image import stage_component


@stage_component
def open_run(params_yaml: str, overrides: List[str]) -> str:
    """The parent run every stage logs under: the one KFP's MLflow integration injected, else a new one."""
    from latentanon import kfp_io

    return kfp_io.open_pipeline_run(params_yaml, overrides)


@stage_component
def close_run(params_yaml: str, overrides: List[str], mlflow_run_id: str, decision: str) -> str:
    """Mark the parent run complete (a run injected by KFP is left to KFP)."""
    from latentanon import kfp_io

    return kfp_io.close_pipeline_run(params_yaml, overrides, mlflow_run_id, decision)
