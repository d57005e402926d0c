"""The pipeline's run parameters: the params text, the typed knobs of the run form, fan-out plans."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from latentanon.config import ConfigError, Params, params_from_dict
from latentanon.environment import TUNE_STORAGE_ENV
from latentanon.kfp_io.artifacts import ArtifactError

ENV_TUNE_STORAGE = TUNE_STORAGE_ENV                # Optuna RDB URL from a Secret (read by the tune stage)


def parse_params(params_yaml: str, overrides: Sequence[str] = ()) -> tuple[dict, list[str]]:
    """The params tree from the pipeline's YAML parameter and the user's overrides, both checked."""
    try:
        tree = yaml.safe_load(params_yaml) if params_yaml and params_yaml.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline parameter params_yaml: not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError("pipeline parameter params_yaml: expected a mapping of sections at the top level")
    overrides = [str(o) for o in (overrides or [])]
    params_from_dict(tree, overrides)  # fail early, before any work, on unknown keys or bad types
    return tree, overrides


def tune_storage(params: Params) -> str:
    """The Optuna storage URL the tune workers share: the cluster's Secret first, as in the tune stage."""
    return os.environ.get(ENV_TUNE_STORAGE) or params.tune.storage


def tune_worker_count(params_yaml: str, overrides: Sequence[str], requested: int) -> int:
    """How many tune workers run at once: several only against one shared RDB storage.

    Every worker runs trials until the study holds ``tune.n_trials`` completed ones, so workers
    sharing a study split the trials among themselves. Without a shared server database each pod
    would keep its own sqlite study and repeat the others' work; then a single worker runs.
    """
    if requested < 1:
        raise ConfigError(f"pipeline parameter tune_workers_count: must be at least 1, got {requested}")
    tree, overrides = parse_params(params_yaml, overrides)
    params = params_from_dict(tree, overrides)
    storage = tune_storage(params)
    if not storage or storage.startswith("sqlite"):
        return 1
    return max(1, min(requested, params.tune.n_trials))


def worker_items(num_workers: int, **shared: str) -> list[dict]:
    """ParallelFor items: each iteration's worker index, the worker count and the shared texts.

    Everything a loop iteration needs from upstream task *parameters* travels in its item
    (``params_yaml``, the parent run id): kfp.local substitutes the loop item for task-output
    parameters that cross into a loop, so only artifacts and items may cross.
    """
    if num_workers < 1:
        raise ConfigError(f"number of workers must be at least 1, got {num_workers}")
    for key, value in shared.items():
        if not isinstance(value, str):
            raise ArtifactError(f"loop item field {key!r} must be text, got {value!r}")
    return [{"worker": i, "num_workers": num_workers, **shared} for i in range(num_workers)]


# ----------------------------------------------------------------------------------------------
# typed run parameters (the knobs a user changes per run, shown in the KFP run form)

# run parameter -> the params key it sets. Precedence: params_yaml < these < overrides.
PIPELINE_KNOBS: dict[str, str] = {
    "encoder": "pretrain_encoder.encoder",
    "pretrain_epochs": "pretrain_encoder.epochs",
    "tune_trials": "tune.n_trials",
    "tune_epochs_per_trial": "tune.epochs_per_trial",
    "train_epochs": "train.epochs",
    "max_normalized_leakage": "gate.max_normalized_leakage",
    "max_moving_normalized_leakage": "gate.max_moving_normalized_leakage",
    "min_relative_cmap_drop": "gate.min_relative_cmap_drop",
    "max_utility_relative_drop": "gate.max_utility_relative_drop",
}


def knob_defaults(params_yaml: str) -> dict[str, Any]:
    """The knobs' values in a params text (the compiled pipeline's run-form defaults)."""
    params = params_from_dict(*parse_params(params_yaml))
    values = {}
    for knob, key in PIPELINE_KNOBS.items():
        section, field_name = key.split(".")
        values[knob] = getattr(getattr(params, section), field_name)
    return values


def resolve_params(params_yaml: str, overrides: Sequence[str], knobs: Mapping[str, Any]) -> str:
    """One complete, validated params text: params_yaml, then the typed knobs, then the overrides.

    The text is deterministic (sorted keys), so tasks that take it are cached on its content.
    """
    from latentanon._configtools import to_dict

    unknown = sorted(set(knobs) - set(PIPELINE_KNOBS))
    if unknown:
        raise ConfigError(f"unknown pipeline run parameters {unknown}; known: {sorted(PIPELINE_KNOBS)}")
    tree, overrides = parse_params(params_yaml, overrides)
    settings = [f"{PIPELINE_KNOBS[name]}={json.dumps(value)}" for name, value in sorted(knobs.items())]
    try:
        params = params_from_dict(tree, [*settings, *overrides])
    except ConfigError as exc:
        raise ConfigError(f"pipeline run parameters: {exc}") from exc
    return yaml.safe_dump(to_dict(params), sort_keys=True)
