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

ENV_TUNE_STORAGE = TUNE_STORAGE_ENV  # Optuna RDB URL from a Secret (read by the tune stage)


def parse_params(
    params_yaml: str, overrides: Sequence[str] = (), where: str = "pipeline parameter params_yaml"
) -> tuple[dict, list[str]]:
    """The params tree from the pipeline's YAML parameter and the user's overrides, both checked.

    ``where`` names the text's origin in errors (the pasted parameter or the file's URI).
    """
    try:
        tree = yaml.safe_load(params_yaml) if params_yaml and params_yaml.strip() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"{where}: expected a mapping of sections at the top level")
    overrides = [str(o) for o in (overrides or [])]
    try:
        params_from_dict(tree, overrides)  # fail early, before any work, on unknown keys or bad types
    except ConfigError as exc:
        if where == "pipeline parameter params_yaml":
            raise
        raise ConfigError(f"{where}: {exc}") from exc
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

# run parameter -> the params key it sets. Precedence: base params < these (when changed) < overrides.
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


# where a knob's winning value came from, as the run's report names it
SOURCE_DEFAULT = "default"
SOURCE_BASE_URI = "base file by URI"
SOURCE_PASTED = "pasted YAML"
SOURCE_KNOB = "typed knob"
SOURCE_OVERRIDE = "override"


def read_base_params(params_yaml: str, params_uri: str) -> tuple[str, str]:
    """The base params text and its source label: pasted YAML, a file by URI, or neither (defaults).

    ``params_uri`` is an ``s3://bucket/key`` or a path readable in the pod, read through the
    project's storage backend (so the pod's S3 credentials and endpoint apply).
    """
    pasted = bool(params_yaml and params_yaml.strip())
    uri = (params_uri or "").strip()
    if pasted and uri:
        raise ConfigError(
            "pipeline parameters params_yaml and params_uri are both given: give the base "
            "params either pasted (params_yaml) or by URI (params_uri), not both"
        )
    if not uri:
        return (params_yaml if pasted else ""), (SOURCE_PASTED if pasted else SOURCE_DEFAULT)
    from latentanon.errors import StoreError
    from latentanon.features.backends import open_backend

    folder, _, name = uri.rstrip("/").rpartition("/")
    if not name or (uri.startswith("s3://") and folder in ("s3:", "s3:/")):
        raise ConfigError(f"pipeline parameter params_uri: {uri!r} names no file (give s3://bucket/key or a path)")
    try:
        data = open_backend(folder or ".").read_bytes(name)
    except StoreError as exc:
        raise ConfigError(f"pipeline parameter params_uri: cannot read {uri}: {exc}") from exc
    try:
        return data.decode("utf-8"), f"{SOURCE_BASE_URI} {uri}"
    except UnicodeDecodeError as exc:
        raise ConfigError(f"pipeline parameter params_uri: {uri} is not UTF-8 text: {exc}") from exc


def _override_keys(overrides: Sequence[str]) -> set[str]:
    return {o.split("=", 1)[0].strip() for o in overrides if "=" in o}


def _base_value(tree: Mapping, key: str) -> tuple[bool, Any]:
    section, field_name = key.split(".")
    block = tree.get(section)
    if isinstance(block, Mapping) and field_name in block:
        return True, block[field_name]
    return False, None


def resolve_params_with_provenance(
    params_yaml: str,
    overrides: Sequence[str],
    knobs: Mapping[str, Any],
    form_defaults: Mapping[str, Any] | None = None,
    params_uri: str = "",
) -> tuple[str, dict[str, dict[str, Any]]]:
    """One complete, validated params text, and for each knob the value that won and its source.

    Precedence: the defaults < the base (pasted ``params_yaml`` or the file at ``params_uri``) <
    the typed knobs < ``overrides``. A typed knob left at its run-form default (``form_defaults``,
    the compiled pipeline's defaults) does not override a value the base sets: the form always
    sends every knob, so only a changed one says the user chose it. Without ``form_defaults``
    every knob counts as chosen. The text is deterministic (sorted keys), so tasks that take it
    are cached on its content; the provenance stays out of it.
    """
    from latentanon._configtools import to_dict

    unknown = sorted(set(knobs) - set(PIPELINE_KNOBS))
    if unknown:
        raise ConfigError(f"unknown pipeline run parameters {unknown}; known: {sorted(PIPELINE_KNOBS)}")
    base_text, base_source = read_base_params(params_yaml, params_uri)
    where = (
        f"params_uri {params_uri.strip()}"
        if base_source.startswith(SOURCE_BASE_URI)
        else "pipeline parameter params_yaml"
    )
    tree, overrides = parse_params(base_text, overrides, where=where)
    overridden = _override_keys(overrides)
    applied: dict[str, Any] = {}  # knob -> value written over the base
    changed: set[str] = set()  # knobs the user changed in the run form
    for name, value in sorted(knobs.items()):
        in_base, _ = _base_value(tree, PIPELINE_KNOBS[name])
        left_at_default = form_defaults is not None and name in form_defaults and form_defaults[name] == value
        if not left_at_default:
            changed.add(name)
        if not (left_at_default and in_base):
            applied[name] = value
    settings = [f"{PIPELINE_KNOBS[name]}={json.dumps(value)}" for name, value in applied.items()]
    try:
        params = params_from_dict(tree, [*settings, *overrides])
    except ConfigError as exc:
        raise ConfigError(f"pipeline run parameters: {exc}") from exc
    resolved = to_dict(params)
    provenance: dict[str, dict[str, Any]] = {}
    for name, key in sorted(PIPELINE_KNOBS.items()):
        section, field_name = key.split(".")
        in_base, base_value = _base_value(tree, key)
        if key in overridden:
            source = SOURCE_OVERRIDE
        elif name in changed:
            source = SOURCE_KNOB
        elif in_base:
            source = base_source
        else:
            source = SOURCE_DEFAULT
        entry: dict[str, Any] = {"key": key, "value": resolved[section][field_name], "source": source}
        if in_base and source != base_source:
            entry["base_value"] = base_value  # what the base said before a knob or an override replaced it
        provenance[name] = entry
    return yaml.safe_dump(resolved, sort_keys=True), provenance


def resolve_params(
    params_yaml: str,
    overrides: Sequence[str],
    knobs: Mapping[str, Any],
    form_defaults: Mapping[str, Any] | None = None,
    params_uri: str = "",
) -> str:
    """One complete, validated params text (see ``resolve_params_with_provenance``)."""
    return resolve_params_with_provenance(params_yaml, overrides, knobs, form_defaults, params_uri)[0]


def provenance_markdown(provenance: Mapping[str, Mapping[str, Any]]) -> str:
    """The run's parameters as a Markdown table: each knob's winning value and where it came from."""
    lines = [
        "# Run parameters",
        "",
        "Each knob's value in this run and where it came from (precedence: default < base params "
        "< typed knob changed in the run form < override).",
        "",
        "| knob | params key | value | source | base value replaced |",
        "|---|---|---|---|---|",
    ]
    for name, entry in sorted(provenance.items()):
        replaced = json.dumps(entry["base_value"]) if "base_value" in entry else ""
        lines.append(f"| {name} | `{entry['key']}` | `{json.dumps(entry['value'])}` | {entry['source']} | {replaced} |")
    return "\n".join(lines) + "\n"
