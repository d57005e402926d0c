"""Paired bootstrap intervals and decided flags: weighted metrics equal the plain ones at unit
weights and duplicated items at integer weights; pairing cancels what raw and method share."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from latentanon.evaluation import metrics, resampling
from latentanon.tasks import scoring


def test_weighted_ap_matches_sklearn_and_duplication():
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.3
    scores = np.round(rng.random(60), 1)      # many ties
    ones = np.ones((1, 60))
    assert resampling.weighted_average_precision(y, scores, ones)[0] == pytest.approx(average_precision_score(y, scores))
    counts = rng.integers(0, 3, size=60).astype(float)
    duplicated = np.repeat(np.arange(60), counts.astype(int))
    expected = average_precision_score(y[duplicated], scores[duplicated])
    assert resampling.weighted_average_precision(y, scores, counts[None])[0] == pytest.approx(expected)
    assert np.isnan(resampling.weighted_average_precision(np.zeros(5, bool), np.arange(5.0), np.ones((1, 5)))[0])


def test_weighted_cmap_matches_plain_cmap():
    rng = np.random.default_rng(1)
    labels = {"a": rng.integers(0, 3, 40), "b": np.r_[rng.integers(0, 2, 38), -1, -1]}
    probs = {k: rng.dirichlet(np.ones(3 if k == "a" else 2), 40) for k in labels}
    cmap, chance = resampling.weighted_cmap(labels, probs, np.ones((1, 40)))
    aps = {k: {c: metrics.average_precision(v[v >= 0] == c, probs[k][v >= 0][:, c]) for c in np.unique(v[v >= 0])}
           for k, v in labels.items()}
    assert cmap[0] == pytest.approx(metrics.cmap(aps))
    known = {k: v[v >= 0] for k, v in labels.items()}
    assert chance[0] == pytest.approx(metrics.chance_cmap(known, {k: sorted(np.unique(v)) for k, v in known.items()}))


def test_identical_method_has_leakage_exactly_one_and_zero_width():
    """Pairing: a method whose outputs equal raw's reads 1 on every resample, however few the items."""
    rng = np.random.default_rng(2)
    labels = {"a": rng.integers(0, 2, 30)}
    raw = {"a": np.c_[1 - labels["a"] * 0.8, labels["a"] * 0.8] + 0.3 * rng.random((30, 2))}
    weights = resampling.shared_weights(30, 300)
    values = np.stack([resampling.paired_leakage(labels, raw, raw, weights) for _ in range(3)])
    interval = resampling.combine_seeds(values, 0.95)
    assert interval["low"] == pytest.approx(1.0) and interval["high"] == pytest.approx(1.0)
    assert interval["half_width"] == pytest.approx(0.0)


def test_interval_narrows_with_more_items_and_covers_the_truth():
    """A method that keeps about half of raw's above-chance signal: the interval holds its value
    and shrinks roughly as 1/sqrt(n)."""
    def case(n, seed):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, n)
        raw = {"a": np.c_[-(2.0 * y + rng.normal(size=n)), 2.0 * y + rng.normal(size=n)]}
        weak = {"a": np.c_[-(0.6 * y + rng.normal(size=n)), 0.6 * y + rng.normal(size=n)]}
        return {"a": y}, raw, weak

    widths = {}
    for n in (100, 1600):
        labels, raw, weak = case(n, 3)
        weights = resampling.shared_weights(n, 500)
        values = resampling.paired_leakage(labels, raw, weak, weights)[None]
        interval = resampling.combine_seeds(values, 0.95)
        widths[n] = interval["half_width"]
        assert 0.1 < interval["low"] < interval["high"] < 0.9
    assert widths[1600] < 0.5 * widths[100]


def test_combine_seeds_spreads_with_seed_disagreement():
    agree = resampling.combine_seeds(np.full((3, 400), 0.5) + np.linspace(-0.01, 0.01, 400), 0.95)
    disagree = resampling.combine_seeds(np.array([[0.2] * 400, [0.5] * 400, [0.8] * 400]), 0.95)
    assert agree["half_width"] < 0.02 < disagree["half_width"]


@pytest.mark.parametrize("interval, rule, expected", [
    ({"low": 0.1, "high": 0.3}, "<=", (True, True)),
    ({"low": 0.3, "high": 0.5}, "<=", (False, None)),      # straddles 0.4: undecided
    ({"low": 0.45, "high": 0.5}, "<=", (True, False)),
    ({"low": 0.45, "high": 0.5}, ">=", (True, True)),
    ({"low": float("nan"), "high": 0.5}, "<=", (False, None)),
])
def test_decided_flags(interval, rule, expected):
    out = resampling.decided(interval, 0.4, rule)
    assert (out["decided"], out["passed"]) == expected


def test_resampled_task_metrics_equal_the_plain_ones():
    rng = np.random.default_rng(4)
    # AR
    correct = (rng.random(20) < 0.7).astype(float)
    assert scoring.resampled_values("ar", {"correct": correct}, np.ones((1, 20)))[0] == pytest.approx(correct.mean())
    # AD: unit-weight AUC equals sklearn over frames; integer weights equal duplicated videos
    per_video_scores = [rng.random(4) for _ in range(6)]
    frame_labels = [(rng.random(64) < 0.3).astype(int) for _ in range(6)]
    items = {"unit_video": [], "unit_score": [], "unit_pos": [], "unit_neg": []}
    for v, (s, y) in enumerate(zip(per_video_scores, frame_labels)):
        snippet = np.minimum(np.arange(64) // 16, 3)
        pos = np.bincount(snippet, weights=y, minlength=4)
        items["unit_video"].append(np.full(4, v))
        items["unit_score"].append(s)
        items["unit_pos"].append(pos)
        items["unit_neg"].append(np.bincount(snippet, minlength=4) - pos)
    items = {k: np.concatenate(v) for k, v in items.items()}
    plain = scoring.frame_level_auc(per_video_scores, frame_labels, 16)
    assert scoring.resampled_values("ad", items, np.ones((1, 6)))[0] == pytest.approx(plain)
    counts = np.array([2, 0, 1, 3, 1, 1])
    dup = np.repeat(np.arange(6), counts)
    expected = roc_auc_score(np.concatenate([frame_labels[i] for i in dup]),
                             np.concatenate([per_video_scores[i][np.minimum(np.arange(64) // 16, 3)] for i in dup]))
    assert scoring.resampled_values("ad", items, counts[None].astype(float))[0] == pytest.approx(expected)


def test_resampled_detection_map_equals_detection_map():
    rng = np.random.default_rng(5)
    ground_truth = [(v, float(s), float(s) + 2.0, lab) for v in range(5) for s, lab in ((1, "a"), (6, "b"))]
    detections = [(v, s + rng.normal(0, 0.5), s + 2.0 + rng.normal(0, 0.5), lab, float(rng.random()))
                  for v, s, _, lab in ground_truth] + [(v, 3.0, 4.0, "a", float(rng.random())) for v in range(5)]
    plain = scoring.detection_map(detections, ground_truth)["map"]
    classes = ["a", "b"]
    gt_counts = np.zeros((5, 2))
    for v, _, _, lab in ground_truth:
        gt_counts[v, classes.index(lab)] += 1
    items = {"det_video": np.array([d[0] for d in detections]), "det_class": np.array([classes.index(d[3]) for d in detections]),
             "det_score": np.array([d[4] for d in detections]), "gt_counts": gt_counts,
             "det_tp": np.stack([scoring.match_detections(detections, ground_truth, t) for t in scoring.TIOU_THRESHOLDS])}
    assert scoring.resampled_values("tad", items, np.ones((1, 5)))[0] == pytest.approx(plain)
