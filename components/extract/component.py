"""extract: feature extraction fanned out over shard workers, then one finalize step."""

from typing import List

from kfp.dsl import Dataset, Input, Model, Output

from components.image import stage_component


@stage_component
def extract_workers(num_workers: int, params_yaml: str) -> List[dict]:
    """One item per worker for the ParallelFor: its index, the worker count and the params text.

    Everything a loop iteration needs from upstream task parameters travels in its item
    (kfp.local substitutes the loop item for task-output parameters that cross into a loop).
    """
    from latentanon import kfp_io

    return kfp_io.worker_items(num_workers, params_yaml=params_yaml)


@stage_component
def extract_shards(
    params_yaml: str,
    overrides: List[str],
    worker: int,
    num_workers: int,
    data: Input[Dataset],
    manifests: Input[Dataset],
    encoder: Input[Model],
    features: Output[Dataset],
) -> str:
    """Extract this worker's share of the shards (the index is left to finalize_extract); content-cached."""
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "extract",
        stages.execute,
        params_yaml,
        overrides,
        inputs={"data": data, "manifests": manifests, "encoder": encoder},
        outputs={"features": features},
        stage_kwargs={"worker": worker, "num_workers": num_workers, "finalize": False},
        track=False,
    )


@stage_component
def finalize_extract(
    params_yaml: str,
    overrides: List[str],
    shards: Input[List[Dataset]],
    features: Output[Dataset],
    finalize_extract_report: Output[Dataset],
) -> str:
    """Merge the workers' shards into one store and write its index (checksums verified); content-cached."""
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "finalize_extract",
        stages.execute,
        params_yaml,
        overrides,
        inputs={"features": list(shards)},
        outputs={"features": features, "finalize_extract_report": finalize_extract_report},
        track=False,
    )
