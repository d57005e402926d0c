"""The ``evaluate`` stage: privacy and utility of raw, anonymized and baseline features.

For every seed and every method (raw = the identity baseline, trained = the train stage's anonymized
store (``train.method``), and each configured baseline fitted on train splits) it measures:
- privacy: attackers on static clips (privacy videos + images) and on moving clips (privacy
  videos), cMAP with chance level, relative cMAP drop and normalised leakage against raw of the
  same seed; identity re-identification and gait retrieval top-1 (nearest neighbour, test split);
- utility: AR, TAD and AD through ``latentanon.tasks.scoring.score_task``.
Figures are summarised as mean and Student-t interval over seeds; paired bootstrap intervals come
from per-test-item arrays (``latentanon.evaluation.paired``): privacy leakage per seed combined
with the seeds, the utility drop from the seed ensemble (heads' outputs averaged over seeds) over
test videos. A re-run with the same inputs resumes from reports/evaluate/partial.json instead of
redoing finished (method, seed) pairs. The measurement, the pool, the summaries, the plots and the
unseen-task protocol live in their own modules; this one runs them as the stage.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm.auto import tqdm

from latentanon._configtools import sections_hash
from latentanon._files import write_json_atomic
from latentanon.data.layouts import PRIVACY_SETS
from latentanon.evaluation import scopes
from latentanon.evaluation.config import EvaluateConfig
from latentanon.evaluation.items import items_complete, load_items, save_items
from latentanon.evaluation.measure import align_release, load_sets, measure, needed_sets, task_sets
from latentanon.evaluation.metric_keys import TRAINED
from latentanon.evaluation.plots import plot_attribute_leakage, plot_privacy_utility
from latentanon.evaluation.pool import SHARED_FIT, fit_baseline, measure_in_pool
from latentanon.evaluation.privacy import ATTRIBUTES
from latentanon.evaluation.summary import privacy_utility_points, summarize, utility_drop
from latentanon.evaluation.unseen import held_out_score, trained_for_unseen, unseen_present, unseen_tasks
from latentanon.features.featureset import FeatureSet
from latentanon.layout import Layout
from latentanon.methods.config import TrainConfig
from latentanon.methods.registry import expand_names, needs_private_labels


def _trained_method(layout: Layout) -> dict:
    """Name and fingerprint of the method the train stage saved (what ``trained`` stands for)."""
    from latentanon.features.store import FeatureStore

    meta = FeatureStore(layout.anonymized_uri).read_index().get("meta") or {}
    method = meta.get("method") or {}
    return {"name": method.get("name", "paper"), "id": method.get("id", (meta.get("adapter") or {}).get("id"))}


def _fingerprint(cfg: EvaluateConfig, train: TrainConfig, layout: Layout) -> str:
    """Inputs that decide the results: evaluate/train params and both stores' indexes."""
    from latentanon.features.store import FeatureStore

    indexes = [FeatureStore(uri).read_index() for uri in (layout.features_uri, layout.anonymized_uri)]
    from latentanon.tasks.specs import MEASUREMENT_VERSION

    blob = json.dumps(
        [sections_hash({"evaluate": cfg, "train": train}), indexes, MEASUREMENT_VERSION, scopes.SCOPES_VERSION],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load_partial(path: Path, fingerprint: str) -> dict:
    if not path.exists():
        return {}
    try:
        partial = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    return partial.get("results", {}) if partial.get("fingerprint") == fingerprint else {}


def evaluate(cfg: EvaluateConfig, train: TrainConfig, layout: Layout) -> dict:
    """The stage: writes reports/evaluate/evaluation.json and its plots; returns a short summary.
    ``train``: the train section, the baselines' knobs and which tasks the method was trained on."""
    import torch

    threads = torch.get_num_threads()
    # Every model here is tiny: one thread is many times faster than several fighting for cores.
    torch.set_num_threads(1)
    try:
        return _evaluate(cfg, train, layout)
    finally:
        torch.set_num_threads(threads)


def _evaluate(cfg: EvaluateConfig, train: TrainConfig, layout: Layout) -> dict:
    started = time.time()
    report_dir = layout.report_dir("evaluate")
    report_dir.mkdir(parents=True, exist_ok=True)
    seeds = list(cfg.seeds)
    if not seeds:
        raise ValueError("evaluate.seeds: at least one seed is needed")
    names = needed_sets()
    raw = load_sets(layout.features_uri, names)
    anonymized = load_sets(layout.anonymized_uri, tuple(raw))
    anonymized = align_release(raw, anonymized, layout.anonymized_uri)
    baselines = [b for b in expand_names(cfg.methods, cfg.noise_scales) if b != "identity"]
    methods = ["raw", TRAINED, *baselines]

    partial_path = report_dir / "partial.json"
    fingerprint = _fingerprint(cfg, train, layout)
    results: dict[str, dict[str, dict]] = _load_partial(partial_path, fingerprint)
    items_dir = report_dir / "items"
    # a finished pair counts only with complete items (the paired intervals need them)
    results = {
        m: {k: v for k, v in runs.items() if items_complete(items_dir / f"{m}__{k}.npz")} for m, runs in results.items()
    }
    todo = [(seed, m) for seed in seeds for m in methods if str(seed) not in results.get(m, {})]

    from latentanon.methods.registry import load_method

    trained = load_method(layout.method_dir) if layout.method_dir.exists() else None

    publishers: dict[str, object] = {}  # method -> what published its sets (the re-release scopes)

    def method_sets(method: str, seed: int, fitted: dict) -> dict[str, FeatureSet]:
        if method == "raw":
            return raw
        if method == TRAINED:
            publishers[method] = trained
            if trained is None or not trained.stochastic:
                return anonymized
            # The shared store carries fresh OS noise; evaluation keys the noise by its seed
            # instead, so that the figures reproduce (same distribution, a known draw).
            return {name: trained.with_reproducible_noise(seed).transform(fs) for name, fs in raw.items()}
        if method not in fitted:
            fitted[method] = fit_baseline(method, train, raw, seed if cfg.refit_baselines else seeds[0])
        keyed = fitted[method].with_reproducible_noise(seed)  # noise drawn per seed either way
        publishers[method] = keyed
        return {name: keyed.transform(fs) for name, fs in raw.items()}

    raw_privacy = {n: raw[n] for n in PRIVACY_SETS if n in raw}
    heads = {"restarts": cfg.head_restarts, "inputs": tuple(cfg.head_inputs)}

    seen_tasks = tuple(t for t in task_sets() if getattr(train.tasks, t, 0) > 0)

    def extra(method: str, seed: int) -> dict:
        """Called right after ``method_sets`` for the same method: its publisher is current. The floor
        is measured on the first seed only (a reference line; its interval is the bootstrap over the
        test videos of that seed): its heads are refitted, which costs as much as the attacks."""
        if method == "raw":
            return {
                "raw": None,
                "heads": heads,
                "floor_tasks": seen_tasks if seed == seeds[0] else (),
                "releases": tuple(cfg.releases),
            }
        return {"raw": raw_privacy, "heads": heads, "method": publishers.get(method), "releases": tuple(cfg.releases)}

    def record(method: str, seed: int, result: dict) -> None:
        result = dict(result)
        save_items(items_dir / f"{method}__{seed}.npz", result.pop("items"))
        results.setdefault(method, {})[str(seed)] = result
        write_json_atomic(partial_path, {"fingerprint": fingerprint, "results": results})

    refit = cfg.refit_baselines
    unseen_scored: dict = {}

    def unseen_jobs() -> dict:
        """The unseen-task refits, run in the pool next to the pairs (they take a minute in a row)."""
        if not cfg.unseen_seeds or trained is None:
            return {}
        method = trained_for_unseen(layout.method_dir, train)
        return {
            (task, seed): (held_out_score, (method.name, method.train, task, raw, seed, heads))
            for task in unseen_present(raw)
            for seed in cfg.unseen_seeds
        }

    with tqdm(
        total=len(methods) * len(seeds),
        initial=len(methods) * len(seeds) - len(todo),
        desc="evaluate",
        unit="run",
        disable=None,
    ) as bar:

        def in_process(pairs) -> None:
            fitted_by_seed: dict[int | None, dict] = {}
            for seed, method in pairs:
                bar.set_postfix(method=method, seed=seed)
                sets = method_sets(method, seed, fitted_by_seed.setdefault(seed if refit else SHARED_FIT, {}))
                record(method, seed, measure(sets, seed, **extra(method, seed)))
                bar.update(1)

        if cfg.workers <= 1 or len(todo) <= 1:
            in_process(todo)
        else:
            try:
                fit_jobs = {m: (m, train, raw, seeds[0]) for m in baselines}
                unseen_scored = measure_in_pool(
                    todo, method_sets, record, bar, cfg.workers, extra, refit, fit_jobs, unseen_jobs()
                )
            except BrokenProcessPool:
                warnings.warn(
                    "evaluate: worker processes died (a calling script without an "
                    "`if __name__ == '__main__':` guard cannot spawn them); measuring in this process",
                    RuntimeWarning,
                    stacklevel=2,
                )
                in_process([(seed, m) for seed, m in todo if str(seed) not in results.get(m, {})])

    items = {m: {str(seed): load_items(items_dir / f"{m}__{seed}.npz") for seed in seeds} for m in methods}
    summary = summarize({m: results[m] for m in methods}, seeds, cfg.confidence, items, cfg.bootstrap)
    points = privacy_utility_points(summary)
    seen = {task: getattr(train.tasks, task) > 0 for task in summary["utility"]}
    plots = {
        "attribute_leakage": plot_attribute_leakage(summary, report_dir / "attribute_leakage.png").name,
        "privacy_utility": plot_privacy_utility(points, report_dir / "privacy_utility.png").name,
    }
    unseen = None
    if cfg.unseen_seeds:
        unseen = unseen_tasks(
            layout.method_dir,
            raw,
            list(cfg.unseen_seeds),
            cfg.confidence,
            results["raw"],
            heads,
            train,
            {
                str(s): load_items(items_dir / f"raw__{s}.npz")
                for s in cfg.unseen_seeds
                if (items_dir / f"raw__{s}.npz").exists()
            },
            cfg.bootstrap,
            unseen_scored,
        )
    trained_summary = _trained_method(layout)
    evaluation = {
        "methods": methods,
        "trained_method": trained_summary,
        "unseen_tasks": unseen,
        "baselines": {m: {"needs_private_labels": needs_private_labels(m)} for m in ["identity", *baselines]},
        "identity_is_raw": True,
        "seeds": seeds,
        "head_inputs": list(cfg.head_inputs),
        "confidence": cfg.confidence,
        "attributes": list(ATTRIBUTES),
        "tasks": {
            task: {"metric": summary["utility"][task]["metric"], "seen_in_training": seen[task]}
            for task in summary["utility"]
        },
        "privacy": summary["privacy"],
        # what the raw seen-task heads' posteriors leak: the least any method keeping those tasks leaks
        "privacy_floor": {**summary["floor"], "tasks": list(seen_tasks)} if "floor" in summary else None,
        "releases": list(cfg.releases),
        "utility": summary["utility"],
        "privacy_utility": points,
        "plots": plots,
        "per_seed": results,
        "seconds": round(time.time() - started, 1),
    }
    write_json_atomic(report_dir / "evaluation.json", evaluation)
    static = summary["privacy"][TRAINED]["static"]
    return {
        "methods": methods,
        "seeds": seeds,
        "trained_method": trained_summary["name"],
        "trained_normalized_leakage": static["normalized_leakage"]["mean"],
        "trained_relative_cmap_drop": static["relative_cmap_drop"]["mean"],
        "trained_worst_scope": summary["privacy"][TRAINED]["worst_scope"],
        "trained_utility_relative_drop": {t: utility_drop(summary["utility"][t][TRAINED]) for t in summary["utility"]},
        "seconds": evaluation["seconds"],
    }
