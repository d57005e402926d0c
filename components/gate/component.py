"""gate: the promotion decision (privacy and utility thresholds) and, when approved, promotion."""

from typing import List

from kfp.dsl import Dataset, Input, Model, Output

from components.image import stage_component


@stage_component
def gate(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    method: Input[Model],
    train_report: Input[Dataset],
    evaluate_report: Input[Dataset],
    audit_bias_report: Input[Dataset],
    metrics_json: Input[Dataset],
    anonymized: Input[Dataset],
    gate_report: Output[Dataset],
    released_store: Output[Dataset],
) -> str:
    """Register the trained method as @candidate and decide; returns ``approved`` or ``rejected``.

    ``anonymized`` is train's store, marked ``unapproved``; ``released_store`` is the same store
    with the gate's ``PUBLISH_STATUS.json`` (``approved`` or ``rejected``): the one to share. An
    ``s3://`` store is marked where it lives and both artifacts are pointers to it.
    """
    import json

    from latentanon import kfp_io, stages

    # The DVC gate stage also promotes; here promotion is the pipeline's dsl.If branch.
    summary = kfp_io.run_component(
        "gate",
        stages.execute,
        params_yaml,
        overrides,
        mlflow_run_id,
        inputs={
            "method": method,
            "train_report": train_report,
            "evaluate_report": evaluate_report,
            "audit_bias_report": audit_bias_report,
            "metrics_json": metrics_json,
            "anonymized": anonymized,
        },
        outputs={"gate_report": gate_report, "anonymized": released_store},
        stage_kwargs={"promote": False},
    )
    decision = kfp_io.gate_decision(json.loads(summary))
    kfp_io.tag_gate_decision(params_yaml, overrides, mlflow_run_id, decision)
    return decision


@stage_component
def promote(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    gate_report: Input[Dataset],
    champion: Output[Model],
) -> str:
    """Move @champion to the approved version and hand the registered model on as an artifact."""
    from latentanon import kfp_io

    return kfp_io.promote_champion(params_yaml, overrides, mlflow_run_id, gate_report, champion)
