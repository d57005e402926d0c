"""The loss-weight search's Pareto front (Optuna's own: ``study.best_trials`` and its plot) and
the project's rule that picks the operating point on it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from latentanon.figures import pyplot, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class TrialPoint:
    number: int
    leakage: float  # validation attacker cMAP (lower is more private)
    utility: float  # mean relative validation utility of the tasks (1.0 = raw)
    drops: dict[str, float]  # task -> relative utility drop (raw - anonymized) / raw
    params: dict = field(default_factory=dict)
    normalized_leakage: float = math.nan  # (leakage - chance) / (raw - chance) on val

    @property
    def worst_drop(self) -> float:
        return max(self.drops.values(), default=0.0)


def pareto_front(study, point_of) -> list[TrialPoint]:
    """Optuna's Pareto front of a (leakage down, utility up) study, ``study.best_trials``, as
    TrialPoints (``point_of`` maps a trial), by increasing leakage."""
    front = [point_of(t) for t in study.best_trials]
    return sorted(front, key=lambda p: (p.leakage, -p.utility, p.number))


def rule_text(max_utility_drop: float, max_normalized_leakage: float = math.inf) -> str:
    return (
        f"least validation leakage among trials whose every task's relative utility drop is <= "
        f"{max_utility_drop:g} (ties: higher utility, then lower trial number); if no trial meets "
        f"the budget: among trials whose normalised validation leakage is <= {max_normalized_leakage:g}, "
        f"the smallest worst-task drop; if none is that private either: least leakage"
    )


def choose_operating_point(
    points: list[TrialPoint], max_utility_drop: float, max_normalized_leakage: float = math.inf
) -> tuple[TrialPoint, str]:
    """The chosen trial and which branch of the rule chose it ("within_budget", "private_fallback"
    or "fallback"). Past the utility budget the privacy target comes first: a run that misses both
    must not trade the privacy it was built for against a utility figure it cannot reach."""
    if not points:
        raise ValueError("no completed trials to choose from")
    within = [p for p in points if p.worst_drop <= max_utility_drop]
    if within:
        return min(within, key=lambda p: (p.leakage, -p.utility, p.number)), "within_budget"
    private = [p for p in points if p.normalized_leakage <= max_normalized_leakage]
    if private:
        return min(private, key=lambda p: (p.worst_drop, p.leakage, p.number)), "private_fallback"
    return min(points, key=lambda p: (p.leakage, -p.utility, p.number)), "fallback"


def plot_front(study, chosen: TrialPoint | None, raw_leakage: float | None, path: Path) -> Path:
    """Optuna's Pareto-front plot of the study (every completed trial, the front highlighted),
    with the operating point the rule chose and the raw features marked on it."""
    import warnings

    import optuna
    from optuna.visualization.matplotlib import plot_pareto_front

    plt = pyplot()  # the headless backend, before Optuna's matplotlib module draws
    # Optuna switches pyplot's global style; the context puts it back for the figures after this one.
    with warnings.catch_warnings(), plt.style.context("default"):
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot_pareto_front(
            study,
            target_names=[
                "validation leakage (attacker cMAP, lower = more private)",
                "validation utility relative to raw (higher = better)",
            ],
            include_dominated_trials=True,
        )
        if chosen is not None:
            ax.scatter(
                [chosen.leakage],
                [chosen.utility],
                marker="*",
                s=300,
                c="gold",
                edgecolors="k",
                zorder=5,
                label=f"chosen (trial {chosen.number})",
            )
        if raw_leakage is not None:
            ax.scatter([raw_leakage], [1.0], marker="s", s=50, c="k", zorder=5, label="raw features")
        ax.set_title("Loss-weight search (Optuna's Pareto front)")
        ax.legend(fontsize=8)
        fig = cast("Figure", ax.figure)  # Optuna draws on a figure of its own, never a subfigure
        fig.set_size_inches(6.5, 4.8)
        fig.tight_layout()
        return save_figure(fig, path)
