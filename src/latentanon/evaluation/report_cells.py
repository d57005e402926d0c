"""How a figure, its interval and a scope read in the report's tables (report.md, the README)."""

from __future__ import annotations

import math

from latentanon.formatting import figure, percent

SCOPE_LABELS = {
    "static": "static clip",
    "moving": "moving clip",
    "moving_video_mean": "privacy video, mean of its clips",
    "untrimmed_video_mean": "untrimmed video, mean of its snippets",
    "anomaly_video_mean": "anomaly video, mean of its snippets",
}


def scope_order(names) -> list[str]:
    """Scopes in reading order: per clip, per video mean, then the re-releases by count (metrics.json
    sorts its keys alphabetically)."""
    ranks = {name: i for i, name in enumerate(SCOPE_LABELS)}

    def key(scope: str):
        if scope.startswith("rerelease"):
            count = scope[len("rerelease") :].split("_", 1)[0]
            return (len(ranks), int(count) if count.isdigit() else 0, scope.endswith("_video_mean"), scope)
        return (ranks.get(scope, len(ranks)), 0, False, scope)

    return sorted(dict.fromkeys(names), key=key)


def scope_label(scope: str) -> str:
    """What a user shares in ``scope``, in words."""
    if scope.startswith("rerelease"):
        releases = scope[len("rerelease") :].split("_", 1)[0]
        what = "mean of its clips" if scope.endswith("_video_mean") else "per clip"
        return f"{releases} releases averaged, {what}"
    return SCOPE_LABELS.get(scope, scope)


def with_interval(mean, interval) -> str:
    if not interval or any(v is None or not math.isfinite(v) for v in interval):
        return figure(mean)
    return f"{figure(mean)} [{figure(interval[0])}, {figure(interval[1])}]"


def table_percent(value) -> str:
    return percent(value, digits=2)  # the report's tables keep two decimals of a percentage point


def scope_cell(entry: dict | None) -> str:
    if not entry:
        return "-"
    if "skipped" in entry:
        return "skipped"
    return with_interval(entry.get("normalized_leakage"), entry.get("normalized_leakage_interval"))
