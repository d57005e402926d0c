"""Utility tasks: fit a head on train features, select hyper-parameters on val, score on test.

A head reads its features in one of ``HEAD_INPUTS`` (standardised per dimension, or principal axes,
which no rotation of the features can change); given several, val chooses per method, task and seed.
Test data is only ever passed to the final scoring of the already selected head.

The task table is ``latentanon.tasks.specs``.
"""

from __future__ import annotations

from latentanon.features.featureset import FeatureSet
from latentanon.tasks.annotations import tad_vocabulary
from latentanon.tasks.fitting import evaluate_head, fit_head, fit_heads
from latentanon.tasks.per_item import item_scores
from latentanon.tasks.specs import _spec


def score_task(
    task: str,
    train: FeatureSet,
    val: FeatureSet,
    test: FeatureSet,
    seed: int,
    restarts: int = 1,
    items: bool = False,
    inputs: tuple[str, ...] = ("standardised",),
) -> dict:
    """Fit heads on train, keep the best on val, score it on test.

    With several ``inputs`` (``HEAD_INPUTS`` names), the form whose default-hyper-parameter head
    scores best on val is kept (the first on a tie), then each hyper-parameter choice is tried in
    that form: one extra head per further form rather than a whole grid each. ``restarts`` > 1
    averages that many heads' outputs; ``items`` adds the per-test-video pieces for paired
    bootstrap intervals (``item_scores``)."""
    spec = _spec(task)
    if not inputs:
        raise ValueError("score_task: give at least one head input form")
    vocabulary = tad_vocabulary(train) if task == "tad" else None
    candidates = []

    def tried(hyper: dict, form: str) -> tuple[float, list]:
        fitted = fit_heads(task, train, hyper, seed, restarts, vocabulary, form)
        value = evaluate_head(fitted, val)
        candidates.append({"hyper": dict(hyper), "inputs": form, "val_value": value})
        return value, fitted

    defaults = {form: tried(spec.grid[0], form) for form in inputs}
    form = max(inputs, key=lambda f: defaults[f][0])
    best = (*defaults[form], spec.grid[0])
    for hyper in spec.grid[1:]:
        value, fitted = tried(hyper, form)
        if value > best[0]:
            best = (value, fitted, hyper)
    val_value, fitted, hyper = best
    result = {
        "task": task,
        "metric": spec.metric,
        "value": evaluate_head(fitted, test),
        "val_value": val_value,
        "selected": dict(hyper),
        "inputs": form,
        "candidates": candidates,
        "seed": seed,
        "restarts": max(1, restarts),
    }
    if items:
        result["items"] = item_scores(fitted, test)
    return result


def validation_utility(task: str, train: FeatureSet, val: FeatureSet, seed: int) -> float:
    """The task's val metric of its head with the default hyper-parameters, fit on train."""
    spec = _spec(task)
    return evaluate_head(fit_head(task, train, spec.grid[0], seed), val)
