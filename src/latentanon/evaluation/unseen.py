"""Unseen tasks (the paper's Table 4 analogue): the trained method refitted with each task held
out of its training, that task then scored on the anonymized features as unseen."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from latentanon.evaluation import metrics
from latentanon.evaluation.paired import count_test_videos
from latentanon.features.featureset import FeatureSet
from latentanon.methods.registry import create_method


def unseen_present(raw: Mapping[str, FeatureSet]) -> list[str]:
    from latentanon.tasks.specs import TASK_SPECS, TASKS

    return [t for t in TASKS if TASK_SPECS[t].set_name in raw]


def held_out_score(
    name: str, train, held_out: str, raw: Mapping[str, FeatureSet], seed: int, heads: Mapping | None = None
) -> dict:
    """The method refitted with ``held_out`` out of its training, that task scored on its
    anonymized features (with items); module level, so a pool worker can run it."""
    from dataclasses import replace

    from latentanon.tasks.scoring import score_task
    from latentanon.tasks.specs import TASK_SPECS

    method = create_method(name, replace(train, tasks=replace(train.tasks, **{held_out: 0.0}))).fit(raw, seed=seed)
    method = method.with_reproducible_noise(seed)
    fs = method.transform(raw[TASK_SPECS[held_out].set_name])
    return score_task(held_out, fs.split("train"), fs.split("val"), fs.split("test"), seed, items=True, **(heads or {}))


def trained_for_unseen(method_dir: Path, fallback_train=None):
    """The trained method, with ``fallback_train`` as its knobs for a legacy adapter directory."""
    from latentanon.methods.base import METHOD_JSON
    from latentanon.methods.registry import load_method

    trained = load_method(method_dir)
    if not (Path(method_dir) / METHOD_JSON).exists() and fallback_train is not None:
        trained.train = fallback_train
    return trained


def unseen_tasks(
    method_dir: Path,
    raw: Mapping[str, FeatureSet],
    seeds: list[int],
    confidence: float,
    raw_results: Mapping[str, dict],
    heads: Mapping | None = None,
    fallback_train=None,
    raw_items: Mapping[str, dict] | None = None,
    n_resamples: int = 0,
    scored: Mapping[tuple[str, int], dict] | None = None,
) -> dict:
    """The paper's Table 4 analogue: the trained method refitted with each task held out of its
    training in turn (task weight 0), that task then scored on the anonymized features as unseen,
    against raw of the same seed. Methods that use no task labels give the same fit each time.
    The refits use the knobs saved with the trained method (``fallback_train`` for a legacy
    adapter directory, which saved none). ``scored``: (task, seed) -> ``held_out_score`` results
    already computed (in the evaluation's pool); the others are computed here."""
    from dataclasses import replace

    from latentanon.evaluation import resampling
    from latentanon.tasks.per_item import resampled_values
    from latentanon.tasks.scoring import score_task
    from latentanon.tasks.specs import TASK_SPECS

    trained = trained_for_unseen(method_dir, fallback_train)
    out = {"method": trained.name, "seeds": list(seeds), "tasks": {}}
    present = unseen_present(raw)
    for held_out in tqdm(present, desc="unseen tasks", unit="task", disable=None):
        tasks = replace(trained.train.tasks, **{held_out: 0.0})
        values, raw_values, drops, paired = [], [], [], []
        for seed in seeds:
            fs_raw = raw[TASK_SPECS[held_out].set_name]
            result = (scored or {}).get((held_out, seed))
            if result is None:
                result = held_out_score(trained.name, trained.train, held_out, raw, seed, heads)
            value = result["value"]
            reference = (raw_items or {}).get(str(seed), {}).get("utility", {}).get(held_out)
            if reference is not None and n_resamples > 0:
                n_videos = count_test_videos(held_out, reference)
                weights = resampling.shared_weights(n_videos, n_resamples)
                before = resampled_values(held_out, reference, weights)
                after = resampled_values(held_out, result["items"], weights)
                with np.errstate(invalid="ignore", divide="ignore"):
                    paired.append(np.where(before != 0, (before - after) / before, np.nan))
            cached = raw_results.get(str(seed), {}).get("utility", {}).get(held_out)
            raw_value = (
                cached["value"]
                if cached
                else score_task(
                    held_out, fs_raw.split("train"), fs_raw.split("val"), fs_raw.split("test"), seed, **(heads or {})
                )["value"]
            )
            values.append(value)
            raw_values.append(raw_value)
            drops.append(metrics.relative_drop(raw_value, value))
        out["tasks"][held_out] = {
            "trained_on": [t for t in present if t != held_out and getattr(tasks, t) > 0],
            "value": metrics.mean_interval(values, confidence),
            "raw_value": metrics.mean_interval(raw_values, confidence),
            "relative_drop": metrics.mean_interval(drops, confidence),
        }
        if paired and len(paired) == len(seeds):
            out["tasks"][held_out]["relative_drop_paired"] = resampling.combine_seeds(np.stack(paired), confidence)
    return out
