"""Views of reports/metrics.json for DVC: the short headline metric and the rows `dvc plots`
reads. The full tree stays in metrics.json (the gate reads it)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from latentanon._files import write_text_atomic
from latentanon.evaluation.metric_keys import TRAINED, current_keys

HEADLINE_FILE = "headline.json"
PRIVACY_UTILITY_CSV = "privacy_utility.csv"


def nested_value(tree, *keys):
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def rounded_number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return round(float(value), 4)


def _mean(value):
    """A figure stored either plain or as {"mean", "low", "high"}."""
    return value.get("mean") if isinstance(value, dict) else value


def _bounds(interval) -> tuple[float | None, float | None]:
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        return None, None
    return rounded_number(interval[0]), rounded_number(interval[1])


def headline_metrics(tree: dict) -> dict:
    """About thirty figures a person compares across experiments (`dvc metrics show`,
    `dvc exp show`): the trained method's leakage with intervals in every scope, its utility
    drops, the bias gap. A tree an earlier release wrote (``aam`` for ``trained``) reads the same.
    Missing figures are null, never dropped, so every experiment has the same columns."""
    tree = current_keys(tree)
    trained = nested_value(tree, "privacy", TRAINED) or {}
    static_low, static_high = _bounds(trained.get("normalized_leakage_interval"))
    moving = trained.get("moving") or {}
    moving_low, moving_high = _bounds(moving.get("normalized_leakage_interval"))
    worst = trained.get("worst_scope") or {}
    headline: dict[str, Any] = {
        "privacy": {
            "static_leakage": rounded_number(trained.get("normalized_leakage")),
            "static_leakage_low": static_low,
            "static_leakage_high": static_high,
            "moving_leakage": rounded_number(moving.get("normalized_leakage")),
            "moving_leakage_low": moving_low,
            "moving_leakage_high": moving_high,
            "relative_cmap_drop": rounded_number(trained.get("relative_cmap_drop")),
            "reid_top1": rounded_number(trained.get("reid_top1")),
            "worst_scope": worst.get("scope"),
            "worst_scope_leakage": rounded_number(worst.get("normalized_leakage")),
            "worst_scope_leakage_low": _bounds(worst.get("normalized_leakage_interval"))[0],
            "worst_scope_leakage_high": _bounds(worst.get("normalized_leakage_interval"))[1],
            "floor": rounded_number(nested_value(tree, "privacy_floor", "worst_scope", "normalized_leakage")),
        },
        "utility_drop": {},
        "scopes": headline_scopes(tree),
        "bias": {
            "gap_raw": rounded_number(_mean(nested_value(tree, "bias", "raw", "gap"))),
            "gap_trained": rounded_number(_mean(nested_value(tree, "bias", TRAINED, "gap"))),
        },
        "targets_passed": sum(bool(t.get("passed")) for t in (tree.get("targets") or {}).values()),
    }
    for task, block in sorted((tree.get("utility") or {}).items()):
        low, high = _bounds(block.get(f"{TRAINED}_relative_drop_interval"))
        headline["utility_drop"][task] = rounded_number(block.get(f"{TRAINED}_relative_drop"))
        headline["utility_drop"][f"{task}_low"] = low
        headline["utility_drop"][f"{task}_high"] = high
    return headline


def headline_scopes(tree: dict) -> dict:
    """The trained method's normalised leakage in each scope beyond the per-clip two (those are
    under ``privacy``): per-video means and re-releases; a skipped scope is null, not dropped."""
    entries = nested_value(current_keys(tree), "privacy", TRAINED, "scopes") or {}
    return {
        scope: None if "skipped" in entry else rounded_number(entry.get("normalized_leakage"))
        for scope, entry in entries.items()
        if scope not in ("static", "moving")
    }


def privacy_utility_rows(tree: dict) -> list[dict]:
    """One point per method on the privacy-utility plane (DVC scatter plot data); the trained
    method's row is ``trained``."""
    tree = current_keys(tree)
    rows = []
    for method, point in (nested_value(tree, "baselines", "privacy_utility") or {}).items():
        rows.append(
            {
                "method": method,
                "leakage": rounded_number(point.get("leakage")),
                "moving_leakage": rounded_number(nested_value(tree, "privacy", method, "moving", "normalized_leakage")),
                "leakage_scope": point.get("leakage_scope"),
                "relative_utility": rounded_number(point.get("relative_utility")),
            }
        )
    return rows


def write_rows_csv(rows: list[dict], path: Path) -> Path:
    """Rows as CSV (empty cells for missing values): the form `dvc plots` reads."""
    import csv
    import io

    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row[c] for c in columns})
    return write_text_atomic(path, buffer.getvalue())


def history_rows(history: dict) -> list[dict]:
    """Per-epoch loss rows from a training history (lists aligned with ``history['epoch']``)."""
    epochs = history.get("epoch") or []
    series = {
        k: v
        for k, v in history.items()
        if k != "epoch"
        and isinstance(v, list)
        and len(v) == len(epochs)
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    }
    return [{"epoch": e, **{k: rounded_number(v[i]) for k, v in series.items()}} for i, e in enumerate(epochs)]


def pareto_rows(pareto: dict) -> list[dict]:
    """The Pareto front of the tune stage's pareto.json, sorted by leakage."""
    front = sorted(pareto.get("front") or [], key=lambda p: (p.get("leakage") is None, p.get("leakage")))
    return [
        {
            "trial": p.get("trial"),
            "leakage": rounded_number(p.get("leakage")),
            "utility": rounded_number(p.get("utility")),
            "chosen": p.get("trial") == pareto.get("chosen_trial"),
        }
        for p in front
    ]
