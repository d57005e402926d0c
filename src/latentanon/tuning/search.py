"""The ``tune`` stage: a multi-objective Optuna search over the methods of ``tune.methods`` and
their knobs (the AAM's loss weights, the noise scale, the bottleneck's noise and compaction).

Each trial (``tuning.trials``) fits on the train split (AAM methods for ``tune.epochs_per_trial``)
and is measured on the validation split only (``tuning.objectives``: the worst scope's normalised
leakage, minimised, and the mean utility relative to raw, maximised). The operating point is
chosen with the gate's thresholds (or tune's, where stricter): see
``operating_point.gate_operating_point``.

Storage is an RDB (``LATENTANON_TUNE_STORAGE``, else ``tune.storage``, else
``sqlite:///<reports>/tune/study.db``) so a killed study resumes and several workers can share
one study: every worker runs trials until the study holds ``tune.n_trials`` completed trials.
The study name carries a fingerprint of the features and of the params that change what a trial
measures, so changing them starts a fresh study while raising ``n_trials`` continues the old one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pandas as pd

from latentanon._configtools import to_dict
from latentanon._files import write_text_atomic
from latentanon.environment import TUNE_STORAGE_ENV
from latentanon.layout import Layout
from latentanon.methods.config import LossWeights, TrainConfig
from latentanon.tracking import runs
from latentanon.tracking.config import TrackedParams
from latentanon.tuning import study as study_lib
from latentanon.tuning.config import SearchParams
from latentanon.tuning.objectives import measure
from latentanon.tuning.operating_point import (
    chosen_method,
    chosen_weights,
    gate_operating_point,
    gate_rule_text,
    gate_thresholds,
    trial_point,
)
from latentanon.tuning.pareto import TrialPoint, pareto_front, plot_front
from latentanon.tuning.trials import SearchData, head_inputs, load_search_data, run_trial, suggest, utility_tasks

STORAGE_ENV = TUNE_STORAGE_ENV
DIRECTIONS: tuple[study_lib.Direction, ...] = ("minimize", "maximize")  # leakage, utility
RAW_ATTR = "raw_reference"


def resolve_storage(params: SearchParams, layout: Layout) -> str:
    url = os.environ.get(STORAGE_ENV) or params.tune.storage
    if url:
        return url
    path = (layout.report_dir("tune") / "study.db").resolve()
    return f"sqlite:///{path}"


def _redacted(url: str) -> str:
    from latentanon._redact import redact_text

    return redact_text(url)


def _fingerprint(params: SearchParams, data: SearchData, tasks: tuple[str, ...]) -> str:
    """What a trial's numbers depend on; n_trials and the storage location are left out."""
    from latentanon.tasks.specs import MEASUREMENT_VERSION

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


def trial_points(study) -> list[TrialPoint]:
    return [trial_point(t) for t in completed(study)]


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
