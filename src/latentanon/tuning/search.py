"""The ``tune`` stage: a multi-objective Optuna search over the methods of ``tune.methods`` and
their knobs (the AAM's loss weights, the noise scale, the bottleneck's noise and compaction).

Objectives, on the validation split only, measured the way evaluate measures: leakage (the worst
scope's normalised leakage (cMAP - chance) / (raw cMAP - chance) of one fixed attacker of
evaluate's kind, over the scopes a user shares: static clips of the privacy sets, moving clips of
the privacy videos, each privacy video's mean moving clip, each long video's mean snippet where its
records carry the private attributes, and, for a method with fresh noise, the privacy videos
published ``RELEASES`` times and averaged per clip; minimised) and utility (mean over the seen
tasks of the anonymized validation metric relative to raw, each task read by the stronger of
evaluate's head input forms; maximised). Each trial fits on the train split (AAM methods for
``tune.epochs_per_trial``). The operating point is chosen with the gate's thresholds (or tune's,
where stricter): see ``gate_operating_point``.

Storage is an RDB (``LATENTANON_TUNE_STORAGE``, else ``tune.storage``, else
``sqlite:///<reports>/tune/study.db``) so a killed study resumes and several workers can share
one study: every worker runs trials until the study holds ``tune.n_trials`` completed trials.
The study name carries a fingerprint of the features and of the params that change what a trial
measures, so changing them starts a fresh study while raising ``n_trials`` continues the old one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from latentanon._configtools import ConfigError, to_dict
from latentanon._files import write_text_atomic
from latentanon.data.layouts import PRIVACY_SETS
from latentanon.environment import TUNE_STORAGE_ENV
from latentanon.errors import StoreError
from latentanon.features.featureset import FeatureSet
from latentanon.layout import Layout
from latentanon.methods.config import LossWeights, TrainConfig
from latentanon.tracking import runs
from latentanon.tracking.config import TrackedParams
from latentanon.tuning import study as study_lib
from latentanon.tuning.config import SearchParams
from latentanon.tuning.pareto import TrialPoint, choose_operating_point, pareto_front, plot_front, rule_text

STORAGE_ENV = TUNE_STORAGE_ENV

# What tune attacks besides single clips: per-video means, and re-releases of a noisy method.
MOVING_SET = "privacy_videos"
LONG_SCOPES = {"untrimmed_mean": "untrimmed", "anomaly_mean": "anomaly"}
RELEASES = 16  # publications of the same store averaged per clip (a stochastic method only)
SEARCH_SPLITS = ("train", "val")  # the test split is never loaded into a trial
DIRECTIONS: tuple[study_lib.Direction, ...] = ("minimize", "maximize")  # leakage, utility
RAW_ATTR = "raw_reference"


@dataclass
class SearchData:
    task_sets: dict[str, FeatureSet]  # training sets (actions, untrimmed, anomaly), train+val rows
    privacy: list[FeatureSet]  # privacy sets, train+val rows
    fingerprint: str  # identity of the stored features


def resolve_storage(params: SearchParams, layout: Layout) -> str:
    url = os.environ.get(STORAGE_ENV) or params.tune.storage
    if url:
        return url
    path = (layout.report_dir("tune") / "study.db").resolve()
    return f"sqlite:///{path}"


def _redacted(url: str) -> str:
    from latentanon._redact import redact_text

    return redact_text(url)


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
    from latentanon.tasks.scoring import TASK_SPECS, TASKS

    present = [t for t in TASKS if TASK_SPECS[t].set_name in data.task_sets]
    seen = [t for t in present if getattr(params.train.tasks, t) > 0]
    return tuple(seen or present)


def mean_clips(fs: FeatureSet, kind: str) -> FeatureSet:
    """One row per video: the mean of its ``kind`` features, as a one-clip ``clips`` item (what an
    attacker who averages a whole video sees)."""
    means = [np.asarray(a, np.float32).mean(axis=0, keepdims=True) for a in fs.kind(kind)]
    return FeatureSet(fs.name, fs.records, {"clips": means}, dict(fs.meta))


def leakage_scopes(
    task_sets: dict[str, FeatureSet], privacy: list[FeatureSet], released: FeatureSet | None = None
) -> dict[str, tuple[list[FeatureSet], str]]:
    """Scope name -> (feature sets, kind) the validation attacker reads (see the module doc)."""
    from latentanon.tasks.private import ATTRIBUTES

    scopes = {"static": ([fs for fs in privacy if "static" in fs.arrays and len(fs)], "static")}
    videos = [fs for fs in privacy if fs.name == MOVING_SET and "clips" in fs.arrays and len(fs)]
    if videos:
        scopes["moving"] = (videos, "clips")
        scopes["video_mean"] = ([mean_clips(fs, "clips") for fs in videos], "clips")
    for scope, name in LONG_SCOPES.items():
        fs = task_sets.get(name)
        if fs is not None and len(fs) and all(a in fs.records.columns for a in ATTRIBUTES):
            scopes[scope] = ([mean_clips(fs, "snippets")], "clips")
    if released is not None:
        scopes["release"] = ([released], "clips")
    return {k: v for k, v in scopes.items() if v[0]}


def stronger_head_utility(task: str, train: FeatureSet, val: FeatureSet, seed: int, inputs: tuple[str, ...]) -> float:
    """The task's val metric read by the stronger of the head input forms ``inputs`` (default
    hyper-parameters): the form evaluate keeps for a method is the one that scores best on val."""
    from latentanon.tasks.scoring import TASK_SPECS, evaluate_head, fit_head

    grid = TASK_SPECS[task].grid[0]
    return max(float(evaluate_head(fit_head(task, train, grid, seed, inputs=form), val)) for form in inputs)


def measure(
    task_sets: dict[str, FeatureSet],
    privacy: list[FeatureSet],
    tasks: tuple[str, ...],
    seed: int,
    inputs: tuple[str, ...] = ("standardised",),
    released: FeatureSet | None = None,
) -> dict:
    """Validation leakage of every scope (cMAP and chance), and per-task validation utility of
    (possibly anonymized) features. ``leakage`` / ``chance`` keep the mean of the static and moving
    scopes (what the study's raw reference reports); trials are judged per scope."""
    from latentanon.evaluation.privacy import validation_chance, validation_leakage
    from latentanon.tasks.scoring import TASK_SPECS

    scopes = {}
    for scope, (sets, kind) in leakage_scopes(task_sets, privacy, released).items():
        val = [fs.split("val") for fs in sets]
        scopes[scope] = {
            "cmap": float(validation_leakage([fs.split("train") for fs in sets], val, seed, kind=kind)),
            "chance": float(validation_chance(val, kind=kind)),
        }
    single = [scopes[s] for s in ("static", "moving") if s in scopes]
    utility = {}
    for task in tasks:
        fs = task_sets[TASK_SPECS[task].set_name]
        utility[task] = stronger_head_utility(task, fs.split("train"), fs.split("val"), seed, tuple(inputs))
    return {
        "leakage": float(np.mean([v["cmap"] for v in single])),
        "chance": float(np.mean([v["chance"] for v in single])),
        "scopes": scopes,
        "utility": utility,
    }


def normalized(leakage: float, raw: dict) -> float:
    """(leakage - chance) / (raw - chance) on val, as the gate normalises test leakage."""
    chance = raw.get("chance")
    if chance is None or raw["leakage"] <= chance:
        return math.nan
    return (leakage - chance) / (raw["leakage"] - chance)


def scope_leakage(measured: dict, raw: dict) -> dict[str, float]:
    """Each scope's normalised val leakage against raw's same scope (a release scope against raw's
    moving clips: publishing raw features again changes nothing); NaN where raw has no headroom."""
    out = {}
    for scope, value in measured["scopes"].items():
        reference = raw["scopes"].get("moving" if scope == "release" else scope)
        if reference is not None:
            out[scope] = normalized(value["cmap"], {"leakage": reference["cmap"], "chance": reference["chance"]})
    return out


def worst_scope(per_scope: dict[str, float]) -> float:
    finite = [v for v in per_scope.values() if np.isfinite(v)]
    return float(max(finite)) if finite else math.nan


def relative(raw: dict, anonymized: dict) -> tuple[float, dict[str, float]]:
    """Mean relative utility and each task's relative drop (raw - anonymized) / raw."""
    drops = {}
    for task, raw_value in raw["utility"].items():
        value = anonymized["utility"][task]
        drops[task] = (raw_value - value) / raw_value if raw_value > 0 else (0.0 if value >= raw_value else 1.0)
    mean_relative = float(np.mean([1.0 - d for d in drops.values()])) if drops else 1.0
    return mean_relative, drops


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


def _fingerprint(params: SearchParams, data: SearchData, tasks: tuple[str, ...]) -> str:
    """What a trial's numbers depend on; n_trials and the storage location are left out."""
    from latentanon.tasks.scoring import MEASUREMENT_VERSION

    tune = {
        k: v
        for k, v in to_dict(params.tune).items()
        if k
        not in (
            "n_trials",
            "storage",
            "study_name",
            "max_utility_drop",
            "max_normalized_leakage",
            "heartbeat_seconds",
            "workers",
        )
    }
    train = {k: v for k, v in to_dict(params.train).items() if k not in ("weights", "epochs", "use_tuned_weights")}
    blob = json.dumps(
        {
            "tune": tune,
            "train": train,
            "tasks": tasks,
            "features": data.fingerprint,
            "measurement": MEASUREMENT_VERSION,
        },
        sort_keys=True,
    )  # old trials measured otherwise
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def open_study(params: SearchParams, storage_url: str, study_name: str):
    """The stage's study: resumable and, in sequential mode, deterministic (see tuning.study)."""
    return study_lib.open_study(
        storage_url,
        study_name,
        list(DIRECTIONS),
        seed=params.tune.seed,
        n_startup_trials=max(2, params.tune.n_trials // 3),
        heartbeat_seconds=params.tune.heartbeat_seconds,
    )


def completed(study) -> list:
    return study_lib.completed(study)


def raw_reference(
    study, data: SearchData, tasks: tuple[str, ...], seed: int, inputs: tuple[str, ...] = ("standardised",)
) -> dict:
    """Leakage and utility of the raw features; computed once per study and kept in it."""
    cached = study.user_attrs.get(RAW_ATTR)
    if cached and tuple(cached["utility"]) == tasks and "scopes" in cached and tuple(cached["inputs"]) == inputs:
        return cached
    raw = {**measure(data.task_sets, data.privacy, tasks, seed, inputs), "inputs": list(inputs)}
    study.set_user_attr(RAW_ATTR, raw)
    return raw


_WORKER_DATA: SearchData | None = None  # what a spawned trial worker loaded once


def _trial_worker_init(features_uri: str, threads: int) -> None:
    import torch

    global _WORKER_DATA
    if threads > 0:
        torch.set_num_threads(threads)
    _WORKER_DATA = load_search_data(features_uri)


def _run_trial_in_worker(
    params: SearchParams, weights: LossWeights, train_cfg: TrainConfig, tasks: tuple[str, ...], raw: dict
) -> dict:
    assert _WORKER_DATA is not None  # _trial_worker_init loaded it when this worker started
    return run_trial(_WORKER_DATA, params, weights, train_cfg, tasks, raw)


def optimize(study, objective, n_trials: int, progress_label: str = "tune") -> int:
    """Run trials until the study holds ``n_trials`` completed ones; returns how many ran here."""
    return study_lib.optimize(study, objective, n_trials, progress_label)


def trial_point(t) -> TrialPoint:
    return TrialPoint(
        number=study_lib.slot_of(t),  # the slot, not Optuna's number: a retried kill keeps it
        leakage=float(t.values[0]),
        utility=float(t.values[1]),
        drops={k: float(v) for k, v in t.user_attrs.get("drops", {}).items()},
        normalized_leakage=float(t.user_attrs.get("normalized_leakage", math.nan)),
        params=dict(t.params),
    )


def trial_points(study) -> list[TrialPoint]:
    return [trial_point(t) for t in completed(study)]


def chosen_method(point: TrialPoint, params: SearchParams) -> str:
    """The registry name of the method a trial fitted (noise with its searched scale)."""
    method = point.params.get("method", params.tune.methods[0] if params.tune.methods else "paper")
    if "noise_scale" in point.params:
        method = f"noise@{point.params['noise_scale']:.4g}"
    return method


def chosen_weights(point: TrialPoint, params: SearchParams) -> dict:
    base = params.train.weights
    if "w_lc" not in point.params:  # a method without loss weights
        return asdict(base)
    return asdict(
        LossWeights(
            latent_consistency=point.params["w_lc"],
            utility=point.params["w_t"],
            privacy=point.params["w_b"],
            temperature=point.params.get("temperature", base.temperature),
        )
    )


def gate_thresholds(params: SearchParams) -> tuple[float, float]:
    """(largest task drop, largest normalised leakage) a trial may have: the gate's thresholds, or
    tune's where stricter (a margin for the test split's noise)."""
    gate = params.gate
    return (
        min(params.tune.max_utility_drop, gate.max_utility_relative_drop),
        min(params.tune.max_normalized_leakage, gate.max_normalized_leakage, gate.max_moving_normalized_leakage),
    )


def gate_operating_point(
    points: list[TrialPoint], max_utility_drop: float, max_normalized_leakage: float
) -> tuple[TrialPoint, str]:
    """The trial the gate would approve on val: among trials whose every drop and whose worst
    scope's normalised leakage are within the thresholds, the least leakage (ties: higher utility,
    then lower trial number), branch "gate_approvable"; if none passes both, ``pareto``'s rule with
    the same thresholds (within the utility budget, else the private fallback, else least leakage)."""
    passing = [p for p in points if p.worst_drop <= max_utility_drop and p.normalized_leakage <= max_normalized_leakage]
    if passing:
        return min(passing, key=lambda p: (p.leakage, -p.utility, p.number)), "gate_approvable"
    return choose_operating_point(points, max_utility_drop, max_normalized_leakage)


def gate_rule_text(max_utility_drop: float, max_normalized_leakage: float) -> str:
    return (
        f"least validation leakage (worst scope's normalised leakage) among trials the gate would approve "
        f"(every task's drop <= {max_utility_drop:g}, normalised leakage <= {max_normalized_leakage:g}); if none: "
        + rule_text(max_utility_drop, max_normalized_leakage)
    )


def write_outputs(study, params: SearchParams, out_dir: Path, raw: dict, storage_url: str) -> dict:
    """pareto.json, pareto.png, trials.csv and chosen.json under ``out_dir``."""
    points = trial_points(study)
    front = pareto_front(study, trial_point)
    max_drop, max_leakage = gate_thresholds(params)
    chosen, branch = gate_operating_point(points, max_drop, max_leakage)
    on_front = {p.number for p in front}
    rows = []
    for t in study.get_trials(deepcopy=False):
        slot = study_lib.slot_of(t)
        row = {"trial": slot, "optuna_trial": t.number, "state": t.state.name, **t.params}
        if t.values is not None:
            row.update({"leakage": t.values[0], "utility": t.values[1]})
        row.update({f"drop_{k}": v for k, v in t.user_attrs.get("drops", {}).items()})
        complete = t.values is not None
        row.update({"on_front": complete and slot in on_front, "chosen": complete and slot == chosen.number})
        rows.append(row)
    write_text_atomic(out_dir / "trials.csv", pd.DataFrame(rows).to_csv(index=False))
    rule = gate_rule_text(max_drop, max_leakage)
    pareto = {
        "study_name": study.study_name,
        "storage": _redacted(storage_url),
        "objectives": {
            "leakage": "minimize: worst scope's normalised validation leakage (static, moving, per-video "
            "and long-video means, re-release of a noisy method)",
            "utility": "maximize: mean validation utility of the tasks relative to raw, each task read "
            "by the stronger head input form",
        },
        "raw": raw,
        "n_complete": len(points),
        "front": [
            {"trial": p.number, "leakage": p.leakage, "utility": p.utility, "drops": p.drops, "params": p.params}
            for p in front
        ],
        "chosen_trial": chosen.number,
    }
    write_text_atomic(out_dir / "pareto.json", json.dumps(pareto, indent=2, sort_keys=True) + "\n")
    plot_front(study, chosen, 1.0, out_dir / "pareto.png")  # raw's normalised leakage is 1
    choice = {
        "method": chosen_method(chosen, params),
        "weights": chosen_weights(chosen, params),
        "rule": rule,
        "branch": branch,
        "trial": chosen.number,
        "leakage": chosen.leakage,
        "normalized_leakage": chosen.normalized_leakage,
        "utility": chosen.utility,
        "drops": chosen.drops,
    }
    if "lr" in chosen.params:
        choice["lr"] = chosen.params["lr"]
    if "bottleneck_sigma" in chosen.params:
        compaction = chosen.params["bottleneck_compaction"]
        choice["bottleneck"] = {
            "sigma": chosen.params["bottleneck_sigma"],
            "compaction": compaction,
            "static_compaction": compaction,
        }
    if "distil_ar_step" in chosen.params:
        choice["distil"] = {"ar_step": chosen.params["distil_ar_step"]}
    if "fisher_static_weight" in chosen.params:
        choice["fisher"] = {"static_weight": chosen.params["fisher_static_weight"]}
    choice["scope_leakage"] = next(
        (t.user_attrs.get("scope_leakage", {}) for t in completed(study) if study_lib.slot_of(t) == chosen.number), {}
    )
    write_text_atomic(out_dir / "chosen.json", json.dumps(choice, indent=2, sort_keys=True) + "\n")
    return {"chosen": choice, "front_size": len(front), "n_complete": len(points)}


def run_search(params: SearchParams, tracked: TrackedParams, layout: Layout) -> dict:
    """The tune stage (see module doc). Returns a summary; files land in reports/tune/. ``tracked``:
    what the trials' MLflow runs (children of the pipeline's parent run) need."""
    import torch

    threads = torch.get_num_threads()
    if params.tune.torch_threads > 0:
        torch.set_num_threads(params.tune.torch_threads)
    try:
        return _run_search(params, tracked, layout)
    finally:
        torch.set_num_threads(threads)


def _run_search(params: SearchParams, tracked: TrackedParams, layout: Layout) -> dict:
    import optuna

    out_dir = layout.report_dir("tune")
    started = time.perf_counter()
    client = runs.client_for(tracked.tracking, layout)  # fail now, not after the trials, if unreachable
    parent = runs.pipeline_run_id(tracked, layout, client)
    data = load_search_data(layout.features_uri)
    tasks = utility_tasks(params, data)
    storage_url = resolve_storage(params, layout)
    study_name = f"{params.tune.study_name}-{_fingerprint(params, data, tasks)}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(params, storage_url, study_name)
    raw = raw_reference(study, data, tasks, params.tune.seed, head_inputs(params))

    def tags(trial) -> dict:
        return {"optuna.study": study_name, "optuna.trial": trial.number, runs.TAG_STAGE: "tune"}

    def objective(trial) -> tuple[float, float]:
        weights, train_cfg = suggest(trial, params)
        try:
            result = run_trial(data, params, weights, train_cfg, tasks, raw)
        except Exception:
            runs.log_child_run(client, parent, f"trial-{trial.number}", dict(trial.params), {}, tags(trial), "FAILED")
            raise
        return record(trial, result)

    def record(trial, result: dict) -> tuple[float, float]:
        trial.set_user_attr("drops", result["drops"])
        trial.set_user_attr("task_utility", result["task_utility"])
        trial.set_user_attr("normalized_leakage", result["normalized_leakage"])
        trial.set_user_attr("scope_leakage", result.get("scope_leakage", {}))
        trial.set_user_attr("seconds", result["seconds"])
        metrics = {
            "leakage": result["leakage"],
            "utility": result["utility"],
            **{f"leakage_{k}": v for k, v in result.get("scope_leakage", {}).items()},
            "normalized_leakage": result["normalized_leakage"],
            "seconds": result["seconds"],
            **{f"drop_{k}": v for k, v in result["drops"].items()},
            **{f"utility_{k}": v for k, v in result["task_utility"].items()},
        }
        runs.log_child_run(client, parent, f"trial-{trial.number}", dict(trial.params), metrics, tags(trial))
        return result["leakage"], result["utility"]

    if params.tune.workers > 1 and study_lib.is_sequential(storage_url):
        ran = _optimize_in_workers(study, params, layout, tasks, raw, record)
    else:
        ran = optimize(study, objective, params.tune.n_trials)
    outputs = write_outputs(study, params, out_dir, raw, storage_url)
    return {
        "study_name": study_name,
        "storage": _redacted(storage_url),
        "trials_run_here": ran,
        "trials_complete": outputs["n_complete"],
        "front_size": outputs["front_size"],
        "tasks": list(tasks),
        "raw_leakage": raw["leakage"],
        "chosen": outputs["chosen"],
        "seconds": round(time.perf_counter() - started, 3),
    }


def _optimize_in_workers(study, params: SearchParams, layout: Layout, tasks: tuple[str, ...], raw: dict, record) -> int:
    """Batches of ``tune.workers`` trials, each measured in its own spawned process (spawned, not
    forked: torch's thread pools do not survive a fork safely); each worker loads the data once."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=params.tune.workers,
        mp_context=context,
        initializer=_trial_worker_init,
        initargs=(layout.features_uri, params.tune.torch_threads),
    ) as pool:

        def measure_batch(proposals: list) -> list[dict]:
            futures = [
                pool.submit(_run_trial_in_worker, params, weights, train_cfg, tasks, raw)
                for weights, train_cfg in proposals
            ]
            return [future.result() for future in futures]

        return study_lib.optimize_in_batches(
            study,
            lambda trial: suggest(trial, params),
            measure_batch,
            record,
            params.tune.n_trials,
            params.tune.workers,
        )
