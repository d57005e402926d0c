"""audit_bias: the gender-skew bias protocol, and the pipeline's metrics.json and report.md."""

from typing import List

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import stage_component


@stage_component
def audit_bias(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    features: Input[Dataset],
    anonymized: Input[Dataset],
    method: Input[Model],
    evaluate_report: Input[Dataset],
    audit_bias_report: Output[Dataset],
    metrics_json: Output[Dataset],
    report: Output[Markdown],
    metrics: Output[Metrics],
    plots: Output[HTML],
) -> str:
    """Per-gender accuracy and gap, raw vs anonymized; writes the readable report."""
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "audit_bias",
        stages.execute,
        params_yaml,
        overrides,
        mlflow_run_id,
        inputs={"features": features, "anonymized": anonymized, "method": method, "evaluate_report": evaluate_report},
        outputs={"audit_bias_report": audit_bias_report, "metrics_json": metrics_json, "report_md": report},
        metrics=metrics,
        plots=plots,
    )
