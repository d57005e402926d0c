"""generate: write the synthetic benchmark (real dataset layouts) as a Dataset artifact."""
from typing import List

from kfp.dsl import Dataset, Output

from components.image import stage_component


@stage_component
def generate(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    data: Output[Dataset],
    generate_report: Output[Dataset],
) -> str:
    """Generate the benchmark videos and annotations from the data section's seed."""
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "generate", stages.execute, params_yaml, overrides, mlflow_run_id,
        outputs={"data": data, "generate_report": generate_report},
    )
