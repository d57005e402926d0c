"""evaluate: utility (AR, TAD, AD) and privacy leakage, raw vs anonymized vs baselines."""

from typing import List

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.image import stage_component


@stage_component
def evaluate(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    features: Input[Dataset],
    anonymized: Input[Dataset],
    method: Input[Model],
    train_report: Input[Dataset],
    evaluate_report: Output[Dataset],
    metrics: Output[Metrics],
    plots: Output[HTML],
) -> str:
    """Score every task and attacker over the configured seeds, with confidence intervals."""
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "evaluate",
        stages.execute,
        params_yaml,
        overrides,
        mlflow_run_id,
        inputs={"features": features, "anonymized": anonymized, "method": method, "train_report": train_report},
        outputs={"evaluate_report": evaluate_report},
        metrics=metrics,
        plots=plots,
    )
