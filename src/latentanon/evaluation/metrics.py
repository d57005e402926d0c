"""Privacy and utility numbers: cMAP and its chance level, relative drops, leakage, seed intervals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats


def average_precision(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """One-vs-rest AP (area under the step precision-recall curve; tied scores form one threshold,
    so a constant score gets exactly the class prevalence). NaN when there is no positive.

    The same operations as ``sklearn.metrics.average_precision_score`` on binary labels, so the
    same float to the last bit, without its input validation, which cost 20 times the arithmetic
    at test-set sizes (thousands of calls per evaluation).
    """
    is_positive = np.asarray(is_positive, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if is_positive.shape != scores.shape:
        raise ValueError(f"average_precision: {is_positive.shape[0]} labels for {scores.shape[0]} scores")
    if not np.isfinite(scores).all():
        raise ValueError("average_precision: the scores hold NaN or infinity")
    if not is_positive.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    # the last position of each run of tied scores is one threshold
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), scores.size - 1]
    true_positives = np.cumsum(is_positive[order].astype(np.float64))[ends]
    predicted = 1 + ends.astype(np.float64)  # true + false positives at each threshold
    precision = np.r_[(true_positives / predicted)[::-1], 1.0]
    recall = np.r_[(true_positives / true_positives[-1])[::-1], 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def class_average_precisions(labels: np.ndarray, probabilities: np.ndarray, classes: Sequence[int]) -> dict[int, float]:
    """One-vs-rest AP of every class (column j of ``probabilities`` scores ``classes[j]``)."""
    labels = np.asarray(labels).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (labels.shape[0], len(classes)):
        raise ValueError(
            f"class_average_precisions: scores of shape {probabilities.shape} for "
            f"{labels.shape[0]} labels and {len(classes)} classes"
        )
    return {int(c): average_precision(labels == c, probabilities[:, j]) for j, c in enumerate(classes)}


def cmap(per_attribute_aps: Mapping[str, Mapping[int, float]]) -> float:
    """Class-wise mean AP over every scorable class of every attribute (the paper's cMAP)."""
    values = [ap for aps in per_attribute_aps.values() for ap in aps.values() if not math.isnan(ap)]
    if not values:
        raise ValueError("cmap: no class with a positive example to score")
    return float(np.mean(values))


def chance_cmap(
    labels_by_attribute: Mapping[str, np.ndarray], classes_by_attribute: Mapping[str, Sequence[int]]
) -> float:
    """cMAP of an uninformative attacker: a class's AP is then its prevalence in the test labels.

    Averaged over the same classes cMAP averages (those with at least one positive).
    """
    prevalences = []
    for attribute, labels in labels_by_attribute.items():
        labels = np.asarray(labels).ravel()
        for c in classes_by_attribute[attribute]:
            share = float(np.mean(labels == c)) if labels.size else 0.0
            if share > 0:
                prevalences.append(share)
    if not prevalences:
        raise ValueError("chance_cmap: no class with a positive example")
    return float(np.mean(prevalences))


def relative_drop(raw: float, anonymized: float) -> float:
    """(raw - anonymized) / raw: the paper's relative cMAP drop, also used for utility drops."""
    if raw == 0:
        return float("nan")
    return float((raw - anonymized) / raw)


def normalized_leakage(value: float, chance: float, raw_value: float) -> float:
    """(value - chance) / (raw - chance): the share of raw above-chance leakage that remains."""
    headroom = raw_value - chance
    if headroom <= 0:
        return float("nan")
    return float((value - chance) / headroom)


def top1(labels: np.ndarray, scores: np.ndarray) -> float:
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"top1: scores of shape {scores.shape} for {labels.shape[0]} labels")
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean over seeds with a two-sided Student-t interval; NaN seeds are dropped and counted."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    summary = {"values": [float(v) for v in values], "n": int(finite.size)}
    if finite.size == 0:
        return {**summary, "mean": float("nan"), "low": float("nan"), "high": float("nan"), "std": float("nan")}
    mean = float(finite.mean())
    if finite.size == 1:
        return {**summary, "mean": mean, "low": float("nan"), "high": float("nan"), "std": float("nan")}
    std = float(finite.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=finite.size - 1) * std / math.sqrt(finite.size))
    return {**summary, "mean": mean, "low": mean - half, "high": mean + half, "std": std}


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether point a = (leakage, utility) dominates b: no more leakage, no less utility, one strictly."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])
