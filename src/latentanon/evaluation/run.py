"""The ``evaluate`` stage: privacy and utility of raw, AAM-anonymized and baseline features.

For every seed and every method (raw = the identity baseline, aam = the train stage's anonymized
store, and each configured baseline fitted on train splits) it measures:
- privacy: attackers on static clips (privacy videos + images) and on moving clips (privacy
  videos), cMAP with chance level, relative cMAP drop and normalised leakage against raw of the
  same seed; identity re-identification and gait retrieval top-1 (nearest neighbour, test split);
- utility: AR, TAD and AD through ``latentanon.tasks.scoring.score_task``.
Figures are summarised as mean and Student-t interval over seeds; paired bootstrap intervals come
from per-test-item arrays (``paired_intervals``): privacy leakage per seed combined with the seeds,
the utility drop from the seed ensemble (heads' outputs averaged over seeds) over test videos. A
re-run with the same inputs resumes from reports/evaluate/partial.json instead of redoing finished
(method, seed) pairs.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
import zipfile
from collections.abc import Mapping
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from latentanon._files import write_json_atomic
from latentanon.config import Params
from latentanon.data.layouts import PRIVACY_SETS
from latentanon.errors import StoreError
from latentanon.evaluation import metrics, reid, scopes
from latentanon.evaluation.privacy import ATTRIBUTES, attack, paper_protocol_attack, recovery_attack
from latentanon.features.featureset import FeatureSet
from latentanon.layout import Layout
from latentanon.methods.registry import create_method, expand_names, needs_private_labels
from latentanon.plots import pyplot, save_figure

MOVING_PRIVACY_SET = "privacy_videos"


def task_sets() -> dict[str, str]:
    """Utility task -> the feature set it is scored on."""
    from latentanon.tasks.scoring import TASK_SPECS, TASKS

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


def _align_release(
    raw: Mapping[str, FeatureSet], anonymized: Mapping[str, FeatureSet], uri: str
) -> dict[str, FeatureSet]:
    """The released features with the raw store's records (labels and private attributes).

    A release carries opaque video ids and task columns only; it mirrors the raw store row for
    row, which ``with_source_records`` checks on every task column both hold."""
    from latentanon.features.release import with_source_records

    out = {}
    for name, fs in raw.items():
        if name not in anonymized:
            raise StoreError(f"{uri}: anonymized store lacks feature set {name!r}; re-run the train stage")
        out[name] = with_source_records(anonymized[name], fs, uri)
    return out


def _splits(sets: list[FeatureSet], split: str) -> list[FeatureSet]:
    return [fs.split(split) for fs in sets]


def measure(
    sets: Mapping[str, FeatureSet],
    seed: int,
    raw: Mapping[str, FeatureSet] | None = None,
    heads: Mapping | None = None,
    method=None,
    floor_tasks: tuple[str, ...] = (),
    releases: tuple[int, ...] = scopes.RELEASES,
) -> dict:
    """Every privacy and utility figure of one method's features for one seed.

    ``raw`` (the same sets unanonymized) adds the feature-recovery attack and, with ``method`` (what
    published ``sets``), the re-release scopes; ``heads``: ``score_task``'s head protocol
    (``restarts``, ``inputs``); ``floor_tasks`` (raw only): the seen tasks whose heads' posteriors
    the floor attacks. The result's ``items`` hold per-test-item arrays for the paired intervals."""
    from latentanon.tasks.scoring import score_task

    privacy_sets = [sets[n] for n in PRIVACY_SETS if n in sets]
    static = attack(
        _splits(privacy_sets, "train"),
        _splits(privacy_sets, "val"),
        _splits(privacy_sets, "test"),
        ATTRIBUTES,
        seed,
        "static",
    )
    moving_set = sets[MOVING_PRIVACY_SET]
    moving = attack(
        moving_set.split("train"), moving_set.split("val"), moving_set.split("test"), ATTRIBUTES, seed, "clips"
    )
    paper = {
        "static": paper_protocol_attack(
            _splits(privacy_sets, "train"), _splits(privacy_sets, "test"), ATTRIBUTES, seed, "static"
        ),
        "moving": paper_protocol_attack(moving_set.split("train"), moving_set.split("test"), ATTRIBUTES, seed, "clips"),
    }
    utility, utility_items = {}, {}
    for task, set_name in task_sets().items():
        fs = sets[set_name]
        result = score_task(
            task, fs.split("train"), fs.split("val"), fs.split("test"), seed, items=True, **(heads or {})
        )
        utility_items[task] = result.pop("items")
        utility[task] = result
    scope_results = scopes.measure_scopes(sets, seed, method, raw, releases, {"moving": moving}, entropy=seed)
    floor = scopes.floor_scopes(sets, utility, floor_tasks, seed) if floor_tasks else {}
    out = {
        "privacy": {
            "static": {k: v for k, v in static.items() if k != "items"},
            "moving": {k: v for k, v in moving.items() if k != "items"},
            "paper_protocol": paper,
            "reid": reid.reidentification(_splits(privacy_sets, "test")),
            "gait": reid.gait_retrieval(moving_set.split("test")),
        },
        "utility": utility,
        "items": {"static": static["items"], "moving": moving["items"], "utility": utility_items},
    }
    for key, measured in (("scopes", scope_results), ("floor", floor)):
        if measured:
            out["privacy"][key] = {k: {f: v for f, v in r.items() if f != "items"} for k, r in measured.items()}
            out["items"][key] = {k: r["items"] for k, r in measured.items() if "items" in r}
    if raw is not None:
        names = [n for n in PRIVACY_SETS if n in sets and n in raw]
        out["privacy"]["recovery"] = recovery_attack({n: sets[n] for n in names}, {n: raw[n] for n in names})
    return out


def _pool_worker_init() -> None:
    import torch

    torch.set_num_threads(1)


SHARED_FIT = None  # key of the fitted baselines that serve every seed (evaluate.refit_baselines false)


def fit_baseline(name: str, train, raw: Mapping[str, FeatureSet], seed: int):
    """One baseline fitted on the raw sets (module level: a pool worker runs it)."""
    return create_method(name, train).fit(raw, seed=seed)


def _measure_in_pool(
    todo,
    method_sets,
    record,
    bar,
    workers: int,
    extra=lambda method, seed: {},
    refit: bool = True,
    fit_jobs: Mapping[str, tuple] | None = None,
    side_jobs: Mapping | None = None,
) -> dict:
    """Measure (seed, method) pairs in worker processes while this one prepares the next ones.

    Workers are spawned (not forked: torch's thread pools do not survive a fork safely) and each
    gets one method's transformed sets; results are recorded as they arrive, so a killed run
    resumes from what finished. ``refit`` false: one fitted baseline serves every seed, and
    ``fit_jobs`` (method -> arguments of ``fit_baseline``) fits those in the workers too, while the
    pairs that need no fit are measured: a long fit no longer leaves the other worker idle.
    ``side_jobs`` (key -> (function, arguments)) run in the same workers; returns key -> result.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    pending: dict[Future[dict], tuple[str, int]] = {}  # measure -> (method, seed)
    fitting: dict[Future[Any], str] = {}  # fit_baseline -> method
    side: dict[Future[Any], Any] = {}  # side job -> its key
    side_results: dict[Any, Any] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_pool_worker_init) as pool:
        fitted_by_seed: dict[int | None, dict] = {}
        if not refit:
            for method, args in (fit_jobs or {}).items():
                if any(m == method for _, m in todo):
                    fitting[pool.submit(fit_baseline, *args)] = method
        for key, (function, args) in (side_jobs or {}).items():
            side[pool.submit(function, *args)] = key
        queue = list(todo)
        while queue or pending or fitting or side:
            waiting = set(fitting.values())
            ready = next((i for i, (_, m) in enumerate(queue) if m not in waiting), None)
            # At most one job running and one queued per worker: bounded memory, early partial results.
            if ready is not None and len(pending) < 2 * workers:
                seed, method = queue.pop(ready)
                sets = method_sets(method, seed, fitted_by_seed.setdefault(seed if refit else SHARED_FIT, {}))
                pending[pool.submit(measure, sets, seed, **extra(method, seed))] = (method, seed)
                continue
            done, _ = wait([*pending, *fitting, *side], return_when=FIRST_COMPLETED)
            for future in done:
                if future in fitting:
                    fitted_by_seed.setdefault(SHARED_FIT, {})[fitting.pop(future)] = future.result()
                    continue
                if future in side:
                    side_results[side.pop(future)] = future.result()
                    continue
                method_done, seed_done = pending.pop(future)
                record(method_done, seed_done, future.result())
                bar.update(1)
    return side_results


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    flat = {}
    for key, value in tree.items():
        if "/" in str(key):
            raise ValueError(f"items: key {key!r} contains '/'")
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path + "/"))
        else:
            flat[path] = np.asarray(value)
    return flat


def save_items(path: Path, items: Mapping) -> Path:
    """Per-test-item arrays of one (method, seed) as .npz (nested keys joined by '/')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    # numpy's stub types **kwds as ArrayLike but also offers allow_pickle: bool as a keyword, so
    # mypy reads a str-keyed ** as possibly binding it
    np.savez_compressed(tmp, **_flatten(items))  # type: ignore[arg-type]
    tmp.replace(path)
    return path


def _items_complete(path: Path) -> bool:
    """Whether a saved items file holds every task's piece the seed ensemble averages (files of an
    older version lack them; their pair is measured again)."""
    from latentanon.tasks.scoring import ENSEMBLE_PIECES

    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    return all(f"utility/{task}/{piece}" in files for task, piece in ENSEMBLE_PIECES.items())


def load_items(path: Path) -> dict:
    tree: dict = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            node = tree
            *parents, leaf = key.split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = data[key]
    return tree


def _trained_method(layout: Layout) -> dict:
    """Name and fingerprint of the method the train stage saved (what ``aam`` stands for)."""
    from latentanon.features.store import FeatureStore

    meta = FeatureStore(layout.anonymized_uri).read_index().get("meta") or {}
    method = meta.get("method") or {}
    return {"name": method.get("name", "paper"), "id": method.get("id", (meta.get("adapter") or {}).get("id"))}


def _fingerprint(params: Params, layout: Layout) -> str:
    """Inputs that decide the results: evaluate/train params and both stores' indexes."""
    from latentanon.features.store import FeatureStore

    indexes = [FeatureStore(uri).read_index() for uri in (layout.features_uri, layout.anonymized_uri)]
    from latentanon.tasks.scoring import MEASUREMENT_VERSION

    blob = json.dumps(
        [params.section_hash("evaluate", "train"), indexes, MEASUREMENT_VERSION, scopes.SCOPES_VERSION],
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


def paired_intervals(
    items: Mapping[str, Mapping[str, dict]], seeds: list[int], confidence: float, n_resamples: int
) -> dict:
    """Per method (not raw): paired bootstrap intervals, raw and method on the same resamples of the
    same test items (``latentanon.evaluation.resampling``).

    Privacy: static / moving normalised leakage per seed, combined with the seeds. Utility, per
    task: ``ensemble``, the relative drop of the seed ensemble (each method's and raw's head outputs
    averaged over the seeds, ``scoring.ensemble_items``) over resamples of the test videos, with
    its point at the full test set; ``seeds``, the drop per seed combined with the seeds drawn
    with replacement (what the heads' seed-to-seed spread adds)."""
    from latentanon.evaluation import resampling
    from latentanon.tasks.scoring import ensemble_items, resampled_values

    keys = [str(s) for s in seeds]
    raw = items["raw"]
    out: dict[str, dict] = {m: {"privacy": {}, "utility": {}} for m in items if m != "raw"}
    for scope in ("static", "moving"):
        first = raw[keys[0]][scope]["labels"]
        n_items = len(next(iter(first.values())))
        weights = resampling.shared_weights(n_items, n_resamples)
        raw_cache = {
            k: resampling.weighted_cmap(raw[k][scope]["labels"], raw[k][scope]["probabilities"], weights) for k in keys
        }
        for method in out:
            values = np.stack(
                [
                    resampling.paired_leakage(
                        raw[k][scope]["labels"],
                        raw[k][scope]["probabilities"],
                        items[method][k][scope]["probabilities"],
                        weights,
                        raw_cache[k],
                    )
                    for k in keys
                ]
            )
            out[method]["privacy"][scope] = resampling.combine_seeds(values, confidence)
    for scope in sorted({s for m in out for s in (items[m][keys[0]].get("scopes") or {})}):
        reference = scopes.raw_reference(scope)
        found = [scope_items(raw[k], reference) for k in keys]
        raw_items = [r for r in found if r is not None]
        if len(raw_items) != len(keys):
            continue
        weights = resampling.shared_weights(len(next(iter(raw_items[0]["labels"].values()))), n_resamples)
        for method, block in out.items():
            method_items = [r for r in (scope_items(items[method][k], scope) for k in keys) if r is not None]
            if len(method_items) != len(keys):
                continue
            values = np.stack(
                [
                    resampling.paired_leakage(r["labels"], r["probabilities"], m["probabilities"], weights)
                    for r, m in zip(raw_items, method_items)
                ]
            )
            block.setdefault("scopes", {})[scope] = resampling.combine_seeds(values, confidence)
    for task in raw[keys[0]]["utility"]:
        n_videos = _n_videos(task, raw[keys[0]]["utility"][task])
        weights = resampling.shared_weights(n_videos, n_resamples)
        raw_values = {k: resampled_values(task, raw[k]["utility"][task], weights) for k in keys}
        raw_ensemble = ensemble_items(task, [raw[k]["utility"][task] for k in keys], "raw")
        raw_ensemble_values = resampled_values(task, raw_ensemble, weights)
        for method in out:
            drops = [
                _drops(raw_values[k], resampled_values(task, items[method][k]["utility"][task], weights)) for k in keys
            ]
            ensemble = ensemble_items(task, [items[method][k]["utility"][task] for k in keys], method)
            out[method]["utility"][task] = {
                "ensemble": {
                    **ensemble_drop(task, raw_ensemble, ensemble, weights, confidence, raw_ensemble_values),
                    "n_seeds": len(keys),
                },
                "seeds": resampling.combine_seeds(np.stack(drops), confidence),
            }
    return out


def scope_items(tree: Mapping, scope: str, where: str = "scopes") -> dict | None:
    """One seed's per-test-item arrays of ``scope`` (the per-clip ones sit at the top)."""
    if where == "scopes" and scope in scopes.PER_CLIP_SCOPES:
        return tree.get(scope)
    return (tree.get(where) or {}).get(scope)


def paired_floor(
    items: Mapping[str, Mapping[str, dict]], seeds: list[int], confidence: float, n_resamples: int
) -> dict:
    """The floor's paired intervals: raw posteriors against raw features in the same scope."""
    from latentanon.evaluation import resampling

    raw = items["raw"]
    keys = [str(s) for s in seeds if raw[str(s)].get("floor")]
    out = {}
    for scope in sorted(raw[keys[0]].get("floor") or {} if keys else {}):
        pairs = [
            (a, b)
            for a, b in (
                (scope_items(raw[k], scopes.raw_reference(scope)), scope_items(raw[k], scope, "floor")) for k in keys
            )
            if a is not None and b is not None
        ]
        if len(pairs) != len(keys):
            continue
        weights = resampling.shared_weights(len(next(iter(pairs[0][0]["labels"].values()))), n_resamples)
        values = np.stack(
            [resampling.paired_leakage(a["labels"], a["probabilities"], b["probabilities"], weights) for a, b in pairs]
        )
        out[scope] = resampling.combine_seeds(values, confidence)
    return out


def ensemble_drop(
    task: str,
    raw_ensemble: dict[str, np.ndarray],
    ensemble: dict[str, np.ndarray],
    weights: np.ndarray,
    confidence: float,
    raw_values: np.ndarray | None = None,
) -> dict:
    """A method's seed-ensemble items against raw's (``scoring.ensemble_items``): the relative drop
    over the video resamples ``weights`` (its percentile interval) and at all videos (``point``).
    ``raw_values``: raw's values under ``weights``, when the caller already has them."""
    from latentanon.evaluation import resampling
    from latentanon.tasks.scoring import resampled_values

    everything = np.ones((1, weights.shape[1]))
    if raw_values is None:
        raw_values = resampled_values(task, raw_ensemble, weights)
    raw_point = float(resampled_values(task, raw_ensemble, everything)[0])
    point = float(resampled_values(task, ensemble, everything)[0])
    return {
        **resampling.percentile_interval(_drops(raw_values, resampled_values(task, ensemble, weights)), confidence),
        "point": float(_drops(np.array([raw_point]), np.array([point]))[0]),
        "value": point,
        "raw_value": raw_point,
        "n_videos": int(weights.shape[1]),
    }


def _drops(raw_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Relative drop (raw - x) / raw per resample; NaN where raw is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(raw_values != 0, (raw_values - values) / raw_values, np.nan)


def _n_videos(task: str, items: Mapping[str, np.ndarray]) -> int:
    if task == "ar":
        return len(items["correct"])
    if task == "tad":
        return len(items["gt_counts"])
    return int(items["unit_video"].max()) + 1 if len(items["unit_video"]) else 0


def summarize(
    per_seed: Mapping[str, Mapping[str, dict]],
    seeds: list[int],
    confidence: float,
    items: Mapping[str, Mapping[str, dict]] | None = None,
    n_resamples: int = 1000,
) -> dict:
    """Mean and interval over seeds of every figure; drops and leakage against raw of the same seed;
    with ``items``, paired bootstrap intervals as well (``paired_intervals``)."""
    keys = [str(s) for s in seeds]
    raw = per_seed["raw"]
    privacy, utility = {}, {}
    from latentanon.tasks.scoring import TASKS

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
                    [metrics.relative_drop(r, c) for r, c in zip(raw_cmaps, cmaps)], confidence
                ),
                "normalized_leakage": metrics.mean_interval(
                    [metrics.normalized_leakage(c, ch, r) for c, ch, r in zip(cmaps, chances, raw_cmaps)], confidence
                ),
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
                        [metrics.normalized_leakage(m, c, r) for m, c, r in zip(maps, ch, raw_maps)], confidence
                    ),
                    "attackers": [runs[k]["privacy"][scope]["attributes"][attribute]["attacker"]["name"] for k in keys],
                }
            summary[scope] = block
        if "paper_protocol" in runs[keys[0]]["privacy"]:
            protocol = {}
            for scope in ("static", "moving"):
                cm = [runs[k]["privacy"]["paper_protocol"][scope]["cmap"] for k in keys]
                raw_cm = [raw[k]["privacy"]["paper_protocol"][scope]["cmap"] for k in keys]
                ch = [runs[k]["privacy"]["paper_protocol"][scope]["chance"] for k in keys]
                protocol[scope] = {
                    "cmap": metrics.mean_interval(cm, confidence),
                    "relative_cmap_drop": metrics.mean_interval(
                        [metrics.relative_drop(r, c) for r, c in zip(raw_cm, cm)], confidence
                    ),
                    "normalized_leakage": metrics.mean_interval(
                        [metrics.normalized_leakage(c, h, r) for c, h, r in zip(cm, ch, raw_cm)], confidence
                    ),
                }
            summary["paper_protocol"] = protocol
        if "recovery" in runs[keys[0]]["privacy"]:
            summary["recovery_r2"] = metrics.mean_interval(
                [runs[k]["privacy"]["recovery"]["r2"] for k in keys], confidence
            )
        summary["scopes"] = _scope_summaries(runs, raw, keys, confidence)
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
                    [metrics.relative_drop(r, v) for r, v in zip(raw_values, values)], confidence
                ),
                # the head input form kept on each seed (older results name none: standardised)
                "inputs": [runs[k]["utility"][task].get("inputs", "standardised") for k in keys],
            }
        utility[task] = entry
    floor_keys = [k for k in keys if "floor" in raw[k]["privacy"]]
    floor = _scope_summaries(raw, raw, floor_keys, confidence, "floor") if floor_keys else None
    if items is not None and n_resamples > 0:
        paired = paired_intervals(items, seeds, confidence, n_resamples)
        for method, block in paired.items():
            for scope, interval in block["privacy"].items():
                privacy[method][scope]["normalized_leakage_paired"] = interval
            for scope, interval in [*block["privacy"].items(), *block.get("scopes", {}).items()]:
                if "skipped" not in privacy[method]["scopes"].get(scope, {"skipped": True}):
                    privacy[method]["scopes"][scope]["normalized_leakage_paired"] = interval
            for task, intervals in block["utility"].items():
                if task in utility:
                    utility[task][method]["relative_drop_ensemble"] = intervals["ensemble"]
                    utility[task][method]["relative_drop_paired"] = intervals["seeds"]
                    utility[task]["raw"]["ensemble_value"] = intervals["ensemble"]["raw_value"]
                    utility[task][method]["ensemble_value"] = intervals["ensemble"]["value"]
        for scope, interval in (paired_floor(items, seeds, confidence, n_resamples) if floor else {}).items():
            if floor is not None and "skipped" not in floor.get(scope, {"skipped": True}):
                floor[scope]["normalized_leakage_paired"] = interval
    for block in privacy.values():
        block["worst_scope"] = worst_scope(block["scopes"])
    out: dict[str, Any] = {"privacy": privacy, "utility": utility}
    if floor is not None:
        out["floor"] = {"scopes": floor, "worst_scope": worst_scope(floor), "seeds": [int(k) for k in floor_keys]}
    return out


def scope_run(run: Mapping, scope: str, where: str = "scopes") -> dict | None:
    """One seed's result in ``scope``: the per-clip attacks sit at the top of ``privacy``."""
    privacy = run["privacy"]
    if where == "scopes" and scope in scopes.PER_CLIP_SCOPES:
        return privacy.get(scope)
    return (privacy.get(where) or {}).get(scope)


def _scope_summaries(
    runs: Mapping[str, dict], raw: Mapping[str, dict], keys: list[str], confidence: float, where: str = "scopes"
) -> dict:
    """Per scope a method's (or, ``where`` "floor", the raw posteriors') cMAP, chance and normalised
    leakage against raw in the same scope of the same seed, over seeds; skipped scopes say why."""
    names = [*scopes.PER_CLIP_SCOPES] if where == "scopes" else []
    names += [n for n in (runs[keys[0]]["privacy"].get(where) or {}) if n not in names]
    out = {}
    for scope in names:
        found = [scope_run(runs[k], scope, where) for k in keys]
        found_references = [scope_run(raw[k], scopes.raw_reference(scope)) for k in keys]
        per_seed = [r for r in found if r is not None and "skipped" not in r]
        references = [r for r in found_references if r is not None and "skipped" not in r]
        if len(per_seed) != len(keys) or len(references) != len(keys):
            out[scope] = {
                "skipped": next(
                    (r["skipped"] for r in [*found, *found_references] if r is not None and "skipped" in r),
                    "not measured on every seed",
                )
            }
            continue
        cmaps, chances = [r["cmap"] for r in per_seed], [r["chance"] for r in per_seed]
        raw_cmaps = [r["cmap"] for r in references]
        block = {
            "cmap": metrics.mean_interval(cmaps, confidence),
            "chance": metrics.mean_interval(chances, confidence),
            "normalized_leakage": metrics.mean_interval(
                [metrics.normalized_leakage(c, ch, r) for c, ch, r in zip(cmaps, chances, raw_cmaps)], confidence
            ),
            "reference": scopes.raw_reference(scope),
            "n_test_videos": per_seed[0].get("n_test_videos"),
        }
        if per_seed[0].get("deterministic"):
            block["deterministic"] = per_seed[0]["deterministic"]
        out[scope] = block
    return out


def scope_interval(block: Mapping) -> dict:
    """A scope's normalised-leakage interval: the paired bootstrap one when there is one."""
    return block.get("normalized_leakage_paired") or block["normalized_leakage"]


def worst_scope(blocks: Mapping[str, dict]) -> dict:
    """The measured scope whose normalised-leakage interval reaches highest (what the gate judges);
    an undefined upper bound counts as the worst, so an unmeasurable scope can never pass."""
    measured = {name: b for name, b in blocks.items() if "skipped" not in b}
    if not measured:
        return {
            "scope": None,
            "mean": float("nan"),
            "low": float("nan"),
            "high": float("nan"),
            "skipped": sorted(blocks),
        }

    def reach(name: str) -> float:
        high = scope_interval(measured[name]).get("high")
        return float("inf") if high is None or not np.isfinite(high) else float(high)

    name = max(measured, key=reach)
    interval = scope_interval(measured[name])
    return {
        "scope": name,
        "mean": measured[name]["normalized_leakage"]["mean"],
        "low": interval["low"],
        "high": interval["high"],
        "skipped": sorted(n for n in blocks if n not in measured),
    }


def utility_drop(block: Mapping) -> float:
    """A method's relative utility drop on one task: the seed ensemble's point when there is one."""
    ensemble = block.get("relative_drop_ensemble")
    return ensemble["point"] if ensemble else block["relative_drop"]["mean"]


def privacy_utility_points(summary: dict) -> dict[str, dict]:
    """Per method: the worst scope's normalised leakage (x) and mean utility relative to raw over tasks (y); a
    task's drop is the seed ensemble's when evaluate made one, else the mean over seeds."""
    points = {}
    for method, priv in summary["privacy"].items():
        drops = [utility_drop(summary["utility"][task][method]) for task in summary["utility"]]
        worst = priv.get("worst_scope") or {}
        if worst.get("scope") is None:  # results without scopes: the static per-clip figure
            static = priv["static"]["normalized_leakage"]
            worst = {"scope": "static", "mean": static["mean"], "low": static["low"], "high": static["high"]}
        points[method] = {
            "leakage": worst["mean"],
            "leakage_low": worst["low"],
            "leakage_high": worst["high"],
            "leakage_scope": worst["scope"],
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
        ax.errorbar(
            p["leakage"],
            p["relative_utility"],
            xerr=xerr,
            fmt="o",
            capsize=3,
            label=method,
            ms=9 if method == "aam" else 6,
        )
        ax.annotate(
            method, (p["leakage"], p["relative_utility"]), textcoords="offset points", xytext=(4, 4), fontsize=8
        )
    ax.axvline(0.4, color="k", ls="--", lw=1)
    ax.axhline(0.99, color="grey", ls=":", lw=1)
    ax.set_xlabel("normalised leakage, worst scope (lower = more private)")
    ax.set_ylabel("utility relative to raw, mean over tasks")
    ax.set_title("Privacy-utility plane")
    fig.tight_layout()
    save_figure(fig, path)
    return path


def unseen_present(raw: Mapping[str, FeatureSet]) -> list[str]:
    from latentanon.tasks.scoring import TASK_SPECS, TASKS

    return [t for t in TASKS if TASK_SPECS[t].set_name in raw]


def held_out_score(
    name: str, train, held_out: str, raw: Mapping[str, FeatureSet], seed: int, heads: Mapping | None = None
) -> dict:
    """The method refitted with ``held_out`` out of its training, that task scored on its
    anonymized features (with items); module level, so a pool worker can run it."""
    from dataclasses import replace

    from latentanon.tasks.scoring import TASK_SPECS, score_task

    method = create_method(name, replace(train, tasks=replace(train.tasks, **{held_out: 0.0}))).fit(raw, seed=seed)
    method.with_reproducible_noise(seed)
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
    from latentanon.tasks.scoring import TASK_SPECS, resampled_values, score_task

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
                n_videos = _n_videos(held_out, reference)
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
    anonymized = _align_release(raw, anonymized, layout.anonymized_uri)
    baselines = [b for b in expand_names(cfg.methods, cfg.noise_scales) if b != "identity"]
    methods = ["raw", "aam", *baselines]

    partial_path = report_dir / "partial.json"
    fingerprint = _fingerprint(params, layout)
    results: dict[str, dict[str, dict]] = _load_partial(partial_path, fingerprint)
    items_dir = report_dir / "items"
    # a finished pair counts only with complete items (the paired intervals need them)
    results = {
        m: {k: v for k, v in runs.items() if _items_complete(items_dir / f"{m}__{k}.npz")}
        for m, runs in results.items()
    }
    todo = [(seed, m) for seed in seeds for m in methods if str(seed) not in results.get(m, {})]

    from latentanon.methods.registry import load_method

    trained = load_method(layout.adapter_dir) if layout.adapter_dir.exists() else None

    publishers: dict[str, object] = {}  # method -> what published its sets (the re-release scopes)

    def method_sets(method: str, seed: int, fitted: dict) -> dict[str, FeatureSet]:
        if method == "raw":
            return raw
        if method == "aam":
            publishers[method] = trained
            if trained is None or not trained.stochastic:
                return anonymized
            # The shared store carries fresh OS noise; evaluation keys the noise by its seed
            # instead, so that the figures reproduce (same distribution, a known draw).
            return {name: trained.with_reproducible_noise(seed).transform(fs) for name, fs in raw.items()}
        if method not in fitted:
            fitted[method] = fit_baseline(method, params.train, raw, seed if cfg.refit_baselines else seeds[0])
        fitted[method].with_reproducible_noise(seed)  # noise drawn per seed either way
        publishers[method] = fitted[method]
        return {name: fitted[method].transform(fs) for name, fs in raw.items()}

    raw_privacy = {n: raw[n] for n in PRIVACY_SETS if n in raw}
    heads = {"restarts": cfg.head_restarts, "inputs": tuple(cfg.head_inputs)}

    seen_tasks = tuple(t for t in task_sets() if getattr(params.train.tasks, t, 0) > 0)

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
        method = trained_for_unseen(layout.adapter_dir, params.train)
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
                fit_jobs = {m: (m, params.train, raw, seeds[0]) for m in baselines}
                unseen_scored = _measure_in_pool(
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
    seen = {task: getattr(params.train.tasks, task) > 0 for task in summary["utility"]}
    plots = {
        "attribute_leakage": plot_attribute_leakage(summary, report_dir / "attribute_leakage.png").name,
        "privacy_utility": plot_privacy_utility(points, report_dir / "privacy_utility.png").name,
    }
    unseen = None
    if cfg.unseen_seeds:
        unseen = unseen_tasks(
            layout.adapter_dir,
            raw,
            list(cfg.unseen_seeds),
            cfg.confidence,
            results["raw"],
            heads,
            params.train,
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
    aam = summary["privacy"]["aam"]["static"]
    return {
        "methods": methods,
        "seeds": seeds,
        "trained_method": trained_summary["name"],
        "aam_normalized_leakage": aam["normalized_leakage"]["mean"],
        "aam_relative_cmap_drop": aam["relative_cmap_drop"]["mean"],
        "aam_worst_scope": summary["privacy"]["aam"]["worst_scope"],
        "aam_utility_relative_drop": {t: utility_drop(summary["utility"][t]["aam"]) for t in summary["utility"]},
        "seconds": evaluation["seconds"],
    }
