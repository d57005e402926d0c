"""What a tune trial is judged by, on the validation split only, measured the way evaluate
measures: leakage (the worst scope's normalised leakage (cMAP - chance) / (raw cMAP - chance) of
one fixed attacker of evaluate's kind, over the scopes a user shares: static clips of the privacy
sets, moving clips of the privacy videos, each privacy video's mean moving clip, each long video's
mean snippet where its records carry the private attributes, and, for a method with fresh noise,
the privacy videos published ``trials.RELEASES`` times and averaged per clip; minimised) and
utility (mean over the seen tasks of the anonymized validation metric relative to raw, each task
read by the stronger of evaluate's head input forms; maximised).
"""

from __future__ import annotations

import math

import numpy as np

from latentanon.features.featureset import FeatureSet

# What tune attacks besides single clips: per-video means, and re-releases of a noisy method.
MOVING_SET = "privacy_videos"
LONG_SCOPES = {"untrimmed_mean": "untrimmed", "anomaly_mean": "anomaly"}


def mean_clips(fs: FeatureSet, kind: str) -> FeatureSet:
    """One row per video: the mean of its ``kind`` features, as a one-clip ``clips`` item (what an
    attacker who averages a whole video sees)."""
    means = [np.asarray(a, np.float32).mean(axis=0, keepdims=True) for a in fs.kind(kind)]
    return FeatureSet(fs.name, fs.records, {"clips": means}, dict(fs.meta))


def leakage_scopes(
    task_sets: dict[str, FeatureSet], privacy: list[FeatureSet], released: FeatureSet | None = None
) -> dict[str, tuple[list[FeatureSet], str]]:
    """Scope name -> (feature sets, kind) the validation attacker reads (see the module doc)."""
    from latentanon.tasks.private import ATTRIBUTES

    scopes = {"static": ([fs for fs in privacy if "static" in fs.arrays and len(fs)], "static")}
    videos = [fs for fs in privacy if fs.name == MOVING_SET and "clips" in fs.arrays and len(fs)]
    if videos:
        scopes["moving"] = (videos, "clips")
        scopes["video_mean"] = ([mean_clips(fs, "clips") for fs in videos], "clips")
    for scope, name in LONG_SCOPES.items():
        fs = task_sets.get(name)
        if fs is not None and len(fs) and all(a in fs.records.columns for a in ATTRIBUTES):
            scopes[scope] = ([mean_clips(fs, "snippets")], "clips")
    if released is not None:
        scopes["release"] = ([released], "clips")
    return {k: v for k, v in scopes.items() if v[0]}


def stronger_head_utility(task: str, train: FeatureSet, val: FeatureSet, seed: int, inputs: tuple[str, ...]) -> float:
    """The task's val metric read by the stronger of the head input forms ``inputs`` (default
    hyper-parameters): the form evaluate keeps for a method is the one that scores best on val."""
    from latentanon.tasks.fitting import evaluate_head, fit_head
    from latentanon.tasks.specs import TASK_SPECS

    grid = TASK_SPECS[task].grid[0]
    return max(float(evaluate_head(fit_head(task, train, grid, seed, inputs=form), val)) for form in inputs)


def measure(
    task_sets: dict[str, FeatureSet],
    privacy: list[FeatureSet],
    tasks: tuple[str, ...],
    seed: int,
    inputs: tuple[str, ...] = ("standardised",),
    released: FeatureSet | None = None,
) -> dict:
    """Validation leakage of every scope (cMAP and chance), and per-task validation utility of
    (possibly anonymized) features. ``leakage`` / ``chance`` keep the mean of the static and moving
    scopes (what the study's raw reference reports); trials are judged per scope."""
    from latentanon.evaluation.privacy import validation_chance, validation_leakage
    from latentanon.tasks.specs import TASK_SPECS

    scopes = {}
    for scope, (sets, kind) in leakage_scopes(task_sets, privacy, released).items():
        val = [fs.split("val") for fs in sets]
        scopes[scope] = {
            "cmap": float(validation_leakage([fs.split("train") for fs in sets], val, seed, kind=kind)),
            "chance": float(validation_chance(val, kind=kind)),
        }
    single = [scopes[s] for s in ("static", "moving") if s in scopes]
    utility = {}
    for task in tasks:
        fs = task_sets[TASK_SPECS[task].set_name]
        utility[task] = stronger_head_utility(task, fs.split("train"), fs.split("val"), seed, tuple(inputs))
    return {
        "leakage": float(np.mean([v["cmap"] for v in single])),
        "chance": float(np.mean([v["chance"] for v in single])),
        "scopes": scopes,
        "utility": utility,
    }


def normalized(leakage: float, raw: dict) -> float:
    """(leakage - chance) / (raw - chance) on val, as the gate normalises test leakage."""
    chance = raw.get("chance")
    if chance is None or raw["leakage"] <= chance:
        return math.nan
    return (leakage - chance) / (raw["leakage"] - chance)


def scope_leakage(measured: dict, raw: dict) -> dict[str, float]:
    """Each scope's normalised val leakage against raw's same scope (a release scope against raw's
    moving clips: publishing raw features again changes nothing); NaN where raw has no headroom."""
    out = {}
    for scope, value in measured["scopes"].items():
        reference = raw["scopes"].get("moving" if scope == "release" else scope)
        if reference is not None:
            out[scope] = normalized(value["cmap"], {"leakage": reference["cmap"], "chance": reference["chance"]})
    return out


def worst_scope(per_scope: dict[str, float]) -> float:
    finite = [v for v in per_scope.values() if np.isfinite(v)]
    return float(max(finite)) if finite else math.nan


def relative(raw: dict, anonymized: dict) -> tuple[float, dict[str, float]]:
    """Mean relative utility and each task's relative drop (raw - anonymized) / raw."""
    drops = {}
    for task, raw_value in raw["utility"].items():
        value = anonymized["utility"][task]
        drops[task] = (raw_value - value) / raw_value if raw_value > 0 else (0.0 if value >= raw_value else 1.0)
    mean_relative = float(np.mean([1.0 - d for d in drops.values()])) if drops else 1.0
    return mean_relative, drops
