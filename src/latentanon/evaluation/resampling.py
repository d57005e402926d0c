"""Paired bootstrap intervals (DESIGN.md section 4): raw and a method scored on the same resamples
of the same test items, combined with the seeds.

A resample is a vector of integer weights over the test items (how often each is drawn). Every
metric here takes a (B, n) weight matrix and returns B values at once, so a thousand resamples
cost about as much as a few plain evaluations. One resample b draws the test items (the same
for every method and for raw) and the seeds (with replacement); a figure's value under b is its
mean over the drawn seeds. The interval is the percentile interval of those B values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np


def resample_weights(n_items: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, n) multinomial counts: each row draws ``n_items`` items with replacement."""
    if n_items <= 0:
        raise ValueError("resample_weights: no test items to resample")
    draws = rng.integers(0, n_items, size=(n_resamples, n_items))
    weights = np.zeros((n_resamples, n_items), dtype=np.float64)
    np.add.at(weights, (np.arange(n_resamples)[:, None], draws), 1.0)
    return weights


def seed_draws(n_seeds: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, S) indices of the seeds each resample averages over (with replacement)."""
    if n_seeds == 1:
        return np.zeros((n_resamples, 1), dtype=np.int64)
    return rng.integers(0, n_seeds, size=(n_resamples, n_seeds))


def weighted_average_precision(is_positive: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AP (sklearn's step definition: ties form one threshold) of every weight row at once.

    ``weights`` (B, n); NaN where a row has no positive. With all-one weights this equals
    ``sklearn.metrics.average_precision_score``.
    """
    is_positive = np.asarray(is_positive, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    weights = np.atleast_2d(np.asarray(weights))
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    # the last position of each run of tied scores is one threshold
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    w = weights[:, order]
    # integer counts are exact in float32 far beyond any test set; half the memory traffic
    tp = np.cumsum(w[:, is_positive[order]], axis=1, dtype=np.float32)
    positive_rank = np.cumsum(is_positive[order])  # positives up to each sorted position
    total = np.cumsum(w, axis=1, dtype=np.float32)[:, ends]
    n_pos_at_end = positive_rank[ends]
    tp_at_end = np.concatenate([np.zeros((tp.shape[0], 1), np.float32), tp], axis=1)[:, n_pos_at_end]
    positives = tp_at_end[:, -1].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(total > 0, tp_at_end / np.where(total > 0, total, 1), 0.0)
        recall_step = np.diff(tp_at_end, axis=1, prepend=0.0)
        ap = (recall_step * precision).sum(axis=1, dtype=np.float64) / positives
    return np.where(positives > 0, ap, np.nan)


def weighted_cmap(
    labels: dict[str, np.ndarray], probabilities: dict[str, np.ndarray], weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(cMAP, chance cMAP) of every weight row: class-wise AP over every class with a positive in
    the row, and the prevalence-weighted chance of the same classes. Items with label -1 weigh 0."""
    aps: list[np.ndarray] = []
    chances: list[np.ndarray] = []
    for attribute, y in labels.items():
        y = np.asarray(y)
        probs = np.asarray(probabilities[attribute], dtype=np.float64)
        known = y >= 0
        w = weights[:, known]
        y_known, p_known = y[known], probs[known]
        total = w.sum(axis=1)
        for c in sorted(int(c) for c in np.unique(y_known)):
            score = p_known[:, c] if c < p_known.shape[1] else np.zeros(len(y_known))
            positive = y_known == c
            aps.append(weighted_average_precision(positive, score, w))
            share = (w * positive).sum(axis=1) / np.where(total > 0, total, 1)
            chances.append(np.where(share > 0, share, np.nan))
    ap_matrix, chance_matrix = np.array(aps), np.array(chances)  # (classes, B)
    with np.errstate(invalid="ignore"):
        return np.nanmean(ap_matrix, axis=0), np.nanmean(chance_matrix, axis=0)


def percentile_interval(values: np.ndarray, confidence: float) -> dict:
    """Mean and percentile interval of bootstrap values (NaN resamples dropped and counted)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return {
            "mean": float("nan"),
            "low": float("nan"),
            "high": float("nan"),
            "half_width": float("nan"),
            "n_resamples": int(values.size),
            "n_finite": 0,
        }
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return {
        "mean": float(finite.mean()),
        "low": float(low),
        "high": float(high),
        "half_width": float((high - low) / 2),
        "n_resamples": int(values.size),
        "n_finite": int(finite.size),
    }


def shared_weights(n_items: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """The test-item resamples every method and raw are scored on (the pairing)."""
    return resample_weights(n_items, n_resamples, np.random.default_rng([seed, n_items, n_resamples]))


def combine_seeds(per_seed_values: np.ndarray, confidence: float, seed: int = 0) -> dict:
    """(S, B) figure per seed and resample -> interval of its mean over seeds drawn with replacement."""
    per_seed_values = np.atleast_2d(np.asarray(per_seed_values, dtype=np.float64))
    n_seeds, n_resamples = per_seed_values.shape
    draws = seed_draws(n_seeds, n_resamples, np.random.default_rng([seed, n_seeds, n_resamples, 1]))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples stay NaN
        combined = np.nanmean(per_seed_values[draws, np.arange(n_resamples)[:, None]], axis=1)
    return percentile_interval(combined, confidence)


def paired_interval(
    per_seed: Sequence[Callable[[np.ndarray], np.ndarray]],
    n_items: int,
    n_resamples: int,
    confidence: float,
    seed: int = 0,
) -> dict:
    """Interval of a paired figure: ``per_seed[s](weights) -> (B,)`` computes the figure (e.g. a
    method's normalised leakage against raw of the same seed) for seed s under each weight row."""
    weights = shared_weights(n_items, n_resamples, seed)
    return combine_seeds(np.stack([f(weights) for f in per_seed]), confidence, seed)


def paired_leakage(
    labels: dict,
    raw_probabilities: dict,
    probabilities: dict,
    weights: np.ndarray,
    raw_cache: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Normalised leakage (cMAP - chance) / (raw cMAP - chance) per weight row, raw and method on
    the same resampled items; NaN where raw has no headroom above chance."""
    attributes = [a for a in labels if a in raw_probabilities and a in probabilities]
    labels = {a: labels[a] for a in attributes}
    raw_cmap, chance = (
        raw_cache
        if raw_cache is not None
        else weighted_cmap(labels, {a: raw_probabilities[a] for a in attributes}, weights)
    )
    cmap, _ = weighted_cmap(labels, {a: probabilities[a] for a in attributes}, weights)
    headroom = raw_cmap - chance
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(headroom > 0, (cmap - chance) / np.where(headroom > 0, headroom, 1), np.nan)


def decided(interval: dict, threshold: float, rule: str) -> dict:
    """Whether an interval lies wholly on one side of a threshold, and on which.

    ``rule`` "<=": pass when the figure must be at most ``threshold``. decided + passed: the whole
    interval is within; decided + failed: the whole interval is beyond; else undecided.
    """
    low, high = interval.get("low"), interval.get("high")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return {"decided": False, "passed": None, "threshold": threshold, "rule": rule}
    if rule == "<=":
        within, beyond = high <= threshold, low > threshold
    elif rule == ">=":
        within, beyond = low >= threshold, high < threshold
    else:
        raise ValueError(f"decided: unknown rule {rule!r}")
    return {
        "decided": bool(within or beyond),
        "passed": True if within else (False if beyond else None),
        "threshold": threshold,
        "rule": rule,
    }


def items_to_decide(interval: dict, threshold: float, n_items: int) -> int | None:
    """About how many test items would decide an undecided interval: a bootstrap interval narrows as
    one over the square root of the items, so the half-width reaches the gap between the interval's
    centre and the threshold at ``n_items * (half-width / gap)**2``. An estimate (it assumes the
    centre stays where it is); ``n_items`` when already decided, None at a zero gap."""
    low, high = interval.get("low"), interval.get("high")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)) or n_items <= 0:
        return None
    half_width, gap = (high - low) / 2, abs((high + low) / 2 - threshold)
    if half_width < gap:
        return int(n_items)
    if gap == 0:
        return None
    return int(np.ceil(n_items * (half_width / gap) ** 2))
