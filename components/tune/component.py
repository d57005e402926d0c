"""tune: Optuna loss-weight search, several trial workers against one shared study storage.

Each worker runs the tune stage, which runs trials until the shared study holds ``tune.n_trials``
completed ones; the select step runs it once more over the finished study, which only writes
the Pareto front and the chosen operating point (chosen.json) for train.
"""

from typing import List

from kfp.dsl import HTML, Dataset, Input, Output

from components.image import stage_component


@stage_component
def tune_workers(params_yaml: str, overrides: List[str], requested: int, mlflow_run_id: str) -> List[dict]:
    """Loop items: ``requested`` workers with a shared RDB storage, else a single one."""
    from latentanon import kfp_io

    count = kfp_io.tune_worker_count(params_yaml, overrides, requested)
    return kfp_io.worker_items(count, mlflow_run_id=mlflow_run_id, params_yaml=params_yaml)


@stage_component
def tune_trials(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    worker: int,
    features: Input[Dataset],
    tune_report: Output[Dataset],
) -> str:
    """One worker of the search (``worker`` only tells the workers apart in the UI and cache)."""
    from latentanon import kfp_io, stages

    print(f"tune worker {worker}")
    return kfp_io.run_component(
        "tune",
        stages.execute,
        params_yaml,
        overrides,
        mlflow_run_id,
        inputs={"features": features},
        outputs={"tune_report": tune_report},
    )


@stage_component
def tune_select(
    params_yaml: str,
    overrides: List[str],
    mlflow_run_id: str,
    trials: Input[List[Dataset]],
    features: Input[Dataset],
    tune_report: Output[Dataset],
    plots: Output[HTML],
) -> str:
    """Pick the operating point on the Pareto front of the whole study (all workers' trials)."""
    from latentanon import kfp_io, stages

    # The workers' reports are merged first: with the default sqlite storage the study itself
    # (reports/tune/study.db) travels in them.
    return kfp_io.run_component(
        "tune",
        stages.execute,
        params_yaml,
        overrides,
        mlflow_run_id,
        inputs={"features": features, "tune_report": list(trials)},
        outputs={"tune_report": tune_report},
        plots=plots,
    )
