"""One tune trial: the train and val rows it reads, the method and knobs it draws, and its fit
and measurement (``tuning.objectives``)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace

import numpy as np

from latentanon._configtools import ConfigError
from latentanon.data.layouts import PRIVACY_SETS
from latentanon.errors import StoreError
from latentanon.features.featureset import FeatureSet
from latentanon.methods.config import LossWeights, TrainConfig
from latentanon.tuning.config import SearchParams
from latentanon.tuning.objectives import MOVING_SET, measure, relative, scope_leakage, worst_scope

RELEASES = 16  # publications of the same store averaged per clip (a stochastic method only)
SEARCH_SPLITS = ("train", "val")  # the test split is never loaded into a trial


@dataclass
class SearchData:
    task_sets: dict[str, FeatureSet]  # training sets (actions, untrimmed, anomaly), train+val rows
    privacy: list[FeatureSet]  # privacy sets, train+val rows
    fingerprint: str  # identity of the stored features


def _search_rows(fs: FeatureSet) -> FeatureSet:
    if "split" not in fs.records.columns:
        raise StoreError(f"feature set {fs.name!r} has no 'split' column")
    return fs.subset(fs.records["split"].isin(SEARCH_SPLITS).to_numpy())


def load_search_data(features_uri: str) -> SearchData:
    from latentanon.features.store import list_feature_sets, load_feature_set
    from latentanon.methods.training import load_training_sets

    task_sets = {name: _search_rows(fs) for name, fs in load_training_sets(features_uri).items()}
    available = set(list_feature_sets(features_uri))
    privacy = [_search_rows(load_feature_set(features_uri, name)) for name in PRIVACY_SETS if name in available]
    if not privacy:
        raise StoreError(f"{features_uri}: no privacy feature set ({', '.join(PRIVACY_SETS)}) to measure leakage on")
    identity = {fs.name: fs.meta for fs in [*task_sets.values(), *privacy]}
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return SearchData(task_sets, privacy, fingerprint)


def utility_tasks(params: SearchParams, data: SearchData) -> tuple[str, ...]:
    """The seen tasks (task weight > 0) whose feature set is stored; all stored ones if none is seen."""
    from latentanon.tasks.specs import TASK_SPECS, TASKS

    present = [t for t in TASKS if TASK_SPECS[t].set_name in data.task_sets]
    seen = [t for t in present if getattr(params.train.tasks, t) > 0]
    return tuple(seen or present)


def suggest(trial, params: SearchParams) -> tuple[LossWeights, TrainConfig]:
    """The trial's method (a categorical choice when tune.methods names several) and its knobs,
    which each method class declares (``Method.suggest``: the AAM methods search the loss weights
    and lr, a bare ``noise`` its scale); returns the weights and the train config to fit."""
    from latentanon.methods.registry import method_class

    cfg = params.tune
    if not cfg.methods:
        raise ConfigError("tune.methods: name at least one method to search")
    for name in cfg.methods:
        method_class(name)
    method = cfg.methods[0] if len(cfg.methods) == 1 else trial.suggest_categorical("method", list(cfg.methods))
    name, train_cfg = method_class(method).suggest(trial, method, params.train, cfg)
    return train_cfg.weights, replace(train_cfg, method=name)


def released(method, fs: FeatureSet, releases: int, key: int) -> FeatureSet:
    """``fs`` published ``releases`` times (each with its own noise key) and averaged per clip:
    what a user who receives every release of a stochastic method's store can average."""
    total: dict[str, list[np.ndarray]] | None = None
    for r in range(releases):
        out = method.with_reproducible_noise(key * 1000 + r).transform(fs)
        arrays = {k: [np.asarray(a, np.float64) for a in out.kind(k)] for k in out.arrays}
        total = arrays if total is None else {k: [t + a for t, a in zip(total[k], arrays[k])] for k in total}
    assert total is not None  # releases >= 1: without a release there is no ``out`` either
    return out.with_arrays({k: [(a / releases).astype(np.float32) for a in v] for k, v in total.items()})


def head_inputs(params: SearchParams) -> tuple[str, ...]:
    """The head input forms evaluate chooses among (evaluate.head_inputs)."""
    return tuple(params.evaluate.head_inputs) or ("standardised",)


def run_trial(
    data: SearchData,
    params: SearchParams,
    weights: LossWeights,
    train_cfg: TrainConfig,
    tasks: tuple[str, ...],
    raw: dict,
) -> dict:
    """Fit ``train_cfg.method`` (with ``weights``) on the train split, anonymize, and measure on val.
    ``leakage`` (the trial's objective) is the worst scope's normalised leakage."""
    from latentanon.methods.registry import create_method

    started = time.perf_counter()
    train_cfg = replace(train_cfg, weights=weights, epochs=params.tune.epochs_per_trial, seed=params.tune.seed)
    method = create_method(train_cfg.method, train_cfg)
    method.fit({**data.task_sets, **{fs.name: fs for fs in data.privacy}}, seed=params.tune.seed)
    method = method.with_reproducible_noise(params.tune.seed)  # a trial's figures must not depend on the draw
    history = getattr(method, "history", {}) or {}
    task_sets = {name: method.transform(fs) for name, fs in data.task_sets.items()}
    privacy = [method.transform(fs) for fs in data.privacy]
    videos = [fs for fs in data.privacy if fs.name == MOVING_SET]
    again = released(method, videos[0], RELEASES, params.tune.seed) if method.releases_differ and videos else None
    measured = measure(task_sets, privacy, tasks, params.tune.seed, head_inputs(params), again)
    utility, drops = relative(raw, measured)
    per_scope = scope_leakage(measured, raw)
    return {
        "leakage": worst_scope(per_scope),
        "normalized_leakage": worst_scope(per_scope),
        "scope_leakage": per_scope,
        "cmap": measured["leakage"],
        "utility": utility,
        "drops": drops,
        "task_utility": measured["utility"],
        "best_epoch": history.get("best_epoch"),
        "seconds": time.perf_counter() - started,
    }
