"""pretrain_encoder: pretrain (or load) the frozen video encoder."""

from typing import List

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.image import stage_component


@stage_component
def pretrain_encoder(
    params_yaml: str,
    overrides: List[str],
    data: Input[Dataset],
    manifests: Input[Dataset],
    encoder: Output[Model],
    pretrain_encoder_report: Output[Dataset],
    metrics: Output[Metrics],
    plots: Output[HTML],
) -> str:
    """Pretrain the built-in encoder on the pretraining corpus (or wrap a local HF encoder); content-cached."""
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "pretrain_encoder",
        stages.execute,
        params_yaml,
        overrides,
        inputs={"data": data, "manifests": manifests},
        outputs={"encoder": encoder, "pretrain_encoder_report": pretrain_encoder_report},
        metrics=metrics,
        plots=plots,
        track=False,
    )
