"""validate: great-expectations checks of the benchmark; writes the manifests."""

from typing import List

from kfp.dsl import Dataset, Input, Output

from components.image import stage_component


@stage_component
def validate(
    params_yaml: str,
    overrides: List[str],
    data: Input[Dataset],
    manifests: Output[Dataset],
    validate_report: Output[Dataset],
) -> str:
    """Validate every set, quarantine unreadable videos, write one manifest per set (content-cached)."""
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "validate",
        stages.execute,
        params_yaml,
        overrides,
        inputs={"data": data},
        outputs={"manifests": manifests, "validate_report": validate_report},
        track=False,
    )
