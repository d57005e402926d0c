"""The gate's checks: each criterion read from reports/metrics.json (privacy bounds, the worst
scope, utility drops, the bias gap, the champion's leakage), with its interval and a verdict.

The trained method's figures are read under ``trained`` (``privacy.trained.*``,
``utility.<task>.trained_relative_drop``, ``bias.trained.gap``); a metrics.json an earlier release
wrote under ``aam`` is read the same way (the current key first).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from latentanon.evaluation.metric_keys import TRAINED, current_key, current_keys
from latentanon.tracking.config import GateConfig

# The champion's leakage, read back when a later candidate meets it: a version tag whose name no
# release changed, so a champion approved on an earlier release's metrics.json compares the same.
TAG_LEAKAGE = "gate.normalized_leakage"
PRIVACY = f"privacy.{TRAINED}"  # the trained method's privacy figures in metrics.json


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    threshold: float | None
    rule: str  # e.g. "<=" or ">="
    passed: bool
    detail: str
    interval: tuple[float, float] | None = None  # the figure's interval when the rule reads one
    decided: bool | None = None  # whether that interval lies wholly on one side


def read_metrics(path: Path) -> tuple[dict | None, str]:
    """The metrics tree with the current keys (``current_keys``: an earlier release's ``aam`` keys
    read as ``trained``), or None and why it cannot be used."""
    if not path.exists():
        return None, f"{path}: metrics file missing (an upstream stage failed or did not run)"
    try:
        tree = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, f"{path}: not valid JSON: {exc}"
    if not isinstance(tree, dict):
        return None, f"{path}: expected a JSON object at the top level"
    return current_keys(tree), ""


def figure(tree: dict | None, dotted: str) -> float | None:
    """A finite number at ``a.b.c`` in the metrics tree, else None."""
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, dict) and "mean" in node:  # a figure given with its interval
        node = node["mean"]
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        return None
    return float(node)


def interval(tree: dict | None, dotted: str) -> tuple[float, float] | None:
    """A finite [low, high] at ``a.b.c`` in the metrics tree, else None."""
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if not isinstance(node, (list, tuple)) or len(node) != 2:
        return None
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in node):
        return None
    low, high = float(node[0]), float(node[1])
    return (low, high) if low <= high else None


def _privacy_bound(name: str, tree: dict | None, dotted: str, threshold: float) -> Check:
    """A privacy criterion read from its interval: it passes only when the whole interval is at or
    below the threshold. An interval that straddles it is undecided, and undecided fails."""
    bounds = interval(tree, f"{dotted}_interval")
    if bounds is None:
        return Check(
            name,
            figure(tree, dotted),
            threshold,
            "<=",
            False,
            f"{dotted}_interval missing or not a finite [low, high]: the criterion cannot be decided",
        )
    low, high = bounds

    def verdict(passed: bool, detail: str, decided: bool) -> Check:
        return Check(name, high, threshold, "<=", passed, detail, bounds, decided)

    if high <= threshold:
        return verdict(True, f"upper bound {high:.4g} <= {threshold:.4g}: pass (decided)", True)
    if low > threshold:
        return verdict(False, f"interval [{low:.4g}, {high:.4g}] lies above {threshold:.4g}: FAIL (decided)", True)
    return verdict(
        False,
        f"interval [{low:.4g}, {high:.4g}] straddles {threshold:.4g}: undecided, which fails a privacy criterion",
        False,
    )


def _worst_scope(tree: dict | None, threshold: float) -> Check:
    """Privacy in every scope a user shares (``privacy.trained.scopes``): each measured scope read as a
    privacy bound, the one that reaches highest judged. A scope without a finite interval is
    undecided and counts as the worst; no scopes at all cannot be decided. Both fail."""
    name = "worst_scope_normalized_leakage"
    node = (((tree or {}).get("privacy") or {}).get(TRAINED) or {}).get("scopes") if isinstance(tree, dict) else None
    if not isinstance(node, dict):
        return Check(
            name,
            None,
            threshold,
            "<=",
            False,
            f"{PRIVACY}.scopes missing: the scopes a user shares are unmeasured, so privacy cannot be decided",
        )
    measured = {scope: b for scope, b in node.items() if isinstance(b, dict) and "skipped" not in b}
    if not measured:
        return Check(name, None, threshold, "<=", False, f"{PRIVACY}.scopes: every scope was skipped")
    checks = {
        scope: _privacy_bound(name, tree, f"{PRIVACY}.scopes.{scope}.normalized_leakage", threshold)
        for scope in measured
    }

    def reach(scope: str) -> float:
        bounds = checks[scope].interval
        return float("inf") if bounds is None else bounds[1]

    worst = max(checks, key=reach)
    check = checks[worst]
    over = sorted(s for s, c in checks.items() if not c.passed)
    detail = f"worst scope {worst}: {check.detail}" + (f"; scopes not passing: {', '.join(over)}" if over else "")
    return Check(name, check.value, threshold, "<=", check.passed, detail, check.interval, check.decided)


def _utility_drop(task: str, tree: dict | None, threshold: float) -> Check:
    """A seen task's relative drop: passes when its mean is within the threshold; the paired
    interval says whether the data decide it (reported, not required)."""
    key = f"utility.{task}.{TRAINED}_relative_drop"
    check = _compare(f"utility_drop_{task}", figure(tree, key), threshold, "<=", key)
    bounds = interval(tree, f"{key}_interval")
    if bounds is None:
        return check
    decided = bounds[1] <= threshold or bounds[0] > threshold
    detail = f"{check.detail}; interval [{bounds[0]:.4g}, {bounds[1]:.4g}] {'decided' if decided else 'undecided'}"
    decision = ((tree or {}).get("decisions") or {}).get(f"utility_drop_{task}", {})
    needed, has = decision.get("test_items_to_decide"), decision.get("test_items")
    if not decided and isinstance(needed, int):
        # over a hundred times the test set: the figure sits on the threshold, not near it
        where = "it sits on the threshold: " if isinstance(has, int) and 0 < 100 * has < needed else ""
        detail += f" ({where}about {needed:,} test videos would decide it)"
    elif not decided and needed is None and isinstance(has, int):
        detail += " (its interval is centred on the threshold: no test set size decides it)"
    return Check(check.name, check.value, check.threshold, check.rule, check.passed, detail, bounds, decided)


def _seen(tree: dict | None, task: str) -> bool:
    """Whether the trained method saw ``task`` (metrics say so; when they do not, assume it did)."""
    node = (tree or {}).get("utility", {}).get(task) if isinstance(tree, dict) else None
    if isinstance(node, dict) and isinstance(node.get("seen_in_training"), bool):
        return node["seen_in_training"]
    return True


def _compare(name: str, value: float | None, threshold: float | None, rule: str, where: str) -> Check:
    if value is None:
        return Check(name, None, threshold, rule, False, f"{where} missing or not a finite number")
    if threshold is None:
        return Check(name, value, None, rule, False, f"no reference value for {name}")
    passed = value <= threshold if rule == "<=" else value >= threshold
    return Check(
        name, value, threshold, rule, passed, f"{value:.4g} {rule} {threshold:.4g}: {'pass' if passed else 'FAIL'}"
    )


def evaluate_checks(metrics: dict | None, cfg: GateConfig, champion: dict | None) -> list[Check]:
    """Every gate rule on the candidate's figures; ``champion`` = {"version", "normalized_leakage"}.
    ``metrics`` may carry an earlier release's keys (``aam``): they are read as the current ones,
    and so are the bias keys the gate section names."""
    metrics = current_keys(metrics) if isinstance(metrics, dict) else metrics
    checks = [
        _privacy_bound("normalized_leakage", metrics, f"{PRIVACY}.normalized_leakage", cfg.max_normalized_leakage),
        _compare(
            "relative_cmap_drop",
            figure(metrics, f"{PRIVACY}.relative_cmap_drop"),
            cfg.min_relative_cmap_drop,
            ">=",
            f"{PRIVACY}.relative_cmap_drop",
        ),
        _privacy_bound(
            "moving_normalized_leakage",
            metrics,
            f"{PRIVACY}.moving.normalized_leakage",
            cfg.max_moving_normalized_leakage,
        ),
        _worst_scope(metrics, cfg.max_normalized_leakage),
    ]
    for task in cfg.utility_tasks:
        if _seen(metrics, task):
            checks.append(_utility_drop(task, metrics, cfg.max_utility_relative_drop))
    if cfg.require_bias_gap_not_larger:
        raw_key, trained_key = current_key(cfg.bias_raw_gap_key), current_key(cfg.bias_trained_gap_key)
        raw_gap, trained_gap = figure(metrics, raw_key), figure(metrics, trained_key)
        if raw_gap is None:
            checks.append(
                Check("bias_gap", trained_gap, None, "<=", False, f"{raw_key} missing or not a finite number")
            )
        else:
            checks.append(
                _compare("bias_gap", None if trained_gap is None else abs(trained_gap), abs(raw_gap), "<=", trained_key)
            )
    if champion is not None:
        checks.append(
            _compare(
                "leakage_vs_champion",
                figure(metrics, f"{PRIVACY}.normalized_leakage"),
                None
                if champion.get("normalized_leakage") is None
                else champion["normalized_leakage"] + cfg.champion_leakage_tolerance,
                "<=",
                f"{PRIVACY}.normalized_leakage",
            )
        )
    return checks
