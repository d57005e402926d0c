"""The project's targets and the gate's criteria, judged on the metrics tree's figures."""

from __future__ import annotations

import math
from typing import Protocol

from latentanon.evaluation import metrics
from latentanon.evaluation.metric_keys import TRAINED

ISSUE_LEAKAGE_TARGET = 0.4  # normalised leakage at or below this
ISSUE_UTILITY_TARGET = 0.01  # every task within 1% relative of raw


class GateThresholds(Protocol):
    """The thresholds read here from the ``gate`` section (tracking's ``GateConfig``), named as a
    protocol because the tracking layer sits above this one."""

    @property
    def max_normalized_leakage(self) -> float: ...

    @property
    def max_moving_normalized_leakage(self) -> float: ...

    @property
    def min_relative_cmap_drop(self) -> float: ...

    @property
    def max_utility_relative_drop(self) -> float: ...

    @property
    def utility_tasks(self) -> tuple[str, ...]: ...


def decisions(privacy: dict, utility: dict, gate: GateThresholds) -> dict:
    """Per gate criterion: the interval, its threshold, and whether the interval lies wholly on one
    side (decided) and on which (passed). An undecided privacy criterion fails the gate."""
    from latentanon.evaluation.resampling import decided, items_to_decide

    def one(interval, threshold, rule, kind, n_items=None):
        block = decided({"low": interval[0], "high": interval[1]}, threshold, rule)
        out = {"interval": list(interval), **block, "kind": kind}
        if n_items:
            # how much test data the criterion needs: what a user collects to decide it
            out["test_items"] = int(n_items)
            out["test_items_to_decide"] = items_to_decide(
                {"low": interval[0], "high": interval[1]}, threshold, int(n_items)
            )
        return out

    out = {
        "normalized_leakage": one(
            privacy[TRAINED]["normalized_leakage_interval"], gate.max_normalized_leakage, "<=", "privacy"
        ),
        "moving_normalized_leakage": one(
            privacy[TRAINED]["moving"]["normalized_leakage_interval"],
            gate.max_moving_normalized_leakage,
            "<=",
            "privacy",
        ),
    }
    worst = privacy[TRAINED].get("worst_scope")
    if worst is not None:
        out["worst_scope_normalized_leakage"] = {
            **one(
                [v if v is not None else float("nan") for v in worst["normalized_leakage_interval"]],
                gate.max_normalized_leakage,
                "<=",
                "privacy",
            ),
            "scope": worst["scope"],
        }
    for task in gate.utility_tasks:
        if task in utility and utility[task]["seen_in_training"]:
            out[f"utility_drop_{task}"] = one(
                utility[task][f"{TRAINED}_relative_drop_interval"],
                gate.max_utility_relative_drop,
                "<=",
                "utility",
                utility[task].get(f"{TRAINED}_relative_drop_test_videos"),
            )
    return out


def issue_targets(evaluation: dict, privacy: dict, utility: dict, gate: GateThresholds) -> dict:
    leakage = privacy[TRAINED]["normalized_leakage"]
    drops = {task: utility[task][f"{TRAINED}_relative_drop"] for task in utility}
    points = evaluation["privacy_utility"]
    trained_point = (points[TRAINED]["leakage"], points[TRAINED]["relative_utility"])
    dominators = [
        m
        for m, p in points.items()
        if m not in (TRAINED, "raw") and metrics.dominates((p["leakage"], p["relative_utility"]), trained_point)
    ]
    finite = lambda v: v is not None and math.isfinite(v)  # noqa: E731
    upper = privacy[TRAINED].get("normalized_leakage_interval", [None, None])[1]
    moving_upper = privacy[TRAINED]["moving"].get("normalized_leakage_interval", [None, None])[1]
    worst_upper = ((privacy[TRAINED].get("worst_scope") or {}).get("normalized_leakage_interval") or [None, None])[1]
    return {
        "normalized_leakage": {
            "rule": f"privacy.{TRAINED}.normalized_leakage <= {ISSUE_LEAKAGE_TARGET}",
            "value": leakage,
            "passed": bool(finite(leakage) and leakage <= ISSUE_LEAKAGE_TARGET),
        },
        "normalized_leakage_upper_bounds": {
            "rule": f"upper bounds of the static and moving normalised-leakage intervals <= {ISSUE_LEAKAGE_TARGET}",
            "value": {"static": upper, "moving": moving_upper},
            "passed": bool(finite(upper) and finite(moving_upper) and max(upper, moving_upper) <= ISSUE_LEAKAGE_TARGET),
        },
        "every_scope_upper_bound": {
            "rule": f"upper bound of the worst scope's normalised-leakage interval <= {ISSUE_LEAKAGE_TARGET}",
            "value": {"scope": (privacy[TRAINED].get("worst_scope") or {}).get("scope"), "upper": worst_upper},
            "passed": bool(finite(worst_upper) and worst_upper <= ISSUE_LEAKAGE_TARGET),
        },
        "utility_within_1pct": {
            "rule": f"every utility.<task>.{TRAINED}_relative_drop <= {ISSUE_UTILITY_TARGET}",
            "value": drops,
            "passed": bool(all(finite(d) and d <= ISSUE_UTILITY_TARGET for d in drops.values())),
        },
        "not_dominated": {
            "rule": "no baseline has both lower worst-scope leakage and higher mean relative utility than the trained method",
            "value": dominators,
            "passed": not dominators,
        },
        "gate_relative_cmap_drop": {
            "rule": f"privacy.{TRAINED}.relative_cmap_drop >= {gate.min_relative_cmap_drop} (gate threshold)",
            "value": privacy[TRAINED]["relative_cmap_drop"],
            "passed": bool(
                finite(privacy[TRAINED]["relative_cmap_drop"])
                and privacy[TRAINED]["relative_cmap_drop"] >= gate.min_relative_cmap_drop
            ),
        },
    }
