"""generate: write the synthetic benchmark (real dataset layouts) as a Dataset artifact."""

from typing import List

from kfp.dsl import Dataset, Output

from components.image import stage_component


@stage_component
def generate(
    params_yaml: str,
    overrides: List[str],
    data: Output[Dataset],
    generate_report: Output[Dataset],
) -> str:
    """Generate the benchmark videos and annotations from the data section's seed.

    Takes no run id: a second run with the same params reuses the cached result (``log_stages``
    records it in each run's MLflow parent run).
    """
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "generate",
        stages.execute,
        params_yaml,
        overrides,
        outputs={"data": data, "generate_report": generate_report},
        track=False,
    )
