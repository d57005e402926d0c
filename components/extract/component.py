"""extract: feature extraction fanned out over shard workers, then one finalize step."""
from typing import List

from kfp.dsl import Dataset, Input, Model, Output

from components.image import stage_component


@stage_component
def extract_workers(num_workers: int, mlflow_run_id: str) -> List[dict]:
    """One item per worker for the ParallelFor: its index, the worker count and the parent run.

    Everything a loop iteration needs from upstream tasks travels in its item, so no other task
    output has to cross into the loop (some KFP backends, kfp.local among them, substitute the
    loop item for every task output a loop receives).
    """
    from latentanon import kfp_io

    return kfp_io.worker_items(num_workers, mlflow_run_id)


@stage_component
def extract_shards(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    worker: int,
    num_workers: int,
    data: Input[Dataset],
    manifests: Input[Dataset],
    encoder: Input[Model],
    features: Output[Dataset],
) -> str:
    """Extract this worker's share of the shards (the index is left to finalize_extract)."""
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "extract", stages.execute, params_yaml, overrides, mlflow_run_id,
        inputs={"data": data, "manifests": manifests, "encoder": encoder},
        outputs={"features": features},
        stage_kwargs={"worker": worker, "num_workers": num_workers, "finalize": False},
    )


@stage_component
def finalize_extract(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    shards: Input[List[Dataset]],
    features: Output[Dataset],
) -> str:
    """Merge the workers' shards into one store and write its index (checksums verified)."""
    from latentanon import kfp_io, stages

    return kfp_io.run_component(
        "finalize_extract", stages.execute, params_yaml, overrides, mlflow_run_id,
        inputs={"features": list(shards)},
        outputs={"features": features},
    )
