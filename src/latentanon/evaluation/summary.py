"""Summaries over seeds: mean and Student-t interval of every figure against raw of the same
seed, the paired intervals beside them, each method's worst scope and its privacy-utility point."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from latentanon.evaluation import metrics, scopes
from latentanon.evaluation.paired import paired_floor, paired_intervals


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
    from latentanon.tasks.specs import TASKS

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
