"""train: fit ``train.method`` with the knobs tune chose, anonymize the store."""

from typing import List

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.image import stage_component


@stage_component
def train(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    features: Input[Dataset],
    tune_report: Input[Dataset],
    method: Output[Model],
    anonymized: Output[Dataset],
    train_report: Output[Dataset],
    metrics: Output[Metrics],
    plots: Output[HTML],
) -> str:
    """Fit the method (train split for fitting, val for selection) and write the anonymized store."""
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "train",
        stages.execute,
        params_yaml,
        overrides,
        mlflow_run_id,
        inputs={"features": features, "tune_report": tune_report},
        outputs={"method": method, "anonymized": anonymized, "train_report": train_report},
        metrics=metrics,
        plots=plots,
    )
