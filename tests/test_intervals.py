"""Paired bootstrap intervals and decided flags: weighted metrics equal the plain ones at unit
weights and duplicated items at integer weights; pairing cancels what raw and method share."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from latentanon.errors import DataError
from latentanon.evaluation import metrics, resampling
from latentanon.tasks import per_item
from latentanon.tasks.metrics import TIOU_THRESHOLDS, detection_map, frame_level_auc, proposals_from_scores


def test_weighted_ap_matches_sklearn_and_duplication():
    rng = np.random.default_rng(0)
    y = rng.random(60) < 0.3
    scores = np.round(rng.random(60), 1)  # many ties
    ones = np.ones((1, 60))
    assert resampling.weighted_average_precision(y, scores, ones)[0] == pytest.approx(
        average_precision_score(y, scores)
    )
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
    aps = {
        k: {c: metrics.average_precision(v[v >= 0] == c, probs[k][v >= 0][:, c]) for c in np.unique(v[v >= 0])}
        for k, v in labels.items()
    }
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


@pytest.mark.parametrize(
    "interval, rule, expected",
    [
        ({"low": 0.1, "high": 0.3}, "<=", (True, True)),
        ({"low": 0.3, "high": 0.5}, "<=", (False, None)),  # straddles 0.4: undecided
        ({"low": 0.45, "high": 0.5}, "<=", (True, False)),
        ({"low": 0.45, "high": 0.5}, ">=", (True, True)),
        ({"low": float("nan"), "high": 0.5}, "<=", (False, None)),
    ],
)
def test_decided_flags(interval, rule, expected):
    out = resampling.decided(interval, 0.4, rule)
    assert (out["decided"], out["passed"]) == expected


def test_items_to_decide_scales_with_the_square_of_half_width_over_gap():
    # half-width 0.04, centre 0.0, threshold 0.01: (0.04 / 0.01)^2 = 16 times the items
    assert resampling.items_to_decide({"low": -0.04, "high": 0.04}, 0.01, 500) == 8000
    assert resampling.items_to_decide({"low": 0.1, "high": 0.3}, 0.4, 500) == 500  # already decided
    assert resampling.items_to_decide({"low": 0.3, "high": 0.5}, 0.4, 500) is None  # centre on the threshold
    assert resampling.items_to_decide({"low": float("nan"), "high": 0.5}, 0.4, 500) is None
    # the estimate holds for a real bootstrap: four times the items halves the half-width
    rng = np.random.default_rng(0)
    widths = {}
    for n in (400, 1600):
        correct = (rng.random(n) < 0.7).astype(float)
        values = per_item.resampled_values("ar", {"correct": correct}, resampling.shared_weights(n, 2000))
        widths[n] = resampling.percentile_interval(values, 0.95)["half_width"]
    assert widths[1600] == pytest.approx(widths[400] / 2, rel=0.15)


def test_resampled_task_metrics_equal_the_plain_ones():
    rng = np.random.default_rng(4)
    # AR
    correct = (rng.random(20) < 0.7).astype(float)
    assert per_item.resampled_values("ar", {"correct": correct}, np.ones((1, 20)))[0] == pytest.approx(correct.mean())
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
    plain = frame_level_auc(per_video_scores, frame_labels, 16)
    assert per_item.resampled_values("ad", items, np.ones((1, 6)))[0] == pytest.approx(plain)
    counts = np.array([2, 0, 1, 3, 1, 1])
    dup = np.repeat(np.arange(6), counts)
    expected = roc_auc_score(
        np.concatenate([frame_labels[i] for i in dup]),
        np.concatenate([per_video_scores[i][np.minimum(np.arange(64) // 16, 3)] for i in dup]),
    )
    assert per_item.resampled_values("ad", items, counts[None].astype(float))[0] == pytest.approx(expected)


def test_resampled_detection_map_equals_detection_map():
    rng = np.random.default_rng(5)
    ground_truth = [(v, float(s), float(s) + 2.0, lab) for v in range(5) for s, lab in ((1, "a"), (6, "b"))]
    detections = [
        (v, s + rng.normal(0, 0.5), s + 2.0 + rng.normal(0, 0.5), lab, float(rng.random()))
        for v, s, _, lab in ground_truth
    ] + [(v, 3.0, 4.0, "a", float(rng.random())) for v in range(5)]
    plain = detection_map(detections, ground_truth)["map"]
    classes = ["a", "b"]
    gt_counts = np.zeros((5, 2))
    for v, _, _, lab in ground_truth:
        gt_counts[v, classes.index(lab)] += 1
    items = {
        "det_video": np.array([d[0] for d in detections]),
        "det_class": np.array([classes.index(d[3]) for d in detections]),
        "det_score": np.array([d[4] for d in detections]),
        "gt_counts": gt_counts,
        "det_tp": np.stack([per_item.match_detections(detections, ground_truth, t) for t in TIOU_THRESHOLDS]),
    }
    assert per_item.resampled_values("tad", items, np.ones((1, 5)))[0] == pytest.approx(plain)


# ----------------------------------------------------------------------------- seed ensemble


def _ar_items(logits: np.ndarray, labels: np.ndarray) -> dict:
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    return {"correct": (probs.argmax(axis=1) == labels).astype(float), "probabilities": probs, "labels": labels}


def _tad_pieces(probabilities: np.ndarray, n_videos: int) -> dict:
    """Two action classes; every video has class 0 on [2, 6) s and class 1 on [10, 15) s, 1 s snippets."""
    gt = [(v, s, e, c) for v in range(n_videos) for s, e, c in ((2.0, 6.0, 0), (10.0, 15.0, 1))]
    return {
        "snippet_probabilities": probabilities,
        "snippet_counts": np.full(n_videos, probabilities.shape[1]),
        "snippet_seconds": np.ones(n_videos),
        "vocabulary_class": np.array([0, 1]),
        "gt_video": np.array([g[0] for g in gt]),
        "gt_start": np.array([g[1] for g in gt]),
        "gt_end": np.array([g[2] for g in gt]),
        "gt_class": np.array([g[3] for g in gt]),
    }


def _tad_truth(n_videos: int, n_snippets: int = 20) -> np.ndarray:
    truth = np.zeros((n_videos, n_snippets, 3))
    truth[:, :, 0] = 1.0
    truth[:, 2:6], truth[:, 10:15] = [0, 1, 0], [0, 0, 1]
    return truth


def _tad_items(probabilities: np.ndarray) -> dict:
    pieces = _tad_pieces(probabilities, len(probabilities))
    return {**per_item.tad_detection_items(pieces), **pieces}


def _ad_items(scores: np.ndarray) -> dict:
    n_videos, n_snippets = scores.shape
    pos = np.zeros((n_videos, n_snippets))
    pos[::2, 1:3] = 16  # even videos anomalous in snippets 1-2
    return {
        "unit_video": np.repeat(np.arange(n_videos), n_snippets),
        "unit_score": scores.ravel(),
        "unit_pos": pos.ravel(),
        "unit_neg": (16 - pos).ravel(),
    }


def _utility_only(per_method: dict) -> dict:
    """Items as ``paired_intervals`` reads them, with a trivial privacy scope."""
    scope = {"labels": {"gender": np.arange(8) % 2}, "probabilities": {"gender": np.tile([[0.6, 0.4]], (8, 1))}}
    return {
        m: {str(s): {"static": scope, "moving": scope, "utility": u} for s, u in enumerate(seeds)}
        for m, seeds in per_method.items()
    }


def test_ensemble_pairs_raw_and_method_on_the_same_resamples():
    """A method whose heads' outputs equal raw's drops exactly 0 on every resample of every task;
    one whose outputs differ does not."""
    from latentanon.evaluation import paired

    rng = np.random.default_rng(7)
    labels = np.arange(30) % 4
    raw_seeds = [
        {
            "ar": _ar_items(rng.normal(0, 1, (30, 4)) + 2 * np.eye(4)[labels], labels),
            "tad": _tad_items(np.clip(_tad_truth(6) + rng.normal(0, 0.2, (6, 20, 3)), 0, 1)),
            "ad": _ad_items(rng.random((10, 4))),
        }
        for _ in range(3)
    ]
    other = [
        {
            "ar": _ar_items(rng.normal(0, 1, (30, 4)), labels),
            "tad": _tad_items(np.clip(_tad_truth(6)[:, ::-1] + rng.normal(0, 0.2, (6, 20, 3)), 0, 1)),
            "ad": _ad_items(rng.random((10, 4))),
        }
        for _ in range(3)
    ]
    out = paired.paired_intervals(
        _utility_only({"raw": raw_seeds, "same": raw_seeds, "other": other}), [0, 1, 2], 0.95, 300
    )
    for task in ("ar", "tad", "ad"):
        same = out["same"]["utility"][task]["ensemble"]
        assert (same["point"], same["low"], same["high"], same["half_width"]) == (0.0, 0.0, 0.0, 0.0)
        assert same["n_finite"] > 250 and same["value"] == same["raw_value"]  # NaN: a resample without positives
        differing = out["other"]["utility"][task]["ensemble"]
        assert differing["point"] != 0.0 and differing["half_width"] > 0.0
        assert set(out["other"]["utility"][task]["seeds"]) >= {"low", "high", "half_width"}


def test_seed_ensemble_narrows_the_interval_of_noisy_heads():
    """Heads that differ a lot from seed to seed (independent noise on the class scores, same
    signal for raw and method): the ensemble's interval is narrower than the per-seed drops
    combined with the seeds, and narrower than one seed's interval, on every draw."""
    from latentanon.evaluation import paired

    for draw in range(4):
        rng = np.random.default_rng(100 + draw)
        n, classes = 300, 6
        labels = rng.integers(0, classes, n)
        signal = 1.5 * np.eye(classes)[labels]
        heads = lambda: [{"ar": _ar_items(signal + rng.normal(0, 1.5, (n, classes)), labels)} for _ in range(5)]
        items = _utility_only({"raw": heads(), "method": heads()})
        seeds = [0, 1, 2, 3, 4]
        ensemble = paired.paired_intervals(items, seeds, 0.95, 400)["method"]["utility"]["ar"]
        one_seed = paired.paired_intervals(items, [0], 0.95, 400)["method"]["utility"]["ar"]["ensemble"]
        assert ensemble["ensemble"]["half_width"] < 0.8 * ensemble["seeds"]["half_width"]
        assert ensemble["ensemble"]["half_width"] < 0.9 * one_seed["half_width"]


def _misplaced(rng: np.random.Generator, n_videos: int, n_snippets: int = 20) -> np.ndarray:
    """One head's snippet scores: each true segment found 2 snippets early or late (a coin flip)."""
    probs = np.zeros((n_videos, n_snippets, 3))
    probs[:, :, 0], probs[:, :, 1:] = 0.9, 0.05
    for v in range(n_videos):
        for cls, (start, end) in ((1, (2, 6)), (2, (10, 15))):
            shift = rng.choice([-2, 2])
            probs[v, start + shift : end + shift, cls], probs[v, start + shift : end + shift, 0] = 0.9, 0.05
    return np.clip(probs + rng.normal(0, 0.05, probs.shape), 0, 1)


def test_tad_ensemble_detects_on_the_averaged_snippet_scores():
    """TAD's ensemble averages the snippet class scores before detection and NMS: its mAP is that of
    the detections of the averaged scores, and where each seed's head misplaces the segments
    (early or late at random) the average finds them better than a seed does."""
    for draw in range(3):
        rng = np.random.default_rng(20 + draw)
        seeds = [_tad_items(_misplaced(rng, 5)) for _ in range(5)]
        ensemble = per_item.ensemble_items("tad", seeds)
        averaged = np.mean([s["snippet_probabilities"] for s in seeds], axis=0)
        assert np.allclose(ensemble["snippet_probabilities"], averaged)
        detections = [
            (v, s, e, ("a", "b")[c], score)
            for v in range(5)
            for s, e, c, score in proposals_from_scores(averaged[v], 1.0)
        ]
        ground_truth = [(v, s, e, lab) for v in range(5) for s, e, lab in ((2.0, 6.0, "a"), (10.0, 15.0, "b"))]
        value = per_item.resampled_values("tad", ensemble, np.ones((1, 5)))[0]
        assert value == pytest.approx(detection_map(detections, ground_truth)["map"])
        per_seed = [per_item.resampled_values("tad", s, np.ones((1, 5)))[0] for s in seeds]
        assert value > np.mean(per_seed) + 0.05


def test_ensemble_of_one_seed_is_that_seed_and_mismatches_are_refused():
    rng = np.random.default_rng(3)
    labels = np.arange(12) % 3
    ar = _ar_items(rng.normal(0, 1, (12, 3)), labels)
    tad = _tad_items(np.clip(_tad_truth(3) + rng.normal(0, 0.2, (3, 20, 3)), 0, 1))
    ad = _ad_items(rng.random((4, 5)))
    for task, items in (("ar", ar), ("tad", tad), ("ad", ad)):
        one = per_item.ensemble_items(task, [items])
        assert per_item.resampled_values(task, one, np.ones((1, 12 if task == "ar" else (3 if task == "tad" else 4))))[
            0
        ] == pytest.approx(
            per_item.resampled_values(task, items, np.ones((1, 12 if task == "ar" else (3 if task == "tad" else 4))))[0]
        )
    with pytest.raises(DataError, match="lack 'probabilities'"):
        per_item.ensemble_items("ar", [ar, {"correct": ar["correct"]}], "aam")
    with pytest.raises(DataError, match="disagree on 'labels'"):
        per_item.ensemble_items("ar", [ar, {**ar, "labels": (labels + 1) % 3}], "aam")


def test_items_without_the_ensemble_pieces_are_measured_again(tmp_path):
    """Resume: an items file of an older version (no probabilities / snippet scores) does not count."""
    from latentanon.evaluation import items

    rng = np.random.default_rng(1)
    labels = np.arange(6) % 3
    full = {
        "utility": {
            "ar": _ar_items(rng.normal(0, 1, (6, 3)), labels),
            "tad": _tad_items(_tad_truth(2)),
            "ad": _ad_items(rng.random((2, 3))),
        }
    }
    old = {
        "utility": {
            "ar": {"correct": full["utility"]["ar"]["correct"]},
            "tad": {
                k: v
                for k, v in full["utility"]["tad"].items()
                if not k.startswith(("snippet", "gt_", "voc")) or k == "gt_counts"
            },
            "ad": full["utility"]["ad"],
        }
    }
    assert items.items_complete(items.save_items(tmp_path / "new.npz", full))
    assert not items.items_complete(items.save_items(tmp_path / "old.npz", old))
    assert not items.items_complete(tmp_path / "missing.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert not items.items_complete(tmp_path / "broken.npz")
