"""The ``evaluate`` stage: privacy and utility of raw, AAM-anonymized and baseline features.

For every seed and every method (raw = the identity baseline, aam = the train stage's anonymized
store, and each configured baseline fitted on train splits) it measures:
- privacy: attackers on static clips (privacy videos + images) and on moving clips (privacy
  videos), cMAP with chance level, relative cMAP drop and normalised leakage against raw of the
  same seed; identity re-identification and gait retrieval top-1 (nearest neighbour, test split);
- utility: AR, TAD and AD through ``latentanon.evaluation.tasks.score_task``.
Figures are summarised as mean and Student-t interval over seeds. A re-run with the same inputs
resumes from reports/evaluate/partial.json instead of redoing finished (method, seed) pairs.
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Mapping
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from latentanon._files import write_json_atomic
from latentanon.baselines import NEEDS_PRIVATE_LABELS, base_name, fit_baseline, method_names
from latentanon.config import Layout, Params
from latentanon.errors import StoreError
from latentanon.evaluation import metrics, reid
from latentanon.evaluation.privacy import ATTRIBUTES, attack
from latentanon.features.featureset import FeatureSet
from latentanon.plots import pyplot, save_figure

PRIVACY_SETS = ("privacy_videos", "privacy_images")
MOVING_PRIVACY_SET = "privacy_videos"


def task_sets() -> dict[str, str]:
    """Utility task -> the feature set it is scored on."""
    from latentanon.evaluation.tasks import TASK_SPECS, TASKS

    return {task: TASK_SPECS[task].set_name for task in TASKS}


def needed_sets() -> tuple[str, ...]:
    return tuple(dict.fromkeys([*PRIVACY_SETS, *task_sets().values()]))


def load_sets(uri: str, names: tuple[str, ...]) -> dict[str, FeatureSet]:
    """The named sets of a store; the privacy sets and every task set must be there."""
    from latentanon.features.store import list_feature_sets, load_feature_set

    available = set(list_feature_sets(uri))
    missing = [n for n in names if n not in available and n != "privacy_images"]
    if missing:
        raise StoreError(f"{uri}: feature set(s) {missing} missing (store has {sorted(available)})")
    return {n: load_feature_set(uri, n) for n in names if n in available}


def _check_aligned(raw: Mapping[str, FeatureSet], anonymized: Mapping[str, FeatureSet], uri: str) -> None:
    for name, fs in raw.items():
        if name not in anonymized:
            raise StoreError(f"{uri}: anonymized store lacks feature set {name!r}; re-run the train stage")
        if list(anonymized[name].records["video_id"]) != list(fs.records["video_id"]):
            raise StoreError(f"{uri}: set {name!r} does not hold the same videos as the raw store; re-run train")


def _splits(sets: list[FeatureSet], split: str) -> list[FeatureSet]:
    return [fs.split(split) for fs in sets]


def measure(sets: Mapping[str, FeatureSet], seed: int) -> dict:
    """Every privacy and utility figure of one method's features for one seed."""
    from latentanon.evaluation.tasks import score_task

    privacy_sets = [sets[n] for n in PRIVACY_SETS if n in sets]
    static = attack(*(_splits(privacy_sets, s) for s in ("train", "val", "test")), ATTRIBUTES, seed, "static")
    moving_set = sets[MOVING_PRIVACY_SET]
    moving = attack(*(moving_set.split(s) for s in ("train", "val", "test")), ATTRIBUTES, seed, "clips")
    utility = {}
    for task, set_name in task_sets().items():
        fs = sets[set_name]
        utility[task] = score_task(task, fs.split("train"), fs.split("val"), fs.split("test"), seed)
    return {
        "privacy": {
            "static": static,
            "moving": moving,
            "reid": reid.reidentification(_splits(privacy_sets, "test")),
            "gait": reid.gait_retrieval(moving_set.split("test")),
        },
        "utility": utility,
    }


def _pool_worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _measure_in_pool(todo, method_sets, record, bar, workers: int) -> None:
    """Measure (seed, method) pairs in worker processes while this one fits the next baselines.

    Workers are spawned (not forked: torch's thread pools do not survive a fork safely) and each
    gets one method's transformed sets; results are recorded as they arrive, so a killed run
    resumes from what finished.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    pending = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_pool_worker_init) as pool:
        fitted_by_seed: dict[int, dict] = {}
        for seed, method in todo:
            sets = method_sets(method, seed, fitted_by_seed.setdefault(seed, {}))
            pending[pool.submit(measure, sets, seed)] = (method, seed)
            # Keep at most one job queued per worker: bounded memory, early partial results.
            while len(pending) > workers:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    method_done, seed_done = pending.pop(future)
                    record(method_done, seed_done, future.result())
                    bar.update(1)
        for future in list(pending):
            method_done, seed_done = pending.pop(future)
            record(method_done, seed_done, future.result())
            bar.update(1)


def _fingerprint(params: Params, layout: Layout) -> str:
    """Inputs that decide the results: evaluate/train params and both stores' indexes."""
    from latentanon.features.store import FeatureStore

    indexes = [FeatureStore(uri).read_index() for uri in (layout.features_uri, layout.anonymized_uri)]
    blob = json.dumps([params.section_hash("evaluate", "train"), indexes], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load_partial(path: Path, fingerprint: str) -> dict:
    if not path.exists():
        return {}
    try:
        partial = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    return partial.get("results", {}) if partial.get("fingerprint") == fingerprint else {}



def summarize(per_seed: Mapping[str, Mapping[str, dict]], seeds: list[int], confidence: float) -> dict:
    """Mean and interval over seeds of every figure; drops and leakage against raw of the same seed."""
    keys = [str(s) for s in seeds]
    raw = per_seed["raw"]
    privacy, utility = {}, {}
    from latentanon.evaluation.tasks import TASKS

    measured = raw[keys[0]]["utility"]
    tasks = [t for t in TASKS if t in measured] + sorted(t for t in measured if t not in TASKS)
    for method, runs in per_seed.items():
        summary = {}
        for scope in ("static", "moving"):
            cmaps = [runs[k]["privacy"][scope]["cmap"] for k in keys]
            chances = [runs[k]["privacy"][scope]["chance"] for k in keys]
            raw_cmaps = [raw[k]["privacy"][scope]["cmap"] for k in keys]
            block = {
                "cmap": metrics.mean_interval(cmaps, confidence),
                "chance": metrics.mean_interval(chances, confidence),
                "relative_cmap_drop": metrics.mean_interval(
                    [metrics.relative_drop(r, c) for r, c in zip(raw_cmaps, cmaps)], confidence),
                "normalized_leakage": metrics.mean_interval(
                    [metrics.normalized_leakage(c, ch, r) for c, ch, r in zip(cmaps, chances, raw_cmaps)], confidence),
                "attributes": {},
            }
            for attribute in runs[keys[0]]["privacy"][scope]["attributes"]:
                maps = [runs[k]["privacy"][scope]["attributes"][attribute]["map"] for k in keys]
                ch = [runs[k]["privacy"][scope]["attributes"][attribute]["chance"] for k in keys]
                raw_maps = [raw[k]["privacy"][scope]["attributes"][attribute]["map"] for k in keys]
                block["attributes"][attribute] = {
                    "map": metrics.mean_interval(maps, confidence),
                    "chance": metrics.mean_interval(ch, confidence),
                    "normalized_leakage": metrics.mean_interval(
                        [metrics.normalized_leakage(m, c, r) for m, c, r in zip(maps, ch, raw_maps)], confidence),
                    "attackers": [runs[k]["privacy"][scope]["attributes"][attribute]["attacker"]["name"] for k in keys],
                }
            summary[scope] = block
        for probe in ("reid", "gait"):
            summary[probe] = {
                "top1": metrics.mean_interval([runs[k]["privacy"][probe]["top1"] for k in keys], confidence),
                "chance": metrics.mean_interval([runs[k]["privacy"][probe]["chance"] for k in keys], confidence),
            }
        privacy[method] = summary
    for task in tasks:
        entry = {"metric": raw[keys[0]]["utility"][task]["metric"]}
        for method, runs in per_seed.items():
            values = [runs[k]["utility"][task]["value"] for k in keys]
            raw_values = [raw[k]["utility"][task]["value"] for k in keys]
            entry[method] = {
                "value": metrics.mean_interval(values, confidence),
                "relative_drop": metrics.mean_interval(
                    [metrics.relative_drop(r, v) for r, v in zip(raw_values, values)], confidence),
            }
        utility[task] = entry
    return {"privacy": privacy, "utility": utility}


def privacy_utility_points(summary: dict) -> dict[str, dict]:
    """Per method: static normalised leakage (x) and mean utility relative to raw over tasks (y)."""
    points = {}
    for method, priv in summary["privacy"].items():
        drops = [summary["utility"][task][method]["relative_drop"]["mean"] for task in summary["utility"]]
        points[method] = {
            "leakage": priv["static"]["normalized_leakage"]["mean"],
            "leakage_low": priv["static"]["normalized_leakage"]["low"],
            "leakage_high": priv["static"]["normalized_leakage"]["high"],
            "relative_utility": float(1.0 - np.mean(drops)) if drops else float("nan"),
        }
    return points


def plot_attribute_leakage(summary: dict, path: Path) -> Path:
    plt = pyplot()

    methods = list(summary["privacy"])
    attributes = list(summary["privacy"]["raw"]["static"]["attributes"])
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(attributes), 4))
    for i, method in enumerate(methods):
        blocks = [summary["privacy"][method]["static"]["attributes"][a]["normalized_leakage"] for a in attributes]
        means = np.array([b["mean"] for b in blocks])
        errors = np.array([[b["mean"] - b["low"], b["high"] - b["mean"]] for b in blocks]).T
        xs = np.arange(len(attributes)) + (i - (len(methods) - 1) / 2) * width
        ax.bar(xs, means, width, yerr=np.nan_to_num(errors), capsize=2, label=method)
    ax.axhline(0.4, color="k", ls="--", lw=1, label="target 0.4")
    ax.set_xticks(np.arange(len(attributes)), attributes)
    ax.set_ylabel("normalised leakage (static clips)\n(cMAP - chance) / (raw - chance)")
    ax.set_title("Per-attribute leakage (mean, 95% interval over seeds)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def plot_privacy_utility(points: Mapping[str, dict], path: Path) -> Path:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for method, p in points.items():
        xerr = None
        if np.isfinite(p["leakage_low"]):
            xerr = [[p["leakage"] - p["leakage_low"]], [p["leakage_high"] - p["leakage"]]]
        ax.errorbar(p["leakage"], p["relative_utility"], xerr=xerr, fmt="o", capsize=3, label=method,
                    ms=9 if method == "aam" else 6)
        ax.annotate(method, (p["leakage"], p["relative_utility"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axvline(0.4, color="k", ls="--", lw=1)
    ax.axhline(0.99, color="grey", ls=":", lw=1)
    ax.set_xlabel("normalised leakage, static clips (lower = more private)")
    ax.set_ylabel("utility relative to raw, mean over tasks")
    ax.set_title("Privacy-utility plane")
    fig.tight_layout()
    save_figure(fig, path)
    return path


def evaluate(params: Params, layout: Layout) -> dict:
    """The stage: writes reports/evaluate/evaluation.json and its plots; returns a short summary."""
    import torch

    threads = torch.get_num_threads()
    # Every model here is tiny: one thread is many times faster than several fighting for cores.
    torch.set_num_threads(1)
    try:
        return _evaluate(params, layout)
    finally:
        torch.set_num_threads(threads)


def _evaluate(params: Params, layout: Layout) -> dict:
    started = time.time()
    cfg = params.evaluate
    report_dir = layout.report_dir("evaluate")
    report_dir.mkdir(parents=True, exist_ok=True)
    seeds = list(cfg.seeds)
    if not seeds:
        raise ValueError("evaluate.seeds: at least one seed is needed")
    names = needed_sets()
    raw = load_sets(layout.features_uri, names)
    anonymized = load_sets(layout.anonymized_uri, tuple(raw))
    _check_aligned(raw, anonymized, layout.anonymized_uri)
    baselines = [b for b in method_names(cfg) if b != "identity"]
    methods = ["raw", "aam", *baselines]

    partial_path = report_dir / "partial.json"
    fingerprint = _fingerprint(params, layout)
    results: dict[str, dict[str, dict]] = _load_partial(partial_path, fingerprint)
    todo = [(seed, m) for seed in seeds for m in methods if str(seed) not in results.get(m, {})]

    def method_sets(method: str, seed: int, fitted: dict) -> dict[str, FeatureSet]:
        if method == "raw":
            return raw
        if method == "aam":
            return anonymized
        if method not in fitted:
            fitted[method] = fit_baseline(method, raw, cfg, seed, params.train.adapter)
        return {name: fitted[method](fs) for name, fs in raw.items()}

    def record(method: str, seed: int, result: dict) -> None:
        results.setdefault(method, {})[str(seed)] = result
        write_json_atomic(partial_path, {"fingerprint": fingerprint, "results": results})

    with tqdm(total=len(methods) * len(seeds), initial=len(methods) * len(seeds) - len(todo),
              desc="evaluate", unit="run", disable=None) as bar:
        def in_process(pairs) -> None:
            fitted_by_seed: dict[int, dict] = {}
            for seed, method in pairs:
                bar.set_postfix(method=method, seed=seed)
                record(method, seed, measure(method_sets(method, seed, fitted_by_seed.setdefault(seed, {})), seed))
                bar.update(1)

        if cfg.workers <= 1 or len(todo) <= 1:
            in_process(todo)
        else:
            try:
                _measure_in_pool(todo, method_sets, record, bar, cfg.workers)
            except BrokenProcessPool:
                warnings.warn(
                    "evaluate: worker processes died (a calling script without an "
                    "`if __name__ == '__main__':` guard cannot spawn them); measuring in this process",
                    RuntimeWarning, stacklevel=2,
                )
                in_process([(seed, m) for seed, m in todo if str(seed) not in results.get(m, {})])

    summary = summarize({m: results[m] for m in methods}, seeds, cfg.confidence)
    points = privacy_utility_points(summary)
    seen = {task: getattr(params.train.tasks, task) > 0 for task in summary["utility"]}
    plots = {
        "attribute_leakage": plot_attribute_leakage(summary, report_dir / "attribute_leakage.png").name,
        "privacy_utility": plot_privacy_utility(points, report_dir / "privacy_utility.png").name,
    }
    evaluation = {
        "methods": methods,
        "baselines": {
            m: {"needs_private_labels": base_name(m) in NEEDS_PRIVATE_LABELS} for m in ["identity", *baselines]
        },
        "identity_is_raw": True,
        "seeds": seeds,
        "confidence": cfg.confidence,
        "attributes": list(ATTRIBUTES),
        "tasks": {task: {"metric": summary["utility"][task]["metric"], "seen_in_training": seen[task]}
                  for task in summary["utility"]},
        "privacy": summary["privacy"],
        "utility": summary["utility"],
        "privacy_utility": points,
        "plots": plots,
        "per_seed": results,
        "seconds": round(time.time() - started, 1),
    }
    write_json_atomic(report_dir / "evaluation.json", evaluation)
    aam = summary["privacy"]["aam"]["static"]
    return {
        "methods": methods,
        "seeds": seeds,
        "aam_normalized_leakage": aam["normalized_leakage"]["mean"],
        "aam_relative_cmap_drop": aam["relative_cmap_drop"]["mean"],
        "aam_utility_relative_drop": {t: summary["utility"][t]["aam"]["relative_drop"]["mean"] for t in summary["utility"]},
        "seconds": evaluation["seconds"],
    }
