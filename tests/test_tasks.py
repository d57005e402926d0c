"""Utility task metrics on hand-made cases with known answers, and selection that never sees test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from latentanon.errors import DataError
from latentanon.features.featureset import FeatureSet
from latentanon.tasks.annotations import anomaly_frame_labels, tad_targets
from latentanon.tasks.fitting import clear_head_memo, evaluate_head, fit_head
from latentanon.tasks.metrics import (
    class_average_precision,
    detection_map,
    frame_level_auc,
    proposals_from_scores,
    temporal_iou,
    temporal_nms,
)
from latentanon.tasks.scoring import score_task, validation_utility
from latentanon.tasks.specs import TASK_SPECS, TASKS


def test_temporal_iou_and_nms():
    assert temporal_iou((0.0, 10.0), np.array([[2.0, 12.0], [10.0, 20.0], [0.0, 10.0]])).tolist() == pytest.approx(
        [8 / 12, 0.0, 1.0]
    )
    segments = np.array([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    assert temporal_nms(segments, np.array([0.9, 0.8, 0.5]), 0.5) == [0, 2]


def test_perfect_detections_give_map_one():
    ground_truth = [("v1", 0.0, 4.0, "jump"), ("v1", 6.0, 9.0, "wave"), ("v2", 2.0, 3.0, "jump")]
    detections = [(v, s, e, c, 0.9) for v, s, e, c in ground_truth]
    result = detection_map(detections, ground_truth)
    assert result["map"] == pytest.approx(1.0)
    assert set(result["per_threshold"]) == {"0.3", "0.4", "0.5", "0.6", "0.7"}


def test_one_shifted_detection_counts_only_below_its_tiou():
    # tIoU of [2, 12] with [0, 10] is 8/12 = 0.667: a hit at 0.3..0.6, a miss at 0.7
    result = detection_map([("v", 2.0, 12.0, "run", 0.8)], [("v", 0.0, 10.0, "run")])
    assert result["per_threshold"] == {"0.3": 1.0, "0.4": 1.0, "0.5": 1.0, "0.6": 1.0, "0.7": 0.0}
    assert result["map"] == pytest.approx(0.8)


def test_each_ground_truth_is_matched_at_most_once():
    ground_truth = [("v", 0.0, 10.0), ("v", 20.0, 30.0)]
    detections = [("v", 0.0, 10.0, 0.9), ("v", 0.0, 10.0, 0.8), ("v", 20.0, 30.0, 0.7)]
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> envelope area 0.5 * 1 + 0.5 * 2/3
    assert class_average_precision(detections, ground_truth, 0.5) == pytest.approx(0.5 + 1 / 3)
    # a class with ground truth but no detection has AP 0 and pulls the mean down
    result = detection_map([("v", 0.0, 10.0, "a", 0.9)], [("v", 0.0, 10.0, "a"), ("v", 5.0, 8.0, "b")])
    assert result["map"] == pytest.approx(0.5)


def test_proposals_from_perfect_snippet_scores_recover_the_segments():
    probs = np.zeros((10, 3))
    probs[:, 0] = 1.0
    probs[2:5] = [0, 1, 0]
    probs[7:9] = [0, 0, 1]
    detections = proposals_from_scores(probs, snippet_seconds=0.5)
    assert sorted((d[0], d[1], d[2]) for d in detections) == [(1.0, 2.5, 0), (3.5, 4.5, 1)]


def test_frame_level_auc_of_a_known_ranking():
    stride = 16
    labels = [np.r_[np.zeros(16), np.ones(16)], np.r_[np.zeros(16), np.ones(24)]]
    # anomalous frames score 0.8 and 0.3, normal ones 0.2 and 0.5; the second video's last
    # 8 frames lie past its last snippet and take that snippet's score
    scores = [np.array([0.2, 0.8]), np.array([0.5, 0.3])]
    # pairs (anomalous > normal): 0.8 beats both, 0.3 beats 0.2 only
    expected = (16 * 32 + 24 * 16) / (40 * 32)
    assert frame_level_auc(scores, labels, stride) == pytest.approx(expected)
    assert frame_level_auc([np.array([0.1, 0.9])], [np.r_[np.zeros(16), np.ones(16)]], stride) == 1.0
    with pytest.raises(DataError, match="single class"):
        frame_level_auc([np.array([0.1])], [np.zeros(16)], stride)


def _records(n, split, **columns):
    return pd.DataFrame({"video_id": [f"{split}{i}" for i in range(n)], "split": split, **columns})


def test_labels_from_segments_in_seconds():
    records = _records(1, "test", fps=[16], frames=[64], segments=[[[1.0, 2.5, "fall"]]])
    fs = FeatureSet("anomaly", records, {"snippets": [np.zeros((4, 2), np.float32)]})
    labels = anomaly_frame_labels(fs)[0]
    assert labels.sum() == 24 and labels[16] == 1 and labels[39] == 1 and labels[40] == 0
    targets = tad_targets(fs, ["fall"])[0]
    assert targets.tolist() == [0, 1, 0, 0]  # snippet centres at 0.5, 1.5, 2.5, 3.5 s


# ----------------------------------------------------------------------------- heads on synthetic sets


def _ar_split(rng, split, n, centres):
    labels = np.arange(n) % len(centres)
    clips = [(centres[c] + 0.5 * rng.normal(size=(5, centres.shape[1]))).astype(np.float32) for c in labels]
    return FeatureSet("actions", _records(n, split, label_id=labels), {"clips": clips})


def _tad_split(rng, split, n, centres):
    rows, seqs = [], []
    for _ in range(n):
        seq = 0.3 * rng.normal(size=(20, centres.shape[1]))
        c = int(rng.integers(len(centres)))
        start, length = int(rng.integers(0, 12)), int(rng.integers(4, 8))
        seq[start : start + length] += centres[c]
        seqs.append(seq.astype(np.float32))
        rows.append([[float(start), float(start + length), f"c{c}"]])
    records = _records(n, split, fps=16, frames=320, segments=rows)
    return FeatureSet("untrimmed", records, {"snippets": seqs})


def _ad_split(rng, split, n, direction):
    rows, seqs, flags = [], [], []
    for i in range(n):
        seq = 0.3 * rng.normal(size=(12, len(direction)))
        anomalous = i % 2
        segments = []
        if anomalous:
            start = int(rng.integers(0, 9))
            seq[start : start + 3] += direction
            segments = [[float(start), float(start + 3), "fight"]]
        seqs.append(seq.astype(np.float32))
        rows.append(segments)
        flags.append(anomalous)
    records = _records(n, split, fps=16, frames=192, segments=rows, anomaly=flags)
    return FeatureSet("anomaly", records, {"snippets": seqs})


def _task_splits(task, seed=0):
    rng = np.random.default_rng(seed)
    if task == "ar":
        centres = rng.normal(size=(3, 8))
        return [_ar_split(rng, s, n, centres) for s, n in (("train", 30), ("val", 12), ("test", 12))]
    if task == "tad":
        centres = 2 * rng.normal(size=(2, 8))
        return [_tad_split(rng, s, n, centres) for s, n in (("train", 24), ("val", 8), ("test", 8))]
    direction = 2 * rng.normal(size=8)
    return [_ad_split(rng, s, n, direction) for s, n in (("train", 24), ("val", 8), ("test", 8))]


def _scrambled(fs: FeatureSet, task: str, seed: int = 1) -> FeatureSet:
    rng = np.random.default_rng(seed)
    records = fs.records.copy()
    column = {"ar": "label_id", "tad": "segments", "ad": "segments"}[task]
    records[column] = list(rng.permutation(records[column].to_numpy()))
    if task == "tad":
        records["segments"] = [[[s + 3.0, e + 3.0, label] for s, e, label in row] for row in records["segments"]]
    return FeatureSet(fs.name, records, fs.arrays)


@pytest.mark.parametrize("task", TASKS)
def test_score_task_learns_and_selects_without_test(task):
    train, val, test = _task_splits(task)
    result = score_task(task, train, val, test, seed=0)
    assert set(result) >= {"value", "metric", "val_value", "selected"}
    assert result["value"] > 0.8, result
    assert result["val_value"] == max(c["val_value"] for c in result["candidates"])
    scrambled = score_task(task, train, val, _scrambled(test, task), seed=0)
    assert scrambled["selected"] == result["selected"]
    assert scrambled["val_value"] == result["val_value"]
    assert scrambled["value"] < result["value"]
    assert validation_utility(task, train, val, seed=0) == pytest.approx(result["candidates"][0]["val_value"])


def test_task_input_errors():
    train, val, test = _task_splits("ar")
    with pytest.raises(KeyError, match="unknown task"):
        score_task("pose", train, val, test, 0)
    with pytest.raises(DataError, match="lacks columns"):
        score_task("ad", FeatureSet("x", train.records, {"snippets": train.arrays["clips"]}), val, test, 0)


@pytest.mark.parametrize("task", TASKS)
def test_saved_items_reproduce_the_test_value_alone_and_as_an_ensemble(task):
    """The per-test-video items (and the ensemble rebuilt from their head outputs: AR probabilities,
    TAD snippet scores re-detected, AD unit scores) give the test value at unit weights."""
    from latentanon.tasks.per_item import ENSEMBLE_PIECES, ensemble_items, resampled_values

    train, val, test = _task_splits(task)
    result = score_task(task, train, val, test, seed=0, items=True)
    items = result["items"]
    assert ENSEMBLE_PIECES[task] in items
    ones = np.ones((1, len(test)))
    assert resampled_values(task, items, ones)[0] == pytest.approx(result["value"])
    assert resampled_values(task, ensemble_items(task, [items, items]), ones)[0] == pytest.approx(result["value"])


def _moved(fs: FeatureSet, rotation: np.ndarray, shift: np.ndarray, scale: float) -> FeatureSet:
    kind = next(iter(fs.arrays))
    return FeatureSet(
        fs.name, fs.records, {kind: [(scale * a @ rotation + shift).astype(np.float32) for a in fs.arrays[kind]]}
    )


@pytest.mark.parametrize("task", TASKS)
def test_a_rotated_shifted_rescaled_copy_of_the_features_scores_the_same(task):
    """The information-preserving control (DESIGN section 4) must read no utility change: heads that
    read principal axes see the same inputs after an orthogonal map with a reflection, a shift and
    one overall scale, so with the same seed they give the same outputs on every test item."""
    from latentanon.tasks.per_item import ENSEMBLE_PIECES

    train, val, test = _task_splits(task)
    rng = np.random.default_rng(7)
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    rotation[:, 0] *= -1 if np.linalg.det(rotation) > 0 else 1  # include a reflection
    shift = rng.normal(size=8)
    plain = score_task(task, train, val, test, seed=0, items=True, inputs=("principal_axes",))
    moved = score_task(
        task,
        *(_moved(fs, rotation, shift, 3.0) for fs in (train, val, test)),
        seed=0,
        items=True,
        inputs=("principal_axes",),
    )
    assert moved["selected"] == plain["selected"]
    assert moved["value"] == pytest.approx(plain["value"], abs=1e-9)
    piece = ENSEMBLE_PIECES[task]
    np.testing.assert_allclose(moved["items"][piece], plain["items"][piece], atol=2e-3)  # float32 drift over 300 steps


@pytest.mark.parametrize("task", TASKS)
def test_val_chooses_the_input_form_then_the_hyper_parameters_and_the_default_reads_standardised(task):
    from latentanon.tasks.specs import TASK_SPECS

    train, val, test = _task_splits(task)
    grid = TASK_SPECS[task].grid
    default = score_task(task, train, val, test, seed=0)
    assert default["inputs"] == "standardised" and [c["inputs"] for c in default["candidates"]] == [
        "standardised"
    ] * len(grid)
    both = score_task(task, train, val, test, seed=0, inputs=("standardised", "principal_axes"))
    first = {c["inputs"]: c["val_value"] for c in both["candidates"][:2]}
    assert [c["hyper"] for c in both["candidates"][:2]] == [dict(grid[0])] * 2
    assert both["inputs"] == max(("standardised", "principal_axes"), key=first.get)
    in_form = [c for c in both["candidates"] if c["inputs"] == both["inputs"]]
    assert [c["hyper"] for c in in_form] == [dict(h) for h in grid]  # the whole grid, in the chosen form only
    assert len(both["candidates"]) == len(grid) + 1
    best = max(in_form, key=lambda c: c["val_value"])
    assert (both["selected"], both["val_value"]) == (best["hyper"], best["val_value"])
    # the standardised heads are the default's own: offering a second form changes none of them
    assert first["standardised"] == default["candidates"][0]["val_value"]
    with pytest.raises(KeyError, match="unknown head inputs"):
        score_task(task, train, val, test, seed=0, inputs=("whitened",))


def test_anomaly_head_reads_its_temporal_neighbours_and_never_the_padding():
    import torch

    from latentanon.tasks.heads import ADHead

    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    for kernel, reach in ((1, 0), (3, 2), (5, 4)):
        head = ADHead(8, hidden=16, kernel=kernel).eval()
        base = head(x, mask)
        assert base.shape == (2, 6) and (base[1, 4:] == 0).all()
        moved = x.clone()
        moved[0, 0] += 1.0  # a change at snippet 0 reaches `reach` snippets on
        changed = (head(moved, mask) - base)[0].abs() > 0
        assert changed.tolist() == [i <= reach for i in range(6)], kernel
        padded = x.clone()
        padded[1, 4:] = 100.0  # what lies in the padding changes nothing
        torch.testing.assert_close(head(padded, mask), base)
    with pytest.raises(ValueError, match="odd"):
        ADHead(8, kernel=2)


@pytest.mark.parametrize("task", TASKS)
def test_a_head_fitted_again_on_the_same_inputs_is_the_one_fitted_before(task):
    """The memo is exact: a fit from scratch gives the same weights, and any change of features,
    labels, seed or settings fits anew."""
    train, val, _ = _task_splits(task)
    hyper = dict(TASK_SPECS[task].grid[0])
    clear_head_memo()
    first = fit_head(task, train, hyper, seed=0)
    assert fit_head(task, train, hyper, seed=0) is first
    clear_head_memo()
    fresh = fit_head(task, train, hyper, seed=0)
    assert fresh is not first
    for (name, a), b in zip(first.head.state_dict().items(), fresh.head.state_dict().values()):
        assert torch.equal(a, b), name
    assert evaluate_head(first, val) == evaluate_head(fresh, val)
    kind = TASK_SPECS[task].kind
    shifted = FeatureSet(train.name, train.records, {kind: [a + 1e-3 for a in train.kind(kind)]})
    changed = [
        fit_head(task, train, hyper, seed=1),
        fit_head(task, train, hyper, seed=0, inputs="principal_axes"),
        fit_head(task, shifted, hyper, seed=0),
        fit_head(task, _scrambled(train, task) if task != "ad" else _flipped(train), hyper, seed=0),
    ]
    assert all(c is not fresh for c in changed)
    assert len({id(c) for c in changed}) == len(changed)


def _flipped(fs: FeatureSet) -> FeatureSet:
    records = fs.records.copy()
    records["anomaly"] = 1 - records["anomaly"]
    return FeatureSet(fs.name, records, fs.arrays)
