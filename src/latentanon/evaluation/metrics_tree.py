"""reports/metrics.json: the nested figures the gate reads, from evaluation.json and bias.json."""

from __future__ import annotations

import math
from typing import Any

from latentanon.evaluation.metric_keys import TRAINED
from latentanon.evaluation.targets import ISSUE_LEAKAGE_TARGET, GateThresholds, decisions, issue_targets


def interval_bounds(stat: dict) -> list[float]:
    return [stat["low"], stat["high"]]


def _leakage_interval(scope: dict) -> list[float]:
    """The paired bootstrap interval when evaluate made one, else the seeds' Student-t interval."""
    paired = scope.get("normalized_leakage_paired")
    return interval_bounds(paired) if paired else interval_bounds(scope["normalized_leakage"])


def _half_width(interval: list[float]) -> float:
    low, high = interval
    return (high - low) / 2 if low is not None and high is not None else float("nan")


def _scope_entry(block: dict) -> dict:
    """One scope's figures: normalised leakage (mean) with its interval (paired bootstrap when
    evaluate made one), or why the scope was skipped."""
    if "skipped" in block:
        return {"skipped": block["skipped"]}
    paired = block.get("normalized_leakage_paired")
    entry = {
        "normalized_leakage": block["normalized_leakage"]["mean"],
        "normalized_leakage_interval": interval_bounds(paired)
        if paired
        else interval_bounds(block["normalized_leakage"]),
        "normalized_leakage_seed_interval": interval_bounds(block["normalized_leakage"]),
        "interval_kind": "paired bootstrap" if paired else "seeds (Student-t)",
        "cmap": block["cmap"]["mean"],
        "chance": block["chance"]["mean"],
        "reference": block.get("reference"),
    }
    if block.get("n_test_videos") is not None:
        entry["n_test_videos"] = block["n_test_videos"]
    if block.get("deterministic"):
        entry["deterministic"] = block["deterministic"]
    return entry


def _worst_entry(worst: dict) -> dict:
    return {
        "scope": worst.get("scope"),
        "normalized_leakage": worst.get("mean"),
        "normalized_leakage_interval": [worst.get("low"), worst.get("high")],
        "skipped": list(worst.get("skipped") or []),
    }


def _privacy_entry(block: dict) -> dict:
    static, moving = block["static"], block["moving"]
    entry = _privacy_figures(block, static, moving)
    if "scopes" in block:
        entry["scopes"] = {scope: _scope_entry(b) for scope, b in block["scopes"].items()}
    if "worst_scope" in block:
        entry["worst_scope"] = _worst_entry(block["worst_scope"])
    entry["normalized_leakage_interval"] = _leakage_interval(static)
    entry["normalized_leakage_seed_interval"] = interval_bounds(static["normalized_leakage"])
    entry["normalized_leakage_half_width"] = _half_width(entry["normalized_leakage_interval"])
    entry["moving"]["normalized_leakage_interval"] = _leakage_interval(moving)
    entry["moving"]["normalized_leakage_seed_interval"] = interval_bounds(moving["normalized_leakage"])
    entry["moving"]["normalized_leakage_half_width"] = _half_width(entry["moving"]["normalized_leakage_interval"])
    entry["interval_kind"] = "paired bootstrap" if static.get("normalized_leakage_paired") else "seeds (Student-t)"
    if "recovery_r2" in block:
        entry["recovery_r2"] = block["recovery_r2"]["mean"]
        entry["recovery_r2_interval"] = interval_bounds(block["recovery_r2"])
    if "paper_protocol" in block:
        entry["paper_protocol"] = {
            scope: {
                "cmap": b["cmap"]["mean"],
                "relative_cmap_drop": b["relative_cmap_drop"]["mean"],
                "relative_cmap_drop_interval": interval_bounds(b["relative_cmap_drop"]),
                "normalized_leakage": b["normalized_leakage"]["mean"],
            }
            for scope, b in block["paper_protocol"].items()
        }
    return entry


def _privacy_figures(block: dict, static: dict, moving: dict) -> dict:
    return {
        "cmap": static["cmap"]["mean"],
        "cmap_interval": interval_bounds(static["cmap"]),
        "chance": static["chance"]["mean"],
        "relative_cmap_drop": static["relative_cmap_drop"]["mean"],
        "relative_cmap_drop_interval": interval_bounds(static["relative_cmap_drop"]),
        "normalized_leakage": static["normalized_leakage"]["mean"],
        "normalized_leakage_interval": interval_bounds(static["normalized_leakage"]),
        "attributes": {
            a: {
                "map": v["map"]["mean"],
                "chance": v["chance"]["mean"],
                "normalized_leakage": v["normalized_leakage"]["mean"],
                "normalized_leakage_interval": interval_bounds(v["normalized_leakage"]),
            }
            for a, v in static["attributes"].items()
        },
        "moving": {
            "cmap": moving["cmap"]["mean"],
            "cmap_interval": interval_bounds(moving["cmap"]),
            "chance": moving["chance"]["mean"],
            "relative_cmap_drop": moving["relative_cmap_drop"]["mean"],
            "normalized_leakage": moving["normalized_leakage"]["mean"],
            "normalized_leakage_interval": interval_bounds(moving["normalized_leakage"]),
        },
        "reid_top1": block["reid"]["top1"]["mean"],
        "reid_top1_interval": interval_bounds(block["reid"]["top1"]),
        "reid_chance": block["reid"]["chance"]["mean"],
        "gait_top1": block["gait"]["top1"]["mean"],
        "gait_top1_interval": interval_bounds(block["gait"]["top1"]),
        "gait_chance": block["gait"]["chance"]["mean"],
    }


def _utility_entry(task: str, block: dict, seen: bool, methods: list[str]) -> dict:
    """A task's figures. ``<m>_relative_drop`` and its ``_interval`` are the seed ensemble's (heads'
    outputs averaged over the seeds, bootstrap over the test videos) when evaluate made them, else
    the mean over seeds with its Student-t interval; the per-seed figures stay beside them."""
    entry = {"metric": block["metric"], "seen_in_training": seen}
    for method in methods:
        entry[method] = {"value": block[method]["value"]["mean"], "interval": interval_bounds(block[method]["value"])}
        if "inputs" in block[method]:
            entry[method]["inputs"] = list(block[method]["inputs"])
        if "ensemble_value" in block[method]:
            entry[method]["ensemble_value"] = block[method]["ensemble_value"]
        if method != "raw":
            ensemble = block[method].get("relative_drop_ensemble")
            seed_bootstrap = block[method].get("relative_drop_paired")
            entry[f"{method}_relative_drop"] = ensemble["point"] if ensemble else block[method]["relative_drop"]["mean"]
            entry[f"{method}_relative_drop_interval"] = (
                interval_bounds(ensemble) if ensemble else interval_bounds(block[method]["relative_drop"])
            )
            entry[f"{method}_relative_drop_half_width"] = _half_width(entry[f"{method}_relative_drop_interval"])
            if ensemble and "n_videos" in ensemble:
                entry[f"{method}_relative_drop_test_videos"] = int(ensemble["n_videos"])
            entry[f"{method}_relative_drop_seed_mean"] = block[method]["relative_drop"]["mean"]
            entry[f"{method}_relative_drop_seed_interval"] = interval_bounds(block[method]["relative_drop"])
            if seed_bootstrap:
                entry[f"{method}_relative_drop_seed_bootstrap_interval"] = interval_bounds(seed_bootstrap)
    entry["relative_drop_interval_kind"] = (
        "seed ensemble, bootstrap over test videos"
        if any(block[m].get("relative_drop_ensemble") for m in methods if m != "raw")
        else "seeds (Student-t)"
    )
    return entry


def _bias_entry(block: dict) -> dict:
    return {
        "gap": block["gap"],
        "overall": block["overall"],
        "by_gender": block["by_gender"],
    }


def build_metrics(evaluation: dict, bias: dict, gate: GateThresholds) -> dict:
    """The nested metrics tree: privacy / utility / bias / baselines, with seeds and intervals;
    ``gate``: the gate section, whose thresholds the decisions and targets apply."""
    methods = list(evaluation["methods"])
    privacy: dict[str, Any] = {m: _privacy_entry(evaluation["privacy"][m]) for m in methods}
    privacy["attributes"] = list(evaluation["attributes"])
    utility = {
        task: _utility_entry(task, block, evaluation["tasks"][task]["seen_in_training"], methods)
        for task, block in evaluation["utility"].items()
    }
    bias_tree = {source: _bias_entry(bias["pooled"][source]) for source in bias["sources"]}
    bias_tree["variants"] = {v: {s: _bias_entry(b) for s, b in block.items()} for v, block in bias["variants"].items()}
    bias_tree["protocol"] = bias["protocol"]
    bias_tree["seeds"] = bias["seeds"]
    tree = {
        "seeds": {"evaluate": evaluation["seeds"], "audit_bias": bias["seeds"]},
        "confidence": evaluation["confidence"],
        "privacy": privacy,
        "utility": utility,
        "bias": bias_tree,
        "baselines": {
            "methods": [m for m in methods if m not in ("raw", TRAINED)],
            "identity_is_raw": True,
            "needs_private_labels": {m: v["needs_private_labels"] for m, v in evaluation["baselines"].items()},
            "privacy_utility": evaluation["privacy_utility"],
        },
    }
    trained = evaluation.get("trained_method") or {}
    privacy[TRAINED]["method"] = trained.get("name", "paper")
    # the fingerprint the gate compares with the method it registers: figures bind to one method
    tree["trained_method"] = {"name": trained.get("name", "paper"), "id": trained.get("id")}
    unseen = evaluation.get("unseen_tasks")
    if unseen:
        for task, block in unseen["tasks"].items():
            if task in utility:
                utility[task][f"{TRAINED}_unseen"] = {
                    "method": unseen["method"],
                    "trained_on": block["trained_on"],
                    "seeds": unseen["seeds"],
                    "value": block["value"]["mean"],
                    "raw_value": block["raw_value"]["mean"],
                    "relative_drop": block["relative_drop"]["mean"],
                    "relative_drop_interval": (
                        interval_bounds(block["relative_drop_paired"])
                        if "relative_drop_paired" in block
                        else interval_bounds(block["relative_drop"])
                    ),
                }
    floor = evaluation.get("privacy_floor")
    if floor:
        tree["privacy_floor"] = floor_entry(floor)
    tree["targets"] = issue_targets(evaluation, privacy, utility, gate)
    tree["decisions"] = decisions(privacy, utility, gate)
    return tree


def floor_entry(floor: dict) -> dict:
    """The floor's figures, and what it implies when it is above the leakage target."""
    entry: dict[str, Any] = {
        "tasks": list(floor.get("tasks") or []),
        "seeds": list(floor.get("seeds") or []),
        "scopes": {scope: _scope_entry(b) for scope, b in floor["scopes"].items()},
        "worst_scope": _worst_entry(floor["worst_scope"]),
    }
    worst = entry["worst_scope"]["normalized_leakage"]
    entry["above_target"] = bool(worst is not None and math.isfinite(worst) and worst > ISSUE_LEAKAGE_TARGET)
    entry["implication"] = (
        "the floor could not be measured in any scope" if worst is None or not math.isfinite(worst) else None
    ) or (
        f"the raw seen-task posteriors alone leak {worst:.3f} (scope {entry['worst_scope']['scope']}), above the "
        f"{ISSUE_LEAKAGE_TARGET} target: a method that keeps every seen task's utility keeps at least this leak "
        "there, so the target cannot be met at full utility in that scope; meeting it costs seen-task utility or "
        "needs a target the posteriors allow"
        if entry["above_target"]
        else f"the raw seen-task posteriors leak at most {ISSUE_LEAKAGE_TARGET} in every scope: full seen-task utility "
        "and the leakage target are compatible"
    )
    return entry
