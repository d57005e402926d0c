"""The evaluate stage's plots: per-attribute leakage and the privacy-utility plane."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from latentanon.evaluation.metric_keys import TRAINED
from latentanon.figures import pyplot, save_figure


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
            ms=9 if method == TRAINED else 6,
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
