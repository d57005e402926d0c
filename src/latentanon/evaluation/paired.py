"""Paired bootstrap intervals from per-test-item arrays: raw and each method scored on the same
resamples of the same test items (``latentanon.evaluation.resampling``), combined with the seeds."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from latentanon.evaluation import scopes


def paired_intervals(
    items: Mapping[str, Mapping[str, dict]], seeds: list[int], confidence: float, n_resamples: int
) -> dict:
    """Per method (not raw): paired bootstrap intervals, raw and method on the same resamples of the
    same test items (``latentanon.evaluation.resampling``).

    Privacy: static / moving normalised leakage per seed, combined with the seeds. Utility, per
    task: ``ensemble``, the relative drop of the seed ensemble (each method's and raw's head outputs
    averaged over the seeds, ``per_item.ensemble_items``) over resamples of the test videos, with
    its point at the full test set; ``seeds``, the drop per seed combined with the seeds drawn
    with replacement (what the heads' seed-to-seed spread adds)."""
    from latentanon.evaluation import resampling
    from latentanon.tasks.per_item import ensemble_items, resampled_values

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
        n_videos = count_test_videos(task, raw[keys[0]]["utility"][task])
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
    """A method's seed-ensemble items against raw's (``per_item.ensemble_items``): the relative drop
    over the video resamples ``weights`` (its percentile interval) and at all videos (``point``).
    ``raw_values``: raw's values under ``weights``, when the caller already has them."""
    from latentanon.evaluation import resampling
    from latentanon.tasks.per_item import resampled_values

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


def count_test_videos(task: str, items: Mapping[str, np.ndarray]) -> int:
    if task == "ar":
        return len(items["correct"])
    if task == "tad":
        return len(items["gt_counts"])
    return int(items["unit_video"].max()) + 1 if len(items["unit_video"]) else 0
