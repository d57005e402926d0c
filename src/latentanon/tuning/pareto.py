"""Pareto front of the loss-weight search and the rule that picks the operating point."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from latentanon.plots import pyplot, save_figure


@dataclass(frozen=True)
class TrialPoint:
    number: int
    leakage: float                  # validation attacker cMAP (lower is more private)
    utility: float                  # mean relative validation utility of the tasks (1.0 = raw)
    drops: dict[str, float]         # task -> relative utility drop (raw - anonymized) / raw
    params: dict = field(default_factory=dict)
    normalized_leakage: float = math.nan    # (leakage - chance) / (raw - chance) on val

    @property
    def worst_drop(self) -> float:
        return max(self.drops.values(), default=0.0)


def dominates(a: TrialPoint, b: TrialPoint) -> bool:
    """a is no worse on both objectives and strictly better on one."""
    no_worse = a.leakage <= b.leakage and a.utility >= b.utility
    return no_worse and (a.leakage < b.leakage or a.utility > b.utility)


def pareto_front(points: list[TrialPoint]) -> list[TrialPoint]:
    """Non-dominated points, by increasing leakage."""
    front = [p for p in points if not any(dominates(q, p) for q in points if q is not p)]
    return sorted(front, key=lambda p: (p.leakage, -p.utility, p.number))


def rule_text(max_utility_drop: float, max_normalized_leakage: float = math.inf) -> str:
    return (
        f"least validation leakage among trials whose every task's relative utility drop is <= "
        f"{max_utility_drop:g} (ties: higher utility, then lower trial number); if no trial meets "
        f"the budget: among trials whose normalised validation leakage is <= {max_normalized_leakage:g}, "
        f"the smallest worst-task drop; if none is that private either: least leakage"
    )


def choose_operating_point(points: list[TrialPoint], max_utility_drop: float,
                           max_normalized_leakage: float = math.inf) -> tuple[TrialPoint, str]:
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


def plot_front(points: list[TrialPoint], front: list[TrialPoint], chosen: TrialPoint | None,
               raw_leakage: float | None, path: Path) -> Path:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([p.leakage for p in points], [p.utility for p in points], c="0.6", s=22, label="trials")
    ax.plot([p.leakage for p in front], [p.utility for p in front], "o-", c="tab:blue", ms=6, label="Pareto front")
    if chosen is not None:
        ax.scatter([chosen.leakage], [chosen.utility], marker="*", s=260, c="tab:red", zorder=5,
                   label=f"chosen (trial {chosen.number})")
    if raw_leakage is not None:
        ax.scatter([raw_leakage], [1.0], marker="s", s=50, c="k", label="raw features")
    ax.set_xlabel("validation leakage (attacker cMAP, lower = more private)")
    ax.set_ylabel("validation utility relative to raw (higher = better)")
    ax.set_title("Loss-weight search: privacy vs utility")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
