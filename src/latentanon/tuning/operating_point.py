"""The operating point tune hands to train: a completed trial as a ``TrialPoint``, the trial the
gate would approve on val, and the method and loss weights that trial fitted."""

from __future__ import annotations

import math
from dataclasses import asdict

from latentanon.methods.config import LossWeights
from latentanon.tuning import study as study_lib
from latentanon.tuning.config import SearchParams
from latentanon.tuning.pareto import TrialPoint, choose_operating_point, rule_text


def trial_point(t) -> TrialPoint:
    return TrialPoint(
        number=study_lib.slot_of(t),  # the slot, not Optuna's number: a retried kill keeps it
        leakage=float(t.values[0]),
        utility=float(t.values[1]),
        drops={k: float(v) for k, v in t.user_attrs.get("drops", {}).items()},
        normalized_leakage=float(t.user_attrs.get("normalized_leakage", math.nan)),
        params=dict(t.params),
    )


def chosen_method(point: TrialPoint, params: SearchParams) -> str:
    """The registry name of the method a trial fitted (noise with its searched scale)."""
    method = point.params.get("method", params.tune.methods[0] if params.tune.methods else "paper")
    if "noise_scale" in point.params:
        method = f"noise@{point.params['noise_scale']:.4g}"
    return method


def chosen_weights(point: TrialPoint, params: SearchParams) -> dict:
    base = params.train.weights
    if "w_lc" not in point.params:  # a method without loss weights
        return asdict(base)
    return asdict(
        LossWeights(
            latent_consistency=point.params["w_lc"],
            utility=point.params["w_t"],
            privacy=point.params["w_b"],
            temperature=point.params.get("temperature", base.temperature),
        )
    )


def gate_thresholds(params: SearchParams) -> tuple[float, float]:
    """(largest task drop, largest normalised leakage) a trial may have: the gate's thresholds, or
    tune's where stricter (a margin for the test split's noise)."""
    gate = params.gate
    return (
        min(params.tune.max_utility_drop, gate.max_utility_relative_drop),
        min(params.tune.max_normalized_leakage, gate.max_normalized_leakage, gate.max_moving_normalized_leakage),
    )


def gate_operating_point(
    points: list[TrialPoint], max_utility_drop: float, max_normalized_leakage: float
) -> tuple[TrialPoint, str]:
    """The trial the gate would approve on val: among trials whose every drop and whose worst
    scope's normalised leakage are within the thresholds, the least leakage (ties: higher utility,
    then lower trial number), branch "gate_approvable"; if none passes both, ``pareto``'s rule with
    the same thresholds (within the utility budget, else the private fallback, else least leakage)."""
    passing = [p for p in points if p.worst_drop <= max_utility_drop and p.normalized_leakage <= max_normalized_leakage]
    if passing:
        return min(passing, key=lambda p: (p.leakage, -p.utility, p.number)), "gate_approvable"
    return choose_operating_point(points, max_utility_drop, max_normalized_leakage)


def gate_rule_text(max_utility_drop: float, max_normalized_leakage: float) -> str:
    return (
        f"least validation leakage (worst scope's normalised leakage) among trials the gate would approve "
        f"(every task's drop <= {max_utility_drop:g}, normalised leakage <= {max_normalized_leakage:g}); if none: "
        + rule_text(max_utility_drop, max_normalized_leakage)
    )
