"""Privacy/utility metrics on hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentanon.evaluation import metrics


def test_average_precision_known_ranking():
    # Ranking: pos, neg, pos, neg -> precisions at hits 1/1 and 2/3 -> AP = (1 + 2/3) / 2.
    ap = metrics.average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1]))
    assert ap == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.average_precision(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.1])) == pytest.approx(1.0)


def test_constant_scores_give_prevalence_and_no_positive_is_nan():
    labels = np.array([1, 0, 0, 0, 1, 0, 0, 0])
    assert metrics.average_precision(labels, np.full(8, 0.3)) == pytest.approx(0.25)
    assert math.isnan(metrics.average_precision(np.zeros(3), np.array([0.1, 0.2, 0.3])))


def test_average_precision_is_sklearns_to_the_last_bit():
    """The figures the gate reads must not move: the same float as sklearn's AP on random scores,
    tied scores (coarse, constant) and float32 scores, and the same refusal of NaN scores."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(400):
        size = int(rng.integers(1, 200))
        labels = rng.random(size) < rng.random()
        if not labels.any():
            continue
        scores = (
            rng.random(size),
            rng.integers(0, 5, size) / 4,
            np.full(size, 0.3),
            rng.normal(size=size).astype(np.float32),
        )[trial % 4]
        assert metrics.average_precision(labels, scores) == float(average_precision_score(labels, scores)), trial
        checked += 1
    assert checked > 300
    with pytest.raises(ValueError, match="NaN"):
        metrics.average_precision(np.array([1, 0]), np.array([0.5, np.nan]))


def test_cmap_averages_every_class_of_every_attribute():
    # gender: two classes, perfectly ranked -> AP 1, 1; face: three classes with known APs.
    gender_labels = np.array([0, 1, 0, 1])
    gender_probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    face_labels = np.array([0, 1, 2, 2])
    face_probs = np.array([[0.1, 0.2, 0.7], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.2, 0.2]])
    aps = {
        "gender": metrics.class_average_precisions(gender_labels, gender_probs, [0, 1]),
        "face": metrics.class_average_precisions(face_labels, face_probs, [0, 1, 2]),
    }
    assert aps["gender"] == {0: 1.0, 1: 1.0}
    # face class 0: scores [.1,.1,.3,.6], positive is row 0 (0.1, tied with row 1 at the bottom):
    # the tie forms one threshold with precision 1/4 at recall 1 -> AP 0.25.
    assert aps["face"][0] == pytest.approx(0.25)
    assert aps["face"][1] == pytest.approx(1.0)
    # face class 2: scores [.7,.1,.4,.2], positives rows 2,3 ranked 2nd and 3rd -> (1/2 + 2/3)/2.
    assert aps["face"][2] == pytest.approx((0.5 + 2 / 3) / 2)
    expected = np.mean([1.0, 1.0, 0.25, 1.0, (0.5 + 2 / 3) / 2])
    assert metrics.cmap(aps) == pytest.approx(expected)
    # Chance: mean prevalence of the classes, gender 1/2, 1/2; face 1/4, 1/4, 1/2.
    chance = metrics.chance_cmap({"gender": gender_labels, "face": face_labels}, {"gender": [0, 1], "face": [0, 1, 2]})
    assert chance == pytest.approx(np.mean([0.5, 0.5, 0.25, 0.25, 0.5]))


def test_relative_drop_and_normalized_leakage():
    assert metrics.relative_drop(0.8, 0.6) == pytest.approx(0.25)
    assert metrics.normalized_leakage(0.5, 0.3, 0.7) == pytest.approx(0.5)
    assert metrics.normalized_leakage(0.3, 0.3, 0.7) == pytest.approx(0.0)
    assert math.isnan(metrics.normalized_leakage(0.3, 0.3, 0.3))
    assert math.isnan(metrics.relative_drop(0.0, 0.1))


def test_top1():
    assert metrics.top1(np.array([0, 1, 2]), np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1]])) == pytest.approx(2 / 3)


def test_mean_interval_student_t():
    summary = metrics.mean_interval([1.0, 2.0, 3.0], 0.95)
    # mean 2, sd 1, t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3)
    assert summary["mean"] == pytest.approx(2.0)
    assert summary["high"] - summary["mean"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert summary["low"] == pytest.approx(2.0 - 4.302653 / math.sqrt(3), rel=1e-5)
    assert summary["n"] == 3
    single = metrics.mean_interval([0.5, float("nan")])
    assert single["mean"] == 0.5 and single["n"] == 1 and math.isnan(single["low"])


def test_dominates():
    assert metrics.dominates((0.2, 0.9), (0.3, 0.9))
    assert not metrics.dominates((0.2, 0.9), (0.2, 0.9))
    assert not metrics.dominates((0.1, 0.8), (0.3, 0.9))
